"""A Farkas certificate proves a model empty; nothing proves a non-empty model empty."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.backends.farkas import check_certificate, prove_empty
from nnresilience.encode.model import MilpModel


def _model_around(rng: np.random.Generator, x0: np.ndarray, rows: int, scale: float,
                  gap: float):
    """Random rows ``A x >= A x0 + gap``: feasible at x0 when gap <= 0."""
    n = x0.size
    model = MilpModel()
    x = model.add_vars(n, x0 - rng.uniform(0, 1, n) * scale, x0 + rng.uniform(0, 1, n) * scale)
    A = rng.normal(size=(rows, n)) * scale
    rhs = A @ x0 + gap
    for r in range(rows):
        model.add_terms(np.zeros(n, np.int64), x, A[r], 1, float(rhs[r]), np.inf)
    return model.arrays()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 1e3, 1e6, 1e-3]))
def test_no_multipliers_prove_a_feasible_model_empty(seed, scale):
    """The model has a point (x0, with every row exactly at its bound): whatever ``y`` —
    random, huge, tiny, or the solver's — the check must say "not proven"."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, 4) * scale
    arr = _model_around(rng, x0, 6, scale, 0.0)
    for _ in range(20):
        y = rng.normal(size=arr.n_rows) * 10.0 ** rng.integers(-8, 8)
        assert not check_certificate(arr, y)
        assert not check_certificate(arr, np.abs(y))
    assert not prove_empty(arr)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 1e3, 1e-3]))
def test_an_empty_box_is_proven_empty(seed, scale):
    """``sum x >= n * hi + 1``-style rows that no point of the box meets."""
    rng = np.random.default_rng(seed)
    n = 5
    model = MilpModel()
    hi = rng.uniform(0.5, 1.0, n) * scale
    x = model.add_vars(n, -hi, hi)
    w = rng.uniform(0.5, 2.0, n)
    model.add_terms(np.zeros(n, np.int64), x, w, 1, float(w @ hi) * 1.01, np.inf)
    model.add_terms(np.zeros(n, np.int64), x, rng.normal(size=n), 1, -np.inf, np.inf)
    arr = model.arrays()
    assert prove_empty(arr)
    # a certificate for a slightly different model (the row moved to w @ hi) fails
    from dataclasses import replace

    row_lo = arr.row_lo.copy()
    row_lo[0] = float(w @ hi) * (1 - 1e-9)
    assert not prove_empty(replace(arr, row_lo=row_lo))


def test_the_certificate_is_checked_not_trusted():
    """A hand-made wrong 'ray' on an empty model and a right one: only the right one passes."""
    model = MilpModel()
    x = model.add_vars(2, np.zeros(2), np.ones(2))
    model.add_terms(np.zeros(2, np.int64), x, np.ones(2), 1, 2.5, np.inf)   # x1 + x2 >= 2.5
    model.add_terms(np.zeros(2, np.int64), x, np.array([1.0, -1.0]), 1, -np.inf, 0.5)
    arr = model.arrays()
    assert sp.issparse(arr.A)
    assert check_certificate(arr, np.array([1.0, 0.0]))
    assert check_certificate(arr, np.array([-1.0, 0.0]))          # either sign convention
    assert not check_certificate(arr, np.array([0.0, 1.0]))       # the other row alone
    assert prove_empty(arr)
