"""Per-sample queries (seed 000, MIP (6) with ``a`` fixed, §5 step 2): the minimum
perturbation of one input, the δ-robustness decision of Table 1 and robustness tables.

The interval contract is the one of :mod:`.query`: ``upper`` from a witness that replays
exactly (the label out of the top-k at ``x + ε``, in float64), ``lower`` from certified
bounds — the relaxed optimisation MIP (flip rows loosened by ``τ``) or a certified
δ-ball decision (the MILP engine's margin form: no point of the ball flips, with the
solver-tolerance margin). A solver's "infeasible" is never read as "robust".
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from nnresilience.errors import EngineUnsupportedError, InputDataError, ShapeMismatchError
from nnresilience.resilience.common import (
    Clock,
    Progress,
    check_backend,
    decide,
    is_optimal,
    norm_lower,
    polish,
    resolve_domain,
    solve_certified,
    solve_relaxed,
    solver_stats,
    tup,
)
from nnresilience.resilience.encode import build_local_mip, network_bounds
from nnresilience.resilience.labels import labelled
from nnresilience.resilience.replay import flip_ok, norm_of, replay_pair
from nnresilience.resilience.settings import DEFAULT, Query, ResilienceSettings
from nnresilience.resilience.units import run_units
from nnresilience.results import Counterexample, ResilienceResult, Status, VerificationResult

#: Share of the deadline of the first stage (attack, first MIP) of the staged solve.
FIRST_SHARE = 0.3


def _check_norm(norm: str) -> None:
    if norm not in ("l1", "linf", "l2"):
        raise EngineUnsupportedError(
            f"norm {norm!r} is not supported by the resilience MIP (use l1, l2 or linf)")


def _setup(network, x, label, norm, k, domain, settings: ResilienceSettings = DEFAULT):
    net = network.merged()
    x = np.asarray(x, float).reshape(-1)
    if x.size != net.n_inputs:
        raise ShapeMismatchError(f"sample has {x.size} values, the network has "
                                 f"{net.n_inputs} inputs")
    lo, hi = resolve_domain(network, domain)
    pred = int(np.argmax(net.forward(x)))
    m = pred if label is None else int(label)
    Query(m, 1.0, k, norm, lo, hi).check_network(net.n_inputs, net.n_outputs)
    _check_norm(norm)
    check_backend(norm, settings, net)
    return net, x, lo, hi, pred, m


def _ball_case(x, m: int, radius: float, n_out: int, norm: str, lo, hi, k: int):
    """The δ-robustness case: the ``norm`` ball of ``radius`` around x, inside D, unsafe
    when m leaves the top-k."""
    from nnresilience.spec.property import robustness

    return robustness(x, m, radius, n_out, norm, lo, hi, k).cases[0]


def _decide_ball(net, x, m, k, norm, lo, hi, radius: float, settings, clock: Clock):
    """Certified decision of the ``radius`` ball: ``(status, b or None, stats)``.

    L2: the ball is decided at the radius ``r'`` with ``r'² = r² + τ_q`` (the tolerance
    of its quadratic row, :func:`nnresilience.encode.l2.inflated_radius`), so "holds"
    covers the radius-``r`` ball; a point is only reported when it lies in the latter."""
    case = _ball_case(x, m, radius, net.n_outputs, norm, lo, hi, k)
    decided = case
    if norm == "l2":
        from nnresilience.backends.registry import get_backend
        from nnresilience.encode.l2 import inflated_radius

        feas = get_backend(settings.backend, need_quadratic=True).tolerances().feasibility
        decided = _ball_case(x, m, inflated_radius(radius, x.size, feas), net.n_outputs,
                             norm, lo, hi, k)
    bounds = network_bounds(net, decided.region.lo, decided.region.hi, settings,
                            clock.share(settings.bounds_share))
    if not clock.can_solve():
        return Status.UNKNOWN, None, {"decision": "no time"}
    ans = decide(net, decided, bounds, settings, clock.left())
    b = None
    if ans.status is Status.VIOLATED and ans.x is not None:
        cand = case.region.clip(np.asarray(ans.x, float))     # exactly inside the ball
        if case.region.contains(cand, tol=0.0) and flip_ok(net, cand, m, k):
            b = cand
    status = Status.VIOLATED if b is not None else \
        (Status.HOLDS if ans.status is Status.HOLDS else Status.UNKNOWN)
    return status, b, {f"decision_{k_}": v for k_, v in ans.stats.items()
                       if isinstance(v, (int, float, str, bool)) or v is None}


@labelled
def min_perturbation(network, x: np.ndarray, label: int | None = None, norm: str = "l1",
                     k: int = 1, domain=None, *, settings: ResilienceSettings = DEFAULT,
                     timeout: float | None = None, radius: float | None = None,
                     progress: Progress | None = None) -> ResilienceResult:
    """Smallest ``||ε||`` with ``x + ε`` in D and at least ``k`` classes ``j != label``
    reaching ``y_label`` at ``x + ε`` (seed 000, MIP (6) with a fixed, §5 step 2).

    ``label`` defaults to the predicted class of ``x`` (a misclassified label gives 0 for
    k = 1). ``radius`` restricts the search to ``||ε|| <= radius``; when no point of that
    ball flips (certified), the result is ``lower = radius``, ``upper = None``.

    Without ``radius`` and with ``settings.shrink``, the solve is staged (every step keeps
    ``[lower, upper]`` valid): an upper bound u from the falsifier (or a first MIP point),
    bisection on the radius with certified ball decisions (bounds over the small box), then
    the relaxed optimisation MIP inside the ball of radius u (exact: the optimum is inside).
    """
    clock = Clock(timeout, progress, None if label is None else int(label))
    if radius is None and settings.shrink:
        return _shrinking(network, x, label, norm, k, domain, settings, clock)
    return _once(network, x, label, norm, k, domain, settings, clock, radius)


def _once(network, x, label, norm, k, domain, settings, clock: Clock, radius,
          stop_first: bool = False) -> ResilienceResult:
    """One relaxed optimisation MIP over ``D`` (∩ the radius ball), with the fallbacks of
    the interval contract (tightened witness search, certified ball decision)."""
    net, x, lo, hi, pred, m = _setup(network, x, label, norm, k, domain, settings)
    clock.cls = m
    blo, bhi = lo, hi
    if radius is not None:
        blo, bhi = np.maximum(lo, x - radius), np.minimum(hi, x + radius)
        if np.any(blo > bhi):
            raise InputDataError("the sample lies outside the domain")
    clock.report("bounds")
    bounds = network_bounds(net, blo, bhi, settings, clock.share(settings.bounds_share))
    mip = build_local_mip(net, x, m, k, norm, blo, bhi, bounds, settings,
                          radius=radius if norm != "linf" else None)
    stats: dict = {"bounds_method": bounds.method, "bounds_seconds": bounds.seconds,
                   "predicted": pred, "correctly_classified": pred == m}
    common = dict(cls=m, k=k, norm=norm, a=tup(x))
    best: tuple[np.ndarray, float] | None = None

    def offer(sol, mip_) -> None:
        nonlocal best
        if sol.x is None:
            return
        rep = replay_pair(net, x, sol.x[mip_.b], m, None, k, blo, bhi)
        if rep is not None:
            u = norm_of(rep[1] - x, norm)
            if best is None or u < best[1]:
                best = (rep[1], u)

    lower = 0.0
    clock.report("mip")
    sol = solve_relaxed(mip, settings, clock, stop_first=stop_first,
                        heartbeat=clock.beat("mip"))
    if sol is not None:
        stats.update(solver_stats(sol, mip))
        offer(sol, mip)
        if not sol.cert.failed:
            lower = max(lower, norm_lower(sol.cert))

    def upper_now() -> float | None:
        return None if best is None else best[1]

    if sol is not None and not stop_first and (
            upper_now() is None or upper_now() - lower > 1e-9 * max(1.0, upper_now())):
        pol = polish(mip, sol, settings, clock)       # the relaxed pattern, solved exactly
        if pol is not None:
            offer(pol, mip)

    if sol is not None and not sol.cert.failed and not stop_first \
            and not is_optimal(lower, upper_now(), settings) and clock.can_solve():
        clock.report("tightened", lower, upper_now())
        mip_t = build_local_mip(net, x, m, k, norm, blo, bhi, bounds, settings,
                                radius=radius if norm != "linf" else None, flip_shift=sol.tau)
        sol_t = solve_certified(mip_t, settings, clock.left(), relax=False, tighten=sol.factor,
                                heartbeat=clock.beat("tightened", lower, upper_now()))
        stats["tightened_status"] = sol_t.status
        offer(sol_t, mip_t)
    upper = upper_now()
    msg = ""
    if upper is None and (sol is None or sol.x is None) and clock.can_solve():
        # nothing found: is there any flip at all (in the ball, or in D)?
        clock.report("decision", lower)
        r = radius
        if r is not None:
            status, b, st = _decide_ball(net, x, m, k, norm, lo, hi, r, settings, clock)
        else:
            status, b, st = _decide_box(net, m, k, lo, hi, bounds, settings, clock)
        stats.update(st)
        if status is Status.HOLDS:
            lower = math.inf if r is None else float(r)
            msg = (f"no perturbation inside the domain takes class {m} out of the top-{k}"
                   if r is None else
                   f"robust: no perturbation with ||eps||_{norm[1:]} <= {r:g} takes class "
                   f"{m} out of the top-{k}")
            clock.report("done", lower, None)
            return ResilienceResult("min_perturbation", lower, None, r is None, True,
                                    seconds=clock.elapsed(), message=msg, stats=stats,
                                    **common)
        if b is not None:
            best = (b, norm_of(b - x, norm))
            upper = best[1]
    if upper is not None:
        lower = min(lower, upper)
    if upper is None:
        msg = "no witness replays exactly within the limits" + \
            ("" if sol is None else f" (solver: {sol.status})")
    clock.report("done", lower, upper)
    return ResilienceResult("min_perturbation", lower, upper, is_optimal(lower, upper, settings),
                            True, a_perturbed=None if best is None else tup(best[0]),
                            seconds=clock.elapsed(), message=msg, stats=stats, **common)


def _decide_box(net, m, k, lo, hi, bounds, settings, clock: Clock):
    """Certified: does any point of D take m out of the top-k?"""
    from nnresilience.spec.condition import not_in_top_k
    from nnresilience.spec.property import Case
    from nnresilience.spec.region import InputRegion

    case = Case(InputRegion(lo, hi), not_in_top_k(m, k, net.n_outputs))
    ans = decide(net, case, bounds, settings, clock.left())
    b = None
    if ans.status is Status.VIOLATED and ans.x is not None:
        cand = np.clip(np.asarray(ans.x, float), lo, hi)
        if flip_ok(net, cand, m, k):
            b = cand
    status = Status.VIOLATED if b is not None else \
        (Status.HOLDS if ans.status is Status.HOLDS else Status.UNKNOWN)
    return status, b, {"flip_check": status.value}


def _shrinking(network, x, label, norm, k, domain, settings, clock: Clock
               ) -> ResilienceResult:
    """Attack (or a first MIP point) for an upper bound u, bisection on the radius with
    certified ball decisions, then the relaxed optimisation MIP inside the final ball."""
    net, x, lo, hi, pred, m = _setup(network, x, label, norm, k, domain, settings)
    clock.cls = m
    first = clock.share(FIRST_SHARE)
    clock.report("attack")
    hit = _attack_point(net, x, m, norm, k, lo, hi,
                        3.0 if first is None else min(3.0, 0.6 * first))
    if hit is not None:
        best = ResilienceResult("min_perturbation", 0.0, norm_of(hit - x, norm), False, True,
                                cls=m, k=k, norm=norm, a=tup(x), a_perturbed=tup(hit),
                                stats={"witness_from": "attack", "predicted": pred,
                                       "correctly_classified": pred == m})
    else:
        sub = Clock(first if first is not None else 5.0)
        best = _once(network, x, m, norm, k, domain, settings, sub, None, stop_first=True)
        if best.upper is None or not math.isfinite(best.upper):
            if best.upper is None and best.lower != math.inf and clock.can_solve():
                best = _once(network, x, m, norm, k, domain, settings, clock, None)
            return replace(best, seconds=clock.elapsed())
    lower = max(0.0, best.lower or 0.0)
    steps = 0

    def closed() -> bool:
        return best.upper - lower <= settings.opt_tol * max(1.0, best.upper)

    while not closed() and steps < 40 and clock.can_solve():
        steps += 1
        delta = 0.5 * (lower + best.upper)
        clock.report("bisection", lower, best.upper, force=False, radius=delta)
        status, b, _ = _decide_ball(net, x, m, k, norm, lo, hi, delta, settings, clock)
        if status is Status.HOLDS:
            lower = delta
        elif b is not None:
            u = norm_of(b - x, norm)
            if u < best.upper:
                best = replace(best, upper=u, a_perturbed=tup(b),
                               stats=dict(best.stats, witness_from="bisection"))
            else:
                break
        else:
            break  # time limit or tolerance band inside a decision: keep what is proven
    # the optimisation MIP inside the final ball: closes the interval if the bisection could
    # not, and turns a decision's point (anywhere in the ball) into a near-optimal witness
    polish = best.stats.get("witness_from") in ("attack", "bisection")
    if (not closed() or polish) and clock.can_solve():
        clock.report("mip", lower, best.upper)
        r = _once(network, x, m, norm, k, domain, settings, clock,
                  best.upper * (1 + 1e-9) + 1e-12)
        if r.upper is None and r.lower is not None and math.isfinite(r.lower) \
                and r.message.startswith("robust"):
            pass  # "robust up to upper" contradicts the witness: numerics, keep lower
        elif r.lower is not None and math.isfinite(r.lower):
            lower = max(lower, r.lower)
        if r.upper is not None and r.upper < best.upper:
            best = replace(best, upper=r.upper, a_perturbed=r.a_perturbed,
                           stats=dict(best.stats, witness_from="ball_mip"))
        best = replace(best, stats={**r.stats, **best.stats})
    lower = min(lower, best.upper)
    stats = dict(best.stats, bisection_steps=steps)
    clock.report("done", lower, best.upper)
    return replace(best, lower=lower, optimal=closed(), seconds=clock.elapsed(),
                   message="", stats=stats, cls=m, k=k, norm=norm, a=tup(x))


def _attack_point(net, x, m, norm, k, lo, hi, seconds: float) -> np.ndarray | None:
    """A point of D near ``x`` that takes the label out of the top-k, by the falsifier on
    balls of doubling radius; replayed through the forward pass. None if none was found."""
    import time

    from nnresilience.falsify import falsify

    span = float(np.max(hi - lo, initial=0.0))
    if span <= 0.0 or np.any(x < lo) or np.any(x > hi) or seconds <= 0:
        return None
    t_end = time.perf_counter() + seconds
    r = 0.01 * span
    top = span * (x.size if norm == "l1" else 1.0)
    while time.perf_counter() < t_end and r <= 2 * top:
        case = _ball_case(x, m, r, net.n_outputs, norm, lo, hi, k)
        left = t_end - time.perf_counter()
        hit = falsify(net, case, rng=0, budget_seconds=min(0.12, max(0.02, left)))
        if hit is not None:
            cand = np.clip(np.asarray(hit, float), lo, hi)
            if flip_ok(net, cand, m, k):
                return cand
        r *= 2.0
    return None


@labelled
def delta_check(network, x: np.ndarray, label: int | None, delta: float, norm: str = "linf",
                k: int = 1, domain=None, *, settings: ResilienceSettings = DEFAULT,
                timeout: float | None = None) -> VerificationResult:
    """Local δ-robustness of Table 1: is some ``x + ε`` with ``||ε|| <= δ`` (in D) out of
    the label's top-k? HOLDS (paper: "inf") / VIOLATED with a replayed point ("feas") /
    UNKNOWN. Decided by the MILP engine's certified margin form over the δ-ball.
    """
    clock = Clock(timeout)
    net, x, lo, hi, _, m = _setup(network, x, label, norm, k, domain, settings)
    status, b, stats = _decide_ball(net, x, m, k, norm, lo, hi, float(delta), settings, clock)
    if b is not None:
        return VerificationResult(Status.VIOLATED, Counterexample.from_arrays(b, net.forward(b)),
                                  engine="milp", seconds=clock.elapsed(), stats=stats)
    if status is Status.HOLDS:
        return VerificationResult(Status.HOLDS, engine="milp", seconds=clock.elapsed(),
                                  message=f"robust: no perturbation with ||eps||_{norm[1:]} "
                                          f"<= {delta:g} takes class {m} out of the top-{k}",
                                  stats=stats)
    return VerificationResult(Status.UNKNOWN, engine="milp", seconds=clock.elapsed(),
                              message=str(stats.get("decision_status", "time limit")),
                              stats=stats)


# ------------------------------------------------------------------ robustness tables
def _sample_task(item: tuple, timeout: float | None) -> ResilienceResult:
    network, x, label, norm, k, domain, settings = item
    return min_perturbation(network, x, label, norm, k, domain, settings=settings,
                            timeout=timeout)


def _sample_missing(item: tuple, why: str) -> ResilienceResult:
    network, x, label, norm, k, _, _ = item
    m = int(np.argmax(network.forward(np.asarray(x, float)))) if label is None else int(label)
    return ResilienceResult("min_perturbation", 0.0, None, False, True, cls=m, k=k, norm=norm,
                            a=tup(np.asarray(x, float)), message=why)


@labelled
def robustness_table(network, X: np.ndarray, labels=None, norm: str = "l1", k: int = 1,
                     domain=None, *, settings: ResilienceSettings = DEFAULT,
                     timeout: float | None = None, workers=None,
                     unit_timeout: float | None = None,
                     progress: Progress | None = None) -> list[ResilienceResult]:
    """Per-sample minimum perturbation of every row of ``X`` (in order), executor-parallel.

    ``labels`` default to the predicted classes. ``timeout`` bounds the whole table; each
    sample gets a fair share of the time left when it starts (at most ``unit_timeout``);
    a sample that could not run in time is ``[0, None]`` with a message. ``progress`` is
    called once per finished sample.
    """
    _check_norm(norm)
    check_backend(norm, settings, network)
    X = network.check_input(np.asarray(X, float))
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != X.shape[0]:
            raise InputDataError(f"{labels.size} labels for {X.shape[0]} samples")
    lo, hi = resolve_domain(network, domain)
    items = [(network, X[i], None if labels is None else int(labels[i]), norm, k, (lo, hi),
              settings) for i in range(X.shape[0])]
    return run_units(_sample_task, items, timeout, workers, unit_timeout, _sample_missing,
                     progress, key="sample", keys=list(range(len(items))))
