"""The grouped L∞ vertex bound (``bounds/vertex_difference.py``: ``group_upper``, the
groups of ``unit_upper(..., "linf")``): sampled pairs, the exact slope supremum of one
hidden layer, never looser than the per-coordinate sum, the fallbacks."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from nnresilience.bounds import vertex_difference
from nnresilience.bounds.differential import PairRegion, differential_bounds
from nnresilience.bounds.vertex_difference import (
    coordinate_upper,
    dual_norm_upper,
    group_upper,
    sign_groups,
    unit_upper,
)
from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import sequential

from .helpers import mixed_network
from .test_differential import sample_pairs
from .test_vertex_difference import _rows, _slopes


@pytest.mark.parametrize("kind", ["relu", "leaky"])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_grouped_bound_holds_at_sampled_pairs(kind, scale):
    """``C·Δy <= L ||Δx||_∞`` at 600 pairs per case (L∞ corners, where a joint slope
    choice matters, and random points) for groups of 1, 2 and 4 coordinates; a larger
    group is never looser than the per-coordinate sum, and tighter somewhere."""
    rng = np.random.default_rng(17)
    tighter, worst = 0, 0.0
    for seed in range(3):
        net = mixed_network(np.random.default_rng(seed), 4, [6, 6], [kind, kind],
                            scale=2.0).merged()
        if scale != 1.0:
            net.layers[0].W = net.layers[0].W * scale
        C = _rows(rng, 3)
        for r in (0.05, 0.5):
            region = PairRegion(-np.ones(4), np.ones(4), "linf", r)
            slopes = _slopes(net, differential_bounds(net, region))
            Ls = [unit_upper(net, C, slopes, "linf", group=g) for g in (1, 2, 4)]
            for L in Ls[1:]:
                assert np.all(Ls[0] >= L)
                tighter += bool(np.any(0.98 * Ls[0] > L))
            A, B = sample_pairs(region, 600, rng)
            ya, yb = net.forward(A), net.forward(B)
            moved = (yb - ya) @ C.T
            eps = np.abs(B - A).max(1)
            slack = 1e-12 * (np.abs(ya) + np.abs(yb)).sum(1)
            for L in Ls:
                assert np.all(moved <= L[None, :] * eps[:, None] + slack[:, None]), (seed, r)
            near = eps > 0
            worst = max(worst, float((moved[near] / (Ls[2][None, :] * eps[near, None])).max()))
    assert tighter >= 2
    assert worst > 0.4                      # the pairs come near the grouped bound


def test_one_hidden_layer_group_is_the_exact_slope_supremum():
    """One ReLU layer, every neuron unstable, one group of all inputs: the bound is
    ``max_g ||c W2 diag(g) W1||_1`` over ``g ∈ {0, 1}^6`` (the supremum over the slope box
    is at a vertex: the norm is convex in each slope), rounded outward only; the
    per-coordinate sum is above it."""
    rng = np.random.default_rng(3)
    W1, W2 = rng.normal(size=(6, 4)), rng.normal(size=(3, 6))
    net = sequential([Affine(W1, np.zeros(6)), ReLU(6), Affine(W2, np.zeros(3))])
    C = _rows(rng, 3)
    slopes = {1: (np.zeros(6), np.ones(6))}
    L = unit_upper(net, C, slopes, "linf", group=4)
    G = np.array(list(itertools.product([0.0, 1.0], repeat=6)))     # (64, 6)
    J = np.einsum("tk,gk,ki->tgi", C @ W2, G, W1)
    ref = np.abs(J).sum(2).max(1)
    assert np.all(ref <= L) and np.allclose(L, ref, rtol=1e-12, atol=0.0)
    per = unit_upper(net, C, slopes, "linf", group=1)
    assert np.all(per >= L) and np.any(per > 1.05 * ref)


def test_groups_partition_the_inputs():
    rng = np.random.default_rng(2)
    net = mixed_network(rng, 11, [5], ["relu"])
    for size in (1, 3, 4, 11):
        groups = sign_groups(net, rng.random(11), size)
        flat = np.sort(np.concatenate(groups))
        assert np.array_equal(flat, np.arange(11))
        assert all(1 <= g.size <= size for g in groups)
        assert len(groups) == -(-11 // size)


def test_late_or_over_budget_groups_fall_back_to_the_per_coordinate_sum(monkeypatch):
    rng = np.random.default_rng(5)
    net = mixed_network(rng, 4, [4, 4], ["relu", "relu"])
    slopes = {i: (np.zeros(layer.out_size), np.ones(layer.out_size))
              for i, layer in enumerate(net.layers) if layer.kind == "relu"}
    C = _rows(rng, 3)
    L = coordinate_upper(net, C, slopes)
    per = dual_norm_upper(L, "linf")
    groups = sign_groups(net, L.sum(0), 4)
    assert group_upper(net, C, slopes, groups, L, deadline=time.perf_counter() - 1.0) is None
    assert unit_upper(net, C, slopes, "linf", deadline=time.perf_counter() - 1.0) is None
    monkeypatch.setattr(vertex_difference, "GROUP_FLOPS", 1.0)
    assert vertex_difference.group_size(net, C.shape[0]) == 1
    assert group_upper(net, C, slopes, groups, L) is None
    assert np.array_equal(unit_upper(net, C, slopes, "linf"), per)


def test_digits_groups_tighten_every_row():
    """digits 2x50 over its whole slope box, class 0: the grouped L∞ bound is below the
    per-coordinate sum on every row (each coordinate no longer picks its own slopes)."""
    from pathlib import Path

    from nnresilience.loaders import load_network
    from nnresilience.resilience.certify_diff import margin_rows

    path = Path(__file__).resolve().parents[2] / "examples" / "digits" / "digits_2x50.onnx"
    net = load_network(str(path)).merged()
    C = margin_rows(10, 0)
    slopes = {i: (np.zeros(la.out_size), np.ones(la.out_size))
              for i, la in enumerate(net.layers) if la.kind != "affine"}
    per = unit_upper(net, C, slopes, "linf", group=1)
    grouped = unit_upper(net, C, slopes, "linf")
    assert np.all(grouped < per)
