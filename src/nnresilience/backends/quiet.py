"""Keeping solver libraries' own printing off our streams.

HiGHS prints a banner on fd 1 when constructed and SCIP/SoPlex print numerical trouble on
fd 2; both would corrupt ``--json -`` or read as our failure on a terminal. These context
managers redirect the file descriptor (not just ``sys.stdout``), since the text comes from
C code.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stdout():
    """Silence file descriptor 1: ``highspy.Highs()`` prints a banner on construction,
    before any option can be set, which would corrupt ``--json -`` output on stdout."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def captured_stderr(sink: list[str], limit: int = 4000):
    """Send file descriptor 2 to a temporary file while the block runs and append what
    was written to ``sink`` (at most ``limit`` characters): solver libraries (SCIP,
    SoPlex) print numerical trouble straight to fd 2, which would read as our failure on a
    terminal; the text is kept in the result's statistics instead."""
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(limit).decode("utf-8", "replace").strip()
            if text:
                sink.append(text)
