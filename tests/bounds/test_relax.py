"""Each linear relaxation holds on its box (dense samples, both endpoints included)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.bounds.relax import relax_elementwise, relax_maxpool
from nnresilience.network.layers import Arctan, LeakyReLU, ReLU, Sigmoid, Tanh

LAYERS = [ReLU(1), LeakyReLU(1, 0.2), LeakyReLU(1, 0.0), Arctan(1), Tanh(1), Sigmoid(1)]

coord = st.floats(-30.0, 30.0, allow_nan=False)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda x: x.describe())
@settings(max_examples=40, deadline=None)
@given(a=coord, b=coord)
def test_elementwise_relaxation_holds(layer, a, b):
    lo, hi = min(a, b), max(a, b)
    rel = relax_elementwise(layer, np.array([lo]), np.array([hi]))
    x = np.linspace(lo, hi, 2001)
    fx = layer.fn(x)
    assert np.all(rel.la[0] * x + rel.lb[0] <= fx)
    assert np.all(rel.ua[0] * x + rel.ub[0] >= fx)


def test_relu_triangle_is_tight_at_endpoints():
    rel = relax_elementwise(ReLU(1), np.array([-1.0]), np.array([3.0]))
    assert rel.ua[0] == pytest.approx(0.75)
    assert rel.ua[0] * 3.0 + rel.ub[0] == pytest.approx(3.0)
    assert rel.la[0] == 1.0            # u > -l: slope-1 lower line


def test_s_shaped_mixed_lines_are_parallel():
    rel = relax_elementwise(Tanh(1), np.array([-1.0]), np.array([2.0]))
    assert rel.la[0] == pytest.approx(rel.ua[0])
    assert rel.ub[0] > rel.lb[0]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(coord, coord), min_size=2, max_size=5))
def test_maxpool_relaxation(pairs):
    lo = np.array([min(p) for p in pairs])
    hi = np.array([max(p) for p in pairs])
    groups = np.arange(lo.size)[None, :]
    rel = relax_maxpool(groups, lo, hi)
    rng = np.random.default_rng(0)
    X = rng.uniform(lo, hi, size=(500, lo.size))
    y = X.max(axis=1)
    assert np.all(X[:, rel.lower_idx[0]] <= y)
    if rel.decided[0]:
        assert np.all(X[:, rel.lower_idx[0]] == y)
    else:
        assert np.all(y <= rel.upper_const[0])


@pytest.mark.parametrize("layer", [Arctan(1), Tanh(1), Sigmoid(1)], ids=lambda x: x.describe())
def test_s_shaped_box_wider_than_the_largest_float(layer):
    # hi - lo overflows: the relaxation must stay finite, hold, and raise no warning
    big = np.finfo(np.float64).max / 2 * 1.5
    lo, hi = np.array([-big]), np.array([big])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rel = relax_elementwise(layer, lo, hi)
    assert np.isfinite([rel.la[0], rel.lb[0], rel.ua[0], rel.ub[0]]).all()
    x = np.concatenate([[-big, big], np.linspace(-50.0, 50.0, 2001)])
    fx = layer.fn(x)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.all(rel.la[0] * x + rel.lb[0] <= fx)
        assert np.all(rel.ua[0] * x + rel.ub[0] >= fx)
