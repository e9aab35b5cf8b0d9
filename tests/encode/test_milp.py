"""Tests of the network/region encoders in ``nnresilience.encode.milp`` (and per-kind modules).

Exactness is checked the direct way: pin the input to a point (region = that point) and the
MILP must reproduce ``Network.forward`` at every layer; pin nothing and optimise, and the
optimum must match the best replayed point.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.backends.base import SolveLimits, SolveStatus
from nnresilience.backends.registry import get_backend
from nnresilience.bounds.interval import interval_bounds
from nnresilience.encode.milp import ENCODERS, encode_network, encode_region
from nnresilience.encode.model import MilpModel
from nnresilience.errors import EngineUnsupportedError
from nnresilience.network.layers import Affine, LeakyReLU, MaxPool, ReLU
from nnresilience.network.model import Network
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import random_network

KINDS = ["relu", "leaky", "maxpool", "mixed"]


def _solve(model: MilpModel, backend: str = "highs"):
    return get_backend(backend).solve(model.arrays(), SolveLimits(time_limit=20))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(KINDS),
       big_m=st.sampled_from([None, 1e3]))
def test_pinned_input_reproduces_forward_at_every_layer(seed, kind, big_m):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [3, 5, 4, 2], kind=kind)
    x0 = rng.uniform(-1, 1, 3)
    b = interval_bounds(net, -np.ones(3), np.ones(3))
    model = MilpModel()
    enc = encode_network(model, net, b, big_m=big_m)
    encode_region(model, enc.inputs, InputRegion(x0, x0))
    res = _solve(model)
    assert res.status is SolveStatus.OPTIMAL
    values = net.forward_all(x0)
    for idx, val in zip(enc.layer_vars, values, strict=True):
        np.testing.assert_allclose(res.x[idx], val[0], atol=1e-6)


@pytest.mark.parametrize("backend", ["highs", "scip"])
@pytest.mark.parametrize("kind", KINDS)
def test_optimum_over_box_equals_best_replayed_point(backend, kind, rng):
    net = random_network(rng, [2, 6, 5, 2], kind=kind)
    lo, hi = -np.ones(2), np.ones(2)
    model = MilpModel()
    enc = encode_network(model, net, interval_bounds(net, lo, hi))
    model.set_objective(enc.outputs, [1.0, -1.0])
    res = _solve(model, backend)
    assert res.status is SolveStatus.OPTIMAL
    x = res.x[enc.inputs]
    y = net.forward(x)
    assert y[0] - y[1] == pytest.approx(res.objective, abs=1e-5)       # the optimum is real
    X = rng.uniform(lo, hi, size=(20000, 2))
    Y = net.forward(X)
    assert (Y[:, 0] - Y[:, 1]).min() >= res.objective - 1e-6            # nothing beats it


def test_stable_neurons_get_no_binary_and_uniform_m_gives_all():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    net = Network([Affine(W, np.array([5.0, -5.0, 0.0])), ReLU(3), Affine(np.ones((1, 3)),
                                                                          np.zeros(1))])
    b = interval_bounds(net, -np.ones(2), np.ones(2))      # neuron 0 active, 1 dead, 2 unstable
    model = MilpModel()
    enc = encode_network(model, net, b)
    assert enc.n_binaries == 1
    model2 = MilpModel()
    enc2 = encode_network(model2, net, b, big_m=100.0)
    assert enc2.n_binaries == 3
    with pytest.raises(EngineUnsupportedError, match="unsound"):
        encode_network(MilpModel(), net, b, big_m=1.0)


def test_leaky_relu_stable_phases_are_linear():
    net = Network([Affine(np.eye(2), np.array([3.0, -3.0])), LeakyReLU(2, slope=0.2)])
    b = interval_bounds(net, -np.ones(2), np.ones(2))
    model = MilpModel()
    enc = encode_network(model, net, b)
    assert enc.n_binaries == 0
    encode_region(model, enc.inputs, InputRegion(np.array([0.5, 0.5]), np.array([0.5, 0.5])))
    res = _solve(model)
    np.testing.assert_allclose(res.x[enc.outputs], [3.5, 0.2 * -2.5], atol=1e-9)


def test_maxpool_dominated_member_is_an_equality():
    # member 0 in [5, 6] dominates member 1 in [-1, 1]; members 2, 3 overlap -> 2 binaries
    net = Network([Affine(np.eye(4), np.array([5.5, 0.0, 0.0, 0.2])),
                   MaxPool(np.array([[0, 1], [2, 3]]), n_in=4)])
    b = interval_bounds(net, -0.5 * np.ones(4), 0.5 * np.ones(4))
    model = MilpModel()
    enc = encode_network(model, net, b)
    assert enc.n_binaries == 2
    model.set_objective(enc.outputs, [-1.0, -1.0])
    res = _solve(model)
    assert res.objective == pytest.approx(-(6.0 + 0.7), abs=1e-7)


def test_maxpool_repeated_index_counts_once():
    net = Network([Affine(np.eye(3), np.zeros(3)), MaxPool(np.array([[0, 1], [2, 2]]), n_in=3)])
    b = interval_bounds(net, -np.ones(3), np.ones(3))
    enc = encode_network(MilpModel(), net, b)
    assert enc.n_binaries == 2                 # group (2, 2) is just y = x_2


def test_shared_inputs_tie_two_copies():
    rng = np.random.default_rng(7)
    net = random_network(rng, [2, 4, 2])
    b = interval_bounds(net, -np.ones(2), np.ones(2))
    model = MilpModel()
    e1 = encode_network(model, net, b)
    e2 = encode_network(model, net, b, inputs=e1.inputs)
    assert np.array_equal(e2.inputs, e1.inputs)
    # maximise the difference of the two copies' outputs: must be 0 (same function)
    model.set_objective(np.concatenate([e1.outputs[:1], e2.outputs[:1]]), [-1.0, 1.0])
    res = _solve(model)
    assert res.objective == pytest.approx(0.0, abs=1e-6)


def test_priorities_prefer_earlier_layers():
    rng = np.random.default_rng(3)
    net = random_network(rng, [2, 8, 8, 2])
    b = interval_bounds(net, -np.ones(2), np.ones(2))
    model = MilpModel()
    enc = encode_network(model, net, b)
    arr = model.arrays()
    first = [b for b in enc.binaries if b.size][0]
    last = [b for b in enc.binaries if b.size][-1]
    assert arr.priority[first].min() > arr.priority[last].max()
    plain = MilpModel()
    encode_network(plain, net, b, priorities=False)
    assert plain.arrays().priority is None


def test_l1_region_is_exact():
    c = np.array([0.2, -0.1, 0.0])
    reg = InputRegion.ball(c, 0.5, norm="l1", domain_lo=-1.0, domain_hi=1.0)
    model = MilpModel()
    x = model.add_vars(3, -10, 10)
    eps = encode_region(model, x, reg)
    assert eps.size == 3
    model.set_objective(x, [-1.0, -2.0, 0.0])       # max x0 + 2 x1 over the ball
    res = _solve(model)
    assert res.objective == pytest.approx(-(0.2 + 2.0 * (-0.1 + 0.5)), abs=1e-7)
    assert reg.contains(res.x[x], tol=1e-7)


def test_every_layer_kind_has_an_encoder():
    from nnresilience.network.layers import ACTIVATIONS

    assert set(ACTIVATIONS) | {"affine", "maxpool"} <= set(ENCODERS)


def test_wrong_bounds_length_is_rejected():
    net = random_network(np.random.default_rng(0), [2, 3, 2])
    b = interval_bounds(net, -np.ones(2), np.ones(2))
    b.lo.pop()
    with pytest.raises(ValueError, match="entries"):
        encode_network(MilpModel(), net, b)


def test_mnist_256x6_encoding_shape(shared_benchmarks):
    """The full MNIST 256x6 encoding is built in matrix form (timing: benchmarks/backends.py)."""
    from nnresilience.loaders import load_network

    path = shared_benchmarks / "mnistfc" / "mnist-net_256x6.onnx"
    if not path.exists():
        pytest.skip("mnist-net_256x6.onnx absent")
    net = load_network(path).merged()
    x0 = np.full(784, 0.5)
    reg = InputRegion.ball(x0, 0.02, domain_lo=0.0, domain_hi=1.0)
    b = interval_bounds(net, reg.lo, reg.hi)
    model = MilpModel()
    enc = encode_network(model, net, b)
    n_unstable = sum(int(b.unstable_mask(i).sum()) for i, la in enumerate(net.layers)
                     if la.kind == "relu")
    assert enc.n_binaries == n_unstable
    assert enc.outputs.size == 10 and enc.inputs.size == 784


@pytest.mark.parametrize("kind", KINDS)
def test_network_start_is_a_feasible_assignment(kind):
    from nnresilience.encode.milp import network_start

    rng = np.random.default_rng(11)
    net = random_network(rng, [3, 6, 6, 2], kind=kind)
    model = MilpModel()
    enc = encode_network(model, net, interval_bounds(net, -np.ones(3), np.ones(3)))
    network_start(model, enc, net, rng.uniform(-1, 1, 3))
    a = model.arrays()
    assert not np.isnan(a.start).any()           # every column of the network is set
    act = a.A @ a.start
    assert np.all(act >= a.row_lo - 1e-9) and np.all(act <= a.row_hi + 1e-9)
    assert np.all(a.start >= a.lb - 1e-9) and np.all(a.start <= a.ub + 1e-9)
