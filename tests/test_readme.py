"""The README's Python quick start runs as written and gives the documented numbers."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_python_quick_start_runs(monkeypatch):
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start: Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Status.HOLDS")
    lower, upper, optimal = lines[1].split()
    assert optimal == "True"
    assert abs(float(upper) - 0.2751) < 5e-4 and float(lower) <= float(upper) + 1e-9
    assert os.path.isfile(REPO / "src" / "nnresilience" / "data" / "ctg_leaky.onnx")
