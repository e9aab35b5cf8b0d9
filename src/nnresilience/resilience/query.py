"""Φ_m, Ξ, α_max and per-sample minimum perturbation (seed 000, §4 and MIP (6)).

Every answer is a :class:`~nnresilience.results.ResilienceResult` with an honest interval:
``lower`` is the solver's *proven* dual bound (``min(dual, upper)``, and 0 for a norm when
nothing better is proven), ``upper`` the norm of a witness pair that passed the float64
replay of :mod:`.replay` (None when no witness survived). ``optimal`` only when the two
meet within ``settings.opt_tol``.

Soundness caveats (also in docs/resilience.md): ``lower`` is proven for the MILP, which is
exact for ReLU / LeakyReLU / max-pool networks when the big-M values come from sound
bounds (interval, symbolic, milp:W); the ``uniform`` M = 1e4 of the paper's baseline is
only sound when every pre-activation stays within ±1e4. Arctan networks use the encoder's
relaxation, so their ``lower`` is a lower bound of the relaxed problem (Theorem 1: an
under-approximation) and still a valid lower bound.
"""


from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from nnresilience.resilience.common import (
    interval,
    remaining,
    resolve_domain,
    solve,
    solver_stats,
    tup,
)
from nnresilience.resilience.encode import (
    ResilienceMip,
    build_phi_mip,
    build_premise_mip,
    network_bounds,
)
from nnresilience.resilience.heuristics import pick_initial_input
from nnresilience.resilience.local import (  # noqa: F401 - re-exported
    delta_check,
    min_perturbation,
    robustness_table,
)
from nnresilience.resilience.replay import norm_of, premise_margin, replay_pair
from nnresilience.resilience.settings import DEFAULT, Query, ResilienceSettings
from nnresilience.results import ResilienceResult


# ------------------------------------------------------------------------------- α_max
def alpha_max(network, cls: int, domain=None, *, settings: ResilienceSettings = DEFAULT,
              timeout: float | None = None, bounds=None) -> ResilienceResult:
    """The largest ratio ``p_m / max_{j != m} p_j`` any input in D reaches.

    Solves ``max t s.t. t <= y_m - y_i`` over D; returns ``[lower, upper]`` =
    ``[exp(replayed margin of the witness), exp(proven dual bound)]``. ``lower`` may be
    < 1 (class m never wins anywhere in D).
    """
    t0 = time.perf_counter()
    net = network.merged()
    lo, hi = resolve_domain(network, domain)
    Query(cls, 1.0, 1, "l1", lo, hi).check_network(net.n_inputs, net.n_outputs)
    if bounds is None:
        bounds = network_bounds(net, lo, hi, settings, timeout)
    mip = build_premise_mip(net, cls, lo, hi, bounds, settings)
    res, backend = solve(mip, settings, remaining(t0, timeout))
    stats = solver_stats(res, backend, mip)
    stats["bounds_method"] = bounds.method
    a = None
    lower = None
    if res.x is not None:
        a = np.clip(res.x[mip.a], lo, hi)
        lower = math.exp(premise_margin(net.forward(a), cls))
    # The objective is -t: a dual bound D proves t* <= -D.
    t_up = None if res.dual_bound is None or not math.isfinite(res.dual_bound) \
        else -float(res.dual_bound)
    if t_up is None:
        others = np.delete(np.arange(net.n_outputs), cls)
        t_up = float(np.min(bounds.hi[-1][cls] - bounds.lo[-1][others]))
    upper = math.exp(min(t_up, 700.0))
    if lower is not None:
        upper = max(upper, lower)
    optimal = (lower is not None and res.status.value == "optimal"
               and upper - lower <= settings.opt_tol * max(1.0, upper))
    msg = ""
    if res.status.value == "infeasible":
        msg = "the premise MIP is infeasible (empty domain?)"
    return ResilienceResult("alpha_max", lower, upper, optimal, feasible=lower is not None,
                            cls=cls, a=tup(a), seconds=time.perf_counter() - t0,
                            message=msg, stats=stats)


# --------------------------------------------------------------------------------- Φ_m
def phi(network, cls: int, alpha: float = 1.0, k: int = 1, norm: str = "l1", domain=None, *,
        settings: ResilienceSettings = DEFAULT, timeout: float | None = None,
        data: np.ndarray | None = None, bounds=None) -> ResilienceResult:
    """Φ_m of Definition 1 by MIP (6): the smallest ``||ε||`` such that some ``a`` in D with
    ``p_m(a) >= alpha p_j(a)`` (all j != m) has ``a + ε`` in D and m not in the top-k.

    ``data`` (optional rows of inputs) feeds heuristic 3 when ``settings.warm_start``.
    Infeasible premise (``alpha > alpha_max``) gives ``feasible=False`` with a message.
    """
    t0 = time.perf_counter()
    net = network.merged()
    lo, hi = resolve_domain(network, domain)
    q = Query(int(cls), float(alpha), int(k), norm, lo, hi)
    q.check_network(net.n_inputs, net.n_outputs)
    if bounds is None:
        bounds = network_bounds(net, lo, hi, settings, timeout)
    stats: dict[str, Any] = {"bounds_method": bounds.method, "bounds_seconds": bounds.seconds}
    common = dict(cls=q.cls, alpha=q.alpha, k=q.k, norm=norm)

    prep = None
    if settings.uses_differential:  # [diff hook] two-copy analysis (resilience/diff_plan.py)
        from nnresilience.resilience.diff_plan import prepare_phi, start_from_pair

        prep = prepare_phi(net, q, bounds, settings, data, t0, timeout)
        stats.update(prep.stats)
        if prep.vacuous or prep.unreachable:
            return _infeasible_phi(network, q, settings, bounds, t0, timeout, stats, common)
    ini = None
    if settings.warm_start:
        ini = _initial_pair(net, q, bounds, settings, data, t0, timeout, stats)
    mip = build_phi_mip(net, q.cls, q.log_alpha, q.k, norm, lo, hi, bounds, settings,
                        diff=None if prep is None else prep.plan)
    if ini is not None:
        a0, b0, phi0 = ini
        _set_start(mip, net, a0, b0, q.cls, norm)
        n = mip.cost.size
        mip.model.add_terms(np.zeros(n, np.int64), mip.cost, np.ones(n), 1, -np.inf,
                            phi0 * (1 + 1e-7) + 1e-7)
    elif prep is not None:  # [diff hook]
        start_from_pair(mip, net, prep, q.cls, norm)
    mip_time = remaining(t0, timeout)
    if prep is not None:  # [diff hook] leave time for branching
        mip_time = prep.mip_time(mip_time, settings)
    res, backend = solve(mip, settings, mip_time)
    stats.update(solver_stats(res, backend, mip))
    has_pair = ini is not None or (prep is not None and prep.pair is not None)  # [diff hook]

    if res.status.value == "infeasible" and not has_pair:
        return _infeasible_phi(network, q, settings, bounds, t0, timeout, stats, common)
    a = b = None
    upper = None
    msg = ""
    if res.x is not None:
        rep = replay_pair(net, res.x[mip.a], res.x[mip.b], q.cls, q.log_alpha, q.k, lo, hi,
                          settings.premise_tol)
        if rep is None:
            msg = "solver witness failed the float64 replay and could not be repaired"
        else:
            a, b, stats["repaired"] = rep
            upper = norm_of(b - a, norm)
    if ini is not None and (upper is None or ini[2] < upper):
        a, b, upper = ini
        stats["witness_from"] = "heuristic3"
    dual = res.dual_bound
    if res.status.value == "infeasible" and has_pair:
        # The replayed warm-start pair satisfies every row, so "infeasible" is numerical
        # trouble: nothing is proven.
        dual = None
        msg = msg or "solver reported infeasible despite a feasible warm start (numerics)"
    lower, upper, optimal = interval(upper, dual, res.status.value == "optimal", settings)
    if prep is not None:  # [diff hook] attack pair, certified bound, branching
        from nnresilience.resilience.diff_plan import finish_phi

        a, b, upper, lower, closed = finish_phi(net, q, settings, prep, a, b, upper, lower,
                                                t0, timeout, stats)
        optimal = optimal or closed
    if upper is None and not msg:
        msg = f"no witness found within the limits (solver: {res.status.value})"
    return ResilienceResult("phi", lower, upper, optimal, True, a=tup(a), a_perturbed=tup(b),
                            seconds=time.perf_counter() - t0, message=msg, stats=stats,
                            **common)


def _infeasible_phi(network, q: Query, settings, bounds, t0, timeout, stats, common
                    ) -> ResilienceResult:
    """MIP (6) infeasible: either no confident input (alpha > alpha_max) or no flip in D."""
    am = alpha_max(network, q.cls, (q.lo, q.hi), settings=settings,
                   timeout=remaining(t0, timeout), bounds=bounds)
    stats["alpha_max_lower"], stats["alpha_max_upper"] = am.lower, am.upper
    if am.lower is None or q.alpha > am.lower * (1 + 1e-9):
        lo_s = "?" if am.lower is None else f"{am.lower:.6g}"
        text = (f"{am.upper:.6g}" if am.optimal else f"in [{lo_s}, {am.upper:.6g}]")
        msg = (f"no input in the domain reaches confidence ratio alpha={q.alpha:g} for class "
               f"{q.cls} (alpha_max = {text})")
        return ResilienceResult("phi", None, None, False, False,
                                seconds=time.perf_counter() - t0, message=msg, stats=stats,
                                **common)
    msg = (f"no perturbation inside the domain takes class {q.cls} out of the top-{q.k}: "
           "Phi = +inf")
    return ResilienceResult("phi", math.inf, math.inf, True, True,
                            seconds=time.perf_counter() - t0, message=msg, stats=stats,
                            **common)


def _initial_pair(net, q: Query, bounds, settings: ResilienceSettings, data, t0, timeout,
                  stats) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Heuristic 3: a_ini (data, else the premise MIP), then Φ_ini at a_ini."""
    t1 = time.perf_counter()
    a0 = pick_initial_input(net, data, q.cls, q.log_alpha, q.lo, q.hi, settings.ini_pick,
                            settings.premise_tol)
    stats["ini_source"] = "data" if a0 is not None else "premise_mip"
    if a0 is None:
        mip = build_premise_mip(net, q.cls, q.lo, q.hi, bounds, settings,
                                min_margin=q.log_alpha)
        lim = settings.ini_timeout if timeout is None else min(settings.ini_timeout,
                                                              remaining(t0, timeout))
        res, _ = solve(mip, settings, lim, stop_first=True)
        if res.x is None:
            stats["ini_seconds"] = time.perf_counter() - t1
            return None
        a0 = np.clip(res.x[mip.a], q.lo, q.hi)
        if premise_margin(net.forward(a0), q.cls) < q.log_alpha - settings.premise_tol:
            stats["ini_seconds"] = time.perf_counter() - t1
            return None
    lim = settings.ini_timeout if timeout is None else min(settings.ini_timeout,
                                                          remaining(t0, timeout))
    r = min_perturbation(net, a0, q.cls, q.norm, q.k, (q.lo, q.hi),
                         settings=settings.with_(warm_start=False), timeout=lim)
    stats["ini_seconds"] = time.perf_counter() - t1
    stats["phi_ini"] = r.upper
    if r.upper is None or r.a_perturbed is None:
        return None
    return a0, np.asarray(r.a_perturbed), float(r.upper)


def _set_start(mip: ResilienceMip, net, a: np.ndarray, b: np.ndarray, m: int, norm: str
               ) -> None:
    """Partial MIP start: inputs, norm variables and top-k selectors (the solver completes
    the neuron variables, which are determined by the inputs)."""
    model = mip.model
    model.set_start(mip.a, a)
    model.set_start(mip.b, b)
    eps = np.abs(b - a)
    model.set_start(mip.cost, eps if norm == "l1" else np.array([eps.max(initial=0.0)]))
    y = net.forward(b)
    others = np.delete(np.arange(y.size), m)
    model.set_start(mip.c, (y[others] >= y[m]).astype(float))


# ----------------------------------------------------------------------------------- Ξ
def _phi_task(item: tuple) -> ResilienceResult:
    """Executor task (top-level, picklable): one class of Ξ."""
    network, cls, alpha, k, norm, domain, settings, timeout, data = item
    return phi(network, cls, alpha, k, norm, domain, settings=settings, timeout=timeout,
               data=data)


def phi_many(network, classes, alpha: float = 1.0, k: int = 1, norm: str = "l1", domain=None,
             *, settings: ResilienceSettings = DEFAULT, timeout: float | None = None,
             data: np.ndarray | None = None, workers=None) -> list[ResilienceResult]:
    """Φ_m for several classes through the executor (one task per class)."""
    from nnresilience.parallel import make_executor

    lo, hi = resolve_domain(network, domain)
    classes = [int(c) for c in classes]
    items = [(network, c, alpha, k, norm, (lo, hi), settings, timeout, data) for c in classes]
    out: list[ResilienceResult | None] = [None] * len(items)
    with make_executor(workers) as ex:
        for i, r in ex.map(_phi_task, items):
            out[i] = r
    return [r for r in out if r is not None]


def xi(network, alpha: float = 1.0, k: int = 1, norm: str = "l1", domain=None, *,
       classes=None, settings: ResilienceSettings = DEFAULT, timeout: float | None = None,
       data: np.ndarray | None = None, workers=None) -> ResilienceResult:
    """Ξ = min_m Φ_m (Definition 2) with the argmin class.

    Classes whose premise is infeasible (alpha > alpha_max) are vacuous (Φ_m = +inf) and
    drop out. ``lower = min`` of the proven lowers, ``upper = min`` of the witnessed
    uppers; the witness pair is the one of the class attaining the upper.
    """
    t0 = time.perf_counter()
    if classes is None:
        classes = range(network.n_outputs)
    # [diff hook] with branching, the classes' pieces share one queue after the MIPs
    per = phi_many(network, classes, alpha, k, norm, domain,
                   settings=settings.with_(branching=0) if settings.branching else settings,
                   timeout=timeout, data=data, workers=workers)
    feas = [r for r in per if r.feasible]
    stats = {"per_class": [r.to_dict() for r in per]}
    if not feas:
        return ResilienceResult("xi", None, None, False, False, alpha=alpha, k=k, norm=norm,
                                seconds=time.perf_counter() - t0, stats=stats,
                                message="no class has an input reaching confidence ratio "
                                        f"alpha={alpha:g}")
    lower = min(r.lower if r.lower is not None else 0.0 for r in feas)
    with_up = [r for r in feas if r.upper is not None]
    best = min(with_up, key=lambda r: (r.upper, r.lower)) if with_up else \
        min(feas, key=lambda r: r.lower or 0.0)
    upper = best.upper if with_up else None
    # Ξ is pinned down when the argmin class is optimal and no other class can go below it.
    tol = settings.opt_tol * max(1.0, upper or 0.0)
    optimal = bool(upper is not None and best.optimal
                   and all(r.lower is not None and r.lower >= upper - tol
                           for r in feas if r is not best))
    cls, a_best, b_best = best.cls, best.a, best.a_perturbed
    if settings.branching and not optimal and upper is not None:  # [diff hook]
        from nnresilience.resilience.diff_plan import refine_xi

        lower, upper, cls, a_best, b_best, optimal = refine_xi(
            network, feas, alpha, k, norm, domain, settings, timeout, workers, lower,
            upper, cls, a_best, b_best, stats)
    return ResilienceResult("xi", lower, upper, optimal, True, cls=cls, alpha=alpha, k=k,
                            norm=norm, a=a_best, a_perturbed=b_best,
                            seconds=time.perf_counter() - t0, stats=stats)


