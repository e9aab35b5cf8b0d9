"""Φ_m, Ξ, α_max and per-sample minimum perturbation (seed 000, §4 and MIP (6)).

Every answer is a :class:`~nnresilience.results.ResilienceResult` with an honest interval
(the contract of docs/resilience.md):

* ``upper`` is the norm of a witness pair that replays **exactly** in float64
  (:mod:`.replay`: premise margin ``>= ln α`` and the top-k flip, no slack), or None;
* ``lower`` is the certified dual bound (:mod:`nnresilience.backends.certify`) of the
  **relaxed** problem, whose premise and flip rows are loosened by the solver-tolerance
  margin ``τ``, so the solver's tolerances cannot cut off the true optimum;
* ``optimal`` only when they meet within ``settings.opt_tol``.

When the relaxed problem's witness fails the exact replay (and its repair), a witness is
sought in the *tightened* problem (premise ``>= ln α + τ``, flip by ``τ``) with the time
left. The solver runs with its tolerances divided by ``settings.tolerance_factor``
(1000: ``τ`` is 1000× smaller than at the defaults). "No input reaches α" and
"Φ = +inf" are only said from certified margin problems, never from an "infeasible".

Soundness caveats (also in docs/resilience.md): the MILP is exact for ReLU / LeakyReLU /
max-pool networks; every big-M comes from sound bounds or is checked against them (a
uniform M that is too small raises). S-shaped activations are relaxed, so ``lower``
bounds the relaxed problem (Theorem 1's under-approximation) and stays valid.
"""


from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnresilience.encode.milp import network_start
from nnresilience.resilience.common import (
    Clock,
    Progress,
    check_backend,
    decide,
    is_optimal,
    norm_lower,
    polish,
    ratio_lower,
    ratio_upper,
    resolve_domain,
    solve_certified,
    solve_relaxed,
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
from nnresilience.resilience.labels import labelled
from nnresilience.resilience.local import (  # noqa: F401 - re-exported
    delta_check,
    min_perturbation,
    robustness_table,
)
from nnresilience.resilience.replay import norm_of, premise_margin, replay_pair
from nnresilience.resilience.settings import DEFAULT, Query, ResilienceSettings
from nnresilience.resilience.units import run_units
from nnresilience.results import ResilienceResult, Status


# ------------------------------------------------------------------------------- α_max
def _premise_margin(net, cls: int, lo, hi, bounds, settings: ResilienceSettings,
                    clock: Clock, stats: dict, source=None
                    ) -> tuple[float, float, np.ndarray]:
    """``(witness margin, certified upper bound of the max margin, witness a)``.

    The premise MIP maximises ``t <= y_m - y_i`` over D with those rows loosened by ``τ``;
    its certified dual bound bounds the true maximum from above. Without a certified
    bound the output bounds give one (sound, looser). The witness margin is the exact
    float64 ``min_j (y_m - y_j)`` of the best point found, replayed alone through
    ``source`` (the user's network; ``net`` is its merged copy): the batch forward pass
    of the merged net that ranks the candidates differs from that replay in the last
    bits, which at logits of 1e7 put α_max's lower 3.7e-9 (relative) above what its
    witness reaches.
    """
    others = np.delete(np.arange(net.n_outputs), cls)
    t_up = float(np.min(bounds.hi[-1][cls] - bounds.lo[-1][others]))
    # any input is a witness of its own margin: the best of a few samples is a lower end
    # even when the solver finds no point in time, and the MIP starts from it
    rng = np.random.default_rng(0)
    P = np.vstack([(lo + hi) / 2.0, rng.uniform(lo, hi, size=(255, lo.size))])
    Y = net.forward(P)
    marg = Y[:, cls] - Y[:, others].max(axis=1)
    j = int(np.argmax(marg))
    a, best = P[j], float(marg[j])
    mip = build_premise_mip(net, cls, lo, hi, bounds, settings)
    if mip.enc is not None:
        network_start(mip.model, mip.enc, net, a)
    sol = solve_relaxed(mip, settings, clock, heartbeat=clock.beat("mip"), attained=-best)
    if sol is not None:
        stats.update(solver_stats(sol, mip))
        if not sol.cert.failed and math.isfinite(sol.cert.lower):
            t_up = min(t_up, -sol.cert.lower)
        if sol.x is not None:
            cand = np.clip(sol.x[mip.a], lo, hi)
            got = premise_margin(net.forward(cand), cls)
            if got > best:
                a, best = cand, got
    best = premise_margin((net if source is None else source).forward(np.asarray(a, float)),
                          cls)
    t_up = max(t_up, best)
    return best, t_up, a


@labelled
def alpha_max(network, cls: int, domain=None, *, settings: ResilienceSettings = DEFAULT,
              timeout: float | None = None, bounds=None,
              progress: Progress | None = None) -> ResilienceResult:
    """The largest ratio ``p_m / max_{j != m} p_j`` any input in D reaches.

    ``[lower, upper] = [exp(exact margin of the witness), exp(certified bound of the
    relaxed premise MIP)]``. ``lower`` may be < 1 (class m never wins anywhere in D).
    """
    clock = Clock(timeout, progress, int(cls))
    net = network.merged()
    lo, hi = resolve_domain(network, domain)
    Query(cls, 1.0, 1, "l1", lo, hi).check_network(net.n_inputs, net.n_outputs)
    clock.report("bounds")
    if bounds is None:
        bounds = network_bounds(net, lo, hi, settings, clock.share(settings.bounds_share))
    stats: dict[str, Any] = {"bounds_method": bounds.method}
    clock.report("mip")
    marg, t_up, a = _premise_margin(net, cls, lo, hi, bounds, settings, clock, stats,
                                    source=network)
    lower = ratio_lower(marg)
    upper = ratio_upper(t_up)
    optimal = is_optimal(lower, upper, settings)
    clock.report("done", lower, upper)
    return ResilienceResult("alpha_max", lower, upper, optimal, feasible=lower is not None,
                            cls=cls, a=tup(a), seconds=clock.elapsed(), stats=stats)


# --------------------------------------------------------------------------------- Φ_m
#: Below this timeout (s) a Φ_m call skips the two-copy analysis: its fixed cost (~0.2 s
#: on a cold process, imports included) would eat the MIP's time, which on the small
#: queries such budgets are given for closes the interval alone.
DIFF_MIN_TIMEOUT = 1.0


@labelled
def phi(network, cls: int, alpha: float = 1.0, k: int = 1, norm: str = "l1", domain=None, *,
        settings: ResilienceSettings = DEFAULT, timeout: float | None = None,
        data: np.ndarray | None = None, bounds=None,
        progress: Progress | None = None) -> ResilienceResult:
    """Φ_m of Definition 1 by MIP (6): the smallest ``||ε||`` such that some ``a`` in D with
    ``p_m(a) >= alpha p_j(a)`` (all j != m) has ``a + ε`` in D and m not in the top-k.

    ``data`` (optional rows of inputs) feeds heuristic 3 when ``settings.warm_start``.
    If no input reaches ``alpha`` (proven), ``feasible=False`` with a message. ``progress``
    is called with small dicts at each stage (keys in docs/resilience.md).
    """
    clock = Clock(timeout, progress, int(cls))
    net = network.merged()
    lo, hi = resolve_domain(network, domain)
    q = Query(int(cls), float(alpha), int(k), norm, lo, hi)
    q.check_network(net.n_inputs, net.n_outputs)
    check_backend(norm, settings, net)
    clock.report("bounds")
    if bounds is None:
        bounds = network_bounds(net, lo, hi, settings, clock.share(settings.bounds_share))
    stats: dict[str, Any] = {"bounds_method": bounds.method, "bounds_seconds": bounds.seconds}
    common = dict(cls=q.cls, alpha=q.alpha, k=q.k, norm=norm)

    prep = None
    # [diff hook] two-copy analysis (resilience/diff_plan.py), when the call has the time
    if settings.uses_differential and (timeout is None or timeout >= DIFF_MIN_TIMEOUT):
        from nnresilience.resilience.diff_plan import prepare_phi, settle_by_diff

        clock.report("differential")
        prep = prepare_phi(net, q, bounds, settings, data, clock.t0, timeout)
        stats.update(prep.stats)
        settled = settle_by_diff(prep, q, clock, stats, common)
        if settled is not None:
            return settled
    ini = None
    if settings.warm_start:
        clock.report("warm_start")
        ini = _initial_pair(net, q, bounds, settings, data, clock, stats)
        if ini is not None:
            stats["witness_from"] = "heuristic3"
    mip_clock = clock if prep is None else prep.mip_clock(clock, settings)  # [diff hook]
    lower, best, sol = _phi_solve(net, q, bounds, settings, mip_clock, stats, ini=ini,
                                  prep=prep)
    msg = ""
    if sol is not None and sol.cert.failed and best is None:
        # the relaxed MIP (6) was reported infeasible: only certified margins decide
        settled = _settle_empty(network, net, q, bounds, settings, clock, stats, common)
        if settled is not None:
            return settled
        msg = "the solver reported MIP (6) infeasible, which is not trusted; " \
              "nothing certified within the limits"
    if prep is not None:  # [diff hook] certified differential bound, branching
        from nnresilience.resilience.diff_plan import finish_phi

        best, lower = finish_phi(net, q, settings, prep, best, lower, clock, stats)
    upper = None if best is None else best[2]
    if upper is not None:
        lower = min(lower, upper)
    optimal = is_optimal(lower, upper, settings)
    if upper is None and not msg:
        msg = (f"no witness replays exactly within the limits (solver: "
               f"{'not run' if sol is None else sol.status})")
    clock.report("done", lower, upper)
    return ResilienceResult("phi", lower, upper, optimal, True,
                            a=None if best is None else tup(best[0]),
                            a_perturbed=None if best is None else tup(best[1]),
                            seconds=clock.elapsed(), message=msg, stats=stats, **common)


def _phi_solve(net, q: Query, bounds, settings: ResilienceSettings, clock: Clock, stats: dict,
               *, ini=None, a_box=None, cutoff: float | None = None, prep=None):
    """The staged solve of MIP (6): ``(lower, best witness (a, b, norm) or None, first sol)``.

    1. the *relaxed* problem (premise and flip rows loosened by ``τ``): its certified dual
       bound is ``lower``, its point (replayed exactly, repaired if needed) a witness, and
       its activation pattern, solved exactly as an LP (:func:`~.common.polish`), another;
    2. if the interval is still open: the *tightened* problem (rows moved by ``τ`` the
       other way): its points replay exactly, so it supplies a witness when the relaxed
       one failed (issue 11, item 1: a margin peaking at ``ln α - 5e-7``).
    ``a_box`` restricts the unperturbed point to a sub-box, ``cutoff`` is an objective
    cutoff (a divided search's best upper); ``ini`` a warm-start witness (heuristic 3).
    ``prep`` (:class:`~.diff_plan.DiffPrep`, optional): the two-copy analysis: its pair
    (replayed exactly) is a witness and the full MIP start, its plan adds the radius row,
    copy 2's bounds and the cut to both problems; the relaxed problem's bound is used only
    when the plan's rows are valid for it (:meth:`~.diff_plan.DiffPrep.rows_valid`).
    """
    best = ini
    pair = None if prep is None else prep.pair

    def offer(pair, source: str) -> None:
        nonlocal best
        if pair is not None and (best is None or pair[2] < best[2]):
            best = pair
            stats["witness_from"] = source

    def upper_now() -> float | None:
        return None if best is None else best[2]

    def build(shift: float = 0.0) -> ResilienceMip:
        mip = build_phi_mip(net, q.cls, q.log_alpha, q.k, q.norm, q.lo, q.hi, bounds,
                            settings, premise_shift=shift, flip_shift=shift,
                            diff=None if prep is None else prep.plan)
        if a_box is not None:
            mip.model.set_bounds(mip.a, np.asarray(a_box[0], float), np.asarray(a_box[1], float))
        if pair is not None and (ini is None or pair[2] <= ini[2]):
            # [diff hook] the attack's pair as a complete start (both copies' columns)
            from nnresilience.resilience.diff_plan import start_from_pair

            start_from_pair(mip, net, prep, q.cls, q.norm)
        elif ini is not None:
            _set_start(mip, net, ini[0], ini[1], q.cls, q.norm)
        if ini is not None:
            phi0 = ini[2]
            n = mip.cost.size
            # a real witness: the optimum is <= phi0, so this row cuts off nothing (a
            # little slack keeps it clear of the solver's tolerance)
            mip.model.add_terms(np.zeros(n, np.int64), mip.cost, np.ones(n), 1, -np.inf,
                                phi0 * (1 + 1e-6) + 1e-6)
        return mip

    lower = 0.0
    offer(pair, "pair_attack")          # [diff hook] replayed exactly by the attack
    # a known witness attains its norm in the relaxed problem: a bound above it is void
    attained = None if best is None else best[2] * (1 + 1e-6) + 1e-6
    mip = build()
    if prep is not None:  # [diff hook] rows that need more loosening than tau: dropped
        from nnresilience.resilience.diff_plan import fit_plan

        if fit_plan(prep, mip, settings, stats):
            mip = build()
    clock.report("mip", lower, upper_now())
    sol = solve_relaxed(mip, settings, clock, cutoff=cutoff,
                        heartbeat=clock.beat("mip", lower, upper_now()), attained=attained)
    if sol is None:
        return lower, best, None
    stats.update(solver_stats(sol, mip))
    offer(_phi_witness(net, q, sol, mip), "relaxed")
    # [diff hook] the plan's cut / flip rows hold on the relaxed problem (loosened by
    # τ and the float slack) only up to their own relaxation
    valid = prep is None or prep.rows_valid(sol.tau + mip.float_slack, stats)
    if not sol.cert.failed and valid:
        lower = max(lower, norm_lower(sol.cert))
    if upper_now() is None or upper_now() - lower > 1e-9 * max(1.0, upper_now()):
        # the relaxed point's activation pattern, solved exactly: a sharper witness
        pol = polish(mip, sol, settings, clock)
        if pol is not None:
            offer(_phi_witness(net, q, pol, mip), "pattern")
    if not sol.cert.failed and not is_optimal(max(lower, 0.0 if prep is None else prep.lower),
                                              upper_now(), settings) \
            and clock.can_solve():
        # no exact witness (or a poor one): the tightened problem's points replay
        clock.report("tightened", lower, upper_now())
        mip_t = build(sol.tau)
        sol_t = solve_certified(mip_t, settings, clock.left(), relax=False,
                                tighten=sol.factor, cutoff=cutoff,
                                heartbeat=clock.beat("tightened", lower, upper_now()))
        stats["tightened_status"] = sol_t.status
        offer(_phi_witness(net, q, sol_t, mip_t), "tightened")
    return lower, best, sol


def _phi_witness(net, q: Query, sol, mip: ResilienceMip
                 ) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The solver point as an exactly replayed pair ``(a, b, ||b - a||)`` (after repair)."""
    if sol.x is None:
        return None
    rep = replay_pair(net, sol.x[mip.a], sol.x[mip.b], q.cls, q.log_alpha, q.k, q.lo, q.hi)
    if rep is None:
        return None
    a, b, _ = rep
    return a, b, norm_of(b - a, q.norm)


def _settle_empty(network, net, q: Query, bounds, settings, clock: Clock, stats, common
                  ) -> ResilienceResult | None:
    """MIP (6) reported infeasible: decide between "no confident input" and "no flip in D"
    by certified margin problems; None when neither is certified."""
    from nnresilience.spec.condition import not_in_top_k
    from nnresilience.spec.property import Case
    from nnresilience.spec.region import InputRegion

    clock.report("premise")
    marg, t_up, _ = _premise_margin(net, q.cls, q.lo, q.hi, bounds, settings, clock, {},
                                    source=network)
    stats["alpha_max_upper"] = ratio_upper(t_up)
    stats["alpha_max_lower"] = ratio_lower(marg)
    if t_up < q.log_alpha:
        text = f"alpha_max <= {ratio_upper(t_up):.6g}"
        if marg is not None:
            text = f"alpha_max in [{ratio_lower(marg):.6g}, {ratio_upper(t_up):.6g}]"
        return ResilienceResult("phi", None, None, False, False, seconds=clock.elapsed(),
                                message=f"no input in the domain reaches confidence ratio "
                                        f"alpha={q.alpha:g} for class {q.cls} ({text})",
                                stats=stats, **common)
    if not clock.can_solve():
        return None
    clock.report("flip")
    case = Case(InputRegion(q.lo, q.hi), not_in_top_k(q.cls, q.k, net.n_outputs))
    ans = decide(net, case, bounds, settings, clock.left())
    stats["flip_check"] = ans.status.value
    if ans.status is Status.HOLDS:
        return ResilienceResult("phi", math.inf, math.inf, True, True,
                                seconds=clock.elapsed(), stats=stats,
                                message=f"no perturbation inside the domain takes class "
                                        f"{q.cls} out of the top-{q.k}: Phi = +inf",
                                **common)
    return None


def _initial_pair(net, q: Query, bounds, settings: ResilienceSettings, data, clock: Clock,
                  stats) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Heuristic 3: a_ini (data, else the premise MIP), then Φ_ini at a_ini; the pair is a
    witness (both points replay exactly) or None."""
    from nnresilience.resilience.replay import premise_ok, repair_premise

    t1 = clock.elapsed()
    a0 = pick_initial_input(net, data, q.cls, q.log_alpha, q.lo, q.hi, settings.ini_pick)
    stats["ini_source"] = "data" if a0 is not None else "premise_mip"

    def limit() -> float | None:
        left = clock.left()
        return settings.ini_timeout if left is None else min(settings.ini_timeout, left)

    if a0 is None:
        if not clock.can_solve():
            return None
        mip = build_premise_mip(net, q.cls, q.lo, q.hi, bounds, settings,
                                min_margin=q.log_alpha)
        sol = solve_certified(mip, settings, limit(), relax=False, stop_first=True)
        if sol.x is None:
            stats["ini_seconds"] = clock.elapsed() - t1
            return None
        a0 = np.clip(sol.x[mip.a], q.lo, q.hi)
        if not premise_ok(net, a0, q.cls, q.log_alpha):
            a0 = repair_premise(net, a0, a0, q.cls, q.log_alpha, q.lo, q.hi)
            if a0 is None:
                stats["ini_seconds"] = clock.elapsed() - t1
                return None
    if not clock.can_solve():
        return None
    r = min_perturbation(net, a0, q.cls, q.norm, q.k, (q.lo, q.hi),
                         settings=settings.with_(warm_start=False), timeout=limit())
    stats["ini_seconds"] = clock.elapsed() - t1
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
    model.set_start(mip.cost, eps if norm == "l1" else np.array([norm_of(b - a, norm)]))
    y = net.forward(b)
    others = np.delete(np.arange(y.size), m)
    model.set_start(mip.c, (y[others] >= y[m]).astype(float))


# ----------------------------------------------------------------------------------- Ξ
def _phi_task(item: tuple, timeout: float | None) -> ResilienceResult:
    """Executor task (top-level, picklable): one class of Ξ."""
    network, cls, alpha, k, norm, domain, settings, data = item
    return phi(network, cls, alpha, k, norm, domain, settings=settings, timeout=timeout,
               data=data)


def _phi_missing(item: tuple, why: str) -> ResilienceResult:
    _, cls, alpha, k, norm, _, _, _ = item
    return ResilienceResult("phi", 0.0, None, False, True, cls=cls, alpha=alpha, k=k,
                            norm=norm, message=why)


@labelled
def phi_many(network, classes, alpha: float = 1.0, k: int = 1, norm: str = "l1", domain=None,
             *, settings: ResilienceSettings = DEFAULT, timeout: float | None = None,
             data: np.ndarray | None = None, workers=None, unit_timeout: float | None = None,
             progress: Progress | None = None) -> list[ResilienceResult]:
    """Φ_m for several classes through the executor (one task per class).

    ``timeout`` bounds the whole call; each class gets a fair share of the time left
    when it starts (at most ``unit_timeout``). A class that could not run in time is
    reported as ``[0, None]`` with a message. ``progress`` is called once per finished
    class.
    """
    lo, hi = resolve_domain(network, domain)
    check_backend(norm, settings, network)
    classes = [int(c) for c in classes]
    items = [(network, c, alpha, k, norm, (lo, hi), settings, data) for c in classes]
    return run_units(_phi_task, items, timeout, workers, unit_timeout, _phi_missing,
                     progress, key="cls", keys=classes)


@labelled
def xi(network, alpha: float = 1.0, k: int = 1, norm: str = "l1", domain=None, *,
       classes=None, settings: ResilienceSettings = DEFAULT, timeout: float | None = None,
       data: np.ndarray | None = None, workers=None, unit_timeout: float | None = None,
       progress: Progress | None = None) -> ResilienceResult:
    """Ξ = min_m Φ_m (Definition 2) with the argmin class.

    Classes whose premise is proven infeasible (alpha > alpha_max) are vacuous (Φ_m = +inf)
    and drop out. ``lower = min`` of the proven lowers, ``upper = min`` of the witnessed
    uppers; the witness pair is the one of the class attaining the upper. ``timeout``
    bounds the whole call (see :func:`phi_many`).
    """
    clock = Clock(timeout)
    if classes is None:
        classes = range(network.n_outputs)
    branching = bool(settings.branching)
    if branching:  # [diff hook] the classes' pieces share one queue after the MIPs
        from nnresilience.resilience.diff_plan import DiffPrep

        share = DiffPrep.MIP_SHARE_BEFORE_BRANCHING
        per_settings = settings.with_(branching=0)
        per_timeout = None if timeout is None else share * timeout
    else:
        per_settings, per_timeout = settings, timeout
    per = phi_many(network, classes, alpha, k, norm, domain, settings=per_settings,
                   timeout=per_timeout, data=data, workers=workers, unit_timeout=unit_timeout,
                   progress=progress)
    feas = [r for r in per if r.feasible]
    stats = {"per_class": [r.to_dict() for r in per]}
    if not feas:
        return ResilienceResult("xi", None, None, False, False, alpha=alpha, k=k, norm=norm,
                                seconds=clock.elapsed(), stats=stats,
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
    if branching and not optimal and upper is not None and clock.can_solve():  # [diff hook]
        from nnresilience.resilience.diff_plan import refine_xi

        lower, upper, cls, a_best, b_best, optimal = refine_xi(
            network, feas, alpha, k, norm, domain, settings, clock.left(), workers, lower,
            upper, cls, a_best, b_best, stats)
    return ResilienceResult("xi", lower, upper, optimal, True, cls=cls, alpha=alpha, k=k,
                            norm=norm, a=a_best, a_perturbed=b_best,
                            seconds=clock.elapsed(), stats=stats)
