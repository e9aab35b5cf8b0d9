"""Proving a model empty without trusting the solver: a Farkas certificate, checked by us.

A solver's "infeasible" is never a proof here (:mod:`nnresilience.backends.certify`). But
some models *are* empty, and a search needs to say so: a branch-and-bound domain whose
phase decisions contradict each other has no input at all, and the margin form cannot help
(it is infeasible too). Linear programming has a certificate for emptiness that anyone can
check: for ``lb <= x <= ub, row_lo <= A x <= row_hi``, any multipliers ``y`` give

    y^T (A x) = (A^T y)^T x,

where the left side lies in ``[Σ_r min(y_r lo_r, y_r hi_r), Σ_r max(...)]`` (rows) and the
right side in ``[Σ_j min(c_j lb_j, c_j ub_j), Σ_j max(...)]`` with ``c = A^T y`` (box). If
the two intervals do not meet, no ``x`` satisfies the model — in exact arithmetic, so for
any solver tolerance. HiGHS supplies ``y`` (its dual ray) for the LP relaxation; we
compute both intervals ourselves with outward rounding (``c`` with the error bound of its
dot products, every sum with :func:`~nnresilience.bounds.rounding.sum_error`). A MILP whose
LP relaxation is empty is empty. When there is no ray, or the check fails (the ray is
inaccurate, or the model is not empty), the answer is "not proven", never "non-empty".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nnresilience.bounds.rounding import down, sum_error, up
from nnresilience.encode.model import MilpArrays


def _products(c_lo: np.ndarray, c_hi: np.ndarray, lo: np.ndarray, hi: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per entry, the min and max of ``c x`` over ``c in [c_lo, c_hi]``, ``x in [lo, hi]``
    (float products; ``0 * inf`` is 0, an unbounded product is ``±inf``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        cand = np.stack([c_lo * lo, c_lo * hi, c_hi * lo, c_hi * hi])
    zero_c = (c_lo == 0.0) & (c_hi == 0.0)
    pmin = np.where(np.isnan(cand), -np.inf, cand).min(axis=0)
    pmax = np.where(np.isnan(cand), np.inf, cand).max(axis=0)
    return np.where(zero_c, 0.0, pmin), np.where(zero_c, 0.0, pmax)


def _sum_down(terms: np.ndarray) -> float:
    if terms.size == 0:
        return 0.0
    if np.any(terms == -np.inf):
        return -np.inf
    s = float(terms.sum())
    return float(down(s - sum_error(np.abs(terms).sum(), terms.size + 2)))


def _sum_up(terms: np.ndarray) -> float:
    if terms.size == 0:
        return 0.0
    if np.any(terms == np.inf):
        return np.inf
    s = float(terms.sum())
    return float(up(s + sum_error(np.abs(terms).sum(), terms.size + 2)))


def check_certificate(arrays: MilpArrays, y: np.ndarray) -> bool:
    """True if the row multipliers ``y`` prove the LP relaxation of ``arrays`` empty.

    Sign-agnostic (either ``y`` or ``-y`` may be the solver's convention): the check is
    that the row interval and the box interval of ``y^T A x`` are disjoint.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    A = sp.csr_matrix(arrays.A)
    if y.size != A.shape[0] or not np.all(np.isfinite(y)) or not np.any(y):
        return False
    # c = A^T y with a bound on its rounding (per column: terms |A_rj y_r|)
    At = A.T.tocsr()
    c = np.asarray(At @ y).reshape(-1)
    terms = np.diff(At.indptr).max(initial=0) + 1
    err = up(sum_error(np.asarray(abs(At) @ np.abs(y)).reshape(-1), int(terms)))
    c_lo, c_hi = down(c - err), up(c + err)
    bmin, bmax = _products(c_lo, c_hi, np.asarray(arrays.lb, float),
                           np.asarray(arrays.ub, float))
    rmin, rmax = _products(y, y, np.asarray(arrays.row_lo, float),
                           np.asarray(arrays.row_hi, float))
    box_lo, box_hi = _sum_down(bmin), _sum_up(bmax)
    row_lo, row_hi = _sum_down(rmin), _sum_up(rmax)
    return bool(box_hi < row_lo or box_lo > row_hi)


def prove_empty(arrays: MilpArrays, time_limit: float | None = None) -> bool:
    """True only if the LP relaxation of ``arrays`` is proven empty by a checked Farkas
    certificate (HiGHS's dual ray, verified by :func:`check_certificate`)."""
    if arrays.quad or arrays.n_rows == 0:
        return False
    from nnresilience.bounds.lp import make_highs

    # an LP without objective (integrality dropped); presolve off: the ray must be of
    # the model as given
    h = make_highs(sp.csr_matrix(arrays.A), np.asarray(arrays.row_lo, float),
                   np.asarray(arrays.row_hi, float), np.asarray(arrays.lb, float),
                   np.asarray(arrays.ub, float), time_limit=time_limit)
    h.setOptionValue("presolve", "off")
    h.run()
    if not str(h.getModelStatus()).endswith("kInfeasible"):
        return False
    _, has_ray, ray = h.getDualRay()
    return bool(has_ray) and check_certificate(arrays, np.asarray(ray, float))
