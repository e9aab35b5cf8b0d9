"""Floating-point soundness at any magnitude (issue 11, item 3; docs/bounds.md).

Adversarial tiny networks: weights up to 1e3, biases up to 1e6 and 2**52 that one layer
adds and the next subtracts back (``x + B -> ReLU -> -B``, also through consecutive affine
layers and max-pool), logits up to 1e4, s-shaped layers driven into saturation. For every
method, every box must contain

* the float64 forward value (:meth:`Network.forward_all` in a batch, and
  :meth:`Network.forward` of single rows, which BLAS sums in another order), and
* the exact value (``fractions`` for piecewise-linear nets, ``np.longdouble`` otherwise),
  which shows that the relaxations hold for the exact network too,

of the box corners, random vertices and random samples; the methods stay nested.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnresilience.bounds import compute_bounds
from nnresilience.bounds.relax import relax_elementwise
from nnresilience.bounds.rounding import activation_rounding, forward_errors
from nnresilience.network.layers import (
    Affine,
    Arctan,
    LeakyReLU,
    MaxPool,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnresilience.network.model import sequential

from .helpers import assert_contains, assert_contains_exact, assert_nested, exact_forward_all

METHODS = ("interval", "symbolic", "lp", "milp:1")
PARENT = {"symbolic": "interval", "lp": "symbolic", "milp:1": "lp"}
BIG = (0.0, 1e3, 1e6, 2.0 ** 52)
PWL_KINDS = ("relu", "leaky", "pool")
S_KINDS = ("tanh", "sigmoid", "arctan")


def adversarial_network(rng: np.random.Generator, kinds: list[str], big: float,
                        double: bool, logit_scale: float):
    """Tiny net whose piecewise-linear layers carry a cancelling bias ``big``.

    Each affine layer before a ReLU / LeakyReLU / max-pool adds ``+big`` to every unit (so
    they are active and the shift passes through unchanged) and the next affine layer
    subtracts its image ``W @ big`` back; ``double`` inserts ``Affine(I, +big)``,
    ``Affine(I, -big)`` pairs. Layers before s-shaped units get large weights instead.
    """
    n = int(rng.integers(1, 4))
    n_in = n
    layers = []
    shift = np.zeros(n)
    for kind in kinds:
        w = int(rng.integers(1, 5))
        W = rng.normal(size=(w, n)) * 10.0 ** rng.uniform(-1, 3)
        b = rng.normal(size=w) * 10.0 ** rng.uniform(-1, 2) - W @ shift
        add = big if kind in PWL_KINDS else 0.0
        layers.append(Affine(W, b + add))
        shift = np.full(w, add)
        if double:
            layers += [Affine(np.eye(w), np.full(w, big)), Affine(np.eye(w), np.full(w, -big))]
        if kind == "relu":
            layers.append(ReLU(w))
        elif kind == "leaky":
            layers.append(LeakyReLU(w, float(rng.uniform(0.0, 0.9))))
        elif kind == "pool":
            g = rng.integers(0, w, size=(max(1, w - 1), 2))
            layers.append(MaxPool(g, w))
            w = g.shape[0]
            layers.append(ReLU(w))
            shift = np.full(w, add)
        else:
            layers.append({"tanh": Tanh, "sigmoid": Sigmoid, "arctan": Arctan}[kind](w))
            shift = np.zeros(w)
        n = w
    W = rng.normal(size=(2, n)) * logit_scale
    layers.append(Affine(W, rng.normal(size=2) * logit_scale - W @ shift))
    return sequential(layers), n_in


def points(lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, n: int = 40) -> np.ndarray:
    """All corners, random vertices, uniform samples and the centre (all inside the box)."""
    d = lo.size
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * d)).reshape(d, -1).T
    verts = rng.integers(0, 2, size=(n // 2, d)).astype(float)
    X = np.vstack([lo + corners * (hi - lo), lo + verts * (hi - lo),
                   rng.uniform(lo, hi, size=(n - n // 2, d)), (0.5 * lo + 0.5 * hi)[None]])
    return np.clip(X, lo, hi)


def check_all_methods(net, lo, hi, X, methods=METHODS):
    vals = net.forward_all(X)
    exact = exact_forward_all(net, X)
    singles = [[net.forward(x, upto=i) for x in X[:8]] for i in range(len(net.layers) + 1)]
    got = {}
    for m in methods:
        b = got[m] = compute_bounds(net, (lo, hi), method=m)
        assert_contains(net, b, X, vals)
        assert_contains_exact(b, exact)
        for i, rows in enumerate(singles):
            for y in rows:
                assert np.all(b.lo[i] <= y) and np.all(y <= b.hi[i]), (m, i, "single row")
        if m in PARENT:
            assert_nested(b, got[PARENT[m]], tol=0.0)
    return got


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1),
       kinds=st.lists(st.sampled_from(PWL_KINDS), min_size=1, max_size=2),
       big=st.sampled_from(BIG), double=st.booleans(),
       radius=st.sampled_from([0.0, 1e-9, 1e-6, 1e-3, 0.5]),
       logit_scale=st.sampled_from([1.0, 1e2, 1e4]))
def test_piecewise_linear_nets_contain_float_and_exact_values(seed, kinds, big, double, radius,
                                                              logit_scale):
    rng = np.random.default_rng(seed)
    net, n_in = adversarial_network(rng, kinds, big, double, logit_scale)
    c = rng.normal(size=n_in)
    lo, hi = c - radius, c + radius
    check_all_methods(net, lo, hi, points(lo, hi, rng))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1),
       kinds=st.lists(st.sampled_from(S_KINDS + PWL_KINDS), min_size=1, max_size=2),
       big=st.sampled_from(BIG[:3]), radius=st.sampled_from([0.0, 1e-7, 1e-3, 1.0]),
       logit_scale=st.sampled_from([1.0, 1e4]))
def test_s_shaped_nets_contain_float_and_longdouble_values(seed, kinds, big, radius,
                                                           logit_scale):
    rng = np.random.default_rng(seed)
    net, n_in = adversarial_network(rng, kinds, big, False, logit_scale)
    c = rng.normal(size=n_in) * 3
    lo, hi = c - radius, c + radius
    # milp:1 only tightens piecewise-linear windows; it still runs (and must stay sound)
    check_all_methods(net, lo, hi, points(lo, hi, rng))


# ------------------------------------------------------------ the two cases of item 3
def _cancel_net(big: float):
    return sequential([Affine(np.array([[1.0]]), np.array([big])), ReLU(1),
                       Affine(np.array([[1.0]]), np.array([-big]))])


ITEM3 = [(1e8, 0.3 - 1e-8, 0.3 + 2e-8), (1e8, 0.3 - 1e-9, 0.3 + 1e-9),
         (2.0 ** 52, 0.3, 0.7), (2.0 ** 52, 0.25, 0.25)]


@pytest.mark.parametrize(("big", "a", "b"), ITEM3)
def test_item3_bounds_contain_forward_of_endpoints(big, a, b):
    net = _cancel_net(big)
    lo, hi = np.array([a]), np.array([b])
    X = np.vstack([lo, hi, np.linspace(a, b, 101)[:, None]])
    got = check_all_methods(net, lo, hi, X)
    for m, nb in got.items():
        for x in (lo, hi):
            y = net.forward(x)
            assert nb.lo[-1][0] <= y[0] <= nb.hi[-1][0], (m, x, y)


@pytest.mark.parametrize(("big", "a", "b"), ITEM3[:3])
@pytest.mark.parametrize("side", ["above", "below"])
def test_item3_verify_never_holds_on_a_replayed_violation(big, a, b, side):
    """``y >= forward(hi)`` (or ``y <= forward(lo)``) is violated by the float64 replay
    of an end point, though the exact network never gets there: bounds must not exclude
    it and ``verify`` must not answer ``holds``, with or without the falsifier."""
    from nnresilience.results import Status
    from nnresilience.spec.condition import Conjunction, OutputCondition
    from nnresilience.spec.property import Case, Property
    from nnresilience.spec.region import InputRegion
    from nnresilience.verify import (
        _spec_network,
        output_box_excludes,
        replay,
        spec_rows_exclude,
        verify,
    )

    net = _cancel_net(big)
    lo, hi = np.array([a]), np.array([b])
    if side == "above":
        A, rhs, witness = np.array([[-1.0]]), -net.forward(hi), hi
    else:
        A, rhs, witness = np.array([[1.0]]), net.forward(lo), lo
    cond = OutputCondition((Conjunction(A, rhs),), 1)
    prop = Property((Case(InputRegion(lo, hi), cond),))
    assert replay(net, prop, witness)                       # the float64 replay violates it
    spec = _spec_network(net, cond)
    for m in METHODS:
        nb = compute_bounds(spec, (lo, hi), method=m)
        assert not spec_rows_exclude(cond, nb.lo[-1]), m
        assert not output_box_excludes(cond, nb.lo[-2], nb.hi[-2]), m
        for engine, budget in (("none", 0.0), ("milp", 0.0), ("milp", 1.0)):
            res = verify(net, prop, engine=engine, bounds_method=m, falsify_budget=budget,
                         timeout=20)
            assert res.status in (Status.VIOLATED, Status.UNKNOWN), (m, engine, budget, res)
            if res.status is Status.VIOLATED:
                assert replay(net, prop, res.counterexample.x_array)


# ------------------------------------------------------------ the pieces of the rule
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), big=st.sampled_from(BIG), double=st.booleans())
def test_forward_error_bounds_float_minus_exact(seed, big, double):
    """``e_i`` (built from sound boxes) bounds |float64 forward - exact forward|."""
    rng = np.random.default_rng(seed)
    net, n_in = adversarial_network(rng, ["relu", "leaky"], big, double, 1e4)
    c = rng.normal(size=n_in)
    lo, hi = c - 0.5, c + 0.5
    b = compute_bounds(net, (lo, hi), method="interval")
    e = forward_errors(net.layers, b.lo, b.hi)
    assert [ei.size for ei in e] == [v.size for v in b.lo]
    X = points(lo, hi, rng)
    fl = net.forward_all(X)
    ex = exact_forward_all(net, X)
    for i in range(len(e)):
        for r in range(X.shape[0]):
            for j in range(e[i].size):
                assert abs(Fraction(float(fl[i][r, j])) - ex[i][r, j]) <= Fraction(float(e[i][j]))


@pytest.mark.parametrize("layer", [Arctan(1), Tanh(1), Sigmoid(1)], ids=lambda x: x.kind)
def test_library_activations_within_their_allowance(layer):
    """The ulp allowance of ``activation_rounding`` covers numpy on this machine, against
    long double (and the relaxation lines hold against long double too)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=20000) * s for s in (1e-3, 1.0, 5.0, 40.0, 1e4)])
    ref = exact_forward_all(sequential([layer]), x[:, None])[-1][:, 0]
    err = np.abs(layer.fn(x[:, None])[:, 0].astype(np.longdouble) - ref)
    assert err.max() <= activation_rounding(layer, np.zeros(1))[0]
    for lo_, hi_ in [(-3.0, -1.0), (0.5, 4.0), (-2.0, 7.0), (-1e4, 1e4), (1.0, 1.0 + 1e-8),
                     (-40.0, -39.0), (0.3, 0.3 + 2e-9)]:
        rel = relax_elementwise(layer, np.array([lo_]), np.array([hi_]))
        xs = np.linspace(lo_, hi_, 4001).astype(np.longdouble)
        f = exact_forward_all(sequential([layer]), xs[:, None].astype(float))[-1][:, 0]
        xs = xs.astype(float).astype(np.longdouble)
        assert np.all(np.longdouble(rel.la[0]) * xs + np.longdouble(rel.lb[0]) <= f)
        assert np.all(np.longdouble(rel.ua[0]) * xs + np.longdouble(rel.ub[0]) >= f)


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(-1e8, -1e-9), hi=st.floats(1e-9, 1e8), k=st.sampled_from([0.0, 0.01, 0.3]))
def test_relu_chord_holds_exactly(lo, hi, k):
    """The chord of an unstable ReLU / LeakyReLU, with its float slope and intercept, is
    above ``max(kx, x)`` at both ends in exact arithmetic (hence on the whole interval)."""
    layer = ReLU(1) if k == 0.0 else LeakyReLU(1, k)
    rel = relax_elementwise(layer, np.array([lo]), np.array([hi]))
    s, c = Fraction(float(rel.ua[0])), Fraction(float(rel.ub[0]))
    kk = Fraction(k)
    for x in (Fraction(lo), Fraction(hi)):
        assert s * x + c >= max(kk * x, x)
    assert rel.ua[0] * hi + rel.ub[0] - hi < 1e-6 * (1 + hi - lo)      # and still tight


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), big=st.sampled_from(BIG[:3]))
def test_milp_window_rows_hold_exactly_on_the_network(seed, big):
    """Every row of a ``milp:W`` window model (big-M constants rounded up) is satisfied,
    in exact arithmetic, by the exact values of the network with the right binaries."""
    from nnresilience.bounds.tighten import encode_window

    rng = np.random.default_rng(seed)
    net, n_in = adversarial_network(rng, ["relu", "leaky"], big, False, 1e2)
    c = rng.normal(size=n_in)
    lo, hi = c - 0.5, c + 0.5
    b = compute_bounds(net, (lo, hi), method="symbolic")
    s, e = 0, len(net.layers)
    model, z = encode_window(net.layers, b.lo, b.hi, s, e)
    arr = model.arrays()
    A = arr.A.tocsr()
    X = points(lo, hi, rng, 10)
    ex = exact_forward_all(net, X)
    binaries = np.flatnonzero(arr.integer)
    for r in range(X.shape[0]):
        val = [Fraction(0)] * arr.lb.size
        for j, cols in enumerate(z):
            for t, col in enumerate(cols):
                val[col] = ex[j][r, t]
        # binaries: 1 on the identity piece (x >= 0), in encoding order per layer
        at = 0
        for j, layer in enumerate(net.layers):
            if layer.kind in ("relu", "leaky_relu"):
                un = np.flatnonzero((b.lo[j] < 0) & (b.hi[j] > 0))
                for t in un:
                    val[binaries[at]] = Fraction(int(ex[j][r, t] >= 0))
                    at += 1
        assert at == binaries.size
        for row in range(A.shape[0]):
            lhs = sum(Fraction(float(v)) * val[col]
                      for col, v in zip(A.indices[A.indptr[row]:A.indptr[row + 1]],
                                        A.data[A.indptr[row]:A.indptr[row + 1]], strict=True))
            assert arr.row_lo[row] <= lhs <= arr.row_hi[row], (row, float(lhs))
        for col in range(arr.lb.size):
            assert arr.lb[col] <= val[col] <= arr.ub[col]


def test_loosened_rows_contain_the_original_rows():
    import scipy.sparse as sp

    from nnresilience.bounds.tighten import MIP_FEASIBILITY_TOL, loosen_rows

    rng = np.random.default_rng(3)
    A = sp.random(30, 12, density=0.4, random_state=4, format="csr") * 1e3
    A.data[::5] = 1e-12                                   # entries HiGHS would drop
    lb, ub = -rng.uniform(0, 1e4, 12), rng.uniform(0, 1e4, 12)
    rlo = np.where(rng.random(30) < 0.3, -np.inf, rng.normal(size=30) * 1e6)
    rhi = np.where(rng.random(30) < 0.3, np.inf,
                   np.where(np.isfinite(rlo), rlo + 1.0, rng.normal(size=30) * 1e6))
    nlo, nhi = loosen_rows(A, rlo, rhi, lb, ub, MIP_FEASIBILITY_TOL, 1e-9)
    fin = np.isfinite(rlo)
    assert np.all(nlo[fin] < rlo[fin]) and np.all(np.isneginf(nlo[~fin]))
    fin = np.isfinite(rhi)
    assert np.all(nhi[fin] > rhi[fin]) and np.all(np.isposinf(nhi[~fin]))
    # by at least eps_f times the row's magnitude on the box
    mag = abs(A) @ np.maximum(np.abs(lb), np.abs(ub))
    assert np.all(rhi[fin] + MIP_FEASIBILITY_TOL * mag[fin] <= nhi[fin])


def test_timeout_reports_and_keeps_soundness():
    """A deadline that cuts the LP / MIP stages short is reported and leaves sound boxes
    (how long the call takes is measured by ``benchmarks/bounds.py --deadlines``)."""
    rng = np.random.default_rng(8)
    net, n_in = adversarial_network(rng, ["relu", "relu"], 1e6, False, 1e2)
    lo, hi = -np.ones(n_in), np.ones(n_in)
    X = points(lo, hi, rng, 200)
    inter = compute_bounds(net, (lo, hi), method="interval")
    for m in ("lp", "milp:1"):
        b = compute_bounds(net, (lo, hi), method=m, timeout=0.0)
        assert b.stats["timed_out"]
        assert_contains(net, b, X)
        assert_nested(b, inter, tol=0.0)
    full = compute_bounds(net, (lo, hi), method="symbolic")
    assert not full.stats["timed_out"]
