"""run_killable: the child's answer, its errors, its partial answers when it is killed at
the deadline, an outer stop time, and nothing left running afterwards."""

from __future__ import annotations

import os
import time

import pytest

from nnresilience.errors import InternalError, NNResError, SpecParseError
from nnresilience.killable import Budget, grace, run_killable


def _answer(rep, x):
    rep.progress({"phase": "working", "open": 1})
    return {"x": x, "pid": os.getpid()}


def _partial_then_hang(rep, path):
    rep.partial(("first", 1))
    rep.progress({"phase": "done", "cls": 2, "result": {"lower": 0.5}})
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)


def _user_error(rep):
    raise SpecParseError("bad token", "p.vnnlib", 3, 4)


def _crash(rep):
    return 1 / 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_answer_comes_back_from_a_child():
    seen = []
    out = run_killable(_answer, 41, on_progress=seen.append)
    assert out.finished and out.value["x"] == 41 and out.value["pid"] != os.getpid()


def test_killed_at_the_deadline_keeps_partials_and_leaves_nothing(tmp_path):
    t0 = time.monotonic()
    out = run_killable(_partial_then_hang, str(tmp_path / "pid"), budget=Budget(1.0))
    took = time.monotonic() - t0
    assert out.killed == "timeout" and out.value is None
    assert took <= 1.0 + grace(1.0)
    assert out.partials[0] == ("first", 1) and out.partials[1]["result"] == {"lower": 0.5}
    child = int((tmp_path / "pid").read_text())
    assert not _alive(child)


def test_outer_stop_time_wins_when_earlier(tmp_path):
    out = run_killable(_partial_then_hang, str(tmp_path / "pid"), budget=Budget(30.0),
                       stop_at=time.monotonic() + 0.5)
    assert out.killed == "stopped"


def test_errors_keep_their_message_and_exit_code():
    with pytest.raises(NNResError) as e:
        run_killable(_user_error)
    assert e.value.exit_code == 2 and "p.vnnlib:3:4: bad token" in str(e.value)
    with pytest.raises(InternalError) as e:
        run_killable(_crash)
    assert e.value.exit_code == 3 and "ZeroDivisionError" in str(e.value)
    assert "Traceback" in e.value.detail
