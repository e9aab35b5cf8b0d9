"""HiGHS backend (``highspy``): the model is passed in one ``passModel`` call from arrays.

The row matrix goes in as CSR (HiGHS's row-wise format) straight from
:meth:`~nnresilience.encode.model.MilpModel.arrays`, so building costs milliseconds even
for models with hundreds of thousands of non-zeros. Quadratic constraints and branching
priorities are not supported by HiGHS (the registry never picks it for MIQCPs).

Limits: ``time_limit``; ``mip_rel_gap``; ``threads`` (HiGHS fixes its thread pool once per
process, so this is a hint); ``cutoff`` through ``objective_bound`` (HiGHS prunes nodes
whose bound is not below it); ``stop_at_first_solution`` through
``mip_max_improving_sols = 1``. Dual bound: ``info.mip_dual_bound`` for MIPs; for an LP
solved to optimality the objective itself. Tolerances: HiGHS defaults
(primal feasibility 1e-7, MIP feasibility 1e-6).
"""

from __future__ import annotations

import math
import time

import numpy as np

from nnresilience.backends.base import Backend, SolveLimits, SolveResult, SolveStatus
from nnresilience.backends.quiet import quiet_stdout
from nnresilience.encode.model import MilpArrays

STATUS_MAP = {
    "kOptimal": SolveStatus.OPTIMAL,
    "kInfeasible": SolveStatus.INFEASIBLE,
    "kUnbounded": SolveStatus.UNBOUNDED,
    "kUnboundedOrInfeasible": SolveStatus.ERROR,   # a second solve without presolve decides
    "kObjectiveBound": SolveStatus.LIMIT,
    "kObjectiveTarget": SolveStatus.LIMIT,
    "kTimeLimit": SolveStatus.LIMIT,
    "kIterationLimit": SolveStatus.LIMIT,
    "kSolutionLimit": SolveStatus.LIMIT,
    "kInterrupt": SolveStatus.LIMIT,
    "kHighsInterrupt": SolveStatus.LIMIT,
    "kMemoryLimit": SolveStatus.LIMIT,
    "kModelEmpty": SolveStatus.OPTIMAL,
}


def trivially_infeasible(model: MilpArrays) -> bool:
    """An empty row whose range excludes 0, or crossed variable bounds: no solve needed."""
    empty = np.diff(model.A.indptr) == 0
    bad_rows = empty & ((model.row_lo > 1e-9) | (model.row_hi < -1e-9))
    return bool(bad_rows.any() or np.any(model.lb > model.ub))


def new_highs():
    """A silent ``highspy.Highs`` instance."""
    import highspy

    with quiet_stdout():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


class HighsBackend(Backend):
    name = "highs"
    module = "highspy"
    supports_mip = True
    supports_quadratic = False
    supports_priorities = False
    supports_cutoff = True
    supports_start = True

    def __init__(self, options: dict | None = None) -> None:
        # extra native HiGHS options ("mip_heuristic_effort": 0.3, ...), applied last
        self.options = dict(options or {})

    def _solve(self, model: MilpArrays, limits: SolveLimits) -> SolveResult:
        import highspy

        t0 = time.perf_counter()
        if model.quad:
            from nnresilience.errors import BackendUnavailableError
            raise BackendUnavailableError("HiGHS cannot solve quadratic constraints "
                                          "(arctan 'miqcp' mode); use backend 'scip'")
        is_mip = bool(model.integer.any())
        if trivially_infeasible(model):
            return SolveResult(SolveStatus.INFEASIBLE, None, None, math.inf,
                               time.perf_counter() - t0, {"backend": self.name})
        h = new_highs()
        h.setOptionValue("output_flag", bool(limits.verbose))
        if limits.time_limit is not None:
            h.setOptionValue("time_limit", max(float(limits.time_limit), 1e-3))
        h.setOptionValue("mip_rel_gap", float(limits.mip_gap))
        if limits.threads and limits.threads > 0:
            h.setOptionValue("threads", int(limits.threads))
        if limits.cutoff is not None and is_mip:
            h.setOptionValue("objective_bound", float(limits.cutoff))
        if limits.stop_at_first_solution and is_mip:
            h.setOptionValue("mip_max_improving_sols", 1)

        for key, val in self.options.items():
            h.setOptionValue(key, val)
        lp = highspy.HighsLp()
        n, m = model.n_vars, model.n_rows
        lp.num_col_, lp.num_row_ = n, m
        lp.col_cost_ = np.asarray(model.c, float)
        lp.col_lower_ = np.asarray(model.lb, float)
        lp.col_upper_ = np.asarray(model.ub, float)
        lp.row_lower_ = np.asarray(model.row_lo, float)
        lp.row_upper_ = np.asarray(model.row_hi, float)
        lp.offset_ = float(model.offset)
        A = model.A.tocsr()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, m
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(float)
        if is_mip:
            integ = np.where(model.integer, highspy.HighsVarType.kInteger,
                             highspy.HighsVarType.kContinuous)
            lp.integrality_ = list(integ)
        h.passModel(lp)
        build = time.perf_counter() - t0
        if limits.use_start and model.start is not None and is_mip:
            # sparse (partial) start: HiGHS completes the missing columns itself
            known = np.flatnonzero(~np.isnan(model.start)).astype(np.int32)
            h.setSolution(int(known.size), known, model.start[known].astype(float))
        h.run()
        if str(h.getModelStatus()).endswith("kUnboundedOrInfeasible"):
            # presolve could not tell which; the unpresolved solve decides
            h.setOptionValue("presolve", "off")
            h.run()
        ms = h.getModelStatus()
        key = h.modelStatusToString(ms)
        name = str(ms).split(".")[-1]
        status = STATUS_MAP.get(name, SolveStatus.ERROR)
        info = h.getInfo()
        x = None
        objective = None
        if info.primal_solution_status == 2:              # kSolutionStatusFeasible
            x = np.asarray(h.getSolution().col_value, dtype=float)
            objective = float(info.objective_function_value)
        cut_off = (limits.cutoff is not None and is_mip
                   and name in ("kInfeasible", "kObjectiveBound"))
        if cut_off:
            # HiGHS reports "infeasible" when nothing beats objective_bound: that proves
            # only optimum >= cutoff, not infeasibility.
            status = SolveStatus.LIMIT
        dual: float | None
        if status is SolveStatus.INFEASIBLE:
            dual = math.inf
        elif is_mip:
            dual = float(info.mip_dual_bound)
            if not math.isfinite(dual) and status is SolveStatus.OPTIMAL and objective is not None:
                dual = objective
        else:
            dual = objective if status is SolveStatus.OPTIMAL else -math.inf
        if cut_off:
            dual = float(limits.cutoff) if x is None else max(dual, float(limits.cutoff))
        if status is SolveStatus.OPTIMAL and x is None:
            status = SolveStatus.ERROR
        stats = {"backend": self.name, "native_status": key, "build_seconds": build,
                 "nodes": int(info.mip_node_count) if is_mip else 0,
                 "n_vars": n, "n_rows": m, "n_integer": model.n_integer}
        return SolveResult(status, x, objective, dual, time.perf_counter() - t0, stats)
