"""The search's frontier shared by the workers of an executor (processes or Dask).

The parent keeps the frontier and keeps every worker busy with a *unit*
(:func:`_unit`): the serial driver on a few domains for :data:`UNIT_SECONDS` (less,
:data:`UNIT_HUNGRY`, while the frontier is shorter than the number of workers, so a
starved worker gets work soon). A unit answers ``closed`` (all its domains closed),
a witness, or ``budget`` with the domains it still has open (and their keys), which go
back on the parent's frontier. Split choices are made inside the units by the serial
code, so the workers explore the serial tree.

Soundness: a unit stops only between batches, after at least one, and returns every
domain it has not closed, so the closed domains and the returned ones cover what it was
given. The case holds only when the frontier is empty, nothing is in flight and no unit
answered otherwise; a unit's counterexample is replayed again here in float64 before it
counts, and the first one ends the search (units still running stop at their budget or
the deadline; at most ``workers`` are ever in flight, so nothing is queued).

Also here: the bounded submission window used by :mod:`nnresilience.divide.optimise`
(:class:`_Window`, formerly ``divide/window.py``).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from nnresilience.results import Status
from nnresilience.search.domains import Domains, Frontier

#: Seconds of serial search per work unit; shorter while some worker has nothing to do.
UNIT_SECONDS = 1.0
UNIT_HUNGRY = 0.15
#: Domains handed to one unit at most (the rest stay shared).
UNIT_DOMAINS = 64
# Sub-tasks get the remaining global time minus this margin (s), so that their own
# clean-up (replay, pickling the answer) ends before the global deadline.
TASK_MARGIN = 0.2
# Polling period (s) while waiting on futures that are not concurrent.futures ones (Dask).
_POLL = 0.05

_PROBLEMS: dict[Any, Any] = {}


def _problem(network, case, engine, settings):
    """The worker's :class:`CaseProblem`, built once per process and query."""
    from nnresilience.search.decide import CaseProblem, _engine

    key = (network.content_hash(), case.region.lo.tobytes(), case.region.hi.tobytes(),
           tuple((t.A.tobytes(), t.b.tobytes()) for t in case.unsafe.terms),
           repr(settings), str(engine))
    prob = _PROBLEMS.get(key)
    if prob is None:
        _PROBLEMS.clear()
        prob = CaseProblem(network, case, _engine(engine), settings, {})
        _PROBLEMS[key] = prob
    prob.stats = {}
    prob.t0 = time.monotonic()
    prob.witness = None
    prob.pending()                      # nothing left over from an earlier unit
    return prob


def _unit(network, case, engine, settings, doms: Domains, keys: np.ndarray,
          unit_seconds: float, time_left: float | None) -> tuple:
    """Executor task: the serial driver on ``doms`` for about ``unit_seconds``.

    Returns ``(status, counterexample, message, open domains, open keys, stats)``. Time
    is measured in this process (monotonic clocks are not shared between processes):
    ``time_left`` is the global time remaining at submission.
    """
    from nnresilience.search.decide import blas_threads
    from nnresilience.search.driver import run

    t, cpu = time.monotonic(), time.process_time()
    deadline = None if time_left is None else t + time_left
    problem = _problem(network, case, engine, settings)
    frontier = Frontier(settings.max_bytes)
    frontier.push(doms, keys)
    st = problem.stats
    with blas_threads(settings.blas_threads):
        out = run(problem, frontier, deadline=deadline, budget_end=t + unit_seconds,
                  stats=st)
    st["bounder"] = getattr(problem.bounder, "name", "")
    st["unit_seconds"] = time.monotonic() - t
    st["unit_cpu_seconds"] = time.process_time() - cpu
    return out.status, out.witness, out.message, out.open, out.open_keys, st


_SUMMED = ("domains", "batches", "closed_bound", "closed_leaf", "leaves", "falsified",
           "branched", "undecided", "seconds_bound", "seconds_falsify", "seconds_leaf",
           "seconds_branch", "unit_seconds", "unit_cpu_seconds", "closed_lookahead",
           "failed_replays", "refinements", "concrete_hits", "concrete_points",
           "seconds_concrete", "exact_looks", "exact_closed")


def decide_shared(network, case, engine, settings, deadline: float | None, report,
                  executor, st: dict):
    """:func:`nnresilience.search.decide.decide_case` with the frontier shared by the
    executor's workers (see the module docstring)."""
    from nnresilience.falsify import replay
    from nnresilience.search.decide import CaseAnswer, SearchSettings

    settings = settings or SearchSettings()
    engine_name = engine if isinstance(engine, str) or engine is None else engine.name
    workers = max(1, int(getattr(executor, "workers", 1)))
    frontier = Frontier(settings.max_bytes)
    frontier.push(Domains.root(case.region.lo, case.region.hi), np.zeros(1))
    inflight: dict = {}
    undecided: list[str] = []
    n_units = 0
    t_start = time.monotonic()
    for k in _SUMMED:
        st.setdefault(k, 0)
    st.setdefault("max_depth", 0)
    st["rule"] = settings.resolved_rule(case)
    try:
        while len(frontier) or inflight:
            rem = _remaining(deadline)
            if rem is not None and rem <= 0:
                return CaseAnswer(Status.UNKNOWN, None, "timeout", st)
            while len(frontier) and len(inflight) < workers:
                hungry = len(frontier) < workers
                share = max(1, min(UNIT_DOMAINS, len(frontier) // workers))
                doms, keys = frontier.pop(1 if hungry else share)
                n_units += 1
                fut = executor.submit(_unit, network, case, engine_name, settings, doms, keys,
                                      UNIT_HUNGRY if hungry else UNIT_SECONDS,
                                      _remaining(deadline))
                inflight[fut] = (doms, keys)
            for fut in _wait_first(list(inflight), _remaining(deadline)):
                inflight.pop(fut)
                status, cex, msg, open_doms, open_keys, ust = fut.result()
                for k in _SUMMED:
                    st[k] = st.get(k, 0) + ust.get(k, 0)
                st["max_depth"] = max(st["max_depth"], int(ust.get("max_depth", 0)))
                st["bounder"] = ust.get("bounder", st.get("bounder"))
                if status == "witness":
                    if cex is not None and replay(network, case, cex.x_array):
                        return CaseAnswer(Status.VIOLATED, cex,
                                          "counterexample found by the search", st)
                    undecided.append("candidate failed replay")
                elif status in ("budget", "timeout") and open_doms is not None:
                    frontier.push(open_doms, open_keys)
                    if status == "timeout":
                        rem = _remaining(deadline)
                        if rem is not None and rem <= 0:
                            return CaseAnswer(Status.UNKNOWN, None, "timeout", st)
                elif status == "undecided":
                    undecided.append(msg)
            if report is not None:
                report({"phase": "search", "open": len(frontier) + len(inflight),
                        "closed": st["closed_bound"] + st["closed_leaf"],
                        "best_lower": float(frontier.min_key()) if len(frontier) else None,
                        "domains": st["domains"], "leaves": st["leaves"],
                        "elapsed": round(time.monotonic() - t_start, 3),
                        "time_left": _remaining(deadline), "workers": workers})
        if undecided:
            return CaseAnswer(Status.UNKNOWN, None, undecided[0], st)
        return CaseAnswer(Status.HOLDS, None, "", st)
    finally:
        for fut in inflight:
            fut.cancel()
        st.update({"units": n_units, "workers": workers,
                   "abandoned": len(frontier) + len(inflight),
                   "wall_seconds": round(time.monotonic() - t_start, 3)})
        for k in ("seconds_bound", "seconds_falsify", "seconds_leaf", "seconds_branch",
                  "unit_seconds", "unit_cpu_seconds"):
            st[k] = round(float(st.get(k, 0.0)), 3)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# ------------------------------------------------------------- executor plumbing
def _default_parts(workers: int) -> int:
    """``2 * workers`` rounded up to a power of two (bisection makes powers of two even)."""
    return 1 << max(1, math.ceil(math.log2(max(2, 2 * workers))))


def _resolve_executor(executor):
    """``(executor, owned)``: a spec (None, int, str) builds one that we must shut down."""
    from nnresilience.parallel import Executor, make_executor

    if isinstance(executor, Executor):
        return executor, False
    return make_executor(executor), True


def resolve_pool(executor) -> tuple[Any, bool]:
    """``(executor or None, owned)``: None when the serial search should run (no
    executor, or one with a single worker)."""
    if executor is None:
        return None, False
    ex, owned = _resolve_executor(executor)
    if max(1, int(getattr(ex, "workers", 1))) < 2:
        if owned:
            ex.shutdown()
        return None, False
    return ex, owned


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
