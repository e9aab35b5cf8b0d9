"""Divide and conquer: one hard query split into sub-boxes solved on parallel workers.

Why it is sound
---------------
The input box ``[lo, hi]`` is cut by repeated bisection: a cut at ``c`` along dimension
``d`` gives ``[lo, hi]`` with ``hi_d = c`` and ``[lo, hi]`` with ``lo_d = c``, the *same*
float ``c`` on both sides. The leaves therefore cover the box exactly (every point lies in
at least one leaf; points on a cut lie in two, which is harmless). Hence

* a property holds on the box iff it holds on every leaf, and any replayed counterexample
  of a leaf is one of the box (a leaf region is a subset of the original region: an L1
  ball keeps its centre and radius, only its bounding box shrinks);
* a minimum over the box is the minimum of the leaf minima, so
  ``[min leaf lowers, min leaf uppers]`` encloses it. A leaf solved with the cutoff
  ``objective <= best_upper`` that turns out infeasible has minimum ``>= best_upper``;
  it contributes ``lower = cutoff``. A leaf whose distance to the sample is already
  ``>= best_upper`` is pruned without a solve and contributes that distance.

Where to cut
------------
A dimension is worth cutting when the unsafe margin can change a lot across it. The
score of dimension ``i`` is ``width_i * sum_r G[r, i]`` where ``G`` bounds
``|d (A y)_r / d x_i|`` over the box: the product of ``|W|`` matrices and per-neuron
upper bounds on the activation slope from interval bounds (0 for dead ReLUs), taken from
the output rows ``A`` of the unsafe condition back to the inputs. Relative width breaks
ties and flat scores, so every dimension is eventually cut.

Only *input* splitting is implemented: fixing the phase of a first-layer neuron is a
half-space on the input, which the engine interface (``Engine.check(network, case,
...)`` with a box/L1 :class:`InputRegion`) cannot express. ``strategy="neurons"`` raises.

Parallel driver
---------------
Sub-tasks are top-level functions of picklable arguments, submitted through an
:class:`nnresilience.parallel.Executor` in a *window* of ``workers`` tasks (not all at
once): a task's time limit is what is left at its submission, a task submitted later
sees the best objective found so far (the cutoff), and after a counterexample only the
running tasks need stopping. Results are collected as they complete.
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from nnresilience.errors import EngineUnsupportedError, NNResError
from nnresilience.results import ResilienceResult, Status, VerificationResult
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion

# Sub-tasks get the remaining global time minus this margin (s), so that their own
# clean-up (replay, pickling the answer) ends before the global deadline.
TASK_MARGIN = 0.2
# Polling period (s) while waiting on futures that are not concurrent.futures ones (Dask).
_POLL = 0.05


# ------------------------------------------------------------------------ influence
def _slope_bound(layer, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per-neuron upper bound of ``|activation'(z)|`` for ``z`` in ``[lo, hi]``."""
    kind = layer.kind
    if kind == "relu":
        return (hi > 0).astype(float)
    if kind == "leaky_relu":
        return np.where(hi > 0, 1.0, abs(float(layer.slope)))
    # smooth, monotone activations: the slope peaks at the point of [lo, hi] nearest 0
    z = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    if kind == "arctan":
        return 1.0 / (1.0 + z * z)
    if kind == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    return np.ones_like(lo)


def influence(network, lo: np.ndarray, hi: np.ndarray,
              rows: np.ndarray | None = None) -> np.ndarray:
    """``width_i * sum_r sup |d (rows @ y)_r / d x_i|`` over the box (a bound, shape (n,)).

    ``rows`` (r, n_outputs) are the output combinations that matter (the unsafe
    condition's ``A``); default: every output. Cost: one interval pass and one backward
    pass of an ``(r, n)`` matrix per layer.
    """
    from nnresilience.bounds.interval import interval_bounds

    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    nb = interval_bounds(network, lo, hi)
    G = np.abs(np.eye(network.n_outputs) if rows is None else np.asarray(rows, float))
    for i in range(len(network.layers) - 1, -1, -1):
        layer = network.layers[i]
        if layer.kind == "affine":
            W = layer.W
            G = np.asarray((abs(W).T @ G.T).T) if hasattr(W, "tocsr") else G @ np.abs(W)
        elif layer.kind == "maxpool":
            Gin = np.zeros((G.shape[0], layer.in_size))
            for j in range(layer.groups.shape[1]):  # g members per window, vectorised
                np.add.at(Gin.T, layer.groups[:, j], G.T)
            G = Gin
        else:
            G = G * _slope_bound(layer, nb.lo[i], nb.hi[i])[None, :]
    return G.sum(axis=0) * (hi - lo)


def split_box(lo: np.ndarray, hi: np.ndarray, parts: int,
              score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """At least ``parts`` sub-boxes covering ``[lo, hi]`` exactly, by greedy bisection.

    The box with the largest best score is split along its best dimension at the middle;
    ``score(lo, hi) -> (n,)`` (default: the widths). Degenerate dimensions (zero width)
    are never cut; a box of zero volume in every dimension stays whole, so fewer than
    ``parts`` boxes come back only when nothing can be cut.
    """
    lo = np.asarray(lo, float).copy()
    hi = np.asarray(hi, float).copy()
    full = np.maximum(hi - lo, 1e-300)

    def key(blo: np.ndarray, bhi: np.ndarray) -> tuple[float, int]:
        width = bhi - blo
        s = np.asarray(score(blo, bhi), float) if score is not None else width.copy()
        s = np.where(np.isfinite(s), s, 0.0)
        rel = width / full
        k = s / max(float(s.max(initial=0.0)), 1e-300) + 0.1 * rel
        k[width <= 0.0] = -1.0
        # mid-point must differ from both ends, else the dimension cannot be cut
        mid = blo + width / 2.0
        k[(mid <= blo) | (mid >= bhi)] = -1.0
        d = int(np.argmax(k))
        return float(k[d]) * float(s.max(initial=0.0) + rel.max(initial=0.0)), d

    counter = 0
    k0, d0 = key(lo, hi)
    heap: list = [(-k0, counter, lo, hi, d0)]
    done: list[tuple[np.ndarray, np.ndarray]] = []
    while heap and len(heap) + len(done) < parts:
        negk, _, blo, bhi, d = heapq.heappop(heap)
        width = bhi[d] - blo[d]
        cut = blo[d] + width / 2.0
        if width <= 0.0 or not blo[d] < cut < bhi[d]:
            done.append((blo, bhi))
            continue
        left_hi, right_lo = bhi.copy(), blo.copy()
        left_hi[d] = cut
        right_lo[d] = cut
        for a, b in ((blo, left_hi), (right_lo, bhi)):
            counter += 1
            k, dd = key(a, b)
            heapq.heappush(heap, (-k, counter, a, b, dd))
    done.extend((b[2], b[3]) for b in heap)
    return done


def _sub_region(region: InputRegion, lo: np.ndarray, hi: np.ndarray) -> InputRegion:
    return InputRegion(lo, hi, center=region.center, radius=region.radius, norm=region.norm)


def _gradient_score(network, case: Case, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``|d margin / d x_i| * width_i`` at the box centre (what ``verify``'s own split
    search uses): local, cheap, and blind to what happens away from the centre."""
    from nnresilience.falsify import margin_and_grad

    sub = Case(_sub_region(case.region, lo, hi), case.unsafe)
    _, g = margin_and_grad(network, sub, ((lo + hi) / 2.0)[None, :])
    return np.abs(g[0]) * (hi - lo)


SCORES = ("influence", "gradient", "width")


def split_case(network, case: Case, parts: int, strategy: str = "input",
               bounds=None, score: str = "influence") -> list[Case]:
    """``case`` split into at least ``parts`` sub-cases whose regions cover its region.

    Input splitting along the dimensions of largest :func:`influence` on the unsafe
    rows. ``bounds`` is accepted for interface symmetry (the score recomputes interval
    bounds per sub-box, which is what makes it adapt as boxes shrink). Sub-cases come
    back ordered most suspicious first (largest unsafe margin at the box centre), so a
    counterexample tends to be found by the first tasks.
    """
    del bounds
    if strategy == "neurons":
        raise EngineUnsupportedError(
            "neuron splitting needs half-space input constraints, which the engine "
            "interface does not take; use strategy='input'")
    if strategy != "input":
        raise ValueError(f"strategy must be 'input' or 'neurons', got {strategy!r}")
    parts = max(1, int(parts))
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    rows = np.vstack([t.A for t in case.unsafe.terms]) if case.unsafe.terms else None
    fn = {"influence": lambda a, b: influence(network, a, b, rows),
          "gradient": lambda a, b: _gradient_score(network, case, a, b),
          "width": None}[score]
    boxes = split_box(case.region.lo, case.region.hi, parts, fn)
    subs = [Case(_sub_region(case.region, a, b), case.unsafe) for a, b in boxes]
    if len(subs) > 1:
        mids = np.vstack([s.region.clip((s.region.lo + s.region.hi) / 2.0) for s in subs])
        margin = np.asarray(case.unsafe.max_margin(network.forward(mids)), float)
        subs = [subs[i] for i in np.argsort(-margin, kind="stable")]
    return subs


def frontier_cases(network, case: Case, parts: int, score: str = "influence",
                   max_splits: int | None = None) -> tuple[list[Case], int]:
    """Open sub-cases after a short breadth-first split that drops proven boxes.

    The largest open box is bisected (by ``score``, as :func:`split_case`); a child
    whose symbolic bounds on the unsafe rows ``A y`` exclude every term (the test
    ``verify`` uses, :func:`nnresilience.verify.spec_rows_exclude`) holds and is
    dropped. Stops with at least ``parts`` open boxes or after ``max_splits`` (default
    ``8 * parts``) bisections. Returns ``(open sub-cases, number of proven boxes)``;
    the open boxes and the proven ones cover the region, so the case holds iff every
    open sub-case does (none left: it holds already). Workers then get only the hard
    part, in pieces of similar size, instead of static halves of which one may be
    trivial.
    """
    from nnresilience.bounds import compute_bounds
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network
    from nnresilience.verify import spec_rows_exclude

    A = np.vstack([t.A for t in case.unsafe.terms])
    spec_net = Network(list(network.layers) + [Affine(A, np.zeros(A.shape[0]))],
                       input_shape=network.input_shape, name=network.name)

    def proven(lo: np.ndarray, hi: np.ndarray) -> bool:
        nb = compute_bounds(spec_net, (lo, hi), method="symbolic")
        return spec_rows_exclude(case.unsafe, nb.lo[-1])

    full = np.maximum(case.region.hi - case.region.lo, 1e-300)

    def size(lo: np.ndarray, hi: np.ndarray) -> float:  # log relative volume
        w = (hi - lo) / full
        return float(np.sum(np.log(w[w > 0]))) if np.any(w > 0) else -np.inf

    lo0, hi0 = case.region.lo, case.region.hi
    if proven(lo0, hi0):
        return [], 1
    heap: list = [(-size(lo0, hi0), 0, lo0, hi0)]
    n_proven, counter = 0, 0
    budget = 8 * max(1, parts) if max_splits is None else int(max_splits)
    while heap and len(heap) < parts and budget > 0:
        _, _, lo, hi = heapq.heappop(heap)
        budget -= 1
        sub = Case(_sub_region(case.region, lo, hi), case.unsafe)
        halves = [c.region for c in split_case(network, sub, 2, score=score)]
        if len(halves) < 2:        # cannot be cut further: stays open
            counter += 1
            heapq.heappush(heap, (np.inf, counter, lo, hi))
            break
        for r in halves:
            if proven(r.lo, r.hi):
                n_proven += 1
            else:
                counter += 1
                heapq.heappush(heap, (-size(r.lo, r.hi), counter, r.lo, r.hi))
    subs = [Case(_sub_region(case.region, b[2], b[3]), case.unsafe) for b in heap]
    if len(subs) > 1:
        mids = np.vstack([s.region.clip((s.region.lo + s.region.hi) / 2.0) for s in subs])
        margin = np.asarray(case.unsafe.max_margin(network.forward(mids)), float)
        subs = [subs[i] for i in np.argsort(-margin, kind="stable")]
    return subs, n_proven


# ---------------------------------------------------------------------- the driver
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
    """
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


# -------------------------------------------------------------------- optimisation
def _gap_norm(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, norm: str) -> float:
    """Distance from ``x`` to the box ``[lo, hi]``: a lower bound of ``||b - x||`` there."""
    gap = np.maximum(lo - x, 0.0) + np.maximum(x - hi, 0.0)
    if norm == "l1":
        return float(gap.sum())
    if norm == "l2":
        return float(np.sqrt((gap * gap).sum()))
    return float(gap.max(initial=0.0))


def _min_perturbation_task(network, x, label, norm, k, lo, hi, settings, timeout, radius
                           ) -> ResilienceResult:
    """Executor task: the per-sample MIP with the perturbed point boxed in ``[lo, hi]``."""
    from nnresilience.resilience import min_perturbation

    return min_perturbation(network, x, label, norm, k, (lo, hi), settings=settings,
                            timeout=timeout, radius=radius)


def _optimise(executor, boxes: list, make_task: Callable, prune_lower: Callable,
              deadline: float | None, best: float = math.inf) -> tuple[list, dict]:
    """Run the sub-problems with a shared cutoff; return ``(answers, stats)``.

    ``make_task(box, cutoff, time_left) -> (fn, args)``; each answer is
    ``(lower, upper, payload)``. ``prune_lower(box)`` is a lower bound known without a
    solve; a box whose bound is ``>= best upper`` is answered by it at once.
    """
    ex, owned = _resolve_executor(executor)
    workers = max(1, int(getattr(ex, "workers", 1)))
    answers: list = [None] * len(boxes)
    state = {"best": best, "pruned": 0}

    def make(item):
        j, box = item
        lb = prune_lower(box)
        if lb >= state["best"]:
            answers[j] = (lb, None, None)
            state["pruned"] += 1
            return None
        rem = None if deadline is None else deadline - time.monotonic() - TASK_MARGIN
        if rem is not None and rem <= 0:
            answers[j] = (lb, None, "timeout")
            return None
        cutoff = None if math.isinf(state["best"]) else state["best"]
        return make_task(box, cutoff, rem)

    win = _Window(ex, list(enumerate(boxes)), make, workers)
    timed_out = False
    try:
        while True:
            win.fill()
            if not win.inflight:
                break
            rem = None if deadline is None else deadline - time.monotonic()
            if rem is not None and rem <= 0:
                timed_out = True
                break
            for i, ans in win.next_done(rem):
                answers[i] = ans
                if ans[1] is not None:
                    state["best"] = min(state["best"], ans[1])
    finally:
        win.stop(kill=owned)
        if owned:
            ex.shutdown()
    # whatever did not finish proves nothing beyond its a-priori bound
    for j, a in enumerate(answers):
        if a is None:
            answers[j] = (prune_lower(boxes[j]), None, "timeout")
    stats = {"parts": len(boxes), "submitted": win.submitted, "completed": win.completed,
             "pruned_without_solve": state["pruned"], "workers": workers,
             "timed_out": timed_out, "executor": getattr(ex, "name", type(ex).__name__)}
    return answers, stats


def _attack_upper(network, x: np.ndarray, m: int, k: int, norm: str, lo: np.ndarray,
                  hi: np.ndarray, budget: float) -> tuple[float | None, np.ndarray | None]:
    """A replayed adversarial point near ``x`` by the falsifier, shrinking the ball.

    Starts with the ball covering D and halves the radius below the best norm found, so
    ``(upper, witness)`` is a cheap upper bound of the minimum perturbation (None when
    the attacks find nothing within ``budget`` seconds).
    """
    from nnresilience.falsify import falsify
    from nnresilience.resilience.replay import flip_ok, norm_of
    from nnresilience.spec.property import robustness

    end = time.monotonic() + budget
    radius = float(np.max(np.maximum(hi - x, x - lo))) * (x.size if norm == "l1" else 1.0)
    best, wit = None, None
    for r in range(8):
        if time.monotonic() >= end or radius <= 0.0:
            break
        prop = robustness(x, m, radius, network.n_outputs, "l1" if norm == "l1" else "linf",
                          lo, hi, k)
        b = falsify(network, prop.cases[0], rng=r, budget_seconds=min(0.3, budget),
                    deadline=end)
        if b is None:
            break
        b = np.clip(np.asarray(b, float), lo, hi)
        if not flip_ok(network, b, m, k):
            break
        u = norm_of(b - x, norm)
        if best is None or u < best:
            best, wit = u, b
        radius = 0.5 * best
    return best, wit


def min_perturbation_divided(network, x: np.ndarray, label: int | None = None,
                             norm: str = "l1", k: int = 1, domain=None, executor=None,
                             parts: int | None = None, *, settings=None,
                             timeout: float | None = None, attack: float = 1.0
                             ) -> ResilienceResult:
    """Per-sample minimum perturbation with the domain of ``x + ε`` split into sub-boxes.

    Each sub-box is one per-sample MIP (:func:`nnresilience.resilience.min_perturbation`
    with ``domain = sub-box``); later tasks get ``radius = best upper so far`` (the
    cutoff: infeasible then proves the sub-box's minimum is ``>= radius``), and boxes
    whose distance to ``x`` already reaches the best upper are pruned without a solve.
    Boxes are solved nearest first. Answer: ``[min lowers, min uppers]`` with the best
    sub-box's witness, replayed again here through ``network.forward``.

    Before splitting, the falsifier looks for a close adversarial point (``attack``
    seconds). Its norm ``u`` is an upper bound, so only ``||b - x||_inf <= u`` matters
    (that box contains the ``u``-ball of every norm here): that box, intersected with D,
    is what gets split, and every task starts with the cutoff ``u``.
    """
    from nnresilience.resilience import DEFAULT, resolve_domain
    from nnresilience.resilience.replay import flip_ok, norm_of
    from nnresilience.spec.condition import misclassification

    settings = DEFAULT if settings is None else settings
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + float(timeout)
    x = np.asarray(x, float).reshape(-1)
    lo, hi = resolve_domain(network, domain)
    m = int(np.argmax(network.forward(x))) if label is None else int(label)
    ex, owned = _resolve_executor(executor)
    try:
        workers = max(1, int(getattr(ex, "workers", 1)))
        parts = _default_parts(workers) if parts is None else max(1, int(parts))
        rows = np.vstack([t.A for t in misclassification(m, network.n_outputs).terms])
        ub, ub_wit = _attack_upper(network, x, m, k, norm, lo, hi,
                                   attack if timeout is None else min(attack, 0.1 * timeout))
        slo, shi = lo, hi
        if ub is not None:
            slo, shi = np.maximum(lo, x - ub), np.minimum(hi, x + ub)
        boxes = split_box(slo, shi, parts, lambda a, b: influence(network, a, b, rows))
        boxes.sort(key=lambda bx: _gap_norm(x, bx[0], bx[1], norm))

        def make_task(box, cutoff, rem):
            sub = (_min_perturbation_task, (network, x, m, norm, k, box[0], box[1],
                                            settings, rem, cutoff))
            return _triple_task, (sub,)

        answers, stats = _optimise(ex, boxes, make_task,
                                   lambda bx: _gap_norm(x, bx[0], bx[1], norm), deadline,
                                   math.inf if ub is None else ub)
        if ub is not None:  # the attack's point is a sub-answer like the others
            answers.append((ub, ub, tuple(ub_wit)))
            stats["attack_upper"] = ub
    finally:
        if owned:
            ex.terminate()
    lower = min(a[0] for a in answers)
    best_upper, witness, msgs = None, None, []
    for a in answers:
        if a[1] is not None and a[2] is not None:
            b = np.asarray(a[2], float)
            # replay: b in the domain, out of m's top-k, and its norm recomputed here
            if np.all(b >= lo - 1e-9) and np.all(b <= hi + 1e-9) and flip_ok(network, b, m, k):
                u = norm_of(b - x, norm)
                if best_upper is None or u < best_upper:
                    best_upper, witness = u, b
        elif isinstance(a[2], str):
            msgs.append(a[2])
    if best_upper is not None:
        lower = min(lower, best_upper)
    optimal = best_upper is not None and best_upper - lower <= settings.opt_tol * max(
        1.0, best_upper) and not stats["timed_out"]
    msg = "" if best_upper is not None or math.isinf(lower) else \
        (msgs[0] if msgs else "no witness found within the limits")
    if best_upper is None and math.isinf(lower):
        msg = f"no perturbation inside the domain takes class {m} out of the top-{k}"
        optimal = True
    return ResilienceResult("min_perturbation", lower, best_upper, bool(optimal), True,
                            cls=m, k=k, norm=norm, a=tuple(map(float, x)),
                            a_perturbed=None if witness is None else tuple(map(float, witness)),
                            seconds=time.monotonic() - t0, message=msg,
                            stats={**stats, "divided": True})


def _triple_task(task: tuple) -> tuple[float, float | None, Any]:
    """Run ``fn(*args)`` (a resilience sub-problem) and reduce it to ``(lower, upper, b)``."""
    fn, args = task
    r = fn(*args)
    lower = math.inf if r.lower is None else float(r.lower)
    if r.upper is None or r.a_perturbed is None:
        return lower, None, r.message or None
    return lower, float(r.upper), tuple(r.a_perturbed)


def _phi_subbox_task(network, cls: int, log_alpha: float, k: int, norm: str, lo, hi,
                     sub_lo, sub_hi, bounds, settings, timeout: float | None,
                     cutoff: float | None) -> tuple[float, float | None, Any]:
    """Executor task: MIP (6) with the unperturbed point ``a`` boxed in a sub-box.

    ``b = a + ε`` still ranges over all of D and both copies keep the bounds over D
    (sound, if looser than sub-box bounds for copy 1). ``cutoff`` adds the row
    ``||b - a|| <= cutoff``: infeasible then proves this sub-box's minimum is
    ``>= cutoff``. Returns ``(lower, upper, (a, b))`` or ``(lower, None, message)``.
    """
    from nnresilience.backends.base import SolveLimits
    from nnresilience.backends.registry import get_backend
    from nnresilience.resilience.encode import build_phi_mip
    from nnresilience.resilience.replay import norm_of, replay_pair

    net = network.merged()
    mip = build_phi_mip(net, cls, log_alpha, k, norm, lo, hi, bounds, settings)
    mip.model.set_bounds(mip.a, np.asarray(sub_lo, float), np.asarray(sub_hi, float))
    if cutoff is not None:
        n = mip.cost.size
        mip.model.add_terms(np.zeros(n, np.int64), mip.cost, np.ones(n), 1, -np.inf,
                            float(cutoff))
    limits = SolveLimits(time_limit=timeout, threads=settings.threads,
                         mip_gap=settings.mip_gap, use_priorities=settings.priorities)
    res = get_backend(settings.backend).solve(mip.model.arrays(), limits)
    status = res.status.value
    if status == "infeasible":
        return (math.inf if cutoff is None else float(cutoff)), None, "infeasible"
    dual = res.dual_bound
    lower = 0.0 if dual is None or not math.isfinite(dual) else max(0.0, float(dual))
    if res.x is not None:
        rep = replay_pair(net, res.x[mip.a], res.x[mip.b], cls, log_alpha, k, lo, hi,
                          settings.premise_tol)
        if rep is not None:
            a, b, _ = rep
            upper = norm_of(b - a, norm)
            return min(lower, upper), upper, (tuple(map(float, a)), tuple(map(float, b)))
    return lower, None, f"solver: {status}"


def phi_divided(network, cls: int, alpha: float = 1.0, k: int = 1, norm: str = "l1",
                domain=None, executor=None, parts: int | None = None, *, settings=None,
                timeout: float | None = None) -> ResilienceResult:
    """Φ_m with the domain of the unperturbed point ``a`` split into sub-boxes.

    Φ_m = min over sub-boxes S of (min ||b - a|| with a in S confident for m, b in D
    out of m's top-k): the sub-boxes cover D, so the minimum of the sub-minima is Φ_m.
    Tasks submitted after a witness was found carry the cutoff ``||b - a|| <= best``.
    Sub-boxes where no input reaches the confidence ratio are infeasible and cheap. The
    witness pair is replayed here again (premise and flip, through ``network.forward``).
    """
    from nnresilience.resilience import DEFAULT, alpha_max, resolve_domain
    from nnresilience.resilience.encode import network_bounds
    from nnresilience.resilience.replay import flip_ok, norm_of, premise_ok
    from nnresilience.resilience.settings import Query

    settings = DEFAULT if settings is None else settings
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + float(timeout)
    lo, hi = resolve_domain(network, domain)
    net = network.merged()
    q = Query(int(cls), float(alpha), int(k), norm, lo, hi)
    q.check_network(net.n_inputs, net.n_outputs)
    bounds = network_bounds(net, lo, hi, settings, timeout)
    ex, owned = _resolve_executor(executor)
    try:
        workers = max(1, int(getattr(ex, "workers", 1)))
        parts = _default_parts(workers) if parts is None else max(1, int(parts))
        # cut where class m's margin moves most (rows y_j - y_m for j != m)
        others = np.delete(np.arange(net.n_outputs), q.cls)
        rows = np.zeros((others.size, net.n_outputs))
        rows[np.arange(others.size), others] = 1.0
        rows[:, q.cls] = -1.0
        boxes = split_box(lo, hi, parts, lambda a, b: influence(net, a, b, rows))
        # most confident sub-boxes first: they are where a witness is likely
        mids = np.vstack([(a + b) / 2.0 for a, b in boxes])
        y = net.forward(mids)
        conf = y[:, q.cls] - np.max(y[:, others], axis=1)
        boxes = [boxes[i] for i in np.argsort(-conf, kind="stable")]

        def make_task(box, cutoff, rem):
            return _phi_subbox_task, (net, q.cls, q.log_alpha, q.k, norm, lo, hi, box[0],
                                      box[1], bounds, settings, rem, cutoff)

        answers, stats = _optimise(ex, boxes, make_task, lambda _bx: 0.0, deadline)
    finally:
        if owned:
            ex.terminate()
    lower = min(a[0] for a in answers)
    best, pair = None, None
    for a in answers:
        if a[1] is None or not isinstance(a[2], tuple):
            continue
        av, bv = (np.asarray(v, float) for v in a[2])
        inside = all(np.all(v >= lo - 1e-9) and np.all(v <= hi + 1e-9) for v in (av, bv))
        if inside and premise_ok(net, av, q.cls, q.log_alpha, settings.premise_tol) \
                and flip_ok(net, bv, q.cls, q.k):
            u = norm_of(bv - av, norm)
            if best is None or u < best:
                best, pair = u, (av, bv)
    common = dict(cls=q.cls, alpha=q.alpha, k=q.k, norm=norm)
    stats = {**stats, "divided": True, "bounds_method": bounds.method}
    if best is None and math.isinf(lower):
        # every sub-MIP infeasible without a cutoff: no confident input, or no flip in D
        am = alpha_max(network, q.cls, (lo, hi), settings=settings, bounds=bounds)
        if am.lower is None or q.alpha > am.lower * (1 + 1e-9):
            return ResilienceResult("phi", None, None, False, False,
                                    seconds=time.monotonic() - t0, stats=stats,
                                    message=f"no input in the domain reaches confidence "
                                            f"ratio alpha={q.alpha:g} for class {q.cls}",
                                    **common)
        return ResilienceResult("phi", math.inf, math.inf, True, True,
                                seconds=time.monotonic() - t0, stats=stats,
                                message=f"no perturbation inside the domain takes class "
                                        f"{q.cls} out of the top-{q.k}: Phi = +inf", **common)
    if best is not None:
        lower = min(lower, best)
    optimal = bool(best is not None and not stats["timed_out"]
                   and best - lower <= settings.opt_tol * max(1.0, best))
    msg = "" if best is not None else "no witness found within the limits"
    return ResilienceResult("phi", lower, best, optimal, True,
                            a=None if pair is None else tuple(map(float, pair[0])),
                            a_perturbed=None if pair is None else tuple(map(float, pair[1])),
                            seconds=time.monotonic() - t0, message=msg, stats=stats, **common)
