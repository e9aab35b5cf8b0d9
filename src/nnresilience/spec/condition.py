"""Output conditions in disjunctive normal form of linear inequalities over the outputs.

A :class:`Conjunction` is ``A y <= b`` (every row must hold); an :class:`OutputCondition`
is a disjunction of conjunctions. In a :class:`~nnresilience.spec.property.Property` the
condition describes the *unsafe* set (VNN-LIB convention): the property is violated when
some input of the region produces an output satisfying it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

# Tolerance for internal consistency checks of solver values only. A counterexample
# is reported only when the float64 replay satisfies the unsafe condition exactly
# (``A y <= b``, no tolerance); solver values are compared with this slack.
SOLVER_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class Conjunction:
    """``A y <= b``; ``A`` has shape (rows, n_outputs)."""

    A: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        A = np.atleast_2d(np.asarray(self.A, dtype=np.float64))
        b = np.asarray(self.b, dtype=np.float64).reshape(-1)
        if A.shape[0] != b.size:
            raise ValueError(f"condition has {A.shape[0]} rows but {b.size} right-hand sides")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)

    def margins(self, y: np.ndarray) -> np.ndarray:
        """``b - A y`` per row (batched over leading axes): all >= 0 means satisfied."""
        y = np.asarray(y, dtype=np.float64)
        return self.b - y @ self.A.T

    def satisfied(self, y: np.ndarray, tol: float = 0.0) -> np.ndarray | bool:
        m = self.margins(y)
        return np.all(m >= -tol, axis=-1)


@dataclass(frozen=True, eq=False)
class OutputCondition:
    """A disjunction of :class:`Conjunction` terms over ``n_outputs`` outputs.

    ``topk`` optionally records that the disjunction is the seed-000 top-k condition
    "at least k classes other than m reach y_m" as ``(m, k)``, so the MILP encoder can use
    the compact c_i-binary form instead of enumerating the subsets.
    """

    terms: tuple[Conjunction, ...]
    n_outputs: int
    topk: tuple[int, int] | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))
        for t in self.terms:
            if t.A.shape[1] != self.n_outputs:
                raise ValueError(f"condition term has {t.A.shape[1]} columns, expected "
                                 f"{self.n_outputs} outputs")

    def satisfied(self, y: np.ndarray, tol: float = 0.0) -> np.ndarray | bool:
        """True where ``y`` lies in the (unsafe) set; batched over leading axes."""
        y = np.asarray(y, dtype=np.float64)
        res = np.zeros(y.shape[:-1], dtype=bool)
        for t in self.terms:
            res = res | t.satisfied(y, tol)
        return res if res.ndim else bool(res)

    def max_margin(self, y: np.ndarray) -> np.ndarray:
        """Max over terms of min over rows of ``b - A y``: >= 0 iff satisfied.

        Attacks maximise this; it is the signed distance-like score of being unsafe.
        """
        y = np.asarray(y, dtype=np.float64)
        best = np.full(y.shape[:-1], -np.inf)
        for t in self.terms:
            best = np.maximum(best, t.margins(y).min(axis=-1))
        return best


def misclassification(label: int, n_outputs: int) -> OutputCondition:
    """Unsafe set of local robustness: some class j != label has ``y_j >= y_label``."""
    terms = []
    for j in range(n_outputs):
        if j == label:
            continue
        a = np.zeros(n_outputs)
        a[label], a[j] = 1.0, -1.0          # y_label - y_j <= 0
        terms.append(Conjunction(a[None, :], np.zeros(1)))
    return OutputCondition(tuple(terms), n_outputs, topk=(label, 1))


def not_in_top_k(label: int, k: int, n_outputs: int) -> OutputCondition:
    """Unsafe set of seed 000: at least ``k`` classes other than ``label`` reach ``y_label``.

    Enumerated as a disjunction over the k-subsets (kept for checking and for engines
    without native support) with ``topk=(label, k)`` for the compact MILP form.
    """
    if not 1 <= k <= n_outputs - 1:
        raise ValueError(f"k must be in 1..{n_outputs - 1}, got {k}")
    others = [j for j in range(n_outputs) if j != label]
    terms = []
    for subset in itertools.combinations(others, k):
        A = np.zeros((k, n_outputs))
        for r, j in enumerate(subset):
            A[r, label], A[r, j] = 1.0, -1.0
        terms.append(Conjunction(A, np.zeros(k)))
    return OutputCondition(tuple(terms), n_outputs, topk=(label, k))
