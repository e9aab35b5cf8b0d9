"""Per-sample queries (seed 000, MIP (6) with ``a`` fixed, §5 step 2): the minimum
perturbation of one input, the δ-robustness decision of Table 1 and robustness tables.

See :func:`min_perturbation` for the staged solve (attack, bisection on the radius,
ball-restricted MIP) that keeps ``[lower, upper]`` valid at every step.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

from nnresilience.errors import InputDataError, ShapeMismatchError, SolverFailure
from nnresilience.resilience.common import (
    interval,
    remaining,
    resolve_domain,
    solve,
    solver_stats,
    tup,
)
from nnresilience.resilience.encode import build_local_mip, network_bounds
from nnresilience.resilience.replay import norm_of, replay_pair
from nnresilience.resilience.settings import DEFAULT, Query, ResilienceSettings
from nnresilience.results import Counterexample, ResilienceResult, Status, VerificationResult


def min_perturbation(network, x: np.ndarray, label: int | None = None, norm: str = "l1",
                     k: int = 1, domain=None, *, settings: ResilienceSettings = DEFAULT,
                     timeout: float | None = None, radius: float | None = None
                     ) -> ResilienceResult:
    """Smallest ``||ε||`` with ``x + ε`` in D and at least ``k`` classes ``j != label``
    reaching ``y_label`` at ``x + ε`` (seed 000, MIP (6) with a fixed, §5 step 2).

    ``label`` defaults to the predicted class of ``x`` (a misclassified label gives 0 for
    k = 1). ``radius`` restricts the search to ``||ε|| <= radius`` (the box is shrunk, and
    a row added for L1): infeasible then means "robust up to radius" and the result has
    ``lower = radius``, ``upper = None``.

    Without ``radius`` and with ``settings.shrink``, a first feasible witness of norm u is
    found, then the problem is re-solved inside the ball of radius u: exact, since the
    optimum has norm <= u, and far easier, since the bounds (big-M) are computed over the
    small box ``[x - u, x + u]`` instead of all of D. Every round's dual bound is a valid
    global lower bound for the same reason.
    """
    if radius is None and settings.shrink:
        return _min_perturbation_shrinking(network, x, label, norm, k, domain, settings,
                                           timeout)
    return _min_perturbation_once(network, x, label, norm, k, domain, settings, timeout,
                                  radius)


def _min_perturbation_shrinking(network, x, label, norm, k, domain, settings, timeout
                                ) -> ResilienceResult:
    """Attack (or first MIP solution) for an upper bound u, then bisection on the radius
    with decision MIPs over the small box (infeasible at δ proves ``lower >= δ``; a
    replayed witness proves ``upper <= its norm``), then one optimisation MIP inside the
    final ball if time is left. Every step keeps [lower, upper] valid."""
    t0 = time.perf_counter()
    first_limit = 5.0 if timeout is None else max(0.5, 0.3 * timeout)
    hit = _attack_point(network, x, label, norm, k, domain, min(3.0, 0.6 * first_limit))
    if hit is not None:
        best = _min_perturbation_once(network, x, label, norm, k, domain, settings,
                                      first_limit, norm_of(hit - x, norm) * 1.000001 + 1e-12,
                                      stop_first=True)
        if best.upper is None:  # the MIP missed it in time: keep the attack point
            net = network.merged()
            m = int(np.argmax(net.forward(x))) if label is None else int(label)
            best = replace(best, lower=0.0, upper=norm_of(hit - x, norm), optimal=False,
                           cls=m, a_perturbed=tup(hit), message="")
        else:
            best = replace(best, lower=0.0, optimal=False)
    else:
        best = _min_perturbation_once(network, x, label, norm, k, domain, settings,
                                      first_limit, None, stop_first=True)
    if best.upper is None or not math.isfinite(best.upper):
        if best.upper is None and best.lower != math.inf:
            best = _min_perturbation_once(network, x, label, norm, k, domain, settings,
                                          remaining(t0, timeout), None)
        return replace(best, seconds=time.perf_counter() - t0)
    decide = settings.with_(mip_gap=1.0)
    lower = max(0.0, best.lower or 0.0)
    steps = 0

    def closed() -> bool:
        return best.upper - lower <= settings.opt_tol * max(1.0, best.upper)

    while not closed() and steps < 40:
        rest = remaining(t0, timeout, floor=0.0)
        if rest is not None and rest <= 0.1:
            break
        steps += 1
        delta = 0.5 * (lower + best.upper)
        r = _min_perturbation_once(network, x, label, norm, k, domain, decide, rest, delta,
                                   stop_first=True)
        if r.stats.get("solver_status") == "infeasible":
            lower = delta
        elif r.upper is not None and r.upper <= delta * (1 + 1e-9):
            best = r
        else:
            break  # time limit inside a decision: keep what is proven
    if not closed():
        rest = remaining(t0, timeout, floor=0.0)
        if rest is None or rest > 0.1:
            r = _min_perturbation_once(network, x, label, norm, k, domain, settings, rest,
                                       best.upper * (1 + 1e-9) + 1e-12)
            if r.stats.get("solver_status") != "infeasible":
                lower = max(lower, r.lower or 0.0)
            if r.upper is not None and r.upper < best.upper:
                best = r
    lower = min(lower, best.upper)
    optimal = closed()
    stats = dict(best.stats, bisection_steps=steps)
    return replace(best, lower=lower, optimal=optimal, seconds=time.perf_counter() - t0,
                   message="", stats=stats)


def _attack_point(network, x, label, norm, k, domain, seconds: float) -> np.ndarray | None:
    """A point of D near ``x`` that takes the label out of the top-k, by the falsifier on
    balls of doubling radius; replayed through the forward pass. None if none was found."""
    from nnresilience.falsify import falsify
    from nnresilience.resilience.replay import flip_ok
    from nnresilience.spec.property import robustness

    net = network.merged()
    x = np.asarray(x, float).reshape(-1)
    lo, hi = resolve_domain(network, domain)
    m = int(np.argmax(net.forward(x))) if label is None else int(label)
    span = float(np.max(hi - lo, initial=0.0))
    if span <= 0.0 or np.any(x < lo) or np.any(x > hi):
        return None
    t_end = time.perf_counter() + seconds
    r = 0.01 * span
    top = span * (x.size if norm == "l1" else 1.0)
    while time.perf_counter() < t_end and r <= 2 * top:
        case = robustness(x, m, r, net.n_outputs, norm, lo, hi, k).cases[0]
        left = t_end - time.perf_counter()
        hit = falsify(net, case, rng=0, budget_seconds=min(0.12, max(0.02, left)))
        if hit is not None and flip_ok(net, np.clip(hit, lo, hi), m, k):
            return np.clip(np.asarray(hit, float), lo, hi)
        r *= 2.0
    return None


def _min_perturbation_once(network, x, label, norm, k, domain, settings, timeout, radius,
                           stop_first: bool = False) -> ResilienceResult:
    t0 = time.perf_counter()
    net = network.merged()
    x = np.asarray(x, float).reshape(-1)
    if x.size != net.n_inputs:
        raise ShapeMismatchError(f"sample has {x.size} values, the network has "
                                 f"{net.n_inputs} inputs")
    lo, hi = resolve_domain(network, domain)
    pred = int(np.argmax(net.forward(x)))
    m = pred if label is None else int(label)
    Query(m, 1.0, k, norm, lo, hi).check_network(net.n_inputs, net.n_outputs)
    blo, bhi = lo, hi
    if radius is not None:
        blo, bhi = np.maximum(lo, x - radius), np.minimum(hi, x + radius)
        if np.any(blo > bhi):
            raise InputDataError("the sample lies outside the domain")
    bounds = network_bounds(net, blo, bhi, settings, timeout)
    mip = build_local_mip(net, x, m, k, norm, blo, bhi, bounds, settings,
                          radius=radius if norm == "l1" else None)
    res, backend = solve(mip, settings, remaining(t0, timeout), stop_first=stop_first)
    stats = solver_stats(res, backend, mip)
    stats.update(bounds_method=bounds.method, bounds_seconds=bounds.seconds,
                 predicted=pred, correctly_classified=pred == m)
    common = dict(cls=m, k=k, norm=norm, a=tup(x))
    if res.status.value == "infeasible":
        lower = math.inf if radius is None else float(radius)
        msg = ("no perturbation inside the domain takes class "
               f"{m} out of the top-{k}" if radius is None else
               f"robust: no perturbation with ||eps||_{norm[1:]} <= {radius:g} takes class "
               f"{m} out of the top-{k}")
        return ResilienceResult("min_perturbation", lower, None, radius is None, True,
                                seconds=time.perf_counter() - t0, message=msg, stats=stats,
                                **common)
    b = None
    upper = None
    msg = ""
    if res.x is not None:
        rep = replay_pair(net, x, res.x[mip.b], m, None, k, blo, bhi, settings.premise_tol)
        if rep is None:
            msg = "solver witness failed the float64 replay and could not be repaired"
        else:
            b = rep[1]
            upper = norm_of(b - x, norm)
            stats["repaired"] = rep[2]
    lower, upper, optimal = interval(upper, res.dual_bound, res.status.value == "optimal",
                                      settings)
    if res.status.value == "error":
        msg = msg or "solver error"
    return ResilienceResult("min_perturbation", lower, upper, optimal, True,
                            a_perturbed=tup(b), seconds=time.perf_counter() - t0,
                            message=msg, stats=stats, **common)


def delta_check(network, x: np.ndarray, label: int | None, delta: float, norm: str = "linf",
                k: int = 1, domain=None, *, settings: ResilienceSettings = DEFAULT,
                timeout: float | None = None) -> VerificationResult:
    """Local δ-robustness of Table 1: is some ``x + ε`` with ``||ε|| <= δ`` (in D) out of
    the label's top-k? HOLDS (paper: "inf") / VIOLATED with a replayed point ("feas") /
    UNKNOWN. Solved as the per-sample MIP restricted to the δ-ball, stopping at the
    first feasible point.
    """
    t0 = time.perf_counter()
    r = min_perturbation(network, x, label, norm, k, domain,
                         settings=settings.with_(mip_gap=1.0), timeout=timeout, radius=delta)
    if r.upper is not None and r.a_perturbed is not None and r.upper <= delta * (1 + 1e-9):
        net = network.merged()
        b = np.asarray(r.a_perturbed)
        return VerificationResult(Status.VIOLATED, Counterexample.from_arrays(b, net.forward(b)),
                                  engine="milp", seconds=time.perf_counter() - t0,
                                  stats=r.stats)
    if r.stats.get("solver_status") == "infeasible":
        return VerificationResult(Status.HOLDS, engine="milp", seconds=time.perf_counter() - t0,
                                  message=r.message, stats=r.stats)
    return VerificationResult(Status.UNKNOWN, engine="milp", seconds=time.perf_counter() - t0,
                              message=r.message or "time limit", stats=r.stats)


# ------------------------------------------------------------------ robustness tables
def _sample_task(item: tuple) -> ResilienceResult:
    network, x, label, norm, k, domain, settings, timeout = item
    return min_perturbation(network, x, label, norm, k, domain, settings=settings,
                            timeout=timeout)


def robustness_table(network, X: np.ndarray, labels=None, norm: str = "l1", k: int = 1,
                     domain=None, *, settings: ResilienceSettings = DEFAULT,
                     timeout: float | None = None, workers=None) -> list[ResilienceResult]:
    """Per-sample minimum perturbation of every row of ``X`` (in order), executor-parallel.

    ``labels`` default to the predicted classes; ``timeout`` is per sample.
    """
    from nnresilience.parallel import make_executor

    X = network.check_input(np.asarray(X, float))
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != X.shape[0]:
            raise InputDataError(f"{labels.size} labels for {X.shape[0]} samples")
    lo, hi = resolve_domain(network, domain)
    items = [(network, X[i], None if labels is None else int(labels[i]), norm, k, (lo, hi),
              settings, timeout) for i in range(X.shape[0])]
    out: list[ResilienceResult | None] = [None] * len(items)
    with make_executor(workers) as ex:
        for i, r in ex.map(_sample_task, items):
            out[i] = r
    if any(r is None for r in out):
        raise SolverFailure("a robustness task returned no result")
    return out  # type: ignore[return-value]
