"""Bounds of ``Network.merged()`` contain the *source* network's float64 forward values.

Merging multiplies consecutive affine layers in float64 and the merged layer computes in
one step what the source computes in several (``x + B`` then ``- B`` rounds at ``B`` in
the source, not at all in the merged identity). The rounding rule charges both
(``bounds/rounding.py``, ``merged_error``); these nets make the difference visible.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.bounds import compute_bounds
from nnresilience.network.layers import Affine, LeakyReLU, ReLU
from nnresilience.network.model import Network

METHODS = ("interval", "symbolic", "alpha", "lp")


def _cancelling_net(rng: np.random.Generator, big: float, act: str) -> Network:
    """in -> (+big) -> (-big, mixing) -> act -> (+big2) -> (-big2) -> out: two chains."""
    n, h, o = 2, 3, 2
    W1 = rng.uniform(-3, 3, (n, n))
    W2 = rng.uniform(-3, 3, (h, n))
    shift = rng.uniform(0.5, 1.0, n) * big
    act_layer = ReLU(h) if act == "relu" else LeakyReLU(h, slope=0.1)
    W3 = rng.uniform(-3, 3, (o, h))
    shift2 = rng.uniform(0.5, 1.0, o) * big
    return Network([
        Affine(W1, shift),
        Affine(W2, -(W2 @ shift) + rng.uniform(-0.5, 0.5, h)),
        act_layer,
        Affine(W3, shift2),
        Affine(np.eye(o), -shift2),
    ])


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1),
       big=st.sampled_from([1e6, 1e8, 2.0**40, 2.0**52]),
       act=st.sampled_from(["relu", "leaky"]))
def test_merged_bounds_contain_source_forward(method, seed, big, act):
    rng = np.random.default_rng(seed)
    net = _cancelling_net(rng, big, act)
    merged = net.merged()
    assert len(merged.layers) == 3 and merged.layers[0].merged_from
    lo = rng.uniform(-1, 0, 2)
    hi = lo + rng.uniform(0.0, 1.0, 2)
    X = np.vstack([lo, hi, [lo[0], hi[1]], [hi[0], lo[1]],
                   lo + rng.uniform(0, 1, (200, 2)) * (hi - lo)])
    ys = net.forward(X)                      # the source network: what a replay computes
    b = compute_bounds(merged, (lo, hi), method=method)
    lo_out, hi_out = b.lo[-1], b.hi[-1]
    inside = (lo_out <= ys) & (ys <= hi_out)
    assert np.all(inside), (b.lo[-1], b.hi[-1], ys.min(0), ys.max(0))
    for row in X[:5]:                       # one-row forward (another summation path)
        y = net.forward(row)
        assert np.all(b.lo[-1] <= y) and np.all(y <= b.hi[-1])


def test_merge_records_its_sources():
    a, b, c = (Affine(np.eye(2), np.ones(2)) for _ in range(3))
    m = Network([a, b, c, ReLU(2)]).merged()
    assert m.layers[0].merged_from == (a, b, c)
    assert Network([ReLU(2), a]).merged().layers[0].merged_from == ()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), big=st.sampled_from([1e6, 1e8, 2.0**40, 2.0**52]))
def test_merged_forward_is_the_source_forward(seed, big):
    """Every answer is replayed on ``forward``; engines that work on ``merged()`` replay on
    it, so it must be the source's float64 function bit for bit, not the rounded product
    (which differs by up to ``big`` ulps here)."""
    rng = np.random.default_rng(seed)
    net = _cancelling_net(rng, big, "relu")
    X = rng.uniform(-1, 1, (64, 2))
    m = net.merged()
    assert np.array_equal(m.forward(X), net.forward(X))
    fused = Network([Affine(layer.W, layer.b) for layer in m.layers[:1]] + m.layers[1:])
    # the rounded product alone is a different function at these magnitudes
    if big >= 2.0**40:
        assert not np.array_equal(fused.forward(X), net.forward(X))
