"""``verify_divided``: decide a property on sub-boxes solved by parallel workers.

Fixed up-front sub-boxes (``strategy="input"``), or ``verify``'s own adaptive split
search with its tree shared by the workers (``strategy="adaptive"``).
"""

from __future__ import annotations

import time
from typing import Any

from nnresilience.divide.split import frontier_cases, split_case
from nnresilience.divide.window import TASK_MARGIN, _default_parts, _resolve_executor, _Window
from nnresilience.errors import EngineUnsupportedError, NNResError
from nnresilience.results import Status, VerificationResult
from nnresilience.spec.property import Property


def _verify_subcase(network, sub_prop: Property, engine: str, timeout: float | None,
                    options: dict) -> VerificationResult:
    """Executor task: :func:`nnresilience.verify.verify` on one sub-case."""
    from nnresilience.verify import verify

    try:
        return verify(network, sub_prop, engine=engine, timeout=timeout, **options)
    except EngineUnsupportedError:
        raise
    except NNResError as exc:
        return VerificationResult(Status.UNKNOWN, message=f"{type(exc).__name__}: {exc}")


def verify_divided(network, prop: Property, executor=None, parts: int | None = None,
                   engine: str = "auto", timeout: float | None = None,
                   strategy: str = "input", score: str = "influence", prune: bool = True,
                   **verify_kwargs: Any) -> VerificationResult:
    """Decide ``prop`` by splitting every case into sub-boxes solved in parallel.

    ``executor``: an :class:`~nnresilience.parallel.Executor` (the caller owns it; tasks
    still running when this returns end within their own time limit and their answers
    are dropped) or a spec for :func:`~nnresilience.parallel.make_executor` (``None`` =
    in-process, ``2``, ``'dask:2'``, ...; then the workers are created here and killed
    at once on a counterexample, timeout or Ctrl-C). ``parts`` per case defaults to
    ``2 * workers`` rounded up to a power of two. Remaining keywords go to ``verify``.

    Verdict: the first sub-answer ``violated`` whose witness replays through the *full*
    property ends the query (pending tasks cancelled); ``holds`` when every sub-case
    holds; otherwise ``unknown``.

    ``strategy="adaptive"``: no up-front split; ``verify(..., executor=executor)`` runs
    its own adaptive input-splitting search with the search tree shared by the workers
    (:func:`nnresilience.verify._split_search_parallel`), which explores about as many
    boxes as the serial search where fixed sub-boxes explore more. ``parts``, ``score``
    and ``prune`` are then unused. Recommended for low-dimensional boxes (ACAS Xu).
    """
    if strategy == "adaptive":
        return _verify_adaptive(network, prop, executor, engine, timeout, verify_kwargs)
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + float(timeout)
    prop.check_network(network)
    ex, owned = _resolve_executor(executor)
    workers = max(1, int(getattr(ex, "workers", 1)))
    parts = _default_parts(workers) if parts is None else max(1, int(parts))
    # the falsifier runs on every sub-box: scale its budget so that, summed over the
    # sub-boxes, each worker spends about the serial default (1 s) on it
    verify_kwargs.setdefault("falsify_budget", min(1.0, max(0.1, workers / parts)))
    n_proven = 0
    subs: list = []
    win: _Window | None = None
    statuses: list[Status] = []
    messages: list[str] = []
    result: VerificationResult | None = None
    try:
        if prune and strategy == "input":
            per_case = []
            for c in prop.cases:
                open_subs, k = frontier_cases(network, c, parts, score)
                per_case.append(open_subs)
                n_proven += k
        else:
            per_case = [split_case(network, c, parts, strategy, score=score)
                        for c in prop.cases]
        # round robin over the cases, so each case's most suspicious box comes early
        subs = [(ci, lst[j]) for j in range(max(len(lst) for lst in per_case))
                for ci, lst in enumerate(per_case) if j < len(lst)]

        def make(item):
            ci, case = item
            rem = None if deadline is None else deadline - time.monotonic() - TASK_MARGIN
            if rem is not None and rem <= 0:
                return None
            sub_prop = Property((case,), name=f"{prop.name}[case {ci}, sub-box]")
            return _verify_subcase, (network, sub_prop, engine, rem, dict(verify_kwargs))

        win = _Window(ex, subs, make, workers)
        while True:
            win.fill()
            if not win.inflight:
                break
            rem = None if deadline is None else deadline - time.monotonic()
            if rem is not None and rem <= 0:
                messages.append("timeout")
                break
            for _i, r in win.next_done(rem):
                statuses.append(r.status)
                if r.message:
                    messages.append(r.message)
                if r.status is Status.VIOLATED and r.counterexample is not None:
                    x = r.counterexample.x_array
                    if prop.violated_by(x, network.forward(x)):
                        result = r
                        break
                    statuses[-1] = Status.UNKNOWN
                    messages.append("candidate failed replay")
            if result is not None:
                break
    finally:
        # on any exit (answer, timeout, Ctrl-C) nothing stays queued; our own workers die
        if win is not None:
            win.stop(kill=owned)
        if owned and win is None:
            ex.terminate()
        elif owned:
            ex.shutdown()
    stats = {"parts": parts, "sub_cases": len(subs), "proven_before_submit": n_proven,
             "submitted": win.submitted, "completed": win.completed, "workers": workers,
             "executor": getattr(ex, "name", type(ex).__name__)}
    seconds = time.monotonic() - t0
    if result is not None:
        return VerificationResult(Status.VIOLATED, result.counterexample,
                                  engine=f"divided+{result.engine}", seconds=seconds,
                                  message=result.message or "counterexample in a sub-box",
                                  stats={**stats, "sub_result": result.stats})
    if len(statuses) == len(subs) and all(s is Status.HOLDS for s in statuses):
        return VerificationResult(Status.HOLDS, engine="divided", seconds=seconds, stats=stats)
    timed_out = deadline is not None and time.monotonic() >= deadline - 1e-3
    msg = "timeout" if timed_out or "timeout" in messages else \
        next((m for m in messages if m), "undecided")
    return VerificationResult(Status.UNKNOWN, engine="divided", seconds=seconds, message=msg,
                              stats=stats)


def _verify_adaptive(network, prop: Property, executor, engine: str, timeout: float | None,
                     verify_kwargs: dict) -> VerificationResult:
    """``verify`` with its input-splitting search shared by the executor's workers."""
    from nnresilience.verify import verify

    ex, owned = _resolve_executor(executor)
    try:
        r = verify(network, prop, engine=engine, timeout=timeout, executor=ex,
                   **verify_kwargs)
    except BaseException:
        if owned:
            ex.terminate()
        raise
    if owned:
        ex.terminate()
    workers = max(1, int(getattr(ex, "workers", 1)))
    r.stats.update({"strategy": "adaptive", "workers": workers,
                    "executor": getattr(ex, "name", type(ex).__name__)})
    return r
