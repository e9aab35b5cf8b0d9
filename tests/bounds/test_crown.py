"""Optimised linear bounds (:mod:`nnresilience.bounds.crown`): soundness and tightness.

Soundness is checked against sampled float64 forward values (``Network.forward``), of the
spec rows ``C y`` and of every intermediate entry, on random tiny networks with every
layer kind, large weights and large biases that cancel; with clamps, only samples that
satisfy them count (rejection sampling). Tightness: at α's initial value the bound is
CROWN (= ``symbolic``), optimised bounds are never looser, β never loosens.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnresilience.bounds import compute_bounds, parse_method
from nnresilience.bounds.crown import CrownBounder, CrownResult, CrownState
from nnresilience.network.layers import Affine, MaxPool, ReLU
from nnresilience.network.model import Network, sequential

from .helpers import ACT, assert_contains, assert_nested, mixed_network, sample_box

KINDS = st.sampled_from(["relu", "leaky", "arctan", "tanh", "sigmoid"])
PIECEWISE_KINDS = st.sampled_from(["relu", "leaky"])
#: symbolic and CROWN compute the same real-arithmetic bound at α's initial value; they
#: differ by their floating-point padding only (symbolic: 1e-9 relative, CROWN: the
#: rounding rule, ~1e-13 here). This is that allowance.
PAD = 1e-8


def cancelling_network(rng, n_in: int, widths: list[int], kinds: list[str], big: float,
                       wscale: float, pool: bool) -> Network:
    """Affine/activation stack whose first layer adds ``+big`` to some units and whose
    next affine subtracts it back (through the activation), weights up to ``wscale``."""
    layers = []
    n = n_in
    shift = None
    for li, (w, kind) in enumerate(zip(widths, kinds, strict=True)):
        W = rng.normal(scale=1.0, size=(w, n)) * rng.choice([1.0, wscale], size=(w, n))
        b = rng.normal(size=w)
        if shift is not None:
            b = b - W @ shift
        layers.append(Affine(W, b))
        shift = None
        if li == 0 and big > 0:
            mask = rng.random(w) < 0.5
            b0 = layers[-1].b + np.where(mask, big, 0.0)
            layers[-1] = Affine(layers[-1].W, b0)
            if kind in ("relu", "leaky"):
                shift = np.where(mask, big, 0.0)          # act(z + big) = z + big
        if pool and li == 0 and w >= 2:
            g = rng.integers(0, w, size=(max(1, w // 2), 2))
            layers.append(MaxPool(g, w))
            w = g.shape[0]
            shift = None
        layers.append(ACT[kind](w, rng))
        n = w
    W = rng.normal(size=(3, n))
    b = rng.normal(size=3) - (W @ shift if shift is not None else 0.0)
    layers.append(Affine(W, b))
    return sequential(layers)


def _domains(rng, lo, hi, B):
    """``B`` sub-boxes of ``[lo, hi]`` (the first is the whole box)."""
    los = np.repeat(lo[None], B, 0)
    his = np.repeat(hi[None], B, 0)
    for d in range(1, B):
        k = rng.integers(0, lo.size)
        mid = 0.5 * (lo[k] + hi[k])
        if d % 2:
            his[d, k] = mid
        else:
            los[d, k] = mid
    return los, his


def _random_clamps(rng, bounder, root: CrownResult, B: int) -> dict:
    """ReLU phase splits and interval splits on the first non-linear layer's inputs."""
    i = bounder.nonlinear[0]
    lo, hi = root.pre_lo[i][0], root.pre_hi[i][0]
    w = lo.size
    clo = np.full((B, w), -np.inf)
    chi = np.full((B, w), np.inf)
    for d in range(1, B):
        k = rng.integers(0, w)
        cut = 0.0 if bounder.layers[i].kind in ("relu", "leaky_relu") else 0.5 * (lo[k] + hi[k])
        if d % 2:
            chi[d, k] = cut
        else:
            clo[d, k] = cut
    return {i: (clo, chi)}


def _check_contains(net, res: CrownResult, C, los, his, clamps, X_all, vals_all):
    """Every sample of each domain (box ∩ clamps) lies in the domain's bounds."""
    for d in range(los.shape[0]):
        inside = np.all((X_all >= los[d]) & (X_all <= his[d]), axis=1)
        for i, (clo, chi) in clamps.items():
            z = vals_all[i]
            inside &= np.all((z >= clo[d]) & (z <= chi[d]), axis=1)
        if not inside.any():
            continue
        assert np.isfinite(res.lower[d]).all(), "a domain with samples reported infeasible"
        Y = vals_all[-1][inside] @ C.T
        assert np.all(res.lower[d] <= Y), f"domain {d}: C y below the lower bound"
        if res.upper is not None:
            assert np.all(res.upper[d] >= Y), f"domain {d}: C y above the upper bound"
        for e, v in enumerate(vals_all):
            vv = v[inside]
            assert np.all(vv >= res.pre_lo[e][d]), f"domain {d} entry {e} below its box"
            assert np.all(vv <= res.pre_hi[e][d]), f"domain {d} entry {e} above its box"
        xb = res.x_best[d]
        assert np.all(xb >= los[d]) and np.all(xb <= his[d])


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(KINDS, min_size=2, max_size=2),
       pool=st.booleans(), big=st.sampled_from([0.0, 1e6]), wscale=st.sampled_from([1.0, 1e3]),
       iters=st.sampled_from([0, 6]))
def test_random_networks_contain_forward_values(seed, kinds, pool, big, wscale, iters):
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 4))
    net = cancelling_network(rng, n_in, [int(rng.integers(3, 7)) for _ in kinds], kinds, big,
                             wscale, pool).merged()
    c = rng.normal(size=n_in)
    r = rng.uniform(0.05, 1.0, size=n_in)
    lo, hi = c - r, c + r
    C = rng.normal(size=(2, 3))
    bounder = CrownBounder(net, C, upper=True)
    B = 4
    los, his = _domains(rng, lo, hi, B)
    root = bounder.bound(lo[None], hi[None], iters=0)
    clamps = _random_clamps(rng, bounder, root, B)
    res = bounder.bound(los, his, clamps, iters=iters)
    X = sample_box(lo, hi, 4000, rng)
    vals = net.forward_all(X)
    _check_contains(net, res, C, los, his, clamps, X, vals)
    # the root box too, and its children warm-started from it (reuse of its boxes)
    _check_contains(net, root, C, lo[None], hi[None], {}, X, vals)
    kids = bounder.bound(np.repeat(lo[None], B, 0), np.repeat(hi[None], B, 0), clamps,
                         iters=iters, warm=root.state.select(np.zeros(B, dtype=int)))
    assert kids.stats["mode"] == "reuse"
    _check_contains(net, kids, C, np.repeat(lo[None], B, 0), np.repeat(hi[None], B, 0),
                    clamps, X, vals)


def _fold(net: Network, C: np.ndarray) -> Network:
    """``net`` with ``C`` multiplied into its last affine layer: outputs ``C y``."""
    last = net.layers[-1]
    return Network(net.layers[:-1] + [Affine(C @ last.W, C @ last.b)])


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(KINDS, min_size=2, max_size=3),
       pool=st.booleans())
def test_initial_alpha_is_crown_and_optimising_never_loosens(seed, kinds, pool):
    rng = np.random.default_rng(seed)
    net = mixed_network(rng, 3, [int(rng.integers(3, 8)) for _ in kinds], kinds,
                        pool=pool).merged()
    lo, hi = -np.ones(3), np.ones(3)
    C = rng.normal(size=(3, 3))
    sym = compute_bounds(_fold(net, C), (lo, hi), method="symbolic")
    bounder = CrownBounder(net, C, upper=True)
    r0 = bounder.bound(lo[None], hi[None], iters=0)
    tol = PAD * (1.0 + np.abs(sym.lo[-1]))
    assert np.all(r0.lower[0] >= sym.lo[-1] - tol)
    assert np.all(r0.upper[0] <= sym.hi[-1] + PAD * (1.0 + np.abs(sym.hi[-1])))
    # α at its initial value is CROWN; the bound also stops at every layer's box (the
    # best of these), so it may be tighter than symbolic, never looser
    for mode in ("optimise", "crown"):
        b = CrownBounder(net, C, upper=True, intermediate=mode)
        r = b.bound(lo[None], hi[None], iters=15)
        assert np.all(r.lower >= r0.lower), mode
        assert np.all(r.upper <= r0.upper), mode


def test_optimisation_tightens_relu_network():
    """On a net with many unstable ReLUs, 20 steps of α improve every row's bound."""
    rng = np.random.default_rng(7)
    net = mixed_network(rng, 4, [12, 12], ["relu", "relu"]).merged()
    lo, hi = -np.ones(4), np.ones(4)
    C = rng.normal(size=(3, 3))
    b = CrownBounder(net, C)
    r0 = b.bound(lo[None], hi[None], iters=0)
    r1 = b.bound(lo[None], hi[None], iters=20)
    assert np.all(r1.lower > r0.lower)
    assert r1.stats["iterations"] == 20


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(PIECEWISE_KINDS, min_size=2, max_size=2))
def test_beta_never_loosens_and_splits_cover(seed, kinds):
    """β starts at 0 (the bound without β) and the best parameters are kept, so children
    with β are at least as tight as the unoptimised β-free bound from the same start, and
    at least as tight as their parent; the children's samples are in their bounds."""
    rng = np.random.default_rng(seed)
    net = mixed_network(rng, 3, [8, 8], kinds).merged()
    lo, hi = -np.ones(3), np.ones(3)
    C = rng.normal(size=(2, 3))
    with_beta = CrownBounder(net, C)
    without = CrownBounder(net, C, beta=False)
    root = with_beta.bound(lo[None], hi[None], iters=10)
    j = max(root.scores, key=lambda k: root.scores[k].max())
    unit = int(root.scores[j][0].argmax())
    w = net.layers[j].in_size
    clo = np.full((2, w), -np.inf)
    chi = np.full((2, w), np.inf)
    chi[0, unit] = 0.0
    clo[1, unit] = 0.0
    clamps = {j: (clo, chi)}
    L, H = np.repeat(lo[None], 2, 0), np.repeat(hi[None], 2, 0)
    warm = root.state.select([0, 0])
    a = with_beta.bound(L, H, clamps, iters=10, warm=warm)
    b = without.bound(L, H, clamps, iters=0, warm=warm)
    assert np.all(a.lower >= b.lower - PAD * (1.0 + np.abs(b.lower)))
    assert np.all(a.lower >= root.lower)
    X = sample_box(lo, hi, 5000, rng)
    _check_contains(net, a, C, L, H, clamps, X, net.forward_all(X))


def test_beta_proves_more_than_boxes_on_a_split():
    """A ReLU split tightens the bound beyond the box intersection (the β terms): summed
    over the children of five random networks, β gains over α alone."""
    totals = []
    for beta in (False, True):
        total = 0.0
        for seed in range(5):
            rng = np.random.default_rng(seed)
            net = mixed_network(rng, 3, [10, 10], ["relu", "relu"]).merged()
            lo, hi = -np.ones(3), np.ones(3)
            C = rng.normal(size=(1, 3))
            b = CrownBounder(net, C, beta=beta)
            root = b.bound(lo[None], hi[None], iters=10)
            j = max(root.scores, key=lambda k: root.scores[k].max())
            unit = int(root.scores[j][0].argmax())
            w = net.layers[j].in_size
            clo = np.full((2, w), -np.inf)
            chi = np.full((2, w), np.inf)
            chi[0, unit] = 0.0
            clo[1, unit] = 0.0
            kids = b.bound(np.repeat(lo[None], 2, 0), np.repeat(hi[None], 2, 0),
                           {j: (clo, chi)}, iters=30, warm=root.state.select([0, 0]))
            total += float(kids.lower.sum())
        totals.append(total)
    assert totals[1] > totals[0] + 1.0


def test_infeasible_clamps_give_infinite_lower_bound():
    rng = np.random.default_rng(0)
    net = mixed_network(rng, 2, [4], ["relu"]).merged()
    b = CrownBounder(net, np.eye(3), upper=True)
    lo, hi = -np.ones(2), np.ones(2)
    root = b.bound(lo[None], hi[None], iters=0)
    i = b.nonlinear[0]
    w = net.layers[i].in_size
    clo = np.full((1, w), -np.inf)
    clo[0, 0] = root.pre_hi[i][0, 0] + 1.0          # z_0 >= above its upper bound
    res = b.bound(lo[None], hi[None], {i: (clo, np.full((1, w), np.inf))}, iters=3)
    assert np.all(np.isposinf(res.lower)) and np.all(np.isneginf(res.upper))


def test_state_select_concat_and_warm_check():
    """``select``/``concat`` keep rows aligned; boxes of a non-ancestor are not used."""
    rng = np.random.default_rng(1)
    net = mixed_network(rng, 3, [6, 6], ["relu", "relu"]).merged()
    C = rng.normal(size=(2, 3))
    b = CrownBounder(net, C)
    lo, hi = -np.ones(3), np.ones(3)
    los, his = _domains(rng, lo, hi, 3)
    res = b.bound(los, his, iters=5)
    sel = res.select([2, 0, 0])
    assert np.array_equal(sel.lower, res.lower[[2, 0, 0]])
    assert np.array_equal(sel.state.lo, los[[2, 0, 0]])
    both = CrownResult.concat([res.select([0]), res.select([1, 2])])
    assert np.array_equal(both.lower, res.lower)
    st_ = CrownState.concat([res.state.select([1]), res.state.select([0])])
    assert np.array_equal(st_.hi, his[[1, 0]])
    # a warm state of a small box must not lend its (tight) boxes to a bigger domain
    small = b.bound(np.full((1, 3), 0.2), np.full((1, 3), 0.3), iters=0)
    big = b.bound(lo[None], hi[None], iters=0, warm=small.state)
    assert big.stats["mode"] == "crown"
    X = sample_box(lo, hi, 3000, rng)
    assert np.all(net.forward(X) @ C.T >= big.lower[0])
    for e, v in enumerate(net.forward_all(X)):
        assert np.all(v >= big.pre_lo[e][0]) and np.all(v <= big.pre_hi[e][0])


def test_deadline_stops_optimisation_and_stays_sound():
    import time

    rng = np.random.default_rng(2)
    net = mixed_network(rng, 3, [30, 30, 30], ["relu", "relu", "relu"]).merged()
    C = rng.normal(size=(3, 3))
    b = CrownBounder(net, C)
    lo, hi = -np.ones(3), np.ones(3)
    b.bound(lo[None], hi[None], iters=1)                      # warm up torch
    t0 = time.perf_counter()
    res = b.bound(lo[None], hi[None], iters=100000, deadline=t0 + 0.5)
    assert time.perf_counter() - t0 < 0.5 + 1.0
    assert res.stats["iterations"] < 100000
    X = sample_box(lo, hi, 3000, rng)
    assert np.all(net.forward(X) @ C.T >= res.lower[0])


def test_scores_zero_on_stable_and_clamped_units():
    rng = np.random.default_rng(4)
    net = mixed_network(rng, 3, [8, 8], ["relu", "relu"]).merged()
    b = CrownBounder(net, rng.normal(size=(2, 3)))
    lo, hi = -np.ones(3), np.ones(3)
    root = b.bound(lo[None], hi[None], iters=3)
    for j, s in root.scores.items():
        assert s.shape == (1, net.layers[j].in_size) and np.all(s >= 0)
        stable = (root.pre_lo[j][0] >= 0) | (root.pre_hi[j][0] <= 0)
        assert np.all(s[0][stable] == 0)
        assert np.all(s[0][~stable] > 0)
    j = max(root.scores, key=lambda k: root.scores[k].max())
    unit = int(root.scores[j][0].argmax())
    assert root.scores[j][0, unit] > 0
    w = net.layers[j].in_size
    clo = np.full((1, w), -np.inf)
    clo[0, unit] = 0.0
    kid = b.bound(lo[None], hi[None], {j: (clo, np.full((1, w), np.inf))}, iters=3,
                  warm=root.state)
    assert kid.scores[j][0, unit] == 0


def test_sparse_and_leading_activation_networks():
    """A leading activation, max-pool after affine, and a large sparse affine layer."""
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    n = 40
    Ws = sp.random(n, n, density=0.1, random_state=1, format="csr") * 3.0
    net = sequential([ReLU(n), Affine(Ws, rng.normal(size=n)),
                      MaxPool(np.arange(n).reshape(-1, 2), n), ReLU(n // 2),
                      Affine(rng.normal(size=(3, n // 2)), np.zeros(3))])
    C = rng.normal(size=(2, 3))
    lo, hi = -np.ones(n), np.ones(n)
    for dense_limit in (10**9, 100):              # dense and torch-sparse weight paths
        b = CrownBounder(net, C, upper=True, dense_limit=dense_limit)
        res = b.bound(lo[None], hi[None], iters=5)
        X = sample_box(lo, hi, 2000, rng)
        _check_contains(net, res, C, lo[None], hi[None], {}, X, net.forward_all(X))


def test_memory_budget_chunks_give_the_same_bounds():
    rng = np.random.default_rng(6)
    net = mixed_network(rng, 3, [8, 8], ["relu", "leaky"]).merged()
    C = rng.normal(size=(2, 3))
    lo, hi = -np.ones(3), np.ones(3)
    los, his = _domains(rng, lo, hi, 6)
    whole = CrownBounder(net, C).bound(los, his, iters=0)
    parts = CrownBounder(net, C, memory_budget=1).bound(los, his, iters=0)
    assert parts.stats["chunks"] == 6 and whole.stats["chunks"] == 1
    # same computation per domain; only BLAS summation order and the batch-wide forward
    # error (from the largest magnitudes in the chunk) differ
    np.testing.assert_allclose(whole.lower, parts.lower, rtol=1e-12, atol=1e-12)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(KINDS, min_size=2, max_size=3),
       double=st.booleans())
def test_compute_bounds_alpha_sound_and_inside_symbolic(seed, kinds, double):
    rng = np.random.default_rng(seed)
    net = mixed_network(rng, 3, [int(rng.integers(3, 8)) for _ in kinds], kinds,
                        double_affine=double)
    lo, hi = -np.ones(3), np.ones(3)
    sym = compute_bounds(net, (lo, hi), method="symbolic")
    alpha = compute_bounds(net, (lo, hi), method="alpha")
    assert alpha.method == "alpha" and parse_method("alpha") == ("alpha", 0)
    assert_nested(alpha, sym, tol=0.0)
    assert_contains(net, alpha, sample_box(lo, hi, 3000, rng))


def test_compute_bounds_alpha_tighter_on_relu_net():
    rng = np.random.default_rng(11)
    net = mixed_network(rng, 4, [16, 16, 16], ["relu", "relu", "relu"])
    lo, hi = -np.ones(4), np.ones(4)
    sym = compute_bounds(net, (lo, hi), method="symbolic")
    alpha = compute_bounds(net, (lo, hi), method="alpha")
    width = [float((h - lo_).sum()) for lo_, h in zip(alpha.lo, alpha.hi, strict=True)]
    width_s = [float((h - lo_).sum()) for lo_, h in zip(sym.lo, sym.hi, strict=True)]
    assert width[-1] < width_s[-1]
    assert alpha.stats["unstable"] <= sym.stats["unstable"]


def test_bad_inputs():
    rng = np.random.default_rng(0)
    net = mixed_network(rng, 2, [3], ["relu"]).merged()
    from nnresilience.errors import ShapeMismatchError

    with pytest.raises(ShapeMismatchError):
        CrownBounder(net, np.ones((1, 4)))
    b = CrownBounder(net, np.ones((1, 3)))
    with pytest.raises(ShapeMismatchError):
        b.bound(np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError):
        b.bound(np.zeros((1, 2)), np.ones((1, 2)), {0: (np.zeros(3), np.ones(3))})
    with pytest.raises(ValueError):
        CrownBounder(net, np.ones((1, 3)), nonsense=1)


@pytest.mark.parametrize("big", [1e8, 2.0**52])
def test_cancelling_huge_bias_contains_float_forward(big):
    """``x + big -> ReLU -> - big`` near 0.3: the float64 forward value is 0.3 rounded
    through magnitude ``big`` (e.g. 0 or 1 for 2**52); the bounds must contain it."""
    net = sequential([Affine(np.array([[1.0]]), np.array([big])), ReLU(1),
                      Affine(np.array([[1.0]]), np.array([-big]))])
    lo, hi = np.array([0.3 - 1e-9]), np.array([0.3 + 1e-9])
    X = np.vstack([lo, hi, [0.3]])
    y = net.forward(X)[:, 0]
    b = CrownBounder(net, np.array([[1.0]]), upper=True)
    res = b.bound(lo[None], hi[None], iters=5)
    assert np.all(res.lower[0, 0] <= y) and np.all(y <= res.upper[0, 0])
    for e, v in enumerate(net.forward_all(X)):
        assert np.all(res.pre_lo[e][0] <= v) and np.all(v <= res.pre_hi[e][0])


@pytest.mark.parametrize("big", [1e8, 2.0**52])
def test_cancelling_huge_bias_compute_bounds_alpha(big):
    net = sequential([Affine(np.array([[1.0]]), np.array([big])), ReLU(1),
                      Affine(np.array([[1.0]]), np.array([-big]))])
    lo, hi = np.array([0.3 - 1e-9]), np.array([0.3 + 1e-9])
    y = net.forward(np.vstack([lo, hi, [0.3]]))[:, 0]
    box = compute_bounds(net, (lo, hi), method="alpha")
    assert np.all(box.lo[-1] <= y) and np.all(y <= box.hi[-1])


def test_rows_proven_by_parent_are_inherited():
    """With a threshold, rows the parent proved are neither optimised nor evaluated in
    the children (their bound is the parent's); the other rows are, and stay sound."""
    rng = np.random.default_rng(8)
    net = mixed_network(rng, 3, [10, 10], ["relu", "relu"]).merged()
    lo, hi = -np.ones(3), np.ones(3)
    C = rng.normal(size=(4, 3))
    probe = CrownBounder(net, C).bound(lo[None], hi[None], iters=10)
    thr = probe.lower[0] + np.array([-0.01, -0.01, 1.0, 1.0])   # rows 0, 1 proven
    b = CrownBounder(net, C, threshold=thr)
    root = b.bound(lo[None], hi[None], iters=10)
    assert np.all(root.lower[0, :2] > thr[:2])
    j = max(root.scores, key=lambda k: root.scores[k].max())
    unit = int(root.scores[j][0].argmax())
    w = net.layers[j].in_size
    clo = np.full((2, w), -np.inf)
    chi = np.full((2, w), np.inf)
    chi[0, unit] = 0.0
    clo[1, unit] = 0.0
    L, H = np.repeat(lo[None], 2, 0), np.repeat(hi[None], 2, 0)
    kids = b.bound(L, H, {j: (clo, chi)}, iters=10, warm=root.state.select([0, 0]))
    assert np.array_equal(kids.lower[:, :2], np.repeat(root.lower[:, :2], 2, 0))
    assert np.all(kids.lower[:, 2:] >= root.lower[:, 2:])
    X = sample_box(lo, hi, 4000, rng)
    _check_contains(net, kids, C, L, H, {j: (clo, chi)}, X, net.forward_all(X))


def _longdouble_forward_all(net: Network, X: np.ndarray) -> list[np.ndarray]:
    """The forward pass in extended precision (closer to the exact values than float64)."""
    h = np.asarray(X, dtype=np.longdouble)
    out = [h]
    for layer in net.layers:
        if layer.kind == "affine":
            h = h @ np.asarray(layer.dense_W(), dtype=np.longdouble).T + np.asarray(
                layer.b, dtype=np.longdouble)
        elif layer.kind == "relu":
            h = np.maximum(h, 0)
        elif layer.kind == "leaky_relu":
            h = np.where(h >= 0, h, np.longdouble(layer.slope) * h)
        elif layer.kind == "maxpool":
            h = h[:, layer.groups].max(axis=2)
        elif layer.kind == "tanh":
            h = np.tanh(h)
        elif layer.kind == "arctan":
            h = np.arctan(h)
        else:
            with np.errstate(over="ignore"):
                h = 1 / (1 + np.exp(-h))
        out.append(h)
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(KINDS, min_size=1, max_size=2),
       big=st.sampled_from([0.0, 1e3, 1e6, 2.0**52]),
       radius=st.sampled_from([0.0, 1e-9, 1e-3, 0.5]), logit=st.sampled_from([1.0, 1e4]))
def test_adversarial_magnitudes_float_and_extended_values(seed, kinds, big, radius, logit):
    """Cancelling biases up to 2**52 (through ReLU / LeakyReLU only: an s-shaped unit
    would not pass the shift), zero-width and tiny boxes, logits up to 1e4: the bounds
    contain the float64 forward values and the extended-precision ones."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 4))
    piecewise = all(k in ("relu", "leaky") for k in kinds)
    net = cancelling_network(rng, n_in, [int(rng.integers(1, 5)) for _ in kinds], kinds,
                             big if piecewise else min(big, 1e3), 1e3, False)
    last = net.layers[-1]
    net = Network(net.layers[:-1] + [Affine(last.W * logit, last.b * logit)])
    c = rng.normal(size=n_in)
    lo, hi = c - radius, c + radius
    X = np.vstack([lo, hi, sample_box(lo, hi, 200, rng)])
    C = rng.normal(size=(2, 3))
    res = CrownBounder(net, C, upper=True).bound(lo[None], hi[None], iters=4)
    for vals in (net.forward_all(X), _longdouble_forward_all(net, X)):
        for e, v in enumerate(vals):
            assert np.all(res.pre_lo[e][0] <= v) and np.all(v <= res.pre_hi[e][0]), e
        y = vals[-1] @ C.T.astype(vals[-1].dtype)
        assert np.all(res.lower[0] <= y) and np.all(y <= res.upper[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=KINDS)
def test_relaxation_lines_valid_on_their_boxes(seed, kind):
    """The float64 lines of :mod:`crown_relax` (α anywhere in its range for (Leaky)ReLU)
    lie below / above the activation on the whole box; the optimisation passes' lines
    (never reported, not padded) are the same lines up to rounding."""
    import torch

    from nnresilience.bounds.crown_relax import fast_relaxation, sound_relaxation

    rng = np.random.default_rng(seed)
    layer = ACT[kind](64, rng)
    c = rng.normal(size=64) * rng.choice([0.1, 1.0, 10.0])
    r = rng.uniform(0.0, 5.0, size=64) * rng.choice([1e-6, 1.0], size=64)
    lo, hi = c - r, c + r
    Z = lo + rng.uniform(size=(500, 64)) * (hi - lo)
    Z = np.vstack([lo, hi, np.clip(Z, lo, hi)])
    F = layer.forward(Z)
    tl, th = torch.as_tensor(lo[None]), torch.as_tensor(hi[None])
    rel = sound_relaxation(layer, tl, th)
    la, lb, ua, ub = (np.asarray(getattr(rel, n), dtype=np.float64)[0, 0]
                      for n in ("la", "lb", "ua", "ub"))
    if rel.unstable is not None:            # any α in [k, 1] replaces the lower slope
        k = rel.slope
        alpha = k + (1.0 - k) * rng.uniform(size=64)
        la = np.where(np.asarray(rel.unstable)[0, 0], alpha, la)
    # only this test's own float evaluation of the line and of f (libm) is allowed for
    # (a few units in the last place of the magnitudes involved)
    tol_l = 8 * 2.0**-53 * (np.abs(la * Z) + np.abs(lb) + np.abs(F)) + 1e-300
    tol_u = 8 * 2.0**-53 * (np.abs(ua * Z) + np.abs(ub) + np.abs(F)) + 1e-300
    assert np.all(la * Z + lb - tol_l <= F)
    assert np.all(ua * Z + ub + tol_u >= F)
    fast = fast_relaxation(layer, tl, th)
    wide = (hi - lo) > 1e-3
    for n in ("ua", "ub"):
        a = np.asarray(getattr(fast, n), dtype=np.float64)[0, 0][wide]
        b = np.asarray(getattr(rel, n), dtype=np.float64)[0, 0][wide]
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
