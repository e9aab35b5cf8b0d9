"""Optimised tangent lines of sigmoid / tanh / arctan neurons (``crown_relax.s_shaped_lines``).

Every line used in a reported bound must lie below / above the activation on its whole
interval, at any magnitude and for any parameter; the optimised bounds must contain the
forward values and never be looser than the fixed relaxation they start from; and the
``bab`` verdicts on tiny s-shaped nets must agree with dense sampling.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnresilience.network.layers import Affine, Arctan, ReLU, Sigmoid, Tanh
from nnresilience.network.model import sequential

torch = pytest.importorskip("torch")

ACT = {"sigmoid": Sigmoid, "tanh": Tanh, "arctan": Arctan}


def _intervals(rng, w):
    """Intervals of every kind: convex side, concave side, crossing 0, large magnitudes
    (±50, ±1e3), tiny widths."""
    c = rng.choice([0.0, 0.5, 2.0, 10.0, 50.0, 1e3], size=w) * rng.choice([-1.0, 1.0], size=w)
    c = c + rng.normal(size=w)
    r = rng.uniform(0.0, 6.0, size=w) * rng.choice([1e-9, 0.1, 1.0, 10.0], size=w)
    return c - r, c + r


@pytest.mark.parametrize("kind", sorted(ACT))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimised_lines_valid_for_any_parameter(kind, seed):
    from nnresilience.bounds.crown_relax import s_shaped_lines, sound_relaxation

    rng = np.random.default_rng(seed)
    w, R = 200, 3
    layer = ACT[kind](w)
    lo, hi = _intervals(rng, w)
    lo[:4] = [-50.0, -50.0, 0.0, -0.3]      # crossing 0, one end at 0, large magnitude
    hi[:4] = [50.0, 0.1, 50.0, 50.0]
    rel = sound_relaxation(layer, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))
    t = torch.as_tensor(rng.uniform(size=(1, R, w)))
    t[0, 0] = 0.0                            # the ends of the ranges
    t[0, 1] = 1.0
    la, lb, ua, ub = (x.numpy()[0] for x in s_shaped_lines(layer, rel, t, sound=True))
    Z = lo + np.linspace(0.0, 1.0, 801)[:, None] * (hi - lo)
    Z = np.clip(np.vstack([lo, hi, Z]), lo, hi)
    F = layer.fn(Z)
    for r in range(R):
        # only this test's own float evaluation of the line and of f is allowed for
        tol_l = 8 * 2.0**-53 * (np.abs(la[r] * Z) + np.abs(lb[r]) + np.abs(F)) + 1e-300
        tol_u = 8 * 2.0**-53 * (np.abs(ua[r] * Z) + np.abs(ub[r]) + np.abs(F)) + 1e-300
        assert np.all(la[r] * Z + lb[r] - tol_l <= F), r
        assert np.all(ua[r] * Z + ub[r] + tol_u >= F), r
    # the parameters really move the lines (not only the fixed fallback)
    fixed_la = rel.la.numpy()[0, 0]
    assert np.mean(np.abs(la - fixed_la) > 1e-12) > 0.2


def _tiny(kind, seed, depth=2, width=6, n_in=3):
    rng = np.random.default_rng(seed)
    layers, d = [], n_in
    for _ in range(depth):
        layers += [Affine(rng.normal(size=(width, d)) * 1.5, rng.normal(size=width)),
                   ACT[kind](width)]
        d = width
    layers.append(Affine(rng.normal(size=(3, d)), rng.normal(size=3)))
    return sequential(layers)


@pytest.mark.parametrize("kind", sorted(ACT))
def test_optimised_bounds_contain_samples_and_beat_fixed(kind):
    from nnresilience.bounds.crown import CrownBounder

    for seed in range(3):
        net = _tiny(kind, seed)
        rng = np.random.default_rng(seed)
        C = rng.normal(size=(2, 3))
        lo = rng.uniform(-1.0, 0.0, size=(2, 3)) * [[1.0], [30.0]]   # one box at scale 30
        hi = lo + rng.uniform(0.2, 1.0, size=(2, 3)) * [[1.0], [30.0]]
        fixed = CrownBounder(net, C, sshape_alpha=False).bound(lo, hi, iters=8)
        opt = CrownBounder(net, C).bound(lo, hi, iters=8)
        assert np.all(opt.lower >= fixed.lower)
        assert opt.stats["iterations"] > 0
        for b in range(2):
            X = lo[b] + rng.uniform(size=(3000, 3)) * (hi[b] - lo[b])
            X = np.vstack([X, lo[b], hi[b]])
            y = net.forward(X) @ C.T
            assert np.all(opt.lower[b] <= y.min(axis=0))


def test_optimising_tightens_a_sigmoid_bound():
    """Not only never looser: on nets whose intervals cross 0 the tangents gain on every
    spec row (by 0.2-0.9 on these two nets; fixed lines: nothing to optimise)."""
    from nnresilience.bounds.crown import CrownBounder

    for seed in range(2):
        net = _tiny("sigmoid", seed, depth=2, width=6)
        C = np.eye(3)
        lo, hi = -np.ones((1, 3)), np.ones((1, 3))
        fixed = CrownBounder(net, C, sshape_alpha=False).bound(lo, hi, iters=10).lower
        opt = CrownBounder(net, C).bound(lo, hi, iters=10).lower
        assert np.all(opt - fixed > 0.05), seed


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_bab_verdicts_agree_with_sampling(kind):
    """``holds`` only where no sample violates; a sampled violation is never ``holds``,
    and a reported counterexample replays."""
    from nnresilience.spec.property import robustness
    from nnresilience.verify import verify

    decided = holds = 0
    # seeds whose 8 cases are decided in milliseconds (10 + 0 and 10 + 3 each have a case
    # that runs to the time limit and adds nothing an assertion could check)
    for seed in (1, 2, 4, 5):
        net = _tiny(kind, 10 + seed, depth=2, width=5, n_in=2)
        rng = np.random.default_rng(seed)
        x0 = rng.uniform(-1.0, 1.0, size=2)
        label = int(np.argmax(net.forward(x0)))
        for radius in (0.05, 0.6):
            prop = robustness(x0, label, radius, 3)
            X = x0 + rng.uniform(-radius, radius, size=(20000, 2))
            X = np.vstack([X, x0 + radius * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])])
            Y = net.forward(X)
            sampled_bad = bool(np.any(np.argmax(Y, axis=1) != label))
            res = verify(net, prop, timeout=2.0)
            if res.status.value == "holds":
                assert not sampled_bad
                decided += 1
                holds += 1
            elif res.status.value == "violated":
                x = res.counterexample.x_array
                assert prop.violated_by(x, net.forward(x))
                decided += 1
    assert decided >= 7 and holds >= 3


@pytest.mark.parametrize("kind", sorted(ACT))
def test_fallback_to_fixed_line_when_the_check_fails(kind):
    """A tangent point past the valid range (here the inflection point 0 itself, whose
    tangent crosses ``f`` on any interval that crosses 0) fails the float64 re-check, and
    the fixed line comes back unchanged; so does a box too wide for float64 (``u - d``
    overflows). Points in the range keep their tangents."""
    from nnresilience.bounds.crown_relax import s_shaped_lines, sound_relaxation

    w = 6
    layer = ACT[kind](w)
    lo = np.array([-3.0, -0.5, -40.0, -1e8, -1e-3, -1.7e308])
    hi = np.array([2.0, 0.5, 1.0, 1e8, 5.0, 1.7e308])
    rel = sound_relaxation(layer, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))
    zero = torch.zeros_like(rel.tl1)
    rel.tl1, rel.tu0 = zero, zero                     # range end forced to the bad point
    t = torch.ones((1, 1, w), dtype=torch.float64)    # d = 0 for both lines
    la, lb, ua, ub = s_shaped_lines(layer, rel, t, sound=True)
    for got, fixed in ((la, rel.la), (lb, rel.lb), (ua, rel.ua), (ub, rel.ub)):
        assert torch.equal(got, fixed)
    # the ranges as built: mid-range tangents replace the fixed lines on the boxes
    # crossing 0 (the box too wide for float64 keeps its fixed lines)
    rel = sound_relaxation(layer, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))
    lines = s_shaped_lines(layer, rel, torch.full_like(t, 0.5), sound=True)
    moved = np.any([(x != y)[0, 0].numpy() for x, y in zip(
        lines, (rel.la, rel.lb, rel.ua, rel.ub), strict=True)], axis=0)
    assert moved[:4].all() and not moved[5]


LD = {"sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "tanh": np.tanh, "arctan": np.arctan}
MAGNITUDE = st.sampled_from([0.0, 1e-9, 1e-3, 0.5, 3.0, 40.0, 1e4, 1e8])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(ACT)), seed=st.integers(0, 2**31 - 1),
       centre=MAGNITUDE, width=MAGNITUDE, anywhere=st.booleans())
def test_sound_lines_hold_in_longdouble_at_any_magnitude(kind, seed, centre, width,
                                                         anywhere):
    """Every line ``s_shaped_lines(sound=True)`` returns lies below / above ``f`` on its
    whole interval, checked in ``np.longdouble`` (11 more bits than float64, so the only
    tolerance is that evaluation's own rounding): intervals up to 1e8 in magnitude and
    width, ``l == u``, straddling 0 or not; tangent points from the whole range (``t`` in
    [0, 1], ends included) or, with ``anywhere``, arbitrary points ``d`` that only the
    float64 re-check stands between and a wrong line."""
    from nnresilience.bounds.crown_relax import s_shaped_lines, sound_relaxation

    rng = np.random.default_rng(seed)
    w = 64
    layer = ACT[kind](w)
    c = centre * rng.choice([-1.0, 1.0], size=w) * rng.uniform(0.0, 2.0, size=w)
    r = width * rng.uniform(0.0, 1.0, size=(2, w))
    lo, hi = c - r[0], c + r[1]
    rel = sound_relaxation(layer, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))
    t = torch.as_tensor(rng.uniform(size=(1, 3, w)))
    t[0, 0], t[0, 1] = 0.0, 1.0
    if anywhere:
        span = max(1.0, centre + width)
        rel.tl0, rel.tu0 = (torch.as_tensor(rng.uniform(-span, span, size=(1, 1, w)))
                            for _ in range(2))
        rel.tl1, rel.tu1 = (torch.as_tensor(rng.uniform(-span, span, size=(1, 1, w)))
                            for _ in range(2))
        rel.lpar = rel.upar = torch.ones((1, 1, w), dtype=torch.bool)
    la, lb, ua, ub = (x.numpy()[0].astype(np.longdouble)
                      for x in s_shaped_lines(layer, rel, t, sound=True))
    s = np.concatenate([np.linspace(0.0, 1.0, 257), rng.uniform(size=64)])[:, None]
    tt = t.numpy()[0]
    dl = rel.tl0.numpy()[0] + tt * (rel.tl1 - rel.tl0).numpy()[0]        # tangent points
    du = rel.tu1.numpy()[0] - tt * (rel.tu1 - rel.tu0).numpy()[0]
    Z = np.vstack([lo + s * (hi - lo), np.zeros(w), dl, du])
    Z = np.clip(Z, lo, hi).astype(np.longdouble)
    with np.errstate(over="ignore"):      # exp(-z) of z = -1e8: inf, sigmoid 0, as meant
        F = LD[kind](Z)
    eps = np.longdouble(2.0) ** -60
    for k in range(3):
        low, upp = la[k] * Z + lb[k], ua[k] * Z + ub[k]
        assert np.all(low <= F + eps * (np.abs(la[k] * Z) + np.abs(lb[k]) + np.abs(F))), k
        assert np.all(upp >= F - eps * (np.abs(ua[k] * Z) + np.abs(ub[k]) + np.abs(F))), k


def _big_net(rng, kinds, wscale, bscale, n_in=2):
    """Tiny net whose pre-activations reach ``wscale`` / ``bscale`` (saturated units,
    intervals straddling 0 by orders of magnitude, exact zeros of width)."""
    layers, d = [], n_in
    for kind in kinds:
        w = int(rng.integers(2, 5))
        W = rng.normal(size=(w, d)) * wscale
        W[rng.uniform(size=W.shape) < 0.2] = 0.0           # some units: l == u
        layers += [Affine(W, rng.normal(size=w) * bscale),
                   ACT[kind](w) if kind in ACT else ReLU(w)]
        d = w
    layers.append(Affine(rng.normal(size=(3, d)), rng.normal(size=3)))
    return sequential(layers)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1),
       kinds=st.lists(st.sampled_from(sorted(ACT) + ["relu"]), min_size=1, max_size=2),
       wscale=st.sampled_from([1.0, 1e2, 1e4, 1e8]), bscale=st.sampled_from([1.0, 1e4, 1e8]),
       radius=st.sampled_from([0.0, 1e-7, 0.3, 2.0]))
def test_large_magnitudes_contain_forward_values_and_never_loosen(seed, kinds, wscale,
                                                                  bscale, radius):
    """Optimised tangents on nets with weights / biases up to 1e8: every reported box and
    spec bound contains the float64 forward values (and the longdouble ones) of the box
    corners and samples, and is never looser than the fixed-line bound (``iters=0``,
    the start of the optimisation; also ``sshape_alpha=False`` on pure s-shaped nets)."""
    from nnresilience.bounds.crown import CrownBounder

    from .helpers import exact_forward_all, sample_box

    rng = np.random.default_rng(seed)
    net = _big_net(rng, kinds, wscale, bscale)
    c = rng.normal(size=2)
    lo, hi = c - radius, c + radius
    C = rng.normal(size=(2, 3))
    bounder = CrownBounder(net, C, upper=True)
    r0 = bounder.bound(lo[None], hi[None], iters=0)
    opt = bounder.bound(lo[None], hi[None], iters=6)
    assert np.all(opt.lower >= r0.lower) and np.all(opt.upper <= r0.upper)
    if "relu" not in kinds:
        fixed = CrownBounder(net, C, upper=True, sshape_alpha=False).bound(
            lo[None], hi[None], iters=6)
        assert np.all(opt.lower >= fixed.lower) and np.all(opt.upper <= fixed.upper)
    X = np.vstack([sample_box(lo, hi, 300, rng), lo, hi, [lo[0], hi[1]], [hi[0], lo[1]]])
    vals = net.forward_all(X)
    exact = exact_forward_all(net, X)
    Y = vals[-1] @ C.T
    assert np.all(opt.lower[0] <= Y) and np.all(opt.upper[0] >= Y)
    for e, (v, x) in enumerate(zip(vals, exact, strict=True)):
        assert np.all(opt.pre_lo[e][0] <= v) and np.all(v <= opt.pre_hi[e][0]), e
        assert np.all(opt.pre_lo[e][0] <= x) and np.all(x <= opt.pre_hi[e][0]), e


def test_no_time_for_the_tangent_pass_gives_the_fixed_line_bound():
    """The float64 pass with tangents costs several fixed-line passes: with no time left
    for it nothing is optimised and the bound is exactly the fixed-line one (the deadline
    logic budgets that pass; docs/bounds.md, "Cost and deadlines")."""
    import time

    from nnresilience.bounds.crown import CrownBounder

    net = _tiny("sigmoid", 0, depth=2, width=6)
    C = np.eye(3)
    lo, hi = -np.ones((2, 3)), np.ones((2, 3))
    fixed = CrownBounder(net, C, sshape_alpha=False).bound(lo, hi, iters=0)
    late = CrownBounder(net, C).bound(lo, hi, iters=50, deadline=time.perf_counter())
    assert late.stats["iterations"] == 0
    assert np.array_equal(late.lower, fixed.lower)
    # with time, the starting tangents are a candidate and the steps run
    opt = CrownBounder(net, C).bound(lo, hi, iters=5)
    assert opt.stats["iterations"] > 0 and np.all(opt.lower > fixed.lower)


def _plain_step(kind, rel, t, A):
    """The optimisation-pass step written with plain torch ops (autograd records it)."""
    from nnresilience.bounds.crown_relax import _torch_fn

    pos = A >= 0.0
    t = t.clamp(0.0, 1.0)
    d = torch.where(pos, rel.tl0 + t * (rel.tl1 - rel.tl0), rel.tu1 - t * (rel.tu1 - rel.tu0))
    fd, sd = _torch_fn(kind, d)
    par = torch.where(pos, rel.lpar, rel.upar)
    slope = torch.where(par, sd, torch.where(pos, rel.la, rel.ua))
    icpt = torch.where(par, fd - sd * d, torch.where(pos, rel.lb, rel.ub))
    return A * slope, (A * icpt).sum(-1)


@pytest.mark.parametrize("kind", sorted(ACT))
def test_hand_written_step_gradient_equals_autograd(kind):
    """``fast_s_shaped_step`` (one autograd node, gradient by hand) returns the values
    and the gradients (in ``t``, ``A`` and, through the ranges and chords, the box) of
    the plain formula: convex, concave, crossing and point-like boxes, both signs of A."""
    from nnresilience.bounds.crown_relax import fast_relaxation, fast_s_shaped_step

    rng = np.random.default_rng(3)
    w = 40
    c = rng.choice([-3.0, 0.0, 3.0], size=w) + rng.normal(size=w)
    r = rng.uniform(0.0, 3.0, size=w) * rng.choice([1e-12, 1.0], size=w, p=[0.1, 0.9])
    lo0 = torch.tensor(np.repeat((c - r)[None], 2, 0), requires_grad=True)
    hi0 = torch.tensor(np.repeat((c + r)[None], 2, 0), requires_grad=True)
    t0 = torch.tensor(rng.uniform(size=(2, 5, w)), requires_grad=True)
    A0 = torch.tensor(rng.normal(size=(2, 5, w)), requires_grad=True)
    G, g = torch.tensor(rng.normal(size=(2, 5, w))), torch.tensor(rng.normal(size=(2, 5)))
    got = []
    for step in (_plain_step, fast_s_shaped_step):
        rel = fast_relaxation(ACT[kind](w), lo0 * 1.0, hi0 * 1.0)
        An, cc = step(kind, rel, t0, A0 * 1.0)
        grads = torch.autograd.grad((An * G).sum() + (cc * g).sum(), [t0, A0, lo0, hi0])
        got.append((An, cc, *grads))
    for x, y in zip(*got, strict=True):
        assert float(y.detach().abs().max()) > 0.0
        torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(ACT))
def test_per_side_sound_lines_equal_the_two_sided_lines(kind):
    """The float64 pass builds one line per entry (``sound_s_shaped_side`` with the
    sign mask of the coefficients); each is bit-identical to that side's line of
    ``s_shaped_lines`` (which the line-validity tests above check), also for points
    outside the ranges."""
    from nnresilience.bounds.crown_relax import (
        s_shaped_lines,
        sound_relaxation,
        sound_s_shaped_side,
    )

    rng = np.random.default_rng(4)
    w = 64
    layer = ACT[kind](w)
    lo, hi = _intervals(rng, w)
    rel = sound_relaxation(layer, torch.as_tensor(lo[None]), torch.as_tensor(hi[None]))
    t = torch.as_tensor(rng.uniform(-0.2, 1.2, size=(1, 6, w)))
    side = torch.as_tensor(rng.uniform(size=(1, 6, w)) < 0.5)
    la, lb, ua, ub = s_shaped_lines(layer, rel, t, sound=True)
    a, b = sound_s_shaped_side(layer, rel, t, side)
    assert torch.equal(a, torch.where(side, la, ua))
    assert torch.equal(b, torch.where(side, lb, ub))
    assert bool((a != torch.where(side, rel.la, rel.ua)).any())     # tangents were used
