"""Layer kinds of the IR: forward against a direct formula, and interval soundness by
sampling (every sampled image lies in the interval image; a point box maps to the point)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.network.layers import (
    Affine,
    Arctan,
    LeakyReLU,
    MaxPool,
    ReLU,
    Sigmoid,
    Tanh,
)


def _layers(rng):
    W = rng.normal(size=(5, 4))
    return [
        (Affine(W, rng.normal(size=5)), None),
        (Affine(sp.csr_matrix(W * (rng.random(W.shape) < 0.5)), np.zeros(5)), None),
        (ReLU(4), lambda x: np.maximum(x, 0)),
        (LeakyReLU(4, slope=0.3), lambda x: np.where(x > 0, x, 0.3 * x)),
        (Arctan(4), np.arctan),
        (Tanh(4), np.tanh),
        (Sigmoid(4), lambda x: 1 / (1 + np.exp(-x))),
        (MaxPool(groups=np.array([[0, 1], [2, 3], [1, 1]]), n_in=4),
         lambda x: np.stack([x[:, [0, 1]].max(1), x[:, [2, 3]].max(1), x[:, 1]], axis=1)),
    ]


def test_forward_formulas(rng):
    x = rng.normal(size=(7, 4)) * 3
    for layer, fn in _layers(rng):
        y = layer.forward(x)
        assert y.shape == (7, layer.out_size)
        if fn is None:
            W = layer.dense_W()
            np.testing.assert_allclose(y, x @ W.T + layer.b, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_allclose(y, fn(x), rtol=1e-12, atol=1e-12)


def test_sigmoid_no_overflow():
    y = Sigmoid(3).forward(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]])


def test_leaky_slope_validated():
    with pytest.raises(ValueError):
        LeakyReLU(2, slope=1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_interval_contains_samples(seed):
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=4) * 2
    hi = lo + rng.uniform(0, 3, size=4)
    x = rng.uniform(lo, hi, size=(200, 4))
    x = np.vstack([x, lo, hi])
    for layer, _ in _layers(rng):
        ilo, ihi = layer.interval(lo, hi)
        y = layer.forward(x)
        assert np.all(y >= ilo - 1e-12) and np.all(y <= ihi + 1e-12), layer.describe()
        plo, phi = layer.interval(lo, lo)
        np.testing.assert_allclose(plo, layer.forward(lo[None])[0], atol=1e-12)
        np.testing.assert_allclose(phi, plo, atol=1e-12)
