"""Tests of ``nnresilience.encode.arctan``: the PWL lines enclose the function, the MIQCP band
covers the paper's approximation error, and both directions of approximation hold on a small
arctan network (minimise y0 - y1 over a box)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.backends.base import SolveLimits, SolveStatus
from nnresilience.backends.registry import get_backend
from nnresilience.bounds.interval import interval_bounds
from nnresilience.encode.arctan import ATAN_BAND, ATAN_C, FUNCS, pwl_lines
from nnresilience.encode.milp import encode_network
from nnresilience.encode.model import MilpModel
from nnresilience.network.layers import Affine, Arctan
from nnresilience.network.model import Network


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(sorted(FUNCS)), a=st.floats(-8, 8), w=st.floats(1e-6, 10))
def test_pwl_lines_enclose_the_function(kind, a, w):
    lo, hi = np.array([a]), np.array([a + w])
    slopes, clo, chi = pwl_lines(kind, lo, hi)
    x = np.linspace(lo[0], hi[0], 2001)
    f = FUNCS[kind](x)
    for s in range(slopes.shape[1]):
        line = slopes[0, s] * x
        assert np.all(line + clo[0, s] <= f + 1e-12)
        assert np.all(f <= line + chi[0, s] + 1e-12)


def test_paper_approximation_error_is_inside_the_band():
    x = np.linspace(-1, 1, 200001)
    approx = np.pi / 4 * x + ATAN_C * x * (1 - np.abs(x))
    assert np.abs(np.arctan(x) - approx).max() < ATAN_BAND


def _atan_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network([Affine(rng.normal(0, 2, (4, 2)), rng.normal(0, 1, 4)), Arctan(4),
                    Affine(rng.normal(0, 1, (2, 4)), rng.normal(0, 0.5, 2))])


def _minimise(net: Network, mode: str):
    lo, hi = -np.ones(2), np.ones(2)
    model = MilpModel()
    enc = encode_network(model, net, interval_bounds(net, lo, hi), arctan=mode)
    model.set_objective(enc.outputs, [1.0, -1.0])
    arrays = model.arrays()
    backend = get_backend("auto", need_quadratic=bool(arrays.quad))
    res = backend.solve(arrays, SolveLimits(time_limit=30))
    assert res.status is SolveStatus.OPTIMAL
    return res, enc


@pytest.mark.parametrize("seed", [0])
def test_pwl_and_miqcp_bracket_the_true_minimum(seed):
    net = _atan_net(seed)
    X = np.random.default_rng(1).uniform(-1, 1, (100_000, 2))
    Y = net.forward(X)
    sampled = float((Y[:, 0] - Y[:, 1]).min())          # >= the true minimum
    pwl, enc = _minimise(net, "pwl")
    x = pwl.x[enc.inputs]
    replayed = float(np.subtract(*net.forward(x)))
    assert pwl.objective <= sampled + 1e-9               # relaxation: under-approximation
    assert pwl.objective <= replayed + 1e-9
    assert net.n_neurons() == 4 and enc.n_binaries == 0
    miq, enc2 = _minimise(net, "miqcp")
    # an encoded hidden value lies within the band of A(x), and A(x) within the band of
    # atan(x): it is off by at most 2 * band, the output difference by 2 * band * sum|W2|
    W2 = net.layers[2].W
    err = 2 * ATAN_BAND * float(np.abs(W2[0] - W2[1]).sum())
    x2 = miq.x[enc2.inputs]
    replay2 = float(np.subtract(*net.forward(x2)))
    assert miq.objective <= sampled + 1e-6               # the band contains the true graph
    assert miq.objective >= replay2 - err - 1e-6         # and is within the band of reality
    assert abs(miq.objective - replay2) <= err + 1e-6


def test_miqcp_needs_a_quadratic_backend():
    from nnresilience.errors import BackendUnavailableError

    net = _atan_net(0)
    model = MilpModel()
    encode_network(model, net, interval_bounds(net, -np.ones(2), np.ones(2)), arctan="miqcp")
    arrays = model.arrays()
    assert arrays.quad
    with pytest.raises(BackendUnavailableError, match="quadratic"):
        get_backend("highs", need_quadratic=True)
    with pytest.raises(BackendUnavailableError):
        get_backend("highs").solve(arrays, SolveLimits())
