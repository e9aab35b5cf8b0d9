"""``MilpModel``: a solver-neutral mixed-integer model assembled in sparse blocks.

Encoders append whole layers at once (``add_vars`` returns an index array,
``add_rows`` takes a sparse block whose columns are global variable indices), so building
a model costs a few numpy/scipy operations per layer rather than a Python call per
constraint. :meth:`MilpModel.arrays` stacks the blocks into the row form
``row_lo <= A x <= row_hi`` that HiGHS takes directly and SCIP takes through its matrix API.
The objective is always *minimised*. Quadratic constraints (arctan MIQCP) are kept as a
short list because only SCIP accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class QuadConstraint:
    """``lo <= sum_i lin[i] x_i + sum (i, j, q) q x_i x_j <= hi``."""

    lin_idx: tuple[int, ...]
    lin_val: tuple[float, ...]
    quad: tuple[tuple[int, int, float], ...]
    lo: float
    hi: float


@dataclass(frozen=True, eq=False)
class MilpArrays:
    """The stacked model handed to a backend in one call."""

    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    c: np.ndarray
    integer: np.ndarray           # bool per variable
    offset: float
    quad: tuple[QuadConstraint, ...]
    priority: np.ndarray | None   # branching priority per variable (higher first)
    start: np.ndarray | None      # MIP start (full assignment) or None
    names: tuple[str, ...]

    @property
    def n_vars(self) -> int:
        return int(self.lb.size)

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def n_integer(self) -> int:
        return int(self.integer.sum())


@dataclass(eq=False)
class MilpModel:
    """Growing model; see module docstring. Variables are continuous unless ``integer``."""

    _lb: list[np.ndarray] = field(default_factory=list)
    _ub: list[np.ndarray] = field(default_factory=list)
    _c: list[np.ndarray] = field(default_factory=list)
    _int: list[np.ndarray] = field(default_factory=list)
    _names: list[tuple[str, int]] = field(default_factory=list)
    _blocks: list[sp.coo_matrix] = field(default_factory=list)
    _row_lo: list[np.ndarray] = field(default_factory=list)
    _row_hi: list[np.ndarray] = field(default_factory=list)
    quad: list[QuadConstraint] = field(default_factory=list)
    offset: float = 0.0
    n_vars: int = 0
    n_rows: int = 0
    priority: dict[int, int] = field(default_factory=dict)
    start: dict[int, float] = field(default_factory=dict)

    def add_vars(self, n: int, lb=-np.inf, ub=np.inf, integer: bool = False, obj=0.0,
                 name: str = "v") -> np.ndarray:
        """Add ``n`` variables; bounds/objective broadcast. Returns their indices."""
        idx = np.arange(self.n_vars, self.n_vars + n, dtype=np.int64)
        self._lb.append(np.broadcast_to(np.asarray(lb, float), (n,)).copy())
        self._ub.append(np.broadcast_to(np.asarray(ub, float), (n,)).copy())
        self._c.append(np.broadcast_to(np.asarray(obj, float), (n,)).copy())
        self._int.append(np.full(n, bool(integer)))
        self._names.append((name, n))
        self.n_vars += n
        return idx

    def add_binaries(self, n: int, name: str = "b") -> np.ndarray:
        return self.add_vars(n, 0.0, 1.0, integer=True, name=name)

    def add_rows(self, A, lo, hi) -> np.ndarray:
        """Add ``lo <= A x <= hi``; ``A`` is (k, <= n_vars) with global column indices."""
        A = sp.coo_matrix(A)
        k = A.shape[0]
        if A.shape[1] > self.n_vars:
            raise ValueError(f"block references column {A.shape[1] - 1}, model has "
                             f"{self.n_vars} variables")
        A = sp.coo_matrix((A.data, (A.row, A.col)), shape=(k, self.n_vars))
        self._blocks.append(A)
        self._row_lo.append(np.broadcast_to(np.asarray(lo, float), (k,)).copy())
        self._row_hi.append(np.broadcast_to(np.asarray(hi, float), (k,)).copy())
        idx = np.arange(self.n_rows, self.n_rows + k, dtype=np.int64)
        self.n_rows += k
        return idx

    def add_terms(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int,
                  lo, hi) -> np.ndarray:
        """Triplet form of :meth:`add_rows`: local row ids ``0..n_rows-1``."""
        A = sp.coo_matrix((np.asarray(vals, float), (np.asarray(rows), np.asarray(cols))),
                          shape=(n_rows, self.n_vars))
        return self.add_rows(A, lo, hi)

    def set_objective(self, idx: np.ndarray, coef, offset: float = 0.0) -> None:
        """Replace the objective by ``sum coef * x[idx] + offset`` (minimised)."""
        for arr in self._c:
            arr[:] = 0.0
        c = self._flat(self._c)
        c[np.asarray(idx)] = np.broadcast_to(np.asarray(coef, float), np.shape(idx))
        self._c = [c]
        self.offset = float(offset)

    def set_bounds(self, idx: np.ndarray, lb=None, ub=None) -> None:
        lbs, ubs = self._flat(self._lb), self._flat(self._ub)
        if lb is not None:
            lbs[np.asarray(idx)] = lb
        if ub is not None:
            ubs[np.asarray(idx)] = ub
        self._lb, self._ub = [lbs], [ubs]

    def bounds_of(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._flat(self._lb)[idx], self._flat(self._ub)[idx]

    def set_priority(self, idx: np.ndarray, priority: int) -> None:
        for i in np.asarray(idx).reshape(-1):
            self.priority[int(i)] = int(priority)

    def set_start(self, idx: np.ndarray, values: np.ndarray) -> None:
        for i, v in zip(np.asarray(idx).reshape(-1), np.asarray(values, float).reshape(-1),
                        strict=True):
            self.start[int(i)] = float(v)

    @staticmethod
    def _flat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    def arrays(self) -> MilpArrays:
        """Stack everything into :class:`MilpArrays` (one sparse matrix)."""
        n = self.n_vars
        blocks = [sp.coo_matrix((b.data, (b.row, b.col)), shape=(b.shape[0], n))
                  for b in self._blocks]
        A = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n))
        A.sum_duplicates()
        names: list[str] = []
        for nm, k in self._names:
            names.extend(f"{nm}[{i}]" for i in range(k))
        prio = None
        if self.priority:
            prio = np.zeros(n, dtype=np.int64)
            for i, p in self.priority.items():
                prio[i] = p
        start = None
        if self.start:
            start = np.full(n, np.nan)
            for i, v in self.start.items():
                start[i] = v
        return MilpArrays(A=A, row_lo=self._flat(self._row_lo), row_hi=self._flat(self._row_hi),
                          lb=self._flat(self._lb), ub=self._flat(self._ub), c=self._flat(self._c),
                          integer=self._flat(self._int).astype(bool) if self._int
                          else np.zeros(0, bool),
                          offset=self.offset, quad=tuple(self.quad), priority=prio, start=start,
                          names=tuple(names))
