"""Executor plumbing shared by the divided drivers: a bounded submission window.

Tasks are submitted lazily, at most ``workers`` in flight, so a task's arguments (time
left, cutoff) can depend on what earlier tasks found, and after a decisive answer only
the running tasks need stopping.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

# Sub-tasks get the remaining global time minus this margin (s), so that their own
# clean-up (replay, pickling the answer) ends before the global deadline.
TASK_MARGIN = 0.2
# Polling period (s) while waiting on futures that are not concurrent.futures ones (Dask).
_POLL = 0.05


def _default_parts(workers: int) -> int:
    """``2 * workers`` rounded up to a power of two (bisection makes powers of two even)."""
    return 1 << max(1, math.ceil(math.log2(max(2, 2 * workers))))


def _resolve_executor(executor):
    """``(executor, owned)``: a spec (None, int, str) builds one that we must shut down."""
    from nnresilience.parallel import Executor, make_executor

    if isinstance(executor, Executor):
        return executor, False
    return make_executor(executor), True


def _wait_first(futures: Iterable, timeout: float | None) -> list:
    """The futures among ``futures`` that are done, waiting up to ``timeout`` for one."""
    futures = list(futures)
    if all(isinstance(f, cf.Future) for f in futures):
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)
    end = None if timeout is None else time.monotonic() + timeout
    while True:  # distributed.Future: poll (done() is cheap and local)
        done = [f for f in futures if f.done()]
        if done or (end is not None and time.monotonic() >= end):
            return done
        time.sleep(_POLL)


class _Window:
    """Submit tasks lazily, at most ``width`` in flight, and hand back completions.

    ``make(item) -> (fn, args)`` is called at submission so arguments can depend on what
    has been learnt so far (remaining time, cutoff). ``stop()`` cancels what has not
    started; ``kill`` additionally terminates the executor's workers (only for an
    executor this module created).
    """

    def __init__(self, executor, items: list, make: Callable, width: int) -> None:
        self.executor = executor
        self.queue = deque(enumerate(items))
        self.make = make
        self.width = max(1, width)
        self.inflight: dict = {}
        self.submitted = 0
        self.completed = 0

    def fill(self) -> None:
        while self.queue and len(self.inflight) < self.width:
            i, item = self.queue[0]
            task = self.make(item)
            self.queue.popleft()
            if task is None:        # pruned without a solve
                continue
            fn, args = task
            self.inflight[self.executor.submit(fn, *args)] = i
            self.submitted += 1

    def next_done(self, timeout: float | None) -> list[tuple[int, Any]]:
        done = _wait_first(self.inflight, timeout) if self.inflight else []
        out = []
        for fut in done:
            i = self.inflight.pop(fut)
            self.completed += 1
            out.append((i, fut.result()))
        return out

    def stop(self, kill: bool) -> None:
        self.queue.clear()
        for fut in self.inflight:
            fut.cancel()
        if kill and self.inflight:
            self.executor.terminate()
        self.inflight.clear()
