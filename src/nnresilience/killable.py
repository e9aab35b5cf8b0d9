"""Run one piece of work in a forked child that can always be stopped: deadlines and Ctrl-C.

Why: a solver call in C (HiGHS, SCIP) neither looks at Python signals nor always honours
its own time limit, so a promise such as "``--timeout T`` ends by T + max(1 s, 5 %)" or
"Ctrl-C ends the command within a second" cannot be kept from inside the process doing
the work. :func:`run_killable` forks a child for the work, puts it in its own process
group (so everything it starts -- process pools, Dask workers, solver subprocesses -- can
be killed at once with ``killpg``) and asks the kernel to kill it if its parent dies
(``PR_SET_PDEATHSIG``). The parent only waits: it relays the child's progress reports,
keeps its partial answers, and kills the group at the hard deadline
(:attr:`Budget.hard_deadline`) or on ``KeyboardInterrupt``.

The work function receives a :class:`Reporter` as its first argument:
``reporter.progress(dict_or_text)`` for display (throttled to 10 per second) and
``reporter.partial(obj)`` for a piece of the answer that stays valid if the child is
killed later (a finished class of Ξ, the cheap interval bounds before the tight ones).
A library function that only knows a progress callback can hand over such a piece as a
progress dict with a ``"result"`` entry (e.g. ``{"phase": "done", "cls": 3, "result":
ResilienceResult.to_dict()}``): it is never throttled and is kept as a partial answer.
Its return value (picklable) is the answer. Inside the child stdout is redirected to
stderr, so a solver that prints cannot corrupt ``--json -`` output.

A :class:`~nnresilience.errors.NNResError` raised by the work is re-raised in the parent
with the same message and exit code; any other exception becomes
:class:`~nnresilience.errors.InternalError` (exit code 3), its traceback kept in
``.detail``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nnresilience.errors import InternalError, NNResError

# Seconds kept back from the hard deadline for killing the child, reaping it, printing
# the answer and leaving the interpreter.
EXIT_RESERVE = 0.5
# Minimum spacing of progress messages sent by the child.
PROGRESS_INTERVAL = 0.1
# After SIGTERM, how long the group gets before SIGKILL.
TERM_GRACE = 0.25


def grace(timeout: float) -> float:
    """The overrun a deadline promise allows: ``max(1 s, 5 % of T)``."""
    return max(1.0, 0.05 * float(timeout))


def process_start_time() -> float:
    """When this process started, on the :func:`time.monotonic` clock.

    Deadlines are promised as seen from outside the process, Python start-up and model
    loading included. Linux gives the start in clock ticks since boot
    (``/proc/self/stat`` field 22); elsewhere this is simply "now".
    """
    try:
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        ticks = int(after_name[19])           # field 22; the list starts at field 3
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - min(max(age, 0.0), 3600.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()


@dataclass(frozen=True)
class Budget:
    """A time limit ``timeout`` (seconds, None = none) counted from ``started``.

    ``deadline``: when the work should be finished (what the library functions are
    given as their own limit). ``hard_deadline``: when the child is killed, leaving
    :data:`EXIT_RESERVE` of the allowed overrun for the parent to answer and exit.
    """

    timeout: float | None
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float | None:
        return None if self.timeout is None else self.started + self.timeout

    @property
    def hard_deadline(self) -> float | None:
        if self.timeout is None:
            return None
        return self.started + self.timeout + max(grace(self.timeout) - EXIT_RESERVE, 0.2)

    def remaining(self, floor: float = 0.0) -> float | None:
        """Seconds left until :attr:`deadline` (at least ``floor``), None without a limit."""
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), floor)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


class Reporter:
    """The work function's line to the parent (see the module docstring)."""

    def __init__(self, conn: Any = None, budget: Budget | None = None) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._last = 0.0
        self.budget = budget if budget is not None else Budget(None)

    def progress(self, info: dict[str, Any] | str) -> None:
        """Send a progress report (dropped when the previous one is < 0.1 s old, unless it
        carries a finished piece of the answer under ``"result"``: those are kept as
        partial answers by the parent too)."""
        now = time.monotonic()
        final = isinstance(info, dict) and info.get("result") is not None
        if self._conn is None or (now - self._last < PROGRESS_INTERVAL and not final):
            return
        self._last = now
        self._send("progress", info)

    def partial(self, obj: Any) -> None:
        """Send a piece of the answer that survives a later kill (never dropped)."""
        if self._conn is not None:
            self._send("partial", obj)

    def _send(self, tag: str, payload: Any) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send((tag, payload))


@dataclass
class ChildResult:
    """What :func:`run_killable` got: the answer, or the partial answers and why not."""

    value: Any = None
    partials: list[Any] = field(default_factory=list)
    last_progress: dict[str, Any] | None = None
    killed: str | None = None       # None (finished), "timeout", "stopped" (stop_at)
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.killed is None


def _set_pdeathsig() -> None:
    """Ask Linux to SIGKILL this process when its parent (thread) dies; no-op elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _child_main(conn: Any, fn: Callable, args: tuple, kwargs: dict, budget: Budget,
                parent: int) -> None:
    code = 0
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        _set_pdeathsig()
        if os.getppid() != parent:                       # the parent died before prctl
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent decides
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.dup2(2, 1)                                # stray prints go to stderr
        import sys

        sys.stdout = sys.stderr
        rep = Reporter(conn, budget)
        try:
            value = fn(rep, *args, **kwargs)
            rep._send("ok", value)
        except NNResError as exc:
            rep._send("nnres", (type(exc).__name__, str(exc), exc.exit_code))
        except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
            rep._send("crash", (f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    except BaseException:  # noqa: BLE001 - never run the parent's code in the child
        code = 1
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        os._exit(code)


def kill_group(pgid: int, wait_pid: int | None = None, term_grace: float = TERM_GRACE
               ) -> None:
    """SIGTERM the process group, SIGKILL it after ``term_grace`` s, reap ``wait_pid``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM if term_grace > 0 else signal.SIGKILL)
    end = time.monotonic() + term_grace
    while wait_pid is not None and time.monotonic() < end:
        try:
            done, _ = os.waitpid(wait_pid, os.WNOHANG)
        except ChildProcessError:
            wait_pid = None
            break
        if done:
            wait_pid = None
            break
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if wait_pid is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(wait_pid, 0)


class _ChildNNResError(NNResError):
    """An :class:`NNResError` raised in the child, re-raised with its message and code."""


def run_killable(fn: Callable[..., Any], *args: Any, budget: Budget | None = None,
                 on_progress: Callable[[Any], None] | None = None,
                 on_partial: Callable[[Any], None] | None = None,
                 tick: Callable[[], None] | None = None, stop_at: float | None = None,
                 **kwargs: Any) -> ChildResult:
    """Run ``fn(reporter, *args, **kwargs)`` in a killable child (module docstring).

    ``budget``: the deadline promise (None: no limit, still killable by Ctrl-C).
    ``stop_at``: an outer deadline (monotonic; e.g. a whole campaign's) that kills the
    child with reason ``"stopped"`` if it comes before the budget's own.
    ``on_progress``/``on_partial`` are called in this process for each report; ``tick``
    about ten times a second (to refresh a progress display). Returns a
    :class:`ChildResult`; re-raises the child's errors; on ``KeyboardInterrupt`` the
    child's process group is killed and the interrupt re-raised.
    """
    budget = budget if budget is not None else Budget(None)
    t0 = time.monotonic()
    recv, send = mp.Pipe(duplex=False)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (covered by the CLI tests)
        recv.close()
        _child_main(send, fn, args, kwargs, budget, parent)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)          # also here: no race with killpg below
    send.close()
    out = ChildResult()
    msg: tuple | None = None
    try:
        hard, reason = budget.hard_deadline, "timeout"
        if stop_at is not None and (hard is None or stop_at < hard):
            hard, reason = stop_at, "stopped"
        while True:
            now = time.monotonic()
            if hard is not None and now >= hard:
                out.killed = reason
                break
            wait = 0.1 if hard is None else min(0.1, hard - now)
            if recv.poll(max(wait, 0.0)):
                try:
                    tag, payload = recv.recv()
                except EOFError:
                    break
                if tag == "progress":
                    if isinstance(payload, dict):
                        out.last_progress = payload
                        if payload.get("result") is not None:
                            out.partials.append(payload)
                    if on_progress is not None:
                        on_progress(payload)
                    continue
                if tag == "partial":
                    out.partials.append(payload)
                    if on_partial is not None:
                        on_partial(payload)
                    continue
                msg = (tag, payload)
                break
            if tick is not None:
                tick()
    except BaseException:
        kill_group(pid, pid, term_grace=0.0)      # Ctrl-C: no grace, the user is waiting
        recv.close()
        raise
    kill_group(pid, pid)              # the work is over: nothing of it may outlive us
    recv.close()
    out.seconds = time.monotonic() - t0
    if out.killed is not None:
        return out
    if msg is None:
        raise InternalError("the worker process ended without an answer (killed by the "
                            "system, or out of memory?)")
    tag, payload = msg
    if tag == "ok":
        out.value = payload
        return out
    if tag == "nnres":
        name, text, code = payload
        err = _ChildNNResError(text)
        err.exit_code = code
        err.original_type = name  # type: ignore[attr-defined]
        raise err
    summary, tb = payload
    err = InternalError(f"internal error: {summary}")
    err.detail = tb  # type: ignore[attr-defined]
    err.original_type = summary.split(":", 1)[0]  # type: ignore[attr-defined]
    err.original_message = summary.split(": ", 1)[-1]  # type: ignore[attr-defined]
    raise err
