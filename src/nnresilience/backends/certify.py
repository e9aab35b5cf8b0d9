"""Turn a solver's answer into a bound that survives the solver's tolerances.

Every code path that *trusts* a MILP/LP solver — the MILP engine's ``holds``, ``delta_check``,
Φ's "+inf", α_max's "no input reaches α", the bisection of the minimum perturbation, the
leaves of a divided search — goes through :func:`certify`. Nothing else reads
``SolveResult.dual_bound`` or ``SolveStatus.INFEASIBLE`` as a proof.

Why a margin is needed at all: a solver accepts a point when every row holds up to its
feasibility tolerance ``ε_f`` and every binary is integral up to ``ε_int``
(:meth:`Backend.tolerances`), and its presolve, propagation and LP work to the same
tolerances. Its "infeasible" and its dual bound are therefore statements about a model
*near* ours, not about ours: issue 11 shows HiGHS calling a model infeasible although an
explicit point satisfied its rows to 5e-14 with the unsafe margin at +1e-5. Two rules
keep such an error from becoming a wrong answer:

1. **Never decide on a bare "infeasible".** Decisions are made on a *margin* form (maximise
   how deep into the unsafe set a point gets), which always has a feasible point; an
   "infeasible" proves nothing (:func:`certify` reports it as a failure).
2. **Keep a distance** ``τ`` from every threshold: a dual bound ``D`` on a minimised
   objective proves only ``optimum >= D - τ_obj``, and a decision needs ``D - τ_obj`` to
   clear the threshold.

``τ`` (:func:`model_tau`) is the largest violation the solver accepts on one row of the
model, in the model's own units::

    τ = ε_f · max_r s_r + ε_int · M,   s_r = 1 + Σ_j |A_rj| · max(1, |x_j|) + |rhs_r|

(``|x_j|`` from the variable bounds: "row norm × variable magnitude"; ``M`` the largest
coefficient of an integer column: a binary off by ``ε_int`` relaxes its row by
``ε_int · M``). ``τ_obj`` is the same for the objective row ``Σ c_j x_j``. This is the
error of one row, not the worst case of all rows adding up through every layer (that sum
grows with the product of the weight norms and is of the order of the logits on ACAS Xu);
solvers misjudge far less than their tolerances in aggregate, so one row's worth is the
distance kept, and answers closer to a threshold than that go to a second opinion or
``unknown``. docs/milp.md states the contract.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from nnresilience.backends.base import SolveLimits, SolveResult, SolveStatus, Tolerances
from nnresilience.encode.model import MilpArrays


def _magnitudes(lb: np.ndarray, ub: np.ndarray, cap: float | None = None) -> np.ndarray:
    """``max(1, |lb|, |ub|)`` per column; infinite bounds count as ``cap`` (or 1)."""
    lb = np.where(np.isfinite(lb), np.abs(lb), 0.0)
    ub = np.where(np.isfinite(ub), np.abs(ub), 0.0)
    m = np.maximum(1.0, np.maximum(lb, ub))
    if cap is not None:
        m = np.minimum(m, max(1.0, cap))
    return m


def row_scales(arrays: MilpArrays) -> np.ndarray:
    """``s_r`` of every linear row (see the module docstring); one sparse product."""
    mag = _magnitudes(arrays.lb, arrays.ub)
    absA = abs(arrays.A)
    rhs = np.maximum(np.where(np.isfinite(arrays.row_lo), np.abs(arrays.row_lo), 0.0),
                     np.where(np.isfinite(arrays.row_hi), np.abs(arrays.row_hi), 0.0))
    return 1.0 + np.asarray(absA @ mag).reshape(-1) + rhs


#: Headroom below which a model counts as ill-scaled (see ``tolerance_headroom``).
ILL_SCALED_HEADROOM = 1000.0


def tolerance_headroom(arrays: MilpArrays, feasibility: float) -> float:
    """How many times the feasibility tolerance exceeds the float64 rounding unit of the
    model's largest row (``eps`` times the largest ``row_scales``); ``inf`` without rows.

    Why one rule: a tolerance below the rounding error of a row's own terms cannot be met
    and the solver does not say so. Below ``ILL_SCALED_HEADROOM`` the solver's claims are
    not trusted alone: the engine re-solves a cutoff stop without the cutoff, the
    resilience queries cap their tolerance factor at this headroom and confirm HiGHS
    bounds without presolve (``benchmarks/RESULTS.md`` §13: each was a wrong answer)."""
    if arrays.A.shape[0] == 0:
        return math.inf
    smax = float(row_scales(arrays).max(initial=1.0))
    return feasibility / (np.finfo(float).eps * smax)


def model_tau(arrays: MilpArrays, tol: Tolerances) -> float:
    """``τ`` of a model: the largest tolerance-sized error of one of its rows."""
    s = row_scales(arrays)
    smax = float(s.max(initial=1.0))
    M = 0.0
    if arrays.integer.any() and arrays.A.nnz:
        A = arrays.A.tocsc()
        cols = np.flatnonzero(arrays.integer)
        sub = abs(A[:, cols])
        M = float(sub.max()) if sub.nnz else 0.0
    for q in arrays.quad:                       # quadratic rows count like linear ones
        mag = _magnitudes(arrays.lb, arrays.ub)
        qs = 1.0 + sum(abs(v) * mag[i] for i, v in zip(q.lin_idx, q.lin_val, strict=True)) \
            + sum(abs(v) * mag[i] * mag[j] for i, j, v in q.quad) \
            + max(abs(q.lo) if math.isfinite(q.lo) else 0.0,
                  abs(q.hi) if math.isfinite(q.hi) else 0.0)
        smax = max(smax, qs)
        if arrays.integer.any():
            M = max([M] + [abs(v) for i, v in zip(q.lin_idx, q.lin_val, strict=True)
                           if arrays.integer[i]])
    return float(tol.feasibility * smax + tol.integrality * M)


def objective_tau(arrays: MilpArrays, tol: Tolerances) -> float:
    """``τ_obj``: the objective row ``Σ c_j x_j`` treated as a row of the model."""
    c = np.asarray(arrays.c, float)
    nz = np.flatnonzero(c)
    if nz.size == 0:
        return 0.0
    mag = _magnitudes(arrays.lb[nz], arrays.ub[nz])
    return float(tol.feasibility * (1.0 + np.abs(c[nz]) @ mag))


@dataclass(frozen=True)
class Certificate:
    """What a solve proves about its (minimised) objective.

    ``lower``: a lower bound on the optimum that survives the solver's tolerances
    (``dual_bound - tau_obj``), ``-inf`` when nothing is proven. ``raw``: the solver's
    dual bound as reported. ``failed``: the solver reported something impossible
    ("infeasible" for a model that has a feasible point by construction, an error).
    """

    lower: float
    raw: float | None
    tau: float
    tau_obj: float
    failed: bool = False
    reason: str = ""

    def clears(self, threshold: float) -> bool:
        """True when the optimum is proven strictly above ``threshold``."""
        return self.lower > threshold


def certify(res: SolveResult, arrays: MilpArrays, tol: Tolerances, *,
            tau: float | None = None, attained: float | None = None) -> Certificate:
    """The proven lower bound on the minimised objective of ``arrays`` solved as ``res``.

    "Infeasible" proves nothing here, whatever the model: on a margin form (which always
    has a feasible point) it is a solver failure, and on any other model it is exactly
    the claim that tolerances make unreliable (``failed=True``, ``lower = -inf``). Callers
    that need "no point exists" decide a margin form instead. A cutoff that nothing
    beats is reported by the backends as ``LIMIT`` with ``dual_bound = cutoff``; it counts
    like any dual bound (minus ``τ_obj``).

    ``attained``: an objective value some feasible point is known to reach (a replayed
    witness, a sampled input, the column bounds). A dual bound above it is the solver
    contradicting itself — e.g. "nothing beats the cutoff" for a cutoff that a known point
    beats, which is how an "infeasible" reaches us through a cutoff — and proves nothing.
    """
    t = model_tau(arrays, tol) if tau is None else float(tau)
    t_obj = objective_tau(arrays, tol)
    raw = res.dual_bound
    if res.status is SolveStatus.INFEASIBLE:
        return Certificate(-math.inf, raw, t, t_obj, failed=True,
                           reason="solver reported infeasible (not trusted as a proof)")
    if res.status in (SolveStatus.ERROR, SolveStatus.UNBOUNDED):
        return Certificate(-math.inf, raw, t, t_obj, failed=True,
                           reason=f"solver status {res.status.value}")
    if raw is None or math.isnan(raw) or raw == -math.inf:
        return Certificate(-math.inf, raw, t, t_obj, reason="no dual bound")
    if raw == math.inf:                         # a finite model has a finite optimum
        return Certificate(-math.inf, raw, t, t_obj, failed=True,
                           reason="infinite dual bound without infeasibility")
    if attained is not None and float(raw) - t_obj > attained:
        return Certificate(-math.inf, float(raw), t, t_obj, failed=True,
                           reason=f"solver bound {float(raw):.6g} above the value "
                                  f"{attained:.6g} a known point attains")
    return Certificate(float(raw) - t_obj, float(raw), t, t_obj, reason="dual bound")


def safe_solve(backend, arrays: MilpArrays, limits: SolveLimits) -> SolveResult:
    """``backend.solve``, with a solver that raises (SCIP: "error in LP solver" on badly
    scaled models) reported as an ``ERROR`` result: no point, no bound, so :func:`certify`
    proves nothing from it and the caller answers ``unknown``."""
    t0 = time.perf_counter()
    try:
        return backend.solve(arrays, limits)
    except Exception as exc:  # noqa: BLE001 - any solver crash is "no answer", not a proof
        return SolveResult(SolveStatus.ERROR, None, None, None, time.perf_counter() - t0,
                           {"native_status": f"exception: {exc}"[:200]})


def _cut_off_without_point(res: SolveResult) -> bool:
    """The solve ended on the cutoff (backends map "nothing beats the cutoff" to ``LIMIT``
    with ``dual_bound = cutoff``) without any point: the solver's only evidence is that it
    found the model empty under the cutoff."""
    return res.status is SolveStatus.LIMIT and res.x is None and "nfeasible" in str(
        res.stats.get("native_status", ""))


def confirm_cutoff(backend, arrays: MilpArrays, res: SolveResult, deadline: float | None,
                   *, may_be_empty: bool = False, second=None) -> SolveResult:
    """``res``, or an ``INFEASIBLE`` result (no proof) when a cutoff bound rests on a
    solver that cannot see the model's feasible points at all.

    A planted 1e12-magnitude net: HiGHS's presolve called the (always feasible) margin
    model infeasible, and under the cutoff that read as "nothing beats the cutoff", a
    wrong ``holds``. So a cutoff stop without an incumbent is re-checked: the same model,
    no cutoff, stopping at the first feasible point (cheap: the heuristics find one at the
    root). The cutoff counts when that re-check finds a point. ``may_be_empty``: the model
    can legitimately have no point (a resilience piece whose sub-box of ``a`` holds no
    confident input); then emptiness counts too, when a checked Farkas certificate of the
    LP relaxation proves it (:mod:`nnresilience.backends.farkas`), or else when the
    ``second`` backend (default: another solver, ``registry.second_backend``) finds no
    point either. A model empty only by
    integrality has no Farkas certificate, and two independent solvers agreeing is the
    evidence left; a second solver that finds a point exposes the first. No time left, a
    time limit or a failure leave the cutoff unconfirmed.
    """
    if not _cut_off_without_point(res):
        return res
    left = None if deadline is None else deadline - time.perf_counter()
    again = None
    if left is None or left > 0.0:
        again = safe_solve(backend, arrays, SolveLimits(time_limit=left, cutoff=None,
                                                         stop_at_first_solution=True))
        if again.x is not None:
            return replace(res, stats={**res.stats, "cutoff_confirmed": again.status.value})
        if may_be_empty:
            from nnresilience.backends.farkas import prove_empty

            left = None if deadline is None else deadline - time.perf_counter()
            if (left is None or left > 0.0) and prove_empty(arrays, left):
                return replace(res, stats={**res.stats, "cutoff_confirmed": "empty (Farkas)"})
            left = None if deadline is None else deadline - time.perf_counter()
            if second is None:
                from nnresilience.backends.registry import second_backend

                second = second_backend(backend.name, bool(arrays.quad))
            if second is not None and (left is None or left > 0.0):
                other = safe_solve(second, arrays, SolveLimits(
                    time_limit=left, cutoff=None, stop_at_first_solution=True))
                if other.x is None and other.status is SolveStatus.INFEASIBLE:
                    return replace(res, stats={**res.stats, "cutoff_confirmed":
                                               f"empty ({backend.name} and {second.name})"})
                if other.x is not None:
                    again = replace(again, stats={**again.stats, "native_status":
                                                  f"{second.name} found a point"})
    why = "no time left to confirm the cutoff" if again is None else (
        f"cutoff not confirmed: without it the solver ended {again.status.value} "
        f"({again.stats.get('native_status', '')}) with no point")
    return SolveResult(SolveStatus.INFEASIBLE, None, None, math.inf,
                       res.seconds + (0.0 if again is None else again.seconds),
                       {**res.stats, "native_status": why})
