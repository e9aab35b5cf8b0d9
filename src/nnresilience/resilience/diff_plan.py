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

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.resilience.replay import norm_of


@dataclass
class DiffPrep:
    pair: tuple[np.ndarray, np.ndarray, float] | None = None
    lower: float = 0.0
    plan: Any = None
    vacuous: bool = False
    unreachable: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    #: Share of the remaining time the MIP gets when branching follows it.
    MIP_SHARE_BEFORE_BRANCHING = 0.4

    def mip_time(self, left: float | None, settings) -> float | None:
        """The MIP's time limit: all that is left, or a share when branching follows."""
        if left is None or not settings.branching or self.pair is None:
            return left
        return max(0.5, self.MIP_SHARE_BEFORE_BRANCHING * left)


def _left(t0: float, timeout: float | None) -> float | None:
    return None if timeout is None else timeout - (time.perf_counter() - t0)


def prepare_phi(net, q, bounds, settings, data, t0: float, timeout: float | None
                ) -> DiffPrep:
    """Attack, certified bound and difference plan (module docstring); ``net`` merged."""
    from nnresilience.resilience.certify_diff import certified_lower_bound
    from nnresilience.resilience.difference_rows import DifferencePlan, plan_ladder
    from nnresilience.resilience.pair_attack import attack_pair

    prep = DiffPrep()
    st = prep.stats
    if settings.pair_attack > 0:
        t1 = time.perf_counter()
        budget = settings.pair_attack if timeout is None else min(settings.pair_attack,
                                                                  0.1 * timeout)
        prep.pair = attack_pair(net, q.cls, q.log_alpha, q.k, q.norm, q.lo, q.hi, data=data,
                                budget=budget, premise_tol=settings.premise_tol)
        st["attack_seconds"] = time.perf_counter() - t1
        st["attack_upper"] = None if prep.pair is None else prep.pair[2]
    if settings.diff_lower:
        t1 = time.perf_counter()
        deadline = None if timeout is None else t1 + 0.15 * timeout
        c = certified_lower_bound(net, q.cls, q.log_alpha, q.k, q.norm, q.lo, q.hi,
                                  upper=None if prep.pair is None else prep.pair[2],
                                  premise_tol=settings.premise_tol, deadline=deadline)
        prep.vacuous, prep.unreachable = c.vacuous, c.unreachable
        prep.lower = 0.0 if c.vacuous else c.lower
        st.update({"cert_lower": prep.lower, "cert_seconds": time.perf_counter() - t1,
                   "cert_probes": c.probes, "cert_vacuous": c.vacuous})
    if (settings.diff_rows or settings.diff_cut) and prep.pair is not None \
            and not prep.vacuous:
        left = _left(t0, timeout)
        if left is None or left > 1.0:
            t1 = time.perf_counter()
            u = float(np.nextafter(prep.pair[2] * (1.0 + 1e-9), np.inf))
            cut = prep.lower if settings.diff_cut and prep.lower > 0 else None
            if settings.diff_rows:
                ladder, out_up = plan_ladder(net, q.lo, q.hi, q.norm, u, prior1=bounds,
                                             prior2=bounds, m=q.cls)
                prep.plan = DifferencePlan(ladder[-1], u, cut, ladder=ladder, out_up=out_up)
            else:
                # the radius row, the cut and copy 2's bounds of the pair region only
                from nnresilience.bounds.differential import PairRegion, differential_bounds

                db = differential_bounds(net, PairRegion(q.lo, q.hi, q.norm, u), None,
                                         bounds, bounds)
                prep.plan = DifferencePlan(db, u, cut, kinds=())
            st["plan_seconds"] = time.perf_counter() - t1
    return prep


def start_from_pair(mip, net, prep: DiffPrep, m: int, norm: str) -> None:
    """Give the MIP the attack's pair as a complete start (when there is one)."""
    from nnresilience.resilience.difference_rows import full_start

    if prep.pair is not None:
        full_start(mip, net, prep.pair[0], prep.pair[1], m, norm)


def finish_phi(net, q, settings, prep: DiffPrep, a, b, upper, lower, t0, timeout, stats,
               executor=None):
    """Merge the MIP's ``(a, b, upper, lower)`` with the attack's pair and the certified
    bound, then branch on ``a``'s domain if asked and time is left. Returns
    ``(a, b, upper, lower, optimal)``; ``optimal`` when the interval has closed."""
    if prep.pair is not None and (upper is None or prep.pair[2] < upper):
        a, b, upper = prep.pair
        stats["witness_from"] = "pair_attack"
    lower = max(lower, prep.lower)
    if upper is not None:
        lower = min(lower, upper)
    tol = settings.opt_tol

    def closed() -> bool:
        return upper is not None and upper - lower <= tol * max(1.0, upper)

    left = _left(t0, timeout)
    if settings.branching and upper is not None and not closed() and (left is None
                                                                      or left > 2.0):
        from nnresilience.resilience.branch import PhiTask, branch_phi

        task = PhiTask(net, q.cls, q.log_alpha, q.k, q.norm, q.lo, q.hi, settings)
        incumbent = None if upper is None else (np.asarray(a), np.asarray(b),
                                                norm_of(np.asarray(b) - np.asarray(a),
                                                        q.norm))
        out = branch_phi(task, pair=incumbent, lower=lower, max_pieces=settings.branching,
                         timeout=None if left is None else left - 1.0, executor=executor)
        stats["branching"] = out.stats
        if out.pair is not None and (upper is None or out.pair[2] < upper):
            a, b, upper = out.pair
            stats["witness_from"] = "branching"
        if math.isfinite(out.lower) or upper is None:
            lower = max(lower, out.lower if upper is None else min(out.lower, upper))
    return a, b, upper, lower, closed()


def refine_xi(network, feas, alpha, k, norm, domain, settings, timeout, workers, lower,
              upper, cls, a, b, stats):
    """Ξ's joint branching (:func:`~nnresilience.resilience.branch.branch_min`): the
    pieces of every feasible class in one queue through the executor, the best pair of
    any class as the cutoff everywhere. ``timeout`` is the branching's own budget (one
    class's). Returns ``(lower, upper, cls, a, b, optimal)``."""
    from nnresilience.parallel import make_executor
    from nnresilience.resilience.branch import PhiTask, branch_min
    from nnresilience.resilience.common import resolve_domain

    net = network.merged()
    lo, hi = resolve_domain(network, domain)
    la = math.log(alpha)
    tasks, pairs, lowers = [], [], []
    for r in feas:
        tasks.append(PhiTask(net, int(r.cls), la, k, norm, lo, hi, settings))
        pairs.append(None if r.upper is None or r.a is None else
                     (np.asarray(r.a), np.asarray(r.a_perturbed), float(r.upper)))
        lowers.append(0.0 if r.lower is None else float(r.lower))
    with make_executor(workers) as ex:
        out = branch_min(tasks, pairs, lowers, max_pieces=settings.branching * len(tasks),
                         timeout=timeout, executor=ex)
    stats["branching"] = out.stats
    if out.pair is not None and out.pair[2] < upper:
        upper = out.pair[2]
        cls = tasks[out.task].m
        a, b = tuple(map(float, out.pair[0])), tuple(map(float, out.pair[1]))
    lower = min(max(lower, out.lower), upper)
    optimal = upper - lower <= settings.opt_tol * max(1.0, upper)
    return lower, upper, cls, a, b, optimal
