"""Solver libraries' printing is kept off our file descriptors (and kept for the stats)."""

from __future__ import annotations

import os

from nnresilience.backends.quiet import captured_stderr, quiet_stdout


def test_fd2_text_goes_to_the_sink_not_the_terminal(capfd):
    sink: list[str] = []
    with captured_stderr(sink):
        os.write(2, b"[solve.c:4216] ERROR: numerical troubles\n")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert sink == ["[solve.c:4216] ERROR: numerical troubles"]
    assert "numerical" not in err and "after" in err


def test_fd1_banner_is_dropped(capfd):
    with quiet_stdout():
        os.write(1, b"Running HiGHS banner\n")
    os.write(1, b"json\n")
    out, _ = capfd.readouterr()
    assert "banner" not in out and "json" in out
