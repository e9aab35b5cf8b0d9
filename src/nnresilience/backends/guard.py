"""Hard time limits for solver calls: a solve that overruns its own limit is killed.

Why: a solver's time limit is only looked at where the solver looks at the clock. HiGHS's
MIP presolve does not (measured: MIP (6) of ``mnist-net_256x2`` over ``[0, 1]^784`` spent
23 s in presolve with ``time_limit = 5``), and a deadline that a user was promised cannot
depend on that.

How: on platforms with ``fork``, a guarded solve runs in a forked child. Forking copies
nothing up front (the model arrays are shared copy-on-write, never pickled); the child
solves, sends the :class:`SolveResult` back through a pipe and exits with ``os._exit``
(no atexit handlers, no flushing of the parent's buffers). The parent waits
``time_limit + grace`` and, when no answer has come, kills the child (SIGKILL) and returns
``status = LIMIT`` with no point and no bound (``stats['killed'] = True``): what an honest
"time limit reached before anything was proven" looks like. The child ignores SIGINT, so
Ctrl-C reaches only the parent, whose ``finally`` kills the child at once.

When: a call is guarded when it has a time limit and is big enough for a solver to stall
(:func:`should_isolate`: a MIP with at least :data:`ISOLATE_MIN_INTEGER` integer
variables or a model with at least :data:`ISOLATE_MIN_NNZ` non-zeros); smaller calls run
in-process, where a fork (about 10-40 ms, measured with a 400 MB parent) would cost more
than the solve. ``SolveLimits.isolate`` forces either way. Without ``fork`` (Windows)
every call runs in-process and the solver's own limit is all there is.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import signal
import time
from collections.abc import Callable

from nnresilience.backends.base import SolveLimits, SolveResult, SolveStatus
from nnresilience.encode.model import MilpArrays

ISOLATE_MIN_INTEGER = 16
ISOLATE_MIN_NNZ = 20_000
#: Extra wall time a guarded solve gets beyond its limit before it is killed: a fixed
#: part for process start-up and answer transfer, plus a share of the limit.
GRACE_SECONDS = 0.25
GRACE_FRACTION = 0.01


def can_fork() -> bool:
    return hasattr(os, "fork")


def should_isolate(model: MilpArrays, limits: SolveLimits) -> bool:
    """Is this call guarded by a killable child? (see the module docstring)"""
    if limits.isolate is not None:
        return bool(limits.isolate) and can_fork()
    if limits.time_limit is None or not can_fork():
        return False
    return model.n_integer >= ISOLATE_MIN_INTEGER or model.A.nnz >= ISOLATE_MIN_NNZ


def grace(limit: float) -> float:
    return GRACE_SECONDS + GRACE_FRACTION * max(0.0, limit)


def _killed_result(limit: float | None, seconds: float, died: bool) -> SolveResult:
    """Nothing proven, no point: a time limit (killed) or a solver failure (died)."""
    why = "solver process died" if died else "killed at the time limit"
    status = SolveStatus.ERROR if died else SolveStatus.LIMIT
    return SolveResult(status, None, None, -math.inf, seconds,
                       {"killed": not died, "native_status": why, "time_limit": limit})


def _read_all(fd: int, deadline: float | None) -> bytes | None:
    """Bytes from ``fd`` until EOF, or None when ``deadline`` (monotonic) passes first."""
    chunks = []
    while True:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run_guarded(solve: Callable[[MilpArrays, SolveLimits], SolveResult], model: MilpArrays,
                limits: SolveLimits) -> SolveResult:
    """``solve(model, limits)`` in a forked child, killed ``grace`` after its time limit."""
    t0 = time.monotonic()
    limit = limits.time_limit
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: solve, send, vanish
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                res = solve(model, limits)
                payload = pickle.dumps(("ok", res), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # noqa: BLE001 - sent to the parent, re-raised there
                payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
            view = memoryview(payload)
            while view:
                n = os.write(w, view)
                view = view[n:]
        finally:
            os._exit(0)
    os.close(w)
    data: bytes | None = None
    try:
        deadline = None if limit is None else t0 + float(limit) + grace(float(limit))
        data = _read_all(r, deadline)
    finally:
        os.close(r)
        if data is None:  # overran (or the parent is being interrupted): kill, reap
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    seconds = time.monotonic() - t0
    if not data:
        return _killed_result(limit, seconds, died=data is not None)
    kind, payload = pickle.loads(data)
    if kind == "error":
        from nnresilience.errors import SolverFailure

        raise SolverFailure(f"solver failed in its guarded process: {payload}")
    payload.stats["guarded"] = True
    return payload
