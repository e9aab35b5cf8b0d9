"""The batched fallback bounder: sound on samples (with and without clamps), empty
domains detected, never looser than the per-box symbolic bounds, sound at large
magnitudes, and the batch gives the same bounds as one domain at a time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.bounds import compute_bounds
from nnresilience.network.layers import Affine, Arctan, ReLU, Sigmoid, Tanh
from nnresilience.network.model import Network, sequential
from nnresilience.search.bounder import SymbolicBounder, make_bounder
from nnresilience.testing.bruteforce import random_network


def _boxes(rng, B, n):
    lo = rng.uniform(-1, 0.5, size=(B, n))
    return lo, lo + rng.uniform(0.0, 1.0, size=(B, n))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["relu", "leaky", "maxpool", "mixed"]),
       mode=st.sampled_from(["inherit", "recompute"]))
def test_bounds_contain_every_sampled_value(seed, kind, mode):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [3, 7, 6, 2], kind).merged()
    C = rng.normal(size=(3, 2))
    b = SymbolicBounder(net, C, intermediate=mode)
    lo, hi = _boxes(rng, 4, 3)
    res = b.bound(lo, hi)
    for k in range(4):
        X = np.vstack([rng.uniform(lo[k], hi[k], size=(3000, 3)), lo[k], hi[k]])
        vals = net.forward_all(X)
        assert np.all(vals[-1] @ C.T >= res.lower[k])
        for i in range(len(net.layers) + 1):
            assert np.all(vals[i] >= res.pre_lo[i][k]) and np.all(vals[i] <= res.pre_hi[i][k])
        # x_best lies in the box (falsifier seeds)
        assert np.all(res.x_best[k] >= lo[k]) and np.all(res.x_best[k] <= hi[k])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["relu", "leaky"]))
def test_clamped_domains_contain_their_points_and_children_keep_parent_bound(seed, kind):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [3, 8, 6, 2], kind).merged()
    C = rng.normal(size=(2, 2))
    b = SymbolicBounder(net, C)
    lo, hi = -np.ones((1, 3)), np.ones((1, 3))
    root = b.bound(lo, hi)
    # split neuron j of layer 1 (first ReLU): child 0 inactive, child 1 active
    j = int(np.argmax(np.minimum(-root.pre_lo[1][0], root.pre_hi[1][0])))
    clo = np.full((2, 8), -np.inf)
    chi = np.full((2, 8), np.inf)
    chi[0, j], clo[1, j] = 0.0, 0.0
    warm = tuple(np.repeat(a, 2, axis=0) if isinstance(a, np.ndarray) else
                 [np.repeat(x, 2, axis=0) for x in a] for a in root.state)
    kids = b.bound(np.repeat(lo, 2, 0), np.repeat(hi, 2, 0), {1: (clo, chi)}, warm=warm)
    X = rng.uniform(-1, 1, size=(20000, 3))
    vals = net.forward_all(X)
    z = vals[1][:, j]
    for side, mask in ((0, z <= 0), (1, z >= 0)):
        if mask.any():
            assert np.all(vals[-1][mask] @ C.T >= kids.lower[side])
            for i in range(len(net.layers) + 1):
                assert np.all(vals[i][mask] >= kids.pre_lo[i][side])
                assert np.all(vals[i][mask] <= kids.pre_hi[i][side])
        assert np.all(kids.lower[side] >= root.lower[0])   # a child never drops below


def test_infeasible_clamps_give_infinite_bounds():
    net = sequential([Affine(np.array([[1.0]]), np.array([5.0])), ReLU(1),
                      Affine(np.array([[1.0]]), np.zeros(1))])
    b = SymbolicBounder(net, np.array([[1.0]]))
    # z = x + 5 >= 4 on [-1, 1]: clamping z <= 0 leaves nothing
    res = b.bound(-np.ones((1, 1)), np.ones((1, 1)), {1: (np.full((1, 1), -np.inf),
                                                          np.zeros((1, 1)))})
    assert np.isposinf(res.lower).all()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["relu", "leaky", "maxpool"]))
def test_never_looser_than_per_box_symbolic(seed, kind):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [4, 8, 8, 3], kind).merged()
    C = rng.normal(size=(2, 3))
    lo, hi = _boxes(rng, 3, 4)
    res = SymbolicBounder(net, C, intermediate="recompute").bound(lo, hi)
    spec = Network(list(net.layers) + [Affine(C, np.zeros(2))])
    for k in range(3):
        nb = compute_bounds(spec, (lo[k], hi[k]), method="symbolic")
        # allow the outward-rounding difference of the two rules (relative 1e-9)
        assert np.all(res.lower[k] >= nb.lo[-1] - 1e-9 * (1 + np.abs(nb.lo[-1])))


@pytest.mark.parametrize("act", [Sigmoid, Tanh, Arctan])
def test_s_shaped_layers_are_sound(act):
    rng = np.random.default_rng(3)
    net = sequential([Affine(rng.normal(size=(6, 2)) * 2, rng.normal(size=6)), act(6),
                      Affine(rng.normal(size=(5, 6)), rng.normal(size=5)), act(5),
                      Affine(rng.normal(size=(2, 5)), np.zeros(2))])
    C = np.array([[1.0, -1.0], [0.5, 2.0]])
    lo, hi = _boxes(rng, 3, 2)
    res = SymbolicBounder(net, C).bound(lo, hi)
    for k in range(3):
        X = np.vstack([rng.uniform(lo[k], hi[k], size=(5000, 2)), lo[k], hi[k]])
        assert np.all(net.forward(X) @ C.T >= res.lower[k])
        assert set(res.scores) == {1, 3} and np.all(res.scores[1] >= 0)


def test_large_magnitudes_stay_sound():
    """x + 1e8 -> ReLU -> -1e8 (issue 11 item 3) and biases of 2^52 that cancel: the
    bound must contain what the float64 forward pass computes."""
    for big in (1e8, 2.0 ** 52):
        net = sequential([Affine(np.array([[1.0]]), np.array([big])), ReLU(1),
                          Affine(np.array([[1.0]]), np.array([-big]))])
        lo, hi = np.array([[0.29]]), np.array([[0.31]])
        b = SymbolicBounder(net, np.array([[-1.0], [1.0]]))
        res = b.bound(lo, hi)
        X = np.linspace(0.29, 0.31, 2001)[:, None]
        y = net.forward(X)[:, 0]
        assert np.all(-y >= res.lower[0, 0]) and np.all(y >= res.lower[0, 1])
    rng = np.random.default_rng(0)
    W = rng.uniform(-1e3, 1e3, size=(6, 3))
    net = sequential([Affine(W, np.full(6, 1e6)), ReLU(6),
                      Affine(rng.uniform(-1e3, 1e3, size=(2, 6)), np.full(2, -1e9))])
    C = np.array([[1.0, -1.0]])
    lo, hi = -np.ones((1, 3)), np.ones((1, 3))
    res = SymbolicBounder(net, C).bound(lo, hi)
    X = rng.uniform(-1, 1, size=(20000, 3))
    assert np.all(net.forward(X) @ C.T >= res.lower[0])


def test_batch_equals_one_at_a_time():
    rng = np.random.default_rng(7)
    net = random_network(rng, [3, 10, 10, 2], "relu").merged()
    C = rng.normal(size=(2, 2))
    b = SymbolicBounder(net, C, intermediate="recompute")
    lo, hi = _boxes(rng, 5, 3)
    together = b.bound(lo, hi)
    for k in range(5):
        alone = b.bound(lo[k:k + 1], hi[k:k + 1])
        assert np.allclose(alone.lower[0], together.lower[k], rtol=1e-12, atol=1e-12)


def test_make_bounder_choices():
    net = random_network(np.random.default_rng(1), [2, 3, 2], "relu").merged()
    assert make_bounder(net, np.eye(2), "symbolic").name == "symbolic"
    with pytest.raises(ValueError, match="unknown bounder"):
        make_bounder(net, np.eye(2), "magic")
