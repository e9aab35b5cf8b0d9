"""L1 vertex bounds of the difference (``bounds/vertex_difference.py``) against exact pairs."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nnresilience.bounds.differential import (
    ELEMENTWISE,
    PairRegion,
    differential_bounds,
    slope_range,
)
from nnresilience.bounds.vertex_difference import l1_unit_upper, supported
from nnresilience.network.layers import Affine, MaxPool, ReLU
from nnresilience.network.model import sequential

from .helpers import exact_forward_all, mixed_network
from .test_differential import sample_pairs


def _slopes(net, db):
    return {i: slope_range(layer, db.lo1[i], db.hi1[i], db.lo2[i], db.hi2[i])
            for i, layer in enumerate(net.layers) if layer.kind in ELEMENTWISE}


def _rows(rng, n_out):
    """Differences of two outputs (what the certifier asks) and random rows."""
    C = np.zeros((n_out - 1, n_out))
    C[np.arange(n_out - 1), np.arange(1, n_out)] = 1.0
    C[:, 0] = -1.0
    return np.vstack([C, rng.normal(size=(2, n_out))])


@pytest.mark.parametrize("kind", ["relu", "leaky", "tanh", "sigmoid", "arctan"])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_vertex_bound_holds_at_exact_pairs(kind, scale):
    rng = np.random.default_rng(7)
    net = mixed_network(rng, 3, [4, 4], [kind, kind], scale=scale)
    lo, hi = -np.ones(3), np.ones(3)
    C = _rows(rng, 3)
    for r in (0.05, 0.7):
        region = PairRegion(lo, hi, "l1", r)
        db = differential_bounds(net, region)
        L = l1_unit_upper(net, C, _slopes(net, db))
        assert np.all(np.isfinite(L))
        A, B = sample_pairs(region, 48, rng)
        ya = exact_forward_all(net, A)[-1]
        yb = exact_forward_all(net, B)[-1]
        if ya.dtype == object:              # exact rationals: compare exactly
            Cf = np.array([[Fraction(float(v)) for v in row] for row in C], dtype=object)
            eps = np.array([sum(abs(Fraction(float(b)) - Fraction(float(a)))
                                for a, b in zip(ra, rb, strict=True))
                            for ra, rb in zip(A, B, strict=True)], dtype=object)
            moved = (yb - ya).dot(Cf.T)
            for t in range(C.shape[0]):
                Lt = Fraction(float(L[t]))
                assert all(moved[p, t] <= Lt * eps[p] for p in range(A.shape[0])), (t, r)
        else:                               # long double: 11 bits more than float64
            moved = (yb - ya) @ C.T.astype(np.longdouble)
            eps = np.abs(B.astype(np.longdouble) - A.astype(np.longdouble)).sum(1)
            slack = 1e-15 * (np.abs(ya) + np.abs(yb)).sum(1).max() * np.abs(C).sum()
            assert np.all(moved <= L[None, :] * eps[:, None] + slack), r


@pytest.mark.parametrize("kind", ["relu", "leaky", "tanh"])
def test_vertex_bound_holds_along_the_ball_vertices(kind):
    """Many pairs ``b = a ± r e_i`` (where the bound is reached, if anywhere), float64
    forward values with an allowance of 1e-12 of their magnitude for rounding."""
    rng = np.random.default_rng(11)
    worst = 0.0
    for seed in range(4):
        net = mixed_network(np.random.default_rng(seed), 3, [5, 5], [kind, kind], scale=2.0)
        C = _rows(rng, 3)
        for r in (0.1, 1.0):
            region = PairRegion(-np.ones(3), np.ones(3), "l1", r)
            L = l1_unit_upper(net, C, _slopes(net, differential_bounds(net, region)))
            A = rng.uniform(-1.0, 1.0, size=(400, 3))
            E = np.zeros_like(A)
            E[np.arange(400), rng.integers(0, 3, 400)] = rng.choice([-r, r], 400)
            B = np.clip(A + E, -1.0, 1.0)
            ya, yb = net.forward(A), net.forward(B)
            moved = (yb - ya) @ C.T
            eps = np.abs(B - A).sum(1)
            slack = 1e-12 * (np.abs(ya) + np.abs(yb)).sum(1, keepdims=True)
            assert np.all(moved <= L[None, :] * eps[:, None] + slack)
            worst = max(worst, float((moved / (L[None, :] * eps[:, None] + 1e-300)).max()))
    assert worst > 0.5                      # the pairs come near the bound


def test_one_hidden_layer_is_the_exact_slope_supremum():
    """One ReLU layer with every neuron unstable: ``F(±e_i) = Σ_k relu(±c_k W_ki)``."""
    rng = np.random.default_rng(3)
    W1, W2 = rng.normal(size=(6, 4)), rng.normal(size=(3, 6))
    net = sequential([Affine(W1, np.zeros(6)), ReLU(6), Affine(W2, np.zeros(3))])
    C = _rows(rng, 3)
    slopes = {1: (np.zeros(6), np.ones(6))}
    L = l1_unit_upper(net, C, slopes)
    P = (C @ W2)[:, :, None] * W1[None, :, :]          # (T, k, i)
    ref = np.maximum(np.maximum(P, 0).sum(1), np.maximum(-P, 0).sum(1)).max(1)
    assert np.allclose(L, ref, rtol=1e-12, atol=0.0)
    assert np.all(ref <= L)                           # outward, never below


def test_over_budget_or_late_gives_no_bound(monkeypatch):
    import time

    from nnresilience.bounds import vertex_difference

    rng = np.random.default_rng(5)
    net = mixed_network(rng, 3, [4, 4], ["relu", "relu"])
    slopes = {i: (np.zeros(layer.out_size), np.ones(layer.out_size))
              for i, layer in enumerate(net.layers) if layer.kind == "relu"}
    C = _rows(rng, 3)
    assert l1_unit_upper(net, C, slopes) is not None
    assert l1_unit_upper(net, C, slopes, deadline=time.perf_counter() - 1.0) is None
    monkeypatch.setattr(vertex_difference, "MAX_FLOPS", 1.0)
    assert l1_unit_upper(net, C, slopes) is None


def test_max_pool_is_not_supported():
    net = sequential([Affine(np.eye(4), np.zeros(4)), MaxPool(np.array([[0, 1], [2, 3]]), 4),
                      Affine(np.ones((2, 2)), np.zeros(2))])
    assert not supported(net)
