"""Soundness and ordering of every method on small random networks (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnresilience.bounds import compute_bounds, parse_method, region_box
from nnresilience.errors import ShapeMismatchError
from nnresilience.network.layers import Affine, MaxPool, ReLU
from nnresilience.network.model import sequential
from nnresilience.spec.region import InputRegion

from .helpers import assert_contains, assert_nested, mixed_network, sample_box

METHODS = ["interval", "symbolic", "lp", "milp:1", "milp:2"]
CHEAP = METHODS[:3]
#: each method's bounds must lie inside these (milp:1 and milp:2 both refine lp)
PARENT = {"symbolic": "interval", "lp": "symbolic", "milp:1": "lp", "milp:2": "lp"}
KINDS = st.sampled_from(["relu", "leaky", "arctan", "tanh", "sigmoid"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(2, 3), kinds=st.lists(KINDS, min_size=3,
       max_size=3), pool=st.booleans(), double=st.booleans())
def test_random_networks_sound_and_nested(seed, depth, kinds, pool, double):
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 5))
    widths = [int(rng.integers(3, 9)) for _ in range(depth)]
    net = mixed_network(rng, n_in, widths, kinds[:depth], pool=pool, double_affine=double)
    c = rng.normal(size=n_in)
    r = rng.uniform(0.05, 1.5, size=n_in)
    lo, hi = c - r, c + r
    X = sample_box(lo, hi, 3000, rng)
    got = {}
    for m in CHEAP:
        b = got[m] = compute_bounds(net, (lo, hi), method=m)
        assert b.method == m
        assert_contains(net, b, X)
        if m in PARENT:
            assert_nested(b, got[PARENT[m]])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(st.sampled_from(["relu", "leaky"]),
       min_size=2, max_size=2), pool=st.booleans())
def test_milp_sound_and_inside_lp(seed, kinds, pool):
    rng = np.random.default_rng(seed)
    net = mixed_network(rng, 3, [int(rng.integers(3, 7)) for _ in kinds], kinds, pool=pool)
    lo, hi = -np.ones(3), np.ones(3)
    X = sample_box(lo, hi, 3000, rng)
    got = {}
    for m in METHODS:
        b = got[m] = compute_bounds(net, (lo, hi), method=m)
        assert_contains(net, b, X)
        if m in PARENT:
            assert_nested(b, got[PARENT[m]])


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_leading_activation_and_pool_after_affine(seed):
    rng = np.random.default_rng(seed)
    net = sequential([ReLU(4), Affine(rng.normal(size=(6, 4)), rng.normal(size=6)),
                      MaxPool(np.array([[0, 1], [2, 3], [4, 5]]), 6),
                      Affine(rng.normal(size=(4, 3)), rng.normal(size=4)), ReLU(4),
                      Affine(rng.normal(size=(2, 4)), np.zeros(2))])
    lo, hi = -np.ones(4), np.ones(4)
    X = sample_box(lo, hi, 2000, rng)
    got = {}
    for m in METHODS:
        b = got[m] = compute_bounds(net, (lo, hi), method=m)
        assert_contains(net, b, X)
        if m in PARENT:
            assert_nested(b, got[PARENT[m]])


def test_milp_window_covering_network_is_exact_on_relu_output():
    """With the window over the whole (2 ReLU layer) net, output bounds match the true range
    up to the MIP gap: sampled maxima come close to the bound."""
    rng = np.random.default_rng(7)
    net = mixed_network(rng, 2, [6, 6], ["relu", "relu"])
    lo, hi = -np.ones(2), np.ones(2)
    b = compute_bounds(net, (lo, hi), method="milp:2")
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 301), np.linspace(-1, 1, 301)), -1).reshape(-1, 2)
    y = net.forward(g)
    width = b.hi[-1] - b.lo[-1]
    assert np.all(b.hi[-1] - y.max(axis=0) <= 0.02 * width + 1e-3)
    assert np.all(y.min(axis=0) - b.lo[-1] <= 0.02 * width + 1e-3)
    sym = compute_bounds(net, (lo, hi), method="symbolic")
    assert np.sum(b.hi[-1] - b.lo[-1]) < np.sum(sym.hi[-1] - sym.lo[-1])


def test_point_regions_with_large_weights_contain_float_forward():
    """Zero-width boxes: bounds collapse to (padded) points and must still contain the float64
    forward value despite rounding with weights of size 1e3."""
    rng = np.random.default_rng(3)
    for _trial in range(20):
        net = mixed_network(rng, 5, [8, 8, 8], ["relu", "leaky", "tanh"], scale=1e3)
        x = rng.normal(size=5) * 10
        for m in ("interval", "symbolic", "lp"):
            b = compute_bounds(net, (x, x), method=m)
            assert_contains(net, b, x[None, :])


def test_stats_report_unstable_and_time():
    rng = np.random.default_rng(1)
    net = mixed_network(rng, 3, [6, 5], ["relu", "relu"], pool=True)
    b = compute_bounds(net, (-np.ones(3), np.ones(3)), method="lp")
    rows = b.stats["layers"]
    assert len(rows) == len(net.layers) + 1
    assert rows[-1]["kind"] == "output"
    for i, row in enumerate(rows[:-1]):
        layer = net.layers[i]
        assert row["kind"] == layer.kind
        if layer.kind == "relu":
            assert row["unstable"] == int(np.sum(b.unstable_mask(i)))
        if layer.kind == "affine":
            assert row["unstable"] == 0
        assert row["seconds"] >= 0.0
    assert b.stats["unstable"] == sum(r["unstable"] for r in rows)
    assert b.stats["method"] == "lp" and b.stats["seconds"] >= 0.0


def test_maxpool_unstable_counts_undecided_groups():
    net = sequential([MaxPool(np.array([[0, 1], [2, 3]]), 4)])
    b = compute_bounds(net, (np.array([0.0, 1.0, 0.0, 5.0]), np.array([2.0, 3.0, 1.0, 6.0])),
                       method="symbolic")
    assert b.stats["layers"][0]["unstable"] == 1   # group 0 overlaps, group 1 decided


def test_region_object_and_l1_bounding_box():
    rng = np.random.default_rng(2)
    net = mixed_network(rng, 3, [5], ["relu"])
    reg = InputRegion.ball(np.zeros(3), 0.5, norm="l1")
    b = compute_bounds(net, reg, method="symbolic")
    assert np.allclose(b.lo[0], -0.5) and np.allclose(b.hi[0], 0.5)
    assert_contains(net, b, reg.sample(2000, rng))


def test_bad_inputs_raise():
    rng = np.random.default_rng(2)
    net = mixed_network(rng, 3, [5], ["relu"])
    with pytest.raises(ShapeMismatchError):
        region_box(net, (np.zeros(2), np.ones(2)))
    with pytest.raises(ShapeMismatchError):
        region_box(net, (np.ones(3), np.zeros(3)))
    with pytest.raises(ValueError):
        parse_method("milp:0")
    with pytest.raises(ValueError):
        compute_bounds(net, (np.zeros(3), np.ones(3)), method="magic")
    assert parse_method("milp:3") == ("milp", 3)
    assert parse_method("milp") == ("milp", 1)


def test_prior_is_intersected_and_timeout_keeps_soundness():
    rng = np.random.default_rng(5)
    net = mixed_network(rng, 3, [6, 6], ["relu", "relu"])
    lo, hi = -np.ones(3), np.ones(3)
    lp = compute_bounds(net, (lo, hi), method="lp")
    again = compute_bounds(net, (lo, hi), method="interval", prior=lp)
    assert_nested(again, lp, tol=0.0)
    quick = compute_bounds(net, (lo, hi), method="milp:2", timeout=0.0)
    assert_contains(net, quick, sample_box(lo, hi, 2000, rng))


def test_process_executor_matches_inline():
    from nnresilience.parallel import make_executor

    rng = np.random.default_rng(11)
    net = mixed_network(rng, 3, [16, 16], ["relu", "relu"])
    lo, hi = -2 * np.ones(3), 2 * np.ones(3)
    ref = compute_bounds(net, (lo, hi), method="lp")
    with make_executor(2) as ex:
        par = compute_bounds(net, (lo, hi), method="lp", executor=ex)
        mip = compute_bounds(net, (lo, hi), method="milp:1", executor=ex, prior=par)
    assert ref.stats["lp_chunks"] < par.stats["lp_chunks"]     # work was really split
    assert mip.stats["mip_solves"] > 0
    assert_nested(mip, par, tol=0.0)
    assert_contains(net, mip, sample_box(lo, hi, 3000, rng))
    for a, b in zip(ref.lo + ref.hi, par.lo + par.hi, strict=True):
        assert np.allclose(a, b, atol=1e-6)


def test_sparse_affine_matches_dense_and_wide_layer_fallback():
    import scipy.sparse as sp

    from nnresilience.bounds.symbolic import propagate

    rng = np.random.default_rng(9)
    dense = mixed_network(rng, 4, [7, 6], ["relu", "leaky"])
    layers = [Affine(sp.csr_matrix(lay.W), lay.b) if isinstance(lay, Affine) else lay
              for lay in dense.layers]
    sparse_net = sequential(layers)
    lo, hi = -np.ones(4), np.ones(4)
    a = compute_bounds(dense, (lo, hi), method="lp")
    b = compute_bounds(sparse_net, (lo, hi), method="lp")
    for x, y in zip(a.lo + a.hi, b.lo + b.hi, strict=True):
        assert np.allclose(x, y, atol=1e-7)
    # layers wider than max_neurons keep interval bounds (memory guard), still sound
    p = propagate(dense, lo, hi, max_neurons=5)       # the 6-wide layer is "too wide"
    assert p.methods[1:] == ["interval", "interval", "interval", "interval", "symbolic"]
    vals = dense.forward_all(sample_box(lo, hi, 2000, rng))
    for i, v in enumerate(vals):
        assert np.all(v >= p.los[i]) and np.all(v <= p.his[i])


def test_milp_from_lp_prior_skips_lp_stage():
    rng = np.random.default_rng(21)
    net = mixed_network(rng, 3, [6, 6], ["relu", "leaky"])
    lo, hi = -np.ones(3), np.ones(3)
    lp = compute_bounds(net, (lo, hi), method="lp")
    m = compute_bounds(net, (lo, hi), method="milp:1", prior=lp)
    assert "lp_solves" not in m.stats and m.stats["mip_solves"] > 0
    assert_nested(m, lp, tol=0.0)
    assert_contains(net, m, sample_box(lo, hi, 2000, rng))
