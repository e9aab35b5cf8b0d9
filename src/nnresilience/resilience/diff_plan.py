"""What the two-copy differential analysis contributes to one Φ_m query.

:func:`prepare_phi` runs before MIP (6) is built:

1. the pair attack (:mod:`.pair_attack`, ``settings.pair_attack`` seconds, at most 10% of
   the timeout): a replayed pair ``(a, b)`` of norm ``u``: the incumbent, a full MIP start
   and the radius of the difference rows;
2. the certified lower bound (:mod:`.certify_diff`, ``settings.diff_lower``, at most 15%
   of the timeout): a proven ``lower`` without any MIP; it also decides two cases outright
   (no confident input in D: the premise is infeasible; no flip within the whole domain:
   Φ_m = +inf);
3. the difference plan (:mod:`.difference_rows`, needs the pair): the radius row
   ``||ε|| <= u``, copy 2's bounds over the pair region, the cut ``objective >= lower``
   (``settings.diff_cut``) and, with ``settings.diff_rows``, the difference rows from
   differential bounds on a ladder of radii up to ``u``.

:func:`finish_phi` merges the MIP's answer with these and, with ``settings.branching``,
runs :func:`~nnresilience.resilience.branch.branch_phi` in the time that is left.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.resilience.common import is_optimal, ratio_upper

#: Relaxation (in logits) for which the plan's cut (and per-class flip rows) is made
#: valid: they hold for every pair of the *relaxed* MIP (6) whose rows are loosened by
#: ``τ <= ROWS_RELAX`` (:meth:`DiffPrep.rows_valid` checks each solve's ``τ``).
ROWS_RELAX = 1e-4


@dataclass
class DiffPrep:
    """What :func:`prepare_phi` found: the attack's pair (replays exactly), the certified
    lower bound (exact problem), the plan for MIP (6), the decided cases."""

    pair: tuple[np.ndarray, np.ndarray, float] | None = None
    lower: float = 0.0
    plan: Any = None
    vacuous: bool = False
    unreachable: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    #: Share of the remaining time the MIP gets when branching follows it.
    MIP_SHARE_BEFORE_BRANCHING = 0.4

    def mip_clock(self, clock, settings):
        """The clock of the staged MIP solve: the call's own, or (when branching follows)
        a copy whose deadline leaves the rest of the time to the branching."""
        left = clock.left()
        if left is None or not settings.branching or self.pair is None:
            return clock
        sub = copy.copy(clock)
        sub.deadline = time.perf_counter() + max(0.5, self.MIP_SHARE_BEFORE_BRANCHING * left)
        sub.deadline = min(sub.deadline, clock.deadline)
        return sub

    def rows_valid(self, tau: float, stats: dict) -> bool:
        """True when every row of the plan holds on the relaxed problem loosened by
        ``tau`` (the solver's τ plus the MIP's float slack): the radius row and copy 2's
        bounds hold for every pair within the attack's radius, whatever the premise; the
        cut and the flip rows were derived for a relaxation of :data:`ROWS_RELAX`, so
        need ``tau <= ROWS_RELAX``."""
        plan = self.plan
        if plan is None or tau <= plan.relax:
            return True
        needs = (plan.lower is not None and plan.lower > 0) or "flip" in plan.kinds
        if needs:
            stats["diff_rows_invalid_tau"] = tau
        return not needs


def relaxed_tau(mip, settings) -> float:
    """The loosening ``τ + float slack`` that :func:`~.common.solve_relaxed` will give the
    relaxed problem of ``mip`` at ``settings.tolerance_factor`` (same model arrays, same
    backend tolerances, same formula)."""
    from nnresilience.backends.certify import model_tau
    from nnresilience.resilience.common import make_backend, usable_factor

    arrays = mip.model.arrays()
    factor = usable_factor(arrays, settings, settings.tolerance_factor)
    tol = make_backend(settings, bool(arrays.quad), factor).tolerances()
    return float(model_tau(arrays, tol) + mip.float_slack)


def fit_plan(prep: DiffPrep, mip, settings, stats: dict) -> bool:
    """Before the relaxed solve: when the model's loosening exceeds the plan's
    relaxation, drop the rows that need it (the cut, the per-class flip rows) so the
    relaxed problem's bound stays usable. True when the plan changed (rebuild)."""
    plan = prep.plan
    if plan is None or not ((plan.lower is not None and plan.lower > 0)
                            or "flip" in plan.kinds):
        return False
    tau = relaxed_tau(mip, settings)
    if tau <= plan.relax:
        return False
    stats["diff_cut_dropped_tau"] = tau
    prep.plan = dataclasses.replace(plan, lower=None,
                                    kinds=tuple(k for k in plan.kinds if k != "flip"))
    return True


def prepare_phi(net, q, bounds, settings, data, t0: float, timeout: float | None
                ) -> DiffPrep:
    """Attack, certified bound and difference plan (module docstring); ``net`` merged,
    ``t0`` / ``timeout`` the call's start and whole timeout (shares are of the timeout,
    every stage stops by the deadline)."""
    from nnresilience.resilience.certify_diff import certified_lower_bound
    from nnresilience.resilience.difference_rows import DifferencePlan, plan_ladder
    from nnresilience.resilience.pair_attack import attack_pair

    prep = DiffPrep()
    st = prep.stats
    end = None if timeout is None else t0 + timeout
    if settings.pair_attack > 0:
        t1 = time.perf_counter()
        budget = settings.pair_attack if timeout is None else \
            max(0.0, min(settings.pair_attack, 0.1 * timeout, end - t1))
        prep.pair = attack_pair(net, q.cls, q.log_alpha, q.k, q.norm, q.lo, q.hi, data=data,
                                budget=budget)
        st["attack_seconds"] = time.perf_counter() - t1
        st["attack_upper"] = None if prep.pair is None else prep.pair[2]
    cut = None
    if settings.diff_lower:
        t1 = time.perf_counter()
        deadline = None if timeout is None else min(t1 + 0.15 * timeout, end)
        upper = None if prep.pair is None else prep.pair[2]
        c = certified_lower_bound(net, q.cls, q.log_alpha, q.k, q.norm, q.lo, q.hi,
                                  upper=upper, deadline=deadline,
                                  split_seconds=settings.diff_split)
        prep.vacuous, prep.unreachable = c.vacuous, c.unreachable
        prep.lower = 0.0 if c.vacuous else c.lower
        st.update({"cert_lower": prep.lower, "cert_seconds": time.perf_counter() - t1,
                   "cert_probes": c.probes, "cert_vacuous": c.vacuous})
        if c.split is not None:
            st.update({"cert_split_pieces": c.split.pieces,
                       "cert_split_seconds": c.split.seconds,
                       "cert_unsplit_lower": c.stats.get("split_lower")})
        if c.vacuous:
            st["alpha_max_upper"] = ratio_upper(c.stats["margin_upper"])
        if settings.diff_cut and prep.pair is not None and 0.0 < prep.lower < math.inf:
            # the cut must hold on the relaxed MIP too: the same bound for the premise
            # and flip sets widened by ROWS_RELAX (capped by the exact one)
            t1 = time.perf_counter()
            deadline = None if timeout is None else min(t1 + 0.05 * timeout, end)
            cr = certified_lower_bound(net, q.cls, q.log_alpha, q.k, q.norm, q.lo, q.hi,
                                       upper=prep.lower, relax=ROWS_RELAX,
                                       deadline=deadline, split=c.split, vertex=c.vertex)
            cut = min(cr.lower, prep.lower) if not cr.vacuous else None
            st.update({"cut_lower": cut, "cut_seconds": time.perf_counter() - t1})
    room = end is None or end - time.perf_counter() > 1.0
    if (settings.diff_rows or settings.diff_cut) and prep.pair is not None \
            and not prep.vacuous and room:
        t1 = time.perf_counter()
        u = float(np.nextafter(prep.pair[2] * (1.0 + 1e-9), np.inf))
        cut = cut if settings.diff_cut and cut is not None and cut > 0 else None
        if settings.diff_rows:
            ladder, out_up = plan_ladder(net, q.lo, q.hi, q.norm, u, prior1=bounds,
                                         prior2=bounds, m=q.cls)
            prep.plan = DifferencePlan(ladder[-1], u, cut, ladder=ladder, out_up=out_up,
                                       relax=ROWS_RELAX)
        else:
            # the radius row, the cut and copy 2's bounds of the pair region only
            from nnresilience.bounds.differential import PairRegion, differential_bounds

            db = differential_bounds(net, PairRegion(q.lo, q.hi, q.norm, u), None,
                                     bounds, bounds)
            prep.plan = DifferencePlan(db, u, cut, kinds=(), relax=ROWS_RELAX)
        st["plan_seconds"] = time.perf_counter() - t1
    return prep


def settle_by_diff(prep: DiffPrep, q, clock, stats: dict, common: dict):
    """The cases the differential bounds decide alone, as a finished result (or None).

    ``vacuous``: copy-1 bounds prove no input of D reaches the confidence; ``unreachable``:
    the certified radius reached D's diameter, so no flip at any distance (Φ_m = +inf).
    Both are sound bound computations (no solver). A replayed attack pair contradicts
    either (it is a confident input with a flip): then nothing is settled here and the
    MIP path decides (stats ``diff_contradiction``)."""
    from nnresilience.results import ResilienceResult

    if not (prep.vacuous or prep.unreachable):
        return None
    if prep.pair is not None:
        stats["diff_contradiction"] = True
        prep.vacuous = prep.unreachable = False
        prep.lower = 0.0
        return None
    stats["settled_by"] = "differential_bounds"
    clock.report("done")
    if prep.vacuous:
        return ResilienceResult("phi", None, None, False, False, seconds=clock.elapsed(),
                                message=f"no input in the domain reaches confidence ratio "
                                        f"alpha={q.alpha:g} for class {q.cls} (alpha_max <= "
                                        f"{stats['alpha_max_upper']:.6g}, proven by the "
                                        f"differential bounds' copy-1 analysis)",
                                stats=stats, **common)
    return ResilienceResult("phi", math.inf, math.inf, True, True, seconds=clock.elapsed(),
                            stats=stats,
                            message=f"no perturbation inside the domain takes class "
                                    f"{q.cls} out of the top-{q.k}: Phi = +inf (proven by "
                                    f"the differential bounds)", **common)


def start_from_pair(mip, net, prep: DiffPrep, m: int, norm: str) -> None:
    """Give the MIP the attack's pair as a complete start (when there is one)."""
    from nnresilience.resilience.difference_rows import full_start

    if prep.pair is not None:
        full_start(mip, net, prep.pair[0], prep.pair[1], m, norm)


def finish_phi(net, q, settings, prep: DiffPrep, best, lower: float, clock, stats,
               executor=None):
    """Merge the staged solve's ``(best pair, lower)`` with the certified bound, then
    branch on ``a``'s domain if asked and time is left. Returns ``(best, lower)``."""
    lower = max(lower, prep.lower)
    if prep.lower > 0 and prep.lower >= lower:
        stats["lower_from"] = "differential"
    upper = None if best is None else best[2]
    if upper is not None:
        lower = min(lower, upper)
    left = clock.left()
    if settings.branching and upper is not None \
            and not is_optimal(lower, upper, settings) and (left is None or left > 2.0):
        from nnresilience.resilience.branch import PhiTask, branch_phi

        task = PhiTask(net, q.cls, q.alpha, q.k, q.norm, q.lo, q.hi, settings)
        clock.report("branching", lower, upper)
        out = branch_phi(task, pair=best, lower=lower, max_pieces=settings.branching,
                         timeout=None if left is None else left - 1.0, executor=executor)
        stats["branching"] = out.stats
        if out.pair is not None and out.pair[2] < upper:
            best, upper = out.pair, out.pair[2]
            stats["witness_from"] = "branching"
        lower = max(lower, min(out.lower, upper))
    return best, lower


def refine_xi(network, feas, alpha, k, norm, domain, settings, timeout, workers, lower,
              upper, cls, a, b, stats):
    """Ξ's joint branching (:func:`~nnresilience.resilience.branch.branch_min`): the
    pieces of every feasible class in one queue through the executor, the best pair of
    any class as the cutoff everywhere. ``timeout`` is the time left of the Ξ call.
    Returns ``(lower, upper, cls, a, b, optimal)``."""
    from nnresilience.parallel import make_executor
    from nnresilience.resilience.branch import PhiTask, branch_min
    from nnresilience.resilience.common import resolve_domain

    net = network.merged()
    lo, hi = resolve_domain(network, domain)
    tasks, pairs, lowers = [], [], []
    for r in feas:
        tasks.append(PhiTask(net, int(r.cls), float(alpha), k, norm, lo, hi, settings))
        pairs.append(None if r.upper is None or r.a is None else
                     (np.asarray(r.a), np.asarray(r.a_perturbed), float(r.upper)))
        lowers.append(0.0 if r.lower is None else float(r.lower))
    # half a second for the executor's start and tear-down inside the call's deadline
    budget = None if timeout is None else max(0.0, timeout - 0.5)
    with make_executor(workers) as ex:
        out = branch_min(tasks, pairs, lowers, max_pieces=settings.branching * len(tasks),
                         timeout=budget, executor=ex)
    stats["branching"] = out.stats
    if out.pair is not None and out.pair[2] < upper:
        upper = out.pair[2]
        cls = tasks[out.task].m
        a, b = tuple(map(float, out.pair[0])), tuple(map(float, out.pair[1]))
    lower = min(max(lower, out.lower), upper)
    optimal = upper - lower <= settings.opt_tol * max(1.0, upper)
    return lower, upper, cls, a, b, optimal
