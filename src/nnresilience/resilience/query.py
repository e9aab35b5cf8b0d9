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
from dataclasses import replace
from typing import Any

import numpy as np

from nnresilience.errors import InputDataError, ShapeMismatchError, SolverFailure
from nnresilience.resilience.encode import (
    ResilienceMip,
    build_local_mip,
    build_phi_mip,
    build_premise_mip,
    network_bounds,
)
from nnresilience.resilience.heuristics import pick_initial_input
from nnresilience.resilience.replay import norm_of, premise_margin, replay_pair
from nnresilience.resilience.settings import DEFAULT, Query, ResilienceSettings
from nnresilience.results import Counterexample, ResilienceResult, Status, VerificationResult


# ----------------------------------------------------------------------------- helpers
def resolve_domain(network, domain) -> tuple[np.ndarray, np.ndarray]:
    """``domain`` as ``(lo, hi)`` float arrays of the input size; scalars broadcast.

    ``None`` falls back to the network's own input domain (NNet files carry one).
    """
    n = network.n_inputs
    if domain is None:
        if network.input_lo is None or network.input_hi is None:
            raise InputDataError("no input domain: give domain=(lo, hi) / --domain LO:HI")
        return network.input_lo.copy(), network.input_hi.copy()
    if hasattr(domain, "lo") and hasattr(domain, "hi"):
        domain = (domain.lo, domain.hi)
    lo, hi = domain
    try:
        lo = np.broadcast_to(np.asarray(lo, float).reshape(-1) if np.ndim(lo) else
                             np.asarray(lo, float), (n,)).copy()
        hi = np.broadcast_to(np.asarray(hi, float).reshape(-1) if np.ndim(hi) else
                             np.asarray(hi, float), (n,)).copy()
    except ValueError:
        raise ShapeMismatchError(f"domain bounds do not match the {n} network inputs") \
            from None
    return lo, hi


def _solve(mip: ResilienceMip, settings: ResilienceSettings, timeout: float | None,
           stop_first: bool = False):
    from nnresilience.backends.base import SolveLimits
    from nnresilience.backends.registry import get_backend

    backend = get_backend(settings.backend)
    limits = SolveLimits(time_limit=timeout, threads=settings.threads, mip_gap=settings.mip_gap,
                         stop_at_first_solution=stop_first, use_priorities=settings.priorities,
                         use_start=True)
    res = backend.solve(mip.model.arrays(), limits)
    return res, getattr(backend, "name", type(backend).__name__)


def _remaining(t0: float, timeout: float | None, floor: float = 0.5) -> float | None:
    if timeout is None:
        return None
    return max(floor, timeout - (time.perf_counter() - t0))


def _tup(x: np.ndarray | None) -> tuple[float, ...] | None:
    return None if x is None else tuple(float(v) for v in np.asarray(x).ravel())


def _solver_stats(res, backend: str, mip: ResilienceMip) -> dict[str, Any]:
    st = {"solver_status": res.status.value, "backend": backend,
          "solver_objective": res.objective, "dual_bound": res.dual_bound,
          "solve_seconds": res.seconds, "build_seconds": mip.seconds,
          "n_binaries": mip.n_binaries, "n_vars": mip.model.n_vars, "n_rows": mip.model.n_rows,
          **mip.stats}
    for key, val in (res.stats or {}).items():
        if isinstance(val, (int, float, str, bool)) or val is None:
            st[f"solver_{key}"] = val
    return st


def _interval(upper: float | None, dual: float | None, status_optimal: bool,
              settings: ResilienceSettings) -> tuple[float, float | None, bool]:
    """``(lower, upper, optimal)`` of a norm (>= 0) from a witness norm and a dual bound."""
    lower = 0.0 if dual is None or not math.isfinite(dual) else max(0.0, float(dual))
    if upper is not None:
        lower = min(lower, upper)
    optimal = (upper is not None and status_optimal
               and upper - lower <= settings.opt_tol * max(1.0, upper))
    return lower, upper, optimal


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
    res, backend = _solve(mip, settings, _remaining(t0, timeout))
    stats = _solver_stats(res, backend, mip)
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
                            cls=cls, a=_tup(a), seconds=time.perf_counter() - t0,
                            message=msg, stats=stats)


# ------------------------------------------------------------------- per-sample query
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
                           cls=m, a_perturbed=_tup(hit), message="")
        else:
            best = replace(best, lower=0.0, optimal=False)
    else:
        best = _min_perturbation_once(network, x, label, norm, k, domain, settings,
                                      first_limit, None, stop_first=True)
    if best.upper is None or not math.isfinite(best.upper):
        if best.upper is None and best.lower != math.inf:
            best = _min_perturbation_once(network, x, label, norm, k, domain, settings,
                                          _remaining(t0, timeout), None)
        return replace(best, seconds=time.perf_counter() - t0)
    decide = settings.with_(mip_gap=1.0)
    lower = max(0.0, best.lower or 0.0)
    steps = 0

    def closed() -> bool:
        return best.upper - lower <= settings.opt_tol * max(1.0, best.upper)

    while not closed() and steps < 40:
        rest = _remaining(t0, timeout, floor=0.0)
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
        rest = _remaining(t0, timeout, floor=0.0)
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
    res, backend = _solve(mip, settings, _remaining(t0, timeout), stop_first=stop_first)
    stats = _solver_stats(res, backend, mip)
    stats.update(bounds_method=bounds.method, bounds_seconds=bounds.seconds,
                 predicted=pred, correctly_classified=pred == m)
    common = dict(cls=m, k=k, norm=norm, a=_tup(x))
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
    lower, upper, optimal = _interval(upper, res.dual_bound, res.status.value == "optimal",
                                      settings)
    if res.status.value == "error":
        msg = msg or "solver error"
    return ResilienceResult("min_perturbation", lower, upper, optimal, True,
                            a_perturbed=_tup(b), seconds=time.perf_counter() - t0,
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

    ini = None
    if settings.warm_start:
        ini = _initial_pair(net, q, bounds, settings, data, t0, timeout, stats)
    mip = build_phi_mip(net, q.cls, q.log_alpha, q.k, norm, lo, hi, bounds, settings)
    if ini is not None:
        a0, b0, phi0 = ini
        _set_start(mip, net, a0, b0, q.cls, norm)
        n = mip.cost.size
        mip.model.add_terms(np.zeros(n, np.int64), mip.cost, np.ones(n), 1, -np.inf,
                            phi0 * (1 + 1e-7) + 1e-7)
    res, backend = _solve(mip, settings, _remaining(t0, timeout))
    stats.update(_solver_stats(res, backend, mip))

    if res.status.value == "infeasible" and ini is None:
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
    if res.status.value == "infeasible" and ini is not None:
        # The replayed warm-start pair satisfies every row, so "infeasible" is numerical
        # trouble: nothing is proven.
        dual = None
        msg = msg or "solver reported infeasible despite a feasible warm start (numerics)"
    lower, upper, optimal = _interval(upper, dual, res.status.value == "optimal", settings)
    if upper is None and not msg:
        msg = f"no witness found within the limits (solver: {res.status.value})"
    return ResilienceResult("phi", lower, upper, optimal, True, a=_tup(a), a_perturbed=_tup(b),
                            seconds=time.perf_counter() - t0, message=msg, stats=stats,
                            **common)


def _infeasible_phi(network, q: Query, settings, bounds, t0, timeout, stats, common
                    ) -> ResilienceResult:
    """MIP (6) infeasible: either no confident input (alpha > alpha_max) or no flip in D."""
    am = alpha_max(network, q.cls, (q.lo, q.hi), settings=settings,
                   timeout=_remaining(t0, timeout), bounds=bounds)
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
                                                              _remaining(t0, timeout))
        res, _ = _solve(mip, settings, lim, stop_first=True)
        if res.x is None:
            stats["ini_seconds"] = time.perf_counter() - t1
            return None
        a0 = np.clip(res.x[mip.a], q.lo, q.hi)
        if premise_margin(net.forward(a0), q.cls) < q.log_alpha - settings.premise_tol:
            stats["ini_seconds"] = time.perf_counter() - t1
            return None
    lim = settings.ini_timeout if timeout is None else min(settings.ini_timeout,
                                                          _remaining(t0, timeout))
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
    per = phi_many(network, classes, alpha, k, norm, domain, settings=settings,
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
    return ResilienceResult("xi", lower, upper, optimal, True, cls=best.cls, alpha=alpha, k=k,
                            norm=norm, a=best.a, a_perturbed=best.a_perturbed,
                            seconds=time.perf_counter() - t0, stats=stats)


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
