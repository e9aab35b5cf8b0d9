"""Window arithmetic of the chain builder (conv / max-pool / avg-pool matrices) against
torch.nn.functional in float64, on random configurations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nnresilience.loaders._chain import (
    ChainBuilder,
    avgpool_matrix,
    conv2d_matrix,
    maxpool_groups,
)
from nnresilience.network.layers import ReLU

torch = pytest.importorskip("torch")
F = torch.nn.functional

cfg = dict(c=st.integers(1, 3), h=st.integers(3, 8), w=st.integers(3, 8), k=st.integers(1, 3),
           s=st.integers(1, 3), p=st.integers(0, 1), d=st.integers(1, 2),
           seed=st.integers(0, 10_000))


@settings(max_examples=30, deadline=None)
@given(**cfg, groups=st.sampled_from([1, 2]), m=st.integers(1, 2))
def test_conv_matrix_matches_torch(c, h, w, k, s, p, d, seed, groups, m):
    assume(d * (k - 1) + 1 <= min(h, w) + 2 * p)
    rng = np.random.default_rng(seed)
    cin, cout = c * groups, m * groups
    weight = rng.normal(size=(cout, c, k, k))
    x = rng.normal(size=(1, cin, h, w))
    A, out = conv2d_matrix((cin, h, w), weight, (s, s), (p, p, p, p), (d, d), groups)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), stride=s, padding=p,
                   dilation=d, groups=groups).numpy()
    assert ref.shape[1:] == out
    np.testing.assert_allclose(A @ x.ravel(), ref.ravel(), rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(**cfg, ceil=st.booleans())
def test_maxpool_groups_match_torch(c, h, w, k, s, p, d, seed, ceil):
    assume(k >= 2 and p <= k // 2 and d * (k - 1) + 1 <= min(h, w) + 2 * p)
    x = np.random.default_rng(seed).normal(size=(1, c, h, w))
    groups, out = maxpool_groups((c, h, w), (k, k), (s, s), (p, p, p, p), (d, d), ceil)
    ref = F.max_pool2d(torch.from_numpy(x), k, stride=s, padding=p, dilation=d,
                       ceil_mode=ceil).numpy()
    assert ref.shape[1:] == out
    np.testing.assert_array_equal(x.ravel()[groups].max(axis=1), ref.ravel())


@settings(max_examples=30, deadline=None)
@given(**cfg, ceil=st.booleans(), include=st.booleans())
def test_avgpool_matrix_matches_torch(c, h, w, k, s, p, d, seed, ceil, include):
    assume(k >= 2 and p <= k // 2 and k <= min(h, w) + 2 * p)
    x = np.random.default_rng(seed).normal(size=(1, c, h, w))
    A, out = avgpool_matrix((c, h, w), (k, k), (s, s), (p, p, p, p), ceil, include)
    ref = F.avg_pool2d(torch.from_numpy(x), k, stride=s, padding=p, ceil_mode=ceil,
                       count_include_pad=include).numpy()
    assert ref.shape[1:] == out
    np.testing.assert_allclose(A @ x.ravel(), ref.ravel(), rtol=1e-12, atol=1e-12)


def test_builder_merges_and_commutes_index_maps(rng):
    b = ChainBuilder((1, 2, 3))
    b.transpose((0, 2, 1))                      # index map only
    b.activation(ReLU)                          # applied to the base, index map kept
    W = rng.normal(size=(4, 6))
    b.linear(W, np.ones(4), (1, 4))
    b.scale_shift(2.0, 1.0)
    layers = b.finish()
    assert [layer.kind for layer in layers] == ["relu", "affine"]
    x = rng.normal(size=(1, 2, 3))
    expected = 2.0 * (W @ np.maximum(x, 0).transpose(0, 2, 1).ravel() + 1.0) + 1.0
    h = x.reshape(1, -1)
    for layer in layers:
        h = layer.forward(h)
    np.testing.assert_allclose(h[0], expected, rtol=1e-12)
