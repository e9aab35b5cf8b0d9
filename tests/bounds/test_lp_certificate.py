"""The LP bound is a weak-duality certificate: valid for any multipliers and tight at the
optimum HiGHS returns (checked against scipy's linprog)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from nnresilience.bounds.lp import safe_dual_bound, solve_lp_chunk


def _lp(rng):
    n, m = 6, 5
    A = sp.csr_matrix(rng.normal(size=(m, n)))
    x0 = rng.uniform(-0.5, 0.5, size=n)
    ax = A @ x0
    row_lo = np.where(rng.random(m) < 0.5, ax - 1.0, -np.inf)
    row_hi = np.where(np.isfinite(row_lo) & (rng.random(m) < 0.5), np.inf, ax + 1.0)
    return A, row_lo, row_hi, -np.ones(n), np.ones(n)


def test_certificate_is_tight_and_valid_for_any_multipliers():
    rng = np.random.default_rng(4)
    for _ in range(10):
        A, row_lo, row_hi, lb, ub = _lp(rng)
        c = rng.normal(size=lb.size)
        payload = {"A": A, "row_lo": row_lo, "row_hi": row_hi, "lb": lb, "ub": ub,
                   "cols": np.arange(lb.size), "C": c[None, :], "d": np.zeros(1)}
        lo, hi, n = solve_lp_chunk(payload)
        assert n == 2
        fin_lo, fin_hi = np.isfinite(row_lo), np.isfinite(row_hi)
        A_ub = sp.vstack([A[fin_hi], -A[fin_lo]])
        b_ub = np.concatenate([row_hi[fin_hi], -row_lo[fin_lo]])
        bnds = list(zip(lb, ub, strict=True))
        vmin = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bnds).fun
        vmax = -linprog(-c, A_ub=A_ub, b_ub=b_ub, bounds=bnds).fun
        assert lo[0] <= vmin + 1e-12 and lo[0] >= vmin - 1e-6
        assert hi[0] >= vmax - 1e-12 and hi[0] <= vmax + 1e-6
        # any multipliers, even random ones, give a valid (if weak) lower bound
        y = rng.normal(size=A.shape[0])
        assert safe_dual_bound(A, row_lo, row_hi, lb, ub, c, y) <= vmin + 1e-12
