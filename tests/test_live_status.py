"""The live status line of single long commands: the engines' progress dicts rendered as
one line (branch and bound: boxes open/closed and the best bound; Φ_m: the interval so
far), with the time left of the command's budget."""

from __future__ import annotations

import io
import time

from rich.console import Console

from nnresilience.killable import Budget
from nnresilience.progress import LiveStatus, describe


def test_describe_branch_and_bound_and_phi_reports():
    bab = describe({"phase": "bab", "open": 12, "closed": 40, "best_lower": -0.25,
                    "elapsed": 3.2, "time_left": 10.0})
    assert bab == "bab  open 12  closed 40  best lower -0.25"
    phi = describe({"phase": "milp", "cls": 3, "lower": 0.1, "upper": None,
                    "elapsed": 1.0, "time_left": 5.0})
    assert phi == "milp  class 3  interval [0.1, -]"
    assert describe({"phase": "Phi_m", "cls": 1, "done": 1, "total": 3}) == \
        "Phi_m  class 1  done 1/3"
    assert describe("case 0: holds by symbolic bounds") == "case 0: holds by symbolic bounds"
    assert "nodes=7" in describe({"phase": "x", "nodes": 7, "flag": True})


def test_live_status_draws_on_a_terminal_only():
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=100)
    with LiveStatus("verify", con, Budget(30.0), enabled=True) as st:
        st.update({"phase": "bab", "open": 2, "closed": 5})
        time.sleep(0.3)
    out = buf.getvalue()
    assert "verify" in out and "open 2" in out and "s left" in out
    buf2 = io.StringIO()
    with LiveStatus("verify", Console(file=buf2), Budget(30.0), enabled=False) as st:
        st.update({"phase": "bab"})
    assert buf2.getvalue() == ""
