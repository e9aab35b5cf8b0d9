"""SCIP backend (PySCIPOpt): MILP, MIQCP (arctan), branching priorities, MIP start.

Variables are created in one ``addMatrixVar`` call (vectors of bounds and types). Rows go
in from the CSR matrix as one ``Expr`` per row built from a dict of terms, then one
``addConss`` call: PySCIPOpt's ``MatrixExpr`` route (``A @ x``) needs a dense ``A``,
which for a whole model (mostly zeros) would cost far more. Quadratic constraints become
ordinary nonlinear ``ExprCons`` (SCIP solves the non-convex MIQCP by spatial branching).

Limits: ``limits/time``; ``limits/gap``; ``cutoff`` through ``setObjlimit`` (SCIP then
reports infeasible when nothing beats it, which we map to LIMIT with dual bound = cutoff);
``stop_at_first_solution`` through ``limits/solutions = 1``; priorities through
``chgVarBranchPriority``; MIP start through ``createPartialSol`` + ``addSol``. SCIP runs
single-threaded. Tolerances: SCIP defaults (feasibility 1e-6).
"""

from __future__ import annotations

import math
import time

import numpy as np

from nnresilience.backends.base import Backend, SolveLimits, SolveResult, SolveStatus
from nnresilience.backends.highs import trivially_infeasible
from nnresilience.backends.quiet import captured_stderr
from nnresilience.encode.model import MilpArrays

STATUS_MAP = {
    "optimal": SolveStatus.OPTIMAL,
    "infeasible": SolveStatus.INFEASIBLE,
    "unbounded": SolveStatus.UNBOUNDED,
    "inforunbd": SolveStatus.ERROR,
    "timelimit": SolveStatus.LIMIT,
    "nodelimit": SolveStatus.LIMIT,
    "totalnodelimit": SolveStatus.LIMIT,
    "stallnodelimit": SolveStatus.LIMIT,
    "gaplimit": SolveStatus.OPTIMAL,
    "sollimit": SolveStatus.LIMIT,
    "bestsollimit": SolveStatus.LIMIT,
    "memlimit": SolveStatus.LIMIT,
    "userinterrupt": SolveStatus.LIMIT,
    "restartlimit": SolveStatus.LIMIT,
    "primallimit": SolveStatus.LIMIT,
    "duallimit": SolveStatus.LIMIT,
    "terminate": SolveStatus.LIMIT,
}


class ScipBackend(Backend):
    name = "scip"
    module = "pyscipopt"
    supports_mip = True
    supports_quadratic = True
    supports_priorities = True
    supports_cutoff = True
    supports_start = True

    def __init__(self, params: dict | None = None) -> None:
        # extra native SCIP parameters ("separating/maxroundsroot": 5, ...), applied last
        self.params = dict(params or {})

    def _solve(self, model: MilpArrays, limits: SolveLimits) -> SolveResult:
        from pyscipopt import Expr, Model
        from pyscipopt.scip import ExprCons, Term

        t0 = time.perf_counter()
        if trivially_infeasible(model):
            return SolveResult(SolveStatus.INFEASIBLE, None, None, math.inf,
                               time.perf_counter() - t0, {"backend": self.name})
        s = Model()
        if not limits.verbose:
            s.hideOutput()
        n = model.n_vars
        is_mip = bool(model.integer.any())
        inf = s.infinity()
        lb = np.where(np.isfinite(model.lb), model.lb, -inf)
        ub = np.where(np.isfinite(model.ub), model.ub, inf)
        vtype = np.where(model.integer, "I", "C")
        xs = list(s.addMatrixVar((n,), vtype=vtype, lb=lb, ub=ub, obj=np.asarray(model.c, float))
                  .flat) if n else []
        terms = [Term(v) for v in xs]
        A = model.A.tocsr()
        ip = A.indptr
        ind = A.indices.tolist()
        dat = A.data.tolist()
        conss = []
        for r in range(model.n_rows):
            a, b = ip[r], ip[r + 1]
            if a == b:
                continue
            e = Expr(dict(zip([terms[j] for j in ind[a:b]], dat[a:b], strict=True)))
            lo, hi = model.row_lo[r], model.row_hi[r]
            conss.append(ExprCons(e, lhs=None if lo == -np.inf else float(lo),
                                  rhs=None if hi == np.inf else float(hi)))
        for q in model.quad:
            e = Expr(dict(zip([terms[j] for j in q.lin_idx], q.lin_val, strict=True))) \
                if q.lin_idx else Expr()
            for i, j, v in q.quad:
                e = e + v * xs[i] * xs[j]
            conss.append(ExprCons(e, lhs=None if q.lo == -np.inf else float(q.lo),
                                  rhs=None if q.hi == np.inf else float(q.hi)))
        if conss:
            s.addConss(conss)
        if model.offset:
            s.addObjoffset(float(model.offset))
        if limits.use_priorities and model.priority is not None:
            for i in np.flatnonzero(model.priority):
                s.chgVarBranchPriority(xs[i], int(model.priority[i]))
        if limits.time_limit is not None:
            s.setParam("limits/time", max(float(limits.time_limit), 1e-3))
        s.setParam("limits/gap", float(limits.mip_gap))
        if limits.cutoff is not None:
            s.setObjlimit(float(limits.cutoff))
        if limits.stop_at_first_solution:
            s.setParam("limits/solutions", 1)
        if limits.use_start and model.start is not None:
            sol = s.createPartialSol()
            for i in np.flatnonzero(~np.isnan(model.start)):
                s.setSolVal(sol, xs[i], float(model.start[i]))
            s.addSol(sol)
        messages: list[str] = []
        with captured_stderr(messages):
            for key, val in self.params.items():
                s.setParam(key, val)
            build = time.perf_counter() - t0
            s.optimize()
        native = s.getStatus()
        status = STATUS_MAP.get(native, SolveStatus.ERROR)
        x = objective = None
        if s.getNSols() > 0:
            best = s.getBestSol()
            x = np.array([s.getSolVal(best, v) for v in xs], dtype=float)
            objective = float(s.getSolObjVal(best))
        if native == "infeasible" and limits.cutoff is not None:
            status = SolveStatus.LIMIT           # nothing below the cutoff, not "infeasible"
        if status is SolveStatus.INFEASIBLE:
            dual = math.inf
        else:
            dual = float(s.getDualbound())
            if abs(dual) >= inf:
                dual = math.copysign(math.inf, dual)
            if native == "infeasible" and limits.cutoff is not None:
                # SCIP cannot tell "infeasible" from "nothing below the limit": claim only
                # the weaker, certainly true statement optimum >= cutoff.
                dual = float(limits.cutoff)
        if status is SolveStatus.OPTIMAL and x is None:
            status = SolveStatus.ERROR
        stats = {"backend": self.name, "native_status": native, "build_seconds": build,
                 "nodes": int(s.getNNodes()), "n_vars": n, "n_rows": model.n_rows,
                 "n_integer": model.n_integer, "n_quad": len(model.quad), "mip": is_mip}
        if messages:
            stats["solver_messages"] = messages[0]
        res = SolveResult(status, x, objective, dual, time.perf_counter() - t0, stats)
        s.freeProb()
        return res
