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

Rigour: a row of ``M`` is only *approximately* a consequence of ``A x = 0``. What is exact
is that ``(lambda^T A) x = 0`` for any vector ``lambda``, so for any solution ``x`` of the
original equations ``M_r x = (M_r - lambda_r^T A) x``. :meth:`Tableau.defect` takes
``lambda_r`` = row ``r`` of ``A_B^{-1}`` (computed) and returns ``eta >= |M - Lambda A|``
elementwise, the float64 evaluation error included (``bounds.rounding.sum_error``). Every
conclusion drawn from a row (derived bounds, Failure, a contradicting added equation)
widens by ``sum_j eta_rj |x_j|``, so it holds for the *exact* solutions whatever the
rounding of the pivots and solves was (a poor ``lambda`` only loosens it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from nnresilience.bounds.rounding import TINY, UNIT, gamma, maxabs, sum_error, up

ONE = 0
#: Multiply-adds of one block of :meth:`Tableau.defect` (about 0.1 s): the deadline is
#: checked between blocks.
BLOCK_FLOPS = 200_000_000
"""Index of the constant variable (value 1, bounds [1, 1])."""


def up_nonneg(x: np.ndarray) -> np.ndarray:
    """An upper bound of the non-negative ``x`` one rounding up: ``x (1 + 4u) + TINY``.

    Same purpose as :func:`nnresilience.bounds.rounding.up` for non-negative values,
    without ``nextafter`` (which costs ~100 ns per element on the tableau's matrices): the
    product and the sum round by at most ``u`` each, so the result is ``>= x``.
    """
    return x * (1.0 + 4.0 * UNIT) + TINY


def sum_error_fast(magnitude: np.ndarray, n_terms: int) -> np.ndarray:
    """:func:`nnresilience.bounds.rounding.sum_error` rounded up by :func:`up_nonneg`."""
    g = gamma(int(n_terms) + 2)
    return up_nonneg(np.asarray(magnitude, dtype=np.float64) * (g * (1.0 + 2.0 * g))
                     + TINY * (int(n_terms) + 2))

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
    version: int = 0               # bumped whenever M changes (pivot, restore, new row)
    _defect: tuple | None = field(default=None, repr=False)
    _lu: tuple | None = field(default=None, repr=False)        # (version, LU of A_B)

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
        # the cached defect belongs to this M, which the copy shares until it changes
        return Tableau(self.A.copy(), self.M.copy(), self.basis.copy(), self.lo.copy(),
                       self.hi.copy(), self.x.copy(), self.row_of.copy(), self.version,
                       self._defect, self._lu)

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
        self.version += 1

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
        lu = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", spla.MatrixRankWarning)
                lu = spla.splu(sp.csc_matrix(AB))
                MN = lu.solve(np.ascontiguousarray(self.A[:, N]))
        except (RuntimeError, spla.MatrixRankWarning):
            lu = None
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
        self.version += 1
        self._lu = None if lu is None else (self.version, lu)
        self.recompute_basic()
        return True

    def defect(self, check=None) -> np.ndarray:
        """``eta`` (m x n) with ``|M - Lambda A| <= eta`` elementwise, exactly.

        ``Lambda`` is our float64 ``A_B^{-1}``; ``M - Lambda A`` is evaluated in float64
        and its rounding error added (``sum_error`` of ``|M| + |Lambda| |A|``), so
        ``|M_r . x| <= eta_r . |x|`` holds for every exact solution of ``A x = 0``.
        Cached until ``M`` changes. Computed in blocks of rows (each row's bound is its
        own), with ``check()`` called between blocks: on an MNIST-sized tableau the whole
        product takes seconds, and a deadline must be able to end it.
        """
        if self._defect is not None and self._defect[0] == self.version:
            return self._defect[1]
        m = self.n_rows
        if m == 0:
            eta = np.zeros((0, self.n_vars))
        else:
            Lam = self._inverse_basis()
            absA = np.abs(self.A)
            eta = np.empty((m, self.n_vars))
            step = max(1, BLOCK_FLOPS // max(1, m * self.n_vars))
            for r0 in range(0, m, step):
                if check is not None:
                    check()
                blk = slice(r0, min(m, r0 + step))
                with np.errstate(over="ignore", invalid="ignore"):
                    R = self.M[blk] - Lam[blk] @ self.A
                    mag = np.abs(self.M[blk]) + np.abs(Lam[blk]) @ absA
                    eta[blk] = up_nonneg(np.abs(R) + sum_error_fast(mag, m + 1))
            eta[~np.isfinite(eta)] = np.inf
        self._defect = (self.version, eta)
        return eta

    def _inverse_basis(self) -> np.ndarray:
        """``A_B^{-1}`` in float64 (the LU of the last restoration when still current).

        Any matrix is acceptable to :meth:`defect` (a poor one only loosens ``eta``), so a
        singular basis gives zeros rather than an error.
        """
        m = self.n_rows
        lu = self._lu[1] if self._lu is not None and self._lu[0] == self.version else None
        try:
            if lu is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", spla.MatrixRankWarning)
                    lu = spla.splu(sp.csc_matrix(self.A[:, self.basis]))
            Lam = np.asarray(lu.solve(np.eye(m))).reshape(m, m)
        except (RuntimeError, spla.MatrixRankWarning):
            return np.zeros((m, m))
        return Lam if np.all(np.isfinite(Lam)) else np.zeros((m, m))

    def row_error(self, eta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per row: ``sum_j eta_rj max(|l_j|, |u_j|)`` over finite terms, and how many terms
        are infinite (a variable with ``eta_rj > 0`` and an infinite bound).

        Rounded up, so ``|M_r . x|`` of an exact solution within the bounds is at most the
        first value when the count is 0.
        """
        eta = self.defect() if eta is None else eta
        mag = maxabs(self.lo, self.hi)
        inf = ~np.isfinite(mag)
        used = eta > 0.0
        n_inf = (used & inf[None, :]).sum(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            terms = np.where(used & ~inf[None, :], eta * np.where(inf, 0.0, mag)[None, :], 0.0)
            err = up_nonneg(terms.sum(axis=1) * (1.0 + 2.0 * gamma(self.n_vars + 2)))
        return err, n_inf

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
            return -1 if self._contradicts(a, red) else 0
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
        self.version += 1
        self.recompute_basic()
        return 1

    def _contradicts(self, a: np.ndarray, red: np.ndarray) -> bool:
        """Does ``T`` provably exclude ``a . x = 0`` (``red``: ``a`` reduced by the rows)?

        For an exact solution of ``T``, ``a . x = red* . x + a_B . (M x)`` with
        ``red* = a - a_B M`` (``red`` up to its rounding) and ``|M_r x| <= eta_r |x|``.
        A contradiction is claimed only when the constant ``red_ONE`` exceeds everything
        else the other terms can contribute within the bounds; otherwise the equation is
        treated as implied (not added), which can only lose a pruning, never soundness.
        """
        m = self.n_rows
        aB = np.abs(a[self.basis]) if m else np.zeros(0)
        e_red = sum_error(np.abs(a) + (aB @ np.abs(self.M) if m else 0.0), m + 1)
        mag = maxabs(self.lo, self.hi)
        coef = np.abs(red) + e_red
        coef[ONE] = 0.0
        coef[self.basis] = 0.0     # red* is exactly 0 there: M[:, basis] = I exactly
        used = coef > 0.0
        if np.any(used & ~np.isfinite(mag)):
            return False
        rest = float(np.sum(np.where(used, coef * np.where(used, mag, 0.0), 0.0)))
        if m:
            err, n_inf = self.row_error()
            if np.any((aB > 0.0) & (n_inf > 0)):
                return False
            rest += float(aB @ err)
        rest = float(up(rest * (1.0 + 2.0 * gamma(self.n_vars + m + 2))))
        return abs(float(red[ONE])) - float(e_red[ONE]) > rest
