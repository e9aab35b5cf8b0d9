"""The simplex tableau of the Reluplex calculus: equations, basis, bounds, assignment.

Representation (dense numpy, sizes up to a few hundred variables):

* ``A`` (m x n): the equations in their *original* form, ``A x = 0``. Constants are carried
  by variable 0, the constant ``one`` with bounds ``[1, 1]``, which never enters the basis
  (it has no room to move). Rows are the network's affine layers (``x^b - W x^f - b one = 0``),
  the slack rows of the output condition (``s - a.y = 0``) and the equations added when a
  pair is eliminated (``x^f - x^b = 0`` or ``x^f - k x^b = 0``).
* ``M`` (m x n) = ``A_B^{-1} A``, so ``M[:, basis] = I`` and each row reads
  ``x_{basis[r]} = -sum_{j nonbasic} M[r, j] x_j``. This is the tableau T of the paper.
* ``lo``, ``hi`` (n,): bounds (``+-inf`` allowed); ``x`` (n,): the assignment alpha.

Invariant (Lemma 1 of Reluplex): ``x`` satisfies every equation (up to rounding), because
non-basic variables only move through :meth:`Tableau.update`, which moves the basic ones
with them, and :meth:`Tableau.pivot` only changes which variables are basic.

Floating point: every pivot adds rounding error to ``M``. :meth:`Tableau.restore`
recomputes ``M`` from ``A`` by one dense solve with ``A_B`` and the basic values from the
non-basic ones; the search calls it every ``restore_every`` pivots, at every search node
and before any conclusion (Failure, SAT) is drawn from a row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

ONE = 0
"""Index of the constant variable (value 1, bounds [1, 1])."""

ZERO_COEF = 1e-12
"""Coefficients of magnitude below this (relative to the row's largest) are treated as 0
when a row is *chosen from* (entering variables, elimination pivots); they are never
dropped from bound computations, which use the full row."""


@dataclass(eq=False)
class Tableau:
    A: np.ndarray
    M: np.ndarray
    basis: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    x: np.ndarray
    row_of: np.ndarray

    # ---------------------------------------------------------------- creation
    @staticmethod
    def from_equations(A: np.ndarray, basis: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                       x_nonbasic: np.ndarray) -> Tableau:
        """Tableau with ``A x = 0`` and the given basis; basic values computed from ``x``.

        ``x_nonbasic`` is a full-length vector whose basic entries are ignored.
        """
        A = np.array(A, dtype=np.float64)
        n = A.shape[1]
        basis = np.asarray(basis, dtype=np.int64).copy()
        row_of = np.full(n, -1, dtype=np.int64)
        row_of[basis] = np.arange(basis.size)
        tab = Tableau(A=A, M=A.copy(), basis=basis, lo=np.array(lo, dtype=np.float64),
                      hi=np.array(hi, dtype=np.float64),
                      x=np.array(x_nonbasic, dtype=np.float64), row_of=row_of)
        tab.restore()
        return tab

    def copy(self) -> Tableau:
        return Tableau(self.A.copy(), self.M.copy(), self.basis.copy(), self.lo.copy(),
                       self.hi.copy(), self.x.copy(), self.row_of.copy())

    # -------------------------------------------------------------- queries
    @property
    def n_vars(self) -> int:
        return int(self.A.shape[1])

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    def is_basic(self, j: int) -> bool:
        return bool(self.row_of[j] >= 0)

    def nonbasic_mask(self) -> np.ndarray:
        return self.row_of < 0

    def residual(self) -> float:
        """``max |A x|`` scaled by the row magnitudes: how far alpha is from satisfying T0."""
        if self.n_rows == 0:
            return 0.0
        r = np.abs(self.A @ self.x)
        scale = 1.0 + np.abs(self.A) @ np.abs(self.x)
        return float(np.max(r / scale))

    # -------------------------------------------------------------- operations
    def recompute_basic(self) -> None:
        """Set every basic variable from the non-basic ones (``x_B = -M_N x_N``)."""
        xn = self.x.copy()
        xn[self.basis] = 0.0
        self.x[self.basis] = -(self.M @ xn)

    def update(self, j: int, delta: float) -> None:
        """The Update operation: ``x_j += delta`` for non-basic ``j``; basic ones follow."""
        assert self.row_of[j] < 0, "update of a basic variable"
        if delta == 0.0:
            return
        self.x[j] += delta
        self.x[self.basis] -= self.M[:, j] * delta

    def pivot(self, r: int, j: int) -> None:
        """Exchange ``basis[r]`` (leaves) with non-basic ``j`` (enters) by elimination."""
        assert self.row_of[j] < 0, "entering variable already basic"
        piv = self.M[r, j]
        assert piv != 0.0, "pivot on a zero coefficient"
        leaving = int(self.basis[r])
        row = self.M[r] / piv
        col = self.M[:, j].copy()
        col[r] = 0.0
        nz = np.flatnonzero(row)             # non-basic columns (+ the leaving one)
        self.M[:, nz] -= np.outer(col, row[nz])
        self.M[r] = row
        self.M[:, j] = 0.0
        self.M[r, j] = 1.0
        self.basis[r] = j
        self.row_of[j] = r
        self.row_of[leaving] = -1

    def restore(self) -> bool:
        """Recompute ``M = A_B^{-1} A`` and the basic values from the original equations.

        Returns False (leaving the tableau untouched) if ``A_B`` is numerically singular,
        which cannot happen for a basis reached by pivots on non-zero coefficients unless
        rounding has destroyed it; the caller then treats the branch as undecided.
        """
        if self.n_rows == 0:
            return True
        # Only the non-basic columns need solving (M[:, basis] = I by definition). A_B is
        # sparse (layer weights, identity blocks, two-entry elimination rows), so a sparse
        # LU is much cheaper than a dense solve for ACAS-sized tableaux.
        N = np.flatnonzero(self.row_of < 0)
        AB = self.A[:, self.basis]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", spla.MatrixRankWarning)
                MN = spla.splu(sp.csc_matrix(AB)).solve(np.ascontiguousarray(self.A[:, N]))
        except (RuntimeError, spla.MatrixRankWarning):
            try:
                MN = np.linalg.solve(AB, self.A[:, N])
            except np.linalg.LinAlgError:
                return False
        MN = np.asarray(MN).reshape(self.n_rows, N.size)
        if not np.all(np.isfinite(MN)):
            return False
        M = np.zeros_like(self.A)
        M[:, N] = MN
        M[np.arange(self.n_rows), self.basis] = 1.0
        self.M = M
        self.recompute_basic()
        return True

    def add_equation(self, a: np.ndarray, prefer: tuple[int, ...] = ()) -> int:
        """Add the equation ``a . x = 0`` to the tableau with one new basic variable.

        The new row is first reduced by the existing rows (so its basic columns vanish);
        the new basic variable is the first of ``prefer`` that is non-basic with a
        non-negligible reduced coefficient, else the non-basic variable with the largest
        one. That is exactly "replace x^f by k x^b everywhere in T and add x^f = k x^b"
        of seed 004 §III.C when ``prefer = (x^f,)`` and ``x^f`` is non-basic. Basic
        values are recomputed so the assignment satisfies the grown tableau.
        Returns 1 when a row was added, 0 when the equation is already implied by the
        tableau (nothing added) and -1 when the tableau implies ``a . x = c`` with a
        constant ``c`` clearly non-zero (the equation contradicts T: the node is empty).
        """
        a = np.asarray(a, dtype=np.float64)
        red = a - a[self.basis] @ self.M if self.n_rows else a.copy()
        red[self.basis] = 0.0
        cand = np.abs(red)
        cand[ONE] = 0.0          # the constant stays in the row but never becomes basic
        scale = float(np.max(np.abs(a)))
        if cand.max() <= ZERO_COEF * max(scale, 1.0):
            return -1 if abs(red[ONE]) > 1e-6 * max(scale, 1.0) else 0
        j = -1
        for p in prefer:
            if self.row_of[p] < 0 and cand[p] > 1e-6 * cand.max():
                j = int(p)
                break
        if j < 0:
            j = int(np.argmax(cand))
        row = red / red[j]
        col = self.M[:, j].copy()
        nz = np.flatnonzero(row)
        self.M[:, nz] -= np.outer(col, row[nz])
        self.M[:, j] = 0.0
        self.M = np.vstack([self.M, row[None, :]])
        self.M[-1, j] = 1.0
        self.A = np.vstack([self.A, a[None, :]])
        self.basis = np.append(self.basis, j)
        self.row_of[j] = self.n_rows - 1
        self.recompute_basic()
        return 1
