"""The split L1 vertex bound (``resilience/lipschitz_split.py``) against sampled pairs and
brute-force Φ_m, and its deadline."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from nnresilience.bounds import vertex_difference
from nnresilience.resilience.certify_diff import certified_lower_bound, margin_rows
from nnresilience.resilience.lipschitz_split import split_lipschitz, supported
from nnresilience.testing.bruteforce import random_network
from nnresilience.testing.phi_bruteforce import brute_force_phi


def _pairs(rng, lo, hi, r, n):
    """``a`` in the box; ``b`` at a vertex ``a ± r e_i`` (where the bound is reached, if
    anywhere) or a random point of the L1 ball (``b`` may leave the box: the bound covers
    every ``b`` within ``r``)."""
    d = lo.size
    A = rng.uniform(lo, hi, size=(n, d))
    E = np.zeros((n, d))
    half = n // 2
    E[np.arange(half), rng.integers(0, d, half)] = rng.choice([-1.0, 1.0], half) * r
    D = rng.laplace(size=(n - half, d))
    D *= (r * rng.uniform(0.0, 1.0, (n - half, 1))) / np.abs(D).sum(1, keepdims=True)
    E[half:] = D
    return A, A + E


@pytest.mark.parametrize("kind", ["relu", "leaky"])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_split_bound_holds_at_sampled_pairs_and_never_loosens(kind, scale):
    rng = np.random.default_rng(3)
    tighter = 0
    for seed in range(3):
        net = random_network(np.random.default_rng(seed), [3, 6, 6, 3], kind=kind,
                             scale=2.0).merged()
        if scale != 1.0:                    # large magnitudes: scale the first layer
            net.layers[0].W = net.layers[0].W * scale
        assert supported(net)
        lo, hi = -np.ones(3), np.ones(3)
        C = margin_rows(3, 0)
        for r in (0.1, 0.8):
            s = split_lipschitz(net, C, lo, hi, r, max_pieces=200)
            full = s.L
            # the unsplit vertex bound over the same set (no piece split: one piece)
            root = split_lipschitz(net, C, lo, hi, r, max_pieces=1).L
            assert np.all(full <= root * (1 + 1e-12) + 1e-300)
            tighter += bool(np.any(full < 0.99 * root))
            A, B = _pairs(rng, lo, hi, r, 600)
            ya, yb = net.forward(A), net.forward(B)
            moved = (yb - ya) @ C.T
            eps = np.abs(B - A).sum(1)
            # float64 forward values: an allowance of 1e-12 of their magnitude
            slack = 1e-12 * (np.abs(ya) + np.abs(yb)).sum(1)
            assert np.all(moved <= full[None, :] * eps[:, None] + slack[:, None]), (seed, r)
    assert tighter >= 1                     # the splitting does something on these nets


@pytest.mark.parametrize("scale,alpha,seed", [(2.0, 1.2, 7), (40.0, 1e30, 4)])
def test_split_certificate_between_unsplit_and_brute_force(scale, alpha, seed):
    """With splitting the certified L1 radius is at least the one without and never
    above the exact Φ_m (large weights come with a large ln α so the brute force's LPs
    stay exact enough). Nets chosen where the splitting changes the answer; both without
    the slope-box splitting inside the vertex bound (``refine_seconds=0``), whose gain
    would hide the segment splitting's (tests/bounds/test_vertex_refine.py)."""
    lo, hi = -np.ones(2), np.ones(2)
    net = random_network(np.random.default_rng(seed), [2, 4, 4, 3], kind="relu",
                         scale=scale).merged()
    informative = 0
    for m in range(3):
        ref, feasible = brute_force_phi(net, m, alpha, 1, "l1", lo, hi)
        if not feasible or not math.isfinite(ref):
            continue
        la = math.log(alpha)
        before = certified_lower_bound(net, m, la, 1, "l1", lo, hi, upper=ref,
                                       refine_seconds=0)
        after = certified_lower_bound(net, m, la, 1, "l1", lo, hi, upper=ref,
                                      split_seconds=0.3, refine_seconds=0)
        assert after.lower <= ref * (1 + 1e-12), (m, after.lower, ref)
        assert after.lower >= before.lower
        informative += after.lower > 1.05 * before.lower
    assert informative >= 1


def test_split_keeps_the_deadline_on_digits():
    from nnresilience.loaders import load_network

    path = Path(__file__).resolve().parents[2] / "examples" / "digits" / "digits_2x50.onnx"
    net = load_network(str(path)).merged()
    C = margin_rows(10, 0)
    lo, hi = np.zeros(64), np.ones(64)
    t0 = time.perf_counter()
    s = split_lipschitz(net, C, lo, hi, 0.26, deadline=t0 + 0.5)
    assert time.perf_counter() - t0 <= 0.5 + 0.5       # one piece pair past the deadline
    root = split_lipschitz(net, C, lo, hi, 0.26, max_pieces=1).L
    assert s.pieces > 1 and np.all(root >= s.L)
    for refine in (None, 0.0):
        # by default the vertex bound's own slope splitting takes most of the time (and
        # its bound is above what the segment splitting reaches); without it the split
        # runs
        t0 = time.perf_counter()
        c = certified_lower_bound(net, 0, math.log(20.0), 1, "l1", lo, hi, upper=0.26,
                                  split_seconds=30.0, deadline=t0 + 1.0,
                                  refine_seconds=refine)
        assert time.perf_counter() - t0 <= 1.0 + 1.0
        assert c.lower > 0.0 and (refine is None or c.split is not None)


def test_unsupported_nets_are_left_alone():
    from nnresilience.network.layers import Affine, Tanh
    from nnresilience.network.model import sequential

    rng = np.random.default_rng(0)
    net = sequential([Affine(rng.normal(size=(3, 2)), rng.normal(size=3)), Tanh(3),
                      Affine(rng.normal(size=(3, 3)), rng.normal(size=3))])
    assert not supported(net)
    assert split_lipschitz(net, margin_rows(3, 0), -np.ones(2), np.ones(2), 0.5) is None
    assert vertex_difference.supported(net)  # the unsplit vertex bound still applies
