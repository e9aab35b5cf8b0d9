"""The Python examples of docs/milp.md run as written (in order, one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "milp.md"


def test_milp_page_examples_run():
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(code) >= 2
    ns: dict = {"__name__": "milp_doc"}
    for block in code:
        exec(compile(block, str(DOC), "exec"), ns)
    # what the page says the pieces give: a certified bound and the input columns
    assert ns["answer"].status.value in ("holds", "violated", "unknown")
    assert {"tau", "tau_obj", "margin_bound"} <= set(ns["answer"].stats)
    assert ns["margin_upper"] >= ns["result"].objective * -1 - 1e-9 or ns["cert"].failed
    assert np.asarray(ns["x"]).shape == (3,)
