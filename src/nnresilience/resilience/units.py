"""Run independent resilience units (a class of Ξ, a sample of a table) under one deadline.

Units go through the executor lazily (:class:`nnresilience.divide.window._Window`, at most
``workers`` in flight), so each one's time limit is computed when it starts: a fair share
of the time left (``left × workers / units not yet finished``, at most ``unit_timeout``).
At the deadline the running units are stopped (the workers of an executor made here are
terminated) and every unit without an answer gets ``missing(item, why)``, so the call
returns within its timeout whatever a solver does. Executor tasks cannot call back across
processes: ``progress`` is called here, once per finished unit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from nnresilience.divide.window import TASK_MARGIN, _resolve_executor, _Window


def _run_one(fn: Callable, item: Any, timeout: float | None):
    """Executor task (top-level, picklable): ``fn(item, timeout)``."""
    return fn(item, timeout)


def run_units(fn: Callable[[Any, float | None], Any], items: list, timeout: float | None,
              workers, unit_timeout: float | None, missing: Callable[[Any, str], Any],
              progress: Callable[[dict], None] | None = None, key: str = "unit",
              keys: list | None = None) -> list:
    """``[fn(item, time_limit) for item in items]`` in order, within ``timeout`` overall.

    ``workers``: an executor or a spec for :func:`nnresilience.parallel.make_executor`.
    ``missing(item, why)`` stands in for a unit that did not finish in time. ``progress``
    gets ``{"phase": "unit", key: keys[i], "lower", "upper", "done", "total", "elapsed",
    "time_left"}`` per finished unit.
    """
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + float(timeout)
    n = len(items)
    out: list = [None] * n
    ex, owned = _resolve_executor(workers)
    width = max(1, int(getattr(ex, "workers", 1)))
    state = {"open": n, "done": 0}

    def left() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def limit() -> float | None:
        rest = left()
        share = None
        if rest is not None:
            rest = rest - TASK_MARGIN
            waves = math.ceil(max(1, state["open"]) / width)
            share = rest / waves
        if unit_timeout is not None:
            share = unit_timeout if share is None else min(share, unit_timeout)
        return share

    def make(pair):
        i, item = pair
        lim = limit()
        if lim is not None and lim <= 0.0:
            out[i] = missing(item, "not run: the time limit was reached first")
            state["open"] -= 1
            return None
        return _run_one, (fn, item, lim)

    def report(i: int, r) -> None:
        state["done"] += 1
        if progress is None:
            return
        rest = left()

        def js(v):
            if v is None:
                return None
            v = float(v)
            return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")

        progress({"phase": "unit", key: keys[i] if keys is not None else i,
                  "lower": js(getattr(r, "lower", None)), "upper": js(getattr(r, "upper", None)),
                  "done": state["done"], "total": n,
                  "elapsed": round(time.monotonic() - t0, 3),
                  "time_left": None if rest is None else max(0.0, rest)})

    win = _Window(ex, list(enumerate(items)), make, width)
    try:
        while True:
            win.fill()
            if not win.inflight:
                break
            rest = left()
            if rest is not None and rest <= 0:
                break
            for i, r in win.next_done(rest):
                out[i] = r
                state["open"] -= 1
                report(i, r)
    finally:
        win.stop(kill=owned)
        if owned:
            ex.shutdown()
    for i, r in enumerate(out):
        if r is None:
            out[i] = missing(items[i], "stopped: the time limit was reached")
    return out
