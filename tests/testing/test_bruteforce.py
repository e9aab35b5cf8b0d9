"""The brute-force reference against dense sampling and hand-made networks."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.network.layers import Affine, MaxPool, ReLU, Tanh
from nnresilience.network.model import sequential
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition, misclassification
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import (
    BruteForceTooLarge,
    brute_force_case,
    brute_force_max_margin,
    random_network,
)


def _case(region, A, b, n_out):
    return Case(region, OutputCondition((Conjunction(np.atleast_2d(A), np.atleast_1d(b)),),
                                        n_out))


@pytest.mark.parametrize("kind", ["relu", "leaky", "maxpool", "mixed"])
def test_max_margin_dominates_sampling(kind):
    """The exact maximum is at least the sampled one and close to it (dense sampling, 3-D)."""
    rng = np.random.default_rng(7)
    for trial in range(2):
        net = random_network(rng, [3, 4, 4, 2], kind)
        if trial % 2:
            region = InputRegion.ball(np.full(3, 0.1), 0.8, "l1", -1.0, 1.0)
        else:
            region = InputRegion(-np.ones(3), np.ones(3))
        case = _case(region, rng.normal(size=(1, 2)), rng.normal(size=1), 2)
        val, x = brute_force_max_margin(net, case)
        assert region.contains(x)
        assert val == pytest.approx(float(case.unsafe.max_margin(net.forward(x))))
        sampled = case.unsafe.max_margin(net.forward(region.sample(20000, rng))).max()
        assert val >= sampled - 1e-9
        assert val - sampled < 0.25           # dense sampling gets near the optimum
        status, cx = brute_force_case(net, case)
        if sampled >= 0:
            assert status is Status.VIOLATED
        if status is Status.VIOLATED:
            assert case.unsafe.max_margin(net.forward(cx)) >= -1e-7
        else:
            assert val < 0


def test_hand_made_relu_network():
    """y = relu(x) - relu(-x) = x on [-1, 2]: y >= 1.5 is reachable, y >= 2.5 is not."""
    net = sequential([Affine(np.array([[1.0], [-1.0]]), np.zeros(2)), ReLU(2),
                      Affine(np.array([[1.0, -1.0]]), np.zeros(1))])
    region = InputRegion(np.array([-1.0]), np.array([2.0]))
    status, x = brute_force_case(net, _case(region, [[-1.0]], [-1.5], 1))
    assert status is Status.VIOLATED and net.forward(x)[0] >= 1.5
    status, x = brute_force_case(net, _case(region, [[-1.0]], [-2.5], 1))
    assert status is Status.HOLDS and x is None
    val, x = brute_force_max_margin(net, _case(region, [[-1.0]], [0.0], 1))
    assert val == pytest.approx(2.0)


def test_maxpool_network():
    """max(x0, x1) over the unit square reaches 1 exactly at the corners."""
    net = sequential([Affine(np.eye(2), np.zeros(2)), MaxPool(np.array([[0, 1]]), n_in=2)])
    region = InputRegion(np.zeros(2), np.ones(2))
    assert brute_force_case(net, _case(region, [[-1.0]], [-1.0], 1))[0] is Status.VIOLATED
    assert brute_force_case(net, _case(region, [[-1.0]], [-1.001], 1))[0] is Status.HOLDS
    # min over the square of max(x0, x1) is 0: y <= -0.01 is unreachable
    assert brute_force_case(net, _case(region, [[1.0]], [-0.01], 1))[0] is Status.HOLDS


def test_disjunction_and_misclassification():
    rng = np.random.default_rng(3)
    net = random_network(rng, [2, 5, 3], "relu")
    region = InputRegion(-np.ones(2), np.ones(2))
    y0 = net.forward(np.zeros(2))
    label = int(np.argmax(y0))
    case = Case(region, misclassification(label, 3))
    status, x = brute_force_case(net, case)
    sampled = case.unsafe.satisfied(net.forward(region.sample(20000, rng)))
    if np.any(sampled):
        assert status is Status.VIOLATED
    if status is Status.VIOLATED:
        assert case.unsafe.max_margin(net.forward(x)) >= -1e-7
    else:
        assert x is None


def test_refuses_large_and_smooth_networks():
    rng = np.random.default_rng(0)
    big = random_network(rng, [4, 40, 2], "relu", scale=3.0)
    case = _case(InputRegion(-np.ones(4), np.ones(4)), [[1.0, -1.0]], [0.0], 2)
    with pytest.raises(BruteForceTooLarge):
        brute_force_case(big, case)
    smooth = sequential([Affine(np.eye(2), np.zeros(2)), Tanh(2)])
    case2 = _case(InputRegion(-np.ones(2), np.ones(2)), [[1.0, -1.0]], [0.0], 2)
    with pytest.raises(ValueError, match="tanh"):
        brute_force_case(smooth, case2)


def test_random_network_shapes():
    rng = np.random.default_rng(1)
    net = random_network(rng, [3, 5, 4, 2], "maxpool")
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("maxpool") == 2 and net.n_outputs == 2 and net.n_inputs == 3
    leaky = random_network(rng, [2, 3, 1], "leaky")
    assert 0.01 <= leaky.layers[1].slope <= 0.5
    fixed = random_network(rng, [2, 3, 1], "leaky", slope=0.2)
    assert fixed.layers[1].slope == 0.2
    with pytest.raises(ValueError):
        random_network(rng, [2, 3, 1], "sine")
