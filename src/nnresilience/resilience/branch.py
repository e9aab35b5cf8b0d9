"""Branching on the coupling: Φ_m as the minimum over pieces of the confident copy's domain.

Why it is exact
---------------
Split the box of ``a`` (the confident copy) into pieces ``S`` that cover D (bisection with
the same float on both sides of a cut, as in :mod:`nnresilience.divide`). Every pair of
MIP (6) has its ``a`` in some piece, so ``Φ_m = min_S Φ_m(S)`` with ``Φ_m(S)`` the same
minimum over pairs with ``a ∈ S`` (``b`` still ranges over all of D). Hence
``[min_S lower(S), best replayed pair]`` encloses Φ_m whenever every open piece carries a
proven ``lower(S)``, and pieces whose lower bound reaches the best pair are closed.

A piece is cheaper than D: copy 1 is bounded over ``S`` only, and copy 2 over the pairs
within the incumbent's radius ``u`` of ``S``, so more neurons are stable in both copies
and the difference bounds are tighter. A piece where copy 1 cannot reach the confidence
is empty (``+inf``).

Steps (each a function of picklable arguments, so the generic search driver can own them
later): :func:`bound_piece` (certified lower bound on the piece, :mod:`.certify_diff`),
:func:`solve_piece` (MIP (6) with ``a ∈ S``, the difference rows of the piece, the radius
row ``||ε|| <= u`` as cutoff), :func:`split_piece` (bisection of the widest-influence
dimension of ``a``). :func:`branch_phi` runs them best-first (smallest lower bound
first), a batch of pieces at a time through an executor: bound every piece, split while
the piece budget lasts, then give the remaining pieces MIPs with the time that is left.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.search.parallel import TASK_MARGIN, _resolve_executor, _Window


@dataclass(order=True)
class Piece:
    """A box of ``a`` with the best proven lower bound of ``Φ_m`` restricted to it;
    ``task`` indexes the query (the class, for Ξ) it belongs to."""

    lower: float
    depth: int = field(compare=False, default=0)
    lo: np.ndarray = field(compare=False, default=None)
    hi: np.ndarray = field(compare=False, default=None)
    task: int = field(compare=False, default=0)


@dataclass(frozen=True)
class PhiTask:
    """What every step needs (picklable): the network (merged), the query, settings."""

    network: Any
    m: int
    alpha: float
    k: int
    norm: str
    lo: np.ndarray
    hi: np.ndarray
    settings: Any

    def query(self):
        from nnresilience.resilience.settings import Query

        return Query(self.m, self.alpha, self.k, self.norm, self.lo, self.hi)

    @property
    def log_alpha(self) -> float:
        """``ln α`` exactly as the query (and so the replay) computes it."""
        return self.query().log_alpha


# --------------------------------------------------------------------------- steps
def bound_piece(task: PhiTask, lo: np.ndarray, hi: np.ndarray, upper: float | None,
                seconds: float | None) -> float:
    """Certified lower bound of Φ_m over pairs with ``a`` in ``[lo, hi]`` (``inf`` when no
    input of the piece reaches the confidence)."""
    from nnresilience.resilience.certify_diff import certified_lower_bound

    deadline = None if seconds is None else time.perf_counter() + seconds
    c = certified_lower_bound(task.network, task.m, task.log_alpha, task.k, task.norm,
                              task.lo, task.hi, a_lo=lo, a_hi=hi, upper=upper,
                              deadline=deadline)
    return c.lower


def solve_piece(task: PhiTask, lo: np.ndarray, hi: np.ndarray, lower: float,
                upper: float, seconds: float | None
                ) -> tuple[float, tuple[np.ndarray, np.ndarray, float] | None]:
    """MIP (6) with ``a ∈ [lo, hi]``, ``||ε|| <= upper`` (the incumbent's radius) and the
    objective cutoff ``upper``, through the staged certified solve of
    :func:`nnresilience.resilience.query._phi_solve`.

    Returns ``(lower, pair)``: a proven lower bound of the piece's minimum (the relaxed
    problem's certified bound; a cutoff nothing beats proves ``upper`` less the
    objective's tolerance) and an exactly replayed pair or None. A solver "infeasible"
    proves nothing: the piece keeps ``lower``.
    """
    from nnresilience.bounds.types import NetworkBounds
    from nnresilience.resilience.common import Clock
    from nnresilience.resilience.diff_plan import ROWS_RELAX, DiffPrep
    from nnresilience.resilience.difference_rows import DifferencePlan, plan_ladder
    from nnresilience.resilience.encode import network_bounds
    from nnresilience.resilience.query import _phi_solve

    net, s = task.network, task.settings
    clock = Clock(seconds)
    b1 = network_bounds(net, lo, hi, s, clock.share(s.bounds_share))
    b2 = network_bounds(net, task.lo, task.hi, s, clock.share(s.bounds_share))
    ladder, out_up = plan_ladder(net, task.lo, task.hi, task.norm, upper, a_lo=lo, a_hi=hi,
                                 prior1=b1, prior2=b2, m=task.m)
    # no cut: ``lower`` is certified for the exact problem only (the caller keeps it)
    plan = DifferencePlan(ladder[-1], upper, None, ladder=ladder, out_up=out_up,
                          relax=ROWS_RELAX)
    # copy 1 over the piece, copy 2 over D; the plan intersects both with its own boxes
    both = NetworkBounds([np.minimum(x, y) for x, y in zip(b1.lo, b2.lo, strict=True)],
                         [np.maximum(x, y) for x, y in zip(b1.hi, b2.hi, strict=True)],
                         method=b2.method)
    stats: dict[str, Any] = {}
    got, best, _ = _phi_solve(net, task.query(), both, s, clock, stats,
                              a_box=(lo, hi), cutoff=upper, prep=DiffPrep(plan=plan))
    return max(lower, got), best


def split_piece(task: PhiTask, piece: Piece) -> list[Piece]:
    """Two pieces: ``a``'s box cut at the middle of the dimension where class m's margin
    can move most (:func:`nnresilience.divide.split.influence`); same float both sides."""
    from nnresilience.divide.split import influence

    net, m = task.network, task.m
    others = np.delete(np.arange(net.n_outputs), m)
    rows = np.zeros((others.size, net.n_outputs))
    rows[np.arange(others.size), others] = 1.0
    rows[:, m] = -1.0
    width = piece.hi - piece.lo
    score = influence(net, piece.lo, piece.hi, rows)
    score = np.where(width > 0, score + 1e-12 * width / max(width.max(), 1e-300), -1.0)
    d = int(np.argmax(score))
    if width[d] <= 0:
        return []
    cut = 0.5 * (piece.lo[d] + piece.hi[d])
    left_hi, right_lo = piece.hi.copy(), piece.lo.copy()
    left_hi[d] = cut
    right_lo[d] = cut
    return [Piece(piece.lower, piece.depth + 1, piece.lo.copy(), left_hi),
            Piece(piece.lower, piece.depth + 1, right_lo, piece.hi.copy())]


def _piece_task(task: PhiTask, lo, hi, lower: float, upper: float | None, mode: str,
                seconds: float | None):
    """Executor task: ``mode`` ``bound`` (certified bound) or ``solve`` (bound, then MIP)."""
    t0 = time.perf_counter()
    got = max(lower, bound_piece(task, lo, hi, upper,
                                 None if seconds is None else 0.3 * seconds))
    if mode == "bound" or upper is None or got >= upper:
        return got, None
    rem = None if seconds is None else seconds - (time.perf_counter() - t0)
    if rem is not None and rem <= 0.5:
        return got, None
    return solve_piece(task, lo, hi, got, upper, rem)


# --------------------------------------------------------------------------- driver
@dataclass
class BranchOutcome:
    """``lower``: proven bound of the minimum over all tasks (Φ_m for one task, Ξ for
    one task per class); ``pair``/``task``: the best replayed pair and whose it is."""

    lower: float
    pair: tuple[np.ndarray, np.ndarray, float] | None
    stats: dict[str, Any]
    task: int | None = None


def branch_phi(task: PhiTask, *, pair=None, lower: float = 0.0, max_pieces: int = 64,
               timeout: float | None = None, executor=None) -> BranchOutcome:
    """Best-first branching on ``a``'s box for one Φ_m (module docstring).

    ``pair`` is the incumbent ``(a, b, norm)`` (replayed), ``lower`` a proven bound on all
    of D (the root's certified bound). Pieces are bounded and split until ``max_pieces``
    are open, then each open piece gets a MIP with an equal share of the time left.
    Returns the proven lower bound (``min`` over open pieces, never above the incumbent)
    and the best pair.
    """
    return branch_min([task], [pair], [lower], max_pieces=max_pieces, timeout=timeout,
                      executor=executor)


def branch_min(tasks: list[PhiTask], pairs: list, lowers: list[float], *,
               max_pieces: int = 64, timeout: float | None = None,
               executor=None) -> BranchOutcome:
    """Branching for ``min`` over several Φ queries at once (Ξ = min_m Φ_m): one
    best-first queue of ``(class, piece)``; the best pair of *any* class is the cutoff
    everywhere, so a class whose pieces cannot beat it is closed without being solved."""
    t0 = time.perf_counter()
    deadline = None if timeout is None else t0 + float(timeout)
    opt_tol = tasks[0].settings.opt_tol
    best, best_t = None, None
    for t, p in enumerate(pairs):
        if p is not None and (best is None or p[2] < best[2]):
            best, best_t = p, t
    heap: list[Piece] = [Piece(lw, 0, tk.lo.copy(), tk.hi.copy(), t)
                         for t, (tk, lw) in enumerate(zip(tasks, lowers, strict=True))]
    stats = {"bounded": 0, "solved": 0, "closed": 0, "max_depth": 0, "tasks": len(tasks)}
    ex, owned = _resolve_executor(executor)
    workers = max(1, int(getattr(ex, "workers", 1)))

    def upper() -> float | None:
        return None if best is None else best[2]

    def closed(p: Piece) -> bool:
        u = upper()
        return u is not None and p.lower >= u - opt_tol * max(1.0, u)

    def left() -> float | None:
        return None if deadline is None else deadline - time.perf_counter() - TASK_MARGIN

    try:
        while heap and not (left() is not None and left() <= 0):
            heap = [p for p in heap if not closed(p)]
            heapq.heapify(heap)
            if not heap:
                break
            splitting = len(heap) < max_pieces
            batch = [heapq.heappop(heap) for _ in range(min(workers, len(heap)))]
            if splitting:
                mode, share = "bound", None if left() is None else max(0.5, 0.2 * left())
            else:
                # the last round: every open piece gets a MIP with an equal share
                batch += [heapq.heappop(heap) for _ in range(len(heap))]
                mode = "solve"
                share = None if left() is None else max(0.5, left() * workers / len(batch))

            def make(p, mode=mode, share=share):
                return _piece_task, (tasks[p.task], p.lo, p.hi, p.lower, upper(), mode, share)

            win = _Window(ex, batch, make, workers)
            results: dict[int, tuple] = {}
            try:
                while True:
                    win.fill()
                    if not win.inflight:
                        break
                    rem = left()
                    if rem is not None and rem <= 0:
                        break
                    for i, ans in win.next_done(rem):
                        results[i] = ans
            finally:
                win.stop(kill=owned)
            for i, p in enumerate(batch):
                if i not in results:
                    heapq.heappush(heap, p)          # unfinished: keeps its old bound
                    continue
                got, found = results[i]
                p.lower = max(p.lower, got)
                if found is not None and (best is None or found[2] < best[2]):
                    best, best_t = found, p.task
                stats["bounded" if mode == "bound" else "solved"] += 1
                if closed(p) or math.isinf(p.lower):
                    stats["closed"] += 1
                elif mode == "bound":
                    kids = split_piece(tasks[p.task], p)
                    stats["max_depth"] = max(stats["max_depth"], p.depth + 1)
                    for kid in kids or [p]:
                        kid.task = p.task
                        heapq.heappush(heap, kid)
                else:
                    heapq.heappush(heap, p)
            if mode == "solve":
                break
    finally:
        if owned:
            ex.terminate()
    open_lowers = [p.lower for p in heap if not closed(p)]
    u = upper()
    low = min(open_lowers) if open_lowers else (u if u is not None else math.inf)
    if u is not None:
        low = min(low, u)
    stats.update({"open": len(open_lowers), "seconds": time.perf_counter() - t0})
    return BranchOutcome(max(low, 0.0) if math.isfinite(low) else low, best, stats, best_t)
