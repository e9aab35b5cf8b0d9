"""Gurobi backend (``gurobipy``), used only when the user has it installed and licensed.

Untested here (no Gurobi in the development environment); it follows the same contract as
:mod:`nnresilience.backends.highs`: one ``addMVar`` + ``addMConstr`` call from the CSR
matrix, quadratic constraints through ``addQConstr`` (non-convex: ``NonConvex = 2``).
"""

from __future__ import annotations

import math
import time

import numpy as np

from nnresilience.backends.base import Backend, SolveLimits, SolveResult, SolveStatus
from nnresilience.encode.model import MilpArrays

# gurobipy GRB.Status codes -> shared vocabulary
STATUS_MAP = {2: SolveStatus.OPTIMAL, 3: SolveStatus.INFEASIBLE, 4: SolveStatus.ERROR,
              5: SolveStatus.UNBOUNDED, 6: SolveStatus.LIMIT, 7: SolveStatus.LIMIT,
              8: SolveStatus.LIMIT, 9: SolveStatus.LIMIT, 10: SolveStatus.LIMIT,
              11: SolveStatus.LIMIT, 13: SolveStatus.LIMIT, 15: SolveStatus.LIMIT}


class GurobiBackend(Backend):
    name = "gurobi"
    module = "gurobipy"
    supports_quadratic = True
    supports_priorities = True
    supports_cutoff = True
    supports_start = True

    def _solve(self, model: MilpArrays, limits: SolveLimits) -> SolveResult:
        import gurobipy as gp

        t0 = time.perf_counter()
        env = gp.Env(params={"OutputFlag": int(limits.verbose)})
        g = gp.Model(env=env)
        vt = np.where(model.integer, gp.GRB.INTEGER, gp.GRB.CONTINUOUS)
        x = g.addMVar(model.n_vars, lb=model.lb, ub=model.ub, obj=model.c, vtype=vt)
        A = model.A.tocsr()
        fin_hi, fin_lo = np.isfinite(model.row_hi), np.isfinite(model.row_lo)
        if fin_hi.any():
            g.addMConstr(A[fin_hi], x, "<", model.row_hi[fin_hi])
        if fin_lo.any():
            g.addMConstr(A[fin_lo], x, ">", model.row_lo[fin_lo])
        xs = x.tolist()
        for q in model.quad:
            e = gp.quicksum(v * xs[i] for i, v in zip(q.lin_idx, q.lin_val, strict=True))
            e = e + gp.quicksum(v * xs[i] * xs[j] for i, j, v in q.quad)
            if math.isfinite(q.lo):
                g.addQConstr(e >= q.lo)
            if math.isfinite(q.hi):
                g.addQConstr(e <= q.hi)
        if model.quad:
            g.Params.NonConvex = 2
        g.ObjCon = model.offset
        if limits.time_limit is not None:
            g.Params.TimeLimit = max(limits.time_limit, 1e-3)
        g.Params.MIPGap = limits.mip_gap
        g.Params.Threads = max(int(limits.threads), 1)
        if limits.cutoff is not None:
            g.Params.Cutoff = limits.cutoff
        if limits.stop_at_first_solution:
            g.Params.SolutionLimit = 1
        if limits.use_priorities and model.priority is not None:
            x.BranchPriority = model.priority
        if limits.use_start and model.start is not None:
            x.Start = np.where(np.isnan(model.start), gp.GRB.UNDEFINED, model.start)
        g.optimize()
        status = STATUS_MAP.get(g.Status, SolveStatus.ERROR)
        if g.Status == 6:                   # CUTOFF: nothing beats the cutoff
            status = SolveStatus.LIMIT
        sol = np.asarray(x.X, float) if g.SolCount > 0 else None
        obj = float(g.ObjVal) if sol is not None else None
        if status is SolveStatus.INFEASIBLE:
            dual = math.inf
        elif g.Status == 6:
            dual = float(limits.cutoff)
        else:
            dual = float(g.ObjBound) if g.IsMIP else (obj if status is SolveStatus.OPTIMAL
                                                      else -math.inf)
        stats = {"backend": self.name, "native_status": int(g.Status),
                 "nodes": int(g.NodeCount) if g.IsMIP else 0}
        g.dispose()
        env.dispose()
        return SolveResult(status, sol, obj, dual, time.perf_counter() - t0, stats)
