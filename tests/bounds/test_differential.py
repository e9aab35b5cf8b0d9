"""Differential bounds (``bounds/differential.py``) against sampled pairs and exact LPs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from nnresilience.bounds.differential import (
    _NP,
    DifferentialAnalysis,
    LinearTargets,
    PairRegion,
    _PairGeometry,
    differential_bounds,
)
from nnresilience.errors import InputDataError
from nnresilience.network.layers import Affine, LeakyReLU, MaxPool, ReLU
from nnresilience.network.model import sequential

from .helpers import mixed_network


def sample_pairs(region: PairRegion, n: int, rng: np.random.Generator):
    """Pairs of the region: ``a`` at corners of its box and uniform; ``ε`` at the ball's
    vertices (L1: ``±r e_i``; L∞: ``±r`` everywhere), on random directions of the sphere
    and inside; ``b = a + ε`` clipped to D (clipping only shrinks every ``|ε_i|``)."""
    d, r = region.dim, region.radius
    k = n // 3
    corners = rng.integers(0, 2, size=(k, d)).astype(float)
    A = np.vstack([region.a_lo + corners * (region.a_hi - region.a_lo),
                   rng.uniform(region.a_lo, region.a_hi, size=(n - k, d))])
    A = np.clip(A, region.a_lo, region.a_hi)
    E = rng.normal(size=(n, d))
    if region.norm == "l1":
        E /= np.abs(E).sum(1, keepdims=True)
        axes = np.zeros((n // 4, d))
        axes[np.arange(n // 4), rng.integers(0, d, n // 4)] = rng.choice([-1.0, 1.0], n // 4)
        E[: n // 4] = axes
    elif region.norm == "linf":
        E /= np.abs(E).max(1, keepdims=True)
        E[: n // 4] = np.sign(E[: n // 4])
    else:
        E /= np.linalg.norm(E, axis=1, keepdims=True)
    scale = np.where(rng.random(n) < 0.5, 1.0, rng.random(n))
    # a hair inside the ball: a + ε is rounded, and the region is about the exact b - a
    B = np.clip(A + r * (1.0 - 1e-12) * scale[:, None] * E, region.lo, region.hi)
    return A, B


def assert_pairs_inside(net, db, A, B) -> None:
    va, vb = net.forward_all(A), net.forward_all(B)
    assert len(va) == len(db.dlo)
    for i, (xa, xb) in enumerate(zip(va, vb, strict=True)):
        dlo, dhi = db.float_delta(i)
        d = xb - xa
        # the bounds hold for the exact difference of the two float64 values; this
        # subtraction rounds it by at most half an ulp of the result
        ulp = np.spacing(np.abs(d))
        assert (d + ulp >= dlo).all(), f"entry {i}: below its bound by {(dlo - d).max()}"
        assert (d - ulp <= dhi).all(), f"entry {i}: above its bound by {(d - dhi).max()}"
        assert (xa >= db.lo1[i]).all() and (xa <= db.hi1[i]).all(), f"copy 1, entry {i}"
        assert (xb >= db.lo2[i]).all() and (xb <= db.hi2[i]).all(), f"copy 2, entry {i}"


def _region(rng, d, norm, scale=1.0):
    lo, hi = -scale * np.ones(d), scale * np.ones(d)
    shrink = rng.uniform(0.0, 0.6, size=(2, d)) * scale
    r = float(rng.uniform(0.01, 1.0)) * scale * (d if norm == "l1" else 1.0)
    return PairRegion(lo, hi, norm, r, lo + shrink[0], hi - shrink[1])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(st.sampled_from(["relu", "leaky"]),
       min_size=2, max_size=2), pool=st.booleans(), norm=st.sampled_from(["l1", "linf", "l2"]),
       double=st.booleans())
def test_differences_of_sampled_pairs_lie_inside(seed, kinds, pool, norm, double):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 5))
    net = mixed_network(rng, d, [int(rng.integers(3, 8)) for _ in kinds], kinds, scale=1.5,
                        pool=pool, double_affine=double)
    region = _region(rng, d, norm)
    db = differential_bounds(net, region)
    A, B = sample_pairs(region, 3000, rng)
    assert_pairs_inside(net.merged(), db, A, B)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(["l1", "linf"]),
       kind=st.sampled_from(["relu", "leaky"]), pool=st.booleans())
def test_large_magnitudes_stay_sound(seed, norm, kind, pool):
    """Weights ~1e3, biases ~1e6, inputs ~1e3: rounding of the forward pass is far above
    1e-9 here, and the float64 differences must still lie inside."""
    rng = np.random.default_rng(seed)
    net = mixed_network(rng, 3, [6, 5], [kind, kind], scale=1e3, pool=pool)
    for layer in net.layers:
        if layer.kind == "affine":
            layer.b = layer.b * 1e6
    region = _region(rng, 3, norm, scale=1e3)
    db = differential_bounds(net, region)
    A, B = sample_pairs(region, 3000, rng)
    assert_pairs_inside(net.merged(), db, A, B)


@pytest.mark.parametrize("kind", ["arctan", "tanh", "sigmoid"])
def test_s_shaped_mean_value_bounds_sound(kind):
    rng = np.random.default_rng(7)
    net = mixed_network(rng, 3, [6, 5], [kind, "relu"], scale=2.0)
    for norm in ("l1", "linf"):
        region = _region(rng, 3, norm)
        db = differential_bounds(net, region)
        A, B = sample_pairs(region, 3000, rng)
        assert_pairs_inside(net.merged(), db, A, B)


def test_exact_when_stable_in_both_copies():
    """All neurons active in both copies: the network is affine on the region and the
    output difference bounds are the exact range of ``W ε`` over the ball (up to float)."""
    rng = np.random.default_rng(3)
    W1, W2 = rng.normal(size=(4, 2)), rng.normal(size=(3, 4))
    net = sequential([Affine(W1, 100.0 * np.ones(4)), ReLU(4), Affine(W2, np.zeros(3))])
    M = W2 @ W1
    for norm, r in (("l1", 0.3), ("linf", 0.2)):
        db = differential_bounds(net, PairRegion(-np.ones(2), np.ones(2), norm, r))
        assert all(c["neither"] == 0 for c in db.stable_counts()[1:2])
        dual = np.abs(M).max(1) if norm == "l1" else np.abs(M).sum(1)
        np.testing.assert_allclose(db.dhi[-1], r * dual, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(db.dlo[-1], -r * dual, rtol=1e-9, atol=1e-12)
    # inactive in both copies: the difference is exactly 0 behind the ReLU
    dead = sequential([Affine(W1, -100.0 * np.ones(4)), ReLU(4), Affine(W2, np.zeros(3))])
    db = differential_bounds(dead, PairRegion(-np.ones(2), np.ones(2), "linf", 0.5))
    assert np.abs(db.dhi[2]).max() < 1e-12 and np.abs(db.dlo[2]).max() < 1e-12


def test_difference_bounds_shrink_with_the_radius():
    rng = np.random.default_rng(5)
    net = mixed_network(rng, 4, [8, 6], ["relu", "leaky"])
    lo, hi = -np.ones(4), np.ones(4)
    widths = []
    for r in (0.0, 0.01, 0.1, 1.0):
        db = differential_bounds(net, PairRegion(lo, hi, "linf", r))
        widths.append(float((db.dhi[-1] - db.dlo[-1]).max()))
    assert widths[0] < 1e-9                       # a = b: no difference at all
    assert widths[0] <= widths[1] <= widths[2] <= widths[3]
    assert widths[1] < 0.05 * widths[3]           # ~linear in r for small r


@pytest.mark.parametrize("norm", ["l1", "linf", "l2"])
def test_pair_maximum_against_lp(norm):
    """The closed-form maximum of ``g·a + c·ε`` is an upper bound of the exact LP
    (equal for L∞, where it is exact)."""
    rng = np.random.default_rng(11)
    d = 5
    for _ in range(20):
        lo, hi = -rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
        a_lo = lo + rng.uniform(0, 0.5, d) * (hi - lo)
        a_hi = np.maximum(a_lo, hi - rng.uniform(0, 0.5, d) * (hi - lo))
        r = float(rng.uniform(0.05, 2.0))
        region = PairRegion(lo, hi, norm, r, a_lo, a_hi)
        g, c = rng.normal(size=(1, d)), rng.normal(size=(1, d))
        val, _ = _PairGeometry(region, _NP).maximise(g, c)
        if norm == "l2":
            # sample the feasible set instead of an LP (the ball is not polyhedral)
            A, B = sample_pairs(region, 4000, rng)
            assert float(val[0]) >= float(((A @ g[0]) + (B - A) @ c[0]).max()) - 1e-12
            continue
        # variables a, b, t (per coordinate for L1, one t for L∞)
        nt = d if norm == "l1" else 1
        eye = np.eye(d)
        tcol = eye if norm == "l1" else np.ones((d, 1))
        rows = [np.hstack([-eye, eye, -tcol]), np.hstack([eye, -eye, -tcol])]
        rhs = [np.zeros(d), np.zeros(d)]
        if norm == "l1":
            rows.append(np.hstack([np.zeros((1, 2 * d)), np.ones((1, d))]))
            rhs.append(np.array([r]))
        bounds = list(zip(a_lo, a_hi, strict=True)) + list(zip(lo, hi, strict=True)) + \
            [(0, r)] * nt
        obj = -np.concatenate([g[0] - c[0], c[0], np.zeros(nt)])
        res = linprog(obj, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), bounds=bounds,
                      method="highs")
        exact = -res.fun
        assert float(val[0]) >= exact - 1e-9
        if norm == "linf":
            assert float(val[0]) == pytest.approx(exact, abs=1e-9)


def test_targets_bound_sampled_values_and_copy1_is_cached():
    rng = np.random.default_rng(2)
    net = mixed_network(rng, 3, [6, 6], ["relu", "relu"]).merged()
    region = PairRegion(-np.ones(3), np.ones(3), "l1", 0.5)
    an = DifferentialAnalysis(net, region)
    T = 7
    tg = LinearTargets(rng.normal(size=(T, 3)), rng.normal(size=(T, 3)), rng.normal(size=T))
    up, _ = an.target_upper(tg)
    A, B = sample_pairs(region, 4000, rng)
    ya, yb = net.forward(A), net.forward(B)
    vals = ya @ tg.A.T + (yb - ya) @ tg.B.T + tg.c
    assert (vals.max(0) <= up).all()
    c1 = an._copy1_state()
    an.set_radius(0.1)
    assert an._copy1_state() is c1           # copy 1 does not depend on the radius
    up_small, _ = an.target_upper(tg)
    assert (up_small <= up + 1e-12).all()


def test_region_validation():
    with pytest.raises(InputDataError):
        PairRegion(np.zeros(2), np.ones(2), "l3", 0.1)
    with pytest.raises(InputDataError):
        PairRegion(np.zeros(2), np.ones(2), "l1", -1.0)
    with pytest.raises(InputDataError):
        PairRegion(np.zeros(2), np.ones(2), "l1", 0.1, a_lo=-np.ones(2), a_hi=np.ones(2))


def test_leaky_and_pool_exact_small_case():
    """A hand-checkable net: LeakyReLU(0.5) then max-pool over both neurons; the bounds
    hold at every vertex pair of a small grid."""
    net = sequential([Affine(np.array([[1.0, -1.0], [0.5, 1.0]]), np.array([0.1, -0.2])),
                      LeakyReLU(2, 0.5), MaxPool(np.array([[0, 1]]), 2),
                      Affine(np.array([[2.0]]), np.array([0.0]))])
    region = PairRegion(-np.ones(2), np.ones(2), "linf", 0.25)
    db = differential_bounds(net, region)
    grid = np.linspace(-1, 1, 9)
    A = np.array(list(itertools.product(grid, grid)))
    steps = np.array(list(itertools.product([-0.25, 0.0, 0.25], repeat=2)))
    P = (A[:, None, :] + steps[None, :, :]).reshape(-1, 2)
    AA = np.repeat(A, len(steps), axis=0)
    keep = np.all((P >= -1) & (P <= 1), axis=1)
    assert_pairs_inside(net.merged(), db, AA[keep], P[keep])
