"""Divided optimisation: per-sample minimum perturbation and Phi_m over sub-boxes.

A minimum over the box is the minimum of the sub-box minima (the sub-boxes cover it), see
:mod:`nnresilience.divide`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from nnresilience.divide.split import influence, split_box
from nnresilience.divide.window import TASK_MARGIN, _default_parts, _resolve_executor, _Window
from nnresilience.results import ResilienceResult


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
              deadline: float | None, best: float = math.inf,
              progress: Callable | None = None) -> tuple[list, dict]:
    """Run the sub-problems with a shared cutoff; return ``(answers, stats)``.

    ``progress(phase, lower, upper, **extra)`` (a :class:`~nnresilience.resilience.common.
    Clock`'s ``report``) is called once per finished sub-problem.

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
                if progress is not None:
                    progress("subproblem", None,
                             None if math.isinf(state["best"]) else state["best"],
                             done=win.completed, total=len(boxes))
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
    radius = norm_of(np.maximum(hi - x, x - lo), norm)       # this ball covers D
    best, wit = None, None
    for r in range(8):
        if time.monotonic() >= end or radius <= 0.0:
            break
        prop = robustness(x, m, radius, network.n_outputs, norm, lo, hi, k)
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
                             timeout: float | None = None, attack: float = 1.0,
                             progress=None) -> ResilienceResult:
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
    from nnresilience.resilience.common import Clock, check_backend
    from nnresilience.resilience.replay import flip_ok, norm_of
    from nnresilience.spec.condition import misclassification

    settings = DEFAULT if settings is None else settings
    check_backend(norm, settings, network)
    t0 = time.monotonic()
    clock = Clock(timeout, progress, None if label is None else int(label))
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

        clock.report("subproblems", 0.0, ub)
        answers, stats = _optimise(ex, boxes, make_task,
                                   lambda bx: _gap_norm(x, bx[0], bx[1], norm), deadline,
                                   math.inf if ub is None else ub, progress=clock.report)
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
            # replay, exactly: b in the domain, out of m's top-k, its norm recomputed here
            if np.all(b >= lo) and np.all(b <= hi) and flip_ok(network, b, m, k):
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


def _phi_subbox_task(network, cls: int, alpha: float, k: int, norm: str, lo, hi,
                     sub_lo, sub_hi, bounds, settings, timeout: float | None,
                     cutoff: float | None) -> tuple[float, float | None, Any]:
    """Executor task: MIP (6) with the unperturbed point ``a`` boxed in a sub-box.

    ``b = a + ε`` still ranges over all of D and both copies keep the bounds over D
    (sound, if looser than sub-box bounds for copy 1). Solved like :func:`phi` (the
    relaxed and tightened stages of :func:`nnresilience.resilience.query._phi_solve`)
    with the objective cutoff ``cutoff``: the certified bound (the cutoff
    itself, less its tolerance, when nothing beats it) is this sub-box's lower bound. A
    solver "infeasible" proves nothing; the sub-box counts as empty (``+inf``) only when a
    certified premise problem shows no input of it reaches alpha. Returns
    ``(lower, upper, (a, b))`` or ``(lower, None, message)``.
    """
    from nnresilience.resilience.common import Clock
    from nnresilience.resilience.query import _phi_solve, _premise_margin
    from nnresilience.resilience.settings import Query

    clock = Clock(timeout)
    net = network.merged()
    q = Query(int(cls), float(alpha), int(k), norm, lo, hi)
    sub_lo, sub_hi = np.asarray(sub_lo, float), np.asarray(sub_hi, float)
    lower, best, sol = _phi_solve(net, q, bounds, settings, clock, {}, a_box=(sub_lo, sub_hi),
                                  cutoff=cutoff)
    if best is not None:
        a, b, upper = best
        return min(lower, upper), upper, (tuple(map(float, a)), tuple(map(float, b)))
    if sol is None:
        return lower, None, "timeout"
    if sol.cert.failed and clock.can_solve():
        _, t_up, _ = _premise_margin(net, q.cls, sub_lo, sub_hi, bounds, settings, clock, {})
        if t_up < q.log_alpha:
            return math.inf, None, "no input of the sub-box reaches alpha"
    return lower, None, f"solver: {sol.status}"


def phi_divided(network, cls: int, alpha: float = 1.0, k: int = 1, norm: str = "l1",
                domain=None, executor=None, parts: int | None = None, *, settings=None,
                timeout: float | None = None, progress=None) -> ResilienceResult:
    """Φ_m with the domain of the unperturbed point ``a`` split into sub-boxes.

    Φ_m = min over sub-boxes S of (min ||b - a|| with a in S confident for m, b in D
    out of m's top-k): the sub-boxes cover D, so the minimum of the sub-minima is Φ_m.
    Tasks submitted after a witness was found carry the cutoff ``||b - a|| <= best``.
    Sub-boxes where no input reaches the confidence ratio are infeasible and cheap. The
    witness pair is replayed here again (premise and flip, through ``network.forward``).
    """
    from nnresilience.resilience import DEFAULT, resolve_domain
    from nnresilience.resilience.common import Clock, check_backend
    from nnresilience.resilience.encode import network_bounds
    from nnresilience.resilience.query import _settle_empty
    from nnresilience.resilience.replay import flip_ok, norm_of, premise_ok
    from nnresilience.resilience.settings import Query

    settings = DEFAULT if settings is None else settings
    check_backend(norm, settings, network)
    t0 = time.monotonic()
    clock = Clock(timeout, progress, int(cls))
    deadline = None if timeout is None else t0 + float(timeout)
    lo, hi = resolve_domain(network, domain)
    net = network.merged()
    q = Query(int(cls), float(alpha), int(k), norm, lo, hi)
    q.check_network(net.n_inputs, net.n_outputs)
    clock.report("bounds")
    bounds = network_bounds(net, lo, hi, settings, clock.share(settings.bounds_share))
    clock.report("subproblems")
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
            return _phi_subbox_task, (net, q.cls, q.alpha, q.k, norm, lo, hi, box[0],
                                      box[1], bounds, settings, rem, cutoff)

        answers, stats = _optimise(ex, boxes, make_task, lambda _bx: 0.0, deadline,
                                   progress=clock.report)
    finally:
        if owned:
            ex.terminate()
    lower = min(a[0] for a in answers)
    best, pair = None, None
    for a in answers:
        if a[1] is None or not isinstance(a[2], tuple):
            continue
        av, bv = (np.asarray(v, float) for v in a[2])
        # replay again here, exactly: both points in D, premise and flip in float64
        inside = all(np.all(v >= lo) and np.all(v <= hi) for v in (av, bv))
        if inside and premise_ok(net, av, q.cls, q.log_alpha) and flip_ok(net, bv, q.cls, q.k):
            u = norm_of(bv - av, norm)
            if best is None or u < best:
                best, pair = u, (av, bv)
    common = dict(cls=q.cls, alpha=q.alpha, k=q.k, norm=norm)
    stats = {**stats, "divided": True, "bounds_method": bounds.method}
    if best is None and math.isinf(lower):
        # every sub-box certified to hold no confident input
        return ResilienceResult("phi", None, None, False, False, seconds=clock.elapsed(),
                                stats=stats, message=f"no input in the domain reaches "
                                                     f"confidence ratio alpha={q.alpha:g} "
                                                     f"for class {q.cls}", **common)
    if best is None and clock.can_solve():
        # nothing witnessed: Φ may be +inf (no flip anywhere) or the premise empty
        settled = _settle_empty(network, net, q, bounds, settings, clock, stats, common)
        if settled is not None:
            return replace(settled, seconds=clock.elapsed())
    if best is not None:
        lower = min(lower, best)
    optimal = bool(best is not None and not stats["timed_out"]
                   and best - lower <= settings.opt_tol * max(1.0, best))
    msg = "" if best is not None else "no witness found within the limits"
    return ResilienceResult("phi", lower, best, optimal, True,
                            a=None if pair is None else tuple(map(float, pair[0])),
                            a_perturbed=None if pair is None else tuple(map(float, pair[1])),
                            seconds=time.monotonic() - t0, message=msg, stats=stats, **common)
