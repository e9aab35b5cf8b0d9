"""The L2 norm in the resilience queries against brute force and planted exact values.

References do not use any solver: in 1-D the three norms coincide and Φ is the distance
between the premise and flip intervals (endpoints bisected to 1e-12); in 2-D the Euclidean
distance transform between grid points of the premise set P and the flip set F (grid
points are real members, so the grid value is an upper bound within a cell diagonal of
the truth); planted nets have closed-form values (a half-plane at distance t/||w||_2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from nnresilience.errors import BackendUnavailableError, InputDataError
from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.resilience import DEFAULT, delta_check, min_perturbation, phi, xi
from nnresilience.resilience.replay import flip_count, premise_margin
from nnresilience.results import Status
from nnresilience.spec.region import InputRegion
from nnresilience.testing.phi_reference import (
    flip_slacks,
    intervals_1d,
    premise_margins,
    tiny_network,
)

LO, HI = -1.0, 1.0


def _margin(net, X, m):
    return premise_margins(net, X, m)


def _slack(net, X, m, k=1):
    return flip_slacks(net, X, m, k)


def _tiny(seed, sizes, kind="relu"):
    return tiny_network(seed, sizes, LO, HI, kind)


def _intervals_1d(fn, n=4001):
    return intervals_1d(fn, LO, HI, n)


def _check_pair(net, r, log_alpha, k=1, lo=LO, hi=HI):
    """The witness replays exactly and its float64 L2 norm is the reported upper."""
    a, b = np.asarray(r.a), np.asarray(r.a_perturbed)
    assert np.all(a >= lo) and np.all(a <= hi) and np.all(b >= lo) and np.all(b <= hi)
    if log_alpha is not None:
        assert premise_margin(net.forward(a), r.cls) >= log_alpha
    assert flip_count(net.forward(b), r.cls) >= k
    assert float(np.linalg.norm(b - a)) == r.upper


@pytest.mark.parametrize("seed,kind", [(0, "relu"), (3, "leaky"), (5, "maxpool")])
def test_phi_l2_1d_equals_interval_distance(seed, kind):
    net = _tiny(seed, [1, 4, 3], kind)
    alpha, checked = 1.1, 0
    for m in range(3):
        P = _intervals_1d(lambda X, m=m: _margin(net, X, m) - math.log(alpha))
        F = _intervals_1d(lambda X, m=m: _slack(net, X, m))
        r = phi(net, m, alpha, 1, "l2", (LO, HI))
        if not P:
            assert not r.feasible
            continue
        if not F:
            assert r.lower == math.inf
            continue
        ref = min(max(0.0, b0 - a1, a0 - b1) for a0, a1 in P for b0, b1 in F)
        assert r.optimal and r.lower <= ref + 1e-9
        assert r.upper == pytest.approx(ref, abs=DEFAULT.opt_tol)
        assert r.stats["backend"] == "scip"
        _check_pair(net, r, math.log(alpha))
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("seed,k", [(1, 1), (2, 1), (4, 2)])
def test_phi_l2_2d_matches_euclidean_grid(seed, k):
    net = _tiny(seed, [2, 4, 3])
    alpha, n = 1.05, 161
    xs = np.linspace(LO, HI, n)
    h = xs[1] - xs[0]
    G = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    checked = 0
    for m in range(3):
        P = (_margin(net, G, m) >= math.log(alpha)).reshape(n, n)
        F = (_slack(net, G, m, k) >= 0).reshape(n, n)
        r = phi(net, m, alpha, k, "l2", (LO, HI))
        if not P.any() or not F.any():
            assert (not r.feasible) or r.lower == math.inf or r.upper is not None
            continue
        ref = float(ndimage.distance_transform_edt(~F)[P].min()) * h
        assert r.optimal
        # grid points are real members of P and F: the grid value bounds Φ from above,
        # and the true pair is within half a cell diagonal of grid points at each end
        assert r.upper <= ref + 1e-6
        assert r.upper >= ref - math.sqrt(2) * h - 1e-9
        _check_pair(net, r, math.log(alpha), k)
        checked += 1
    assert checked >= 1


def test_xi_l2_is_min_of_phi_and_between_linf_and_l1():
    net = _tiny(11, [2, 4, 3])
    per = [phi(net, m, 1.05, 1, "l2", (LO, HI)) for m in range(3)]
    r = xi(net, 1.05, 1, "l2", (LO, HI))
    ups = [p.upper for p in per if p.feasible and p.upper is not None]
    assert r.upper == pytest.approx(min(ups), abs=1e-9) and r.lower <= r.upper
    _check_pair(net, r, math.log(1.05))
    # ||.||_inf <= ||.||_2 <= ||.||_1, so the optima are ordered the same way
    rinf, r1 = xi(net, 1.05, 1, "linf", (LO, HI)), xi(net, 1.05, 1, "l1", (LO, HI))
    assert rinf.lower <= r.upper + 1e-9 and r.lower <= r1.upper + 1e-9


def _halfplane_net(w, t, offset=0.0):
    """Logits ``y0 = offset``, ``y1 = offset + w.x`` (through a ReLU pair for w.x):
    class 0 with alpha = e^t is confident on ``w.x <= -t`` and flips on ``w.x >= 0``,
    so Φ_0 = t / ||w||_2 (L2), t / ||w||_inf (L1), t / ||w||_1 (L∞) when D reaches."""
    w = np.asarray(w, float).reshape(1, -1)
    return Network([Affine(np.vstack([w, -w]), np.zeros(2)), ReLU(2),
                    Affine(np.array([[0.0, 0.0], [1.0, -1.0]]), np.array([offset, offset]))])


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (1e3, 1e6)])
def test_planted_halfplane_exact_value_at_any_magnitude(scale, offset):
    # D = [-scale, scale]^2, Φ_L2 = scale / 5 (0.2, 200); the second case has logits
    # around 1e6, where float64 spacing is ~1e-10.
    # weights w / scale and alpha = e: t = 1 over inputs of size `scale`, Φ = scale / 5
    w = np.array([3.0, 4.0]) / scale
    net = _halfplane_net(w, 1.0, offset)
    dom, alpha, truth = (-scale, scale), math.e, scale / 5.0
    # the float64 net's Φ differs from the real one by the logits' rounding (ulps of
    # the offset) over the slope ||w||
    slack = 8 * np.spacing(abs(offset) + 4.0) / np.linalg.norm(w) + 1e-12 * truth
    r = phi(net, 0, alpha, 1, "l2", dom)
    assert r.feasible and r.upper is not None
    assert r.lower <= truth + slack and r.upper >= truth - slack
    assert r.upper == pytest.approx(truth, rel=DEFAULT.opt_tol)
    _check_pair(net, r, math.log(alpha), lo=dom[0], hi=dom[1])
    # the other norms on the same net: t / ||w||_inf and t / ||w||_1
    r1 = phi(net, 0, alpha, 1, "l1", dom)
    rinf = phi(net, 0, alpha, 1, "linf", dom)
    assert r1.upper == pytest.approx(truth * 5 / 4, rel=DEFAULT.opt_tol)
    assert rinf.upper == pytest.approx(truth * 5 / 7, rel=DEFAULT.opt_tol)
    # the cone row is scaled: it does not set the model's margin τ (the logit rows do),
    # so L2 is exactly as tight as L1 here
    assert r.stats["tau"] <= 1.01 * r1.stats["tau"]
    if offset == 0.0:
        assert r.optimal and r1.optimal and rinf.optimal
    else:
        # logits of 1e6 give τ ~ 4e-3 (1e-9 of the rows' scale): every norm's interval
        # stays honestly open, by about τ / ||w|| per loosened row
        assert r.upper - r.lower <= 4 * r.stats["tau"] / np.linalg.norm(w) + 1e-9


def _near_miss_net(dip: float = 5e-7) -> Network:
    """Issue 11, item 1, with a second input that does nothing: class 0 (alpha 2) is
    confident exactly for x0 <= 0.28, flips from x0 >= 0.9333.., and the margin comes back
    to ln 2 - dip at x0 = 0.9: Φ_0 = 0.65333.. in every norm, while a solver that accepts
    the near miss at 0.9 would report 0.0333."""
    L = math.log(2.0)
    s1 = (0.22 - dip) / 0.4
    s2 = -(L - dip) / (0.9333333333333333 - 0.9)
    W1 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    return Network([Affine(W1, np.array([0.0, -0.5, -0.9])), ReLU(3),
                    Affine(np.array([[-1.0, 1.0 + s1, s2 - s1], [0.0, 0.0, 0.0]]),
                           np.array([L + 0.28, 0.0]))])


def test_planted_near_tie_is_never_the_near_miss():
    net = _near_miss_net()
    truth = 0.9333333333333333 - 0.28
    r = phi(net, 0, 2.0, 1, "l2", (0.0, 1.0))
    assert r.feasible and r.upper is not None
    assert r.lower <= truth + 1e-9 and r.upper >= truth - 1e-9
    assert r.optimal and r.upper == pytest.approx(truth, abs=DEFAULT.opt_tol)
    _check_pair(net, r, math.log(2.0), lo=0.0, hi=1.0)


@pytest.mark.parametrize("shrink", [True, False])
def test_min_perturbation_l2_matches_grid_with_and_without_falsifier(shrink):
    # shrink=True: falsifier + certified L2-ball bisection + ball MIP; False: one MIP
    net = _tiny(22, [2, 4, 3])
    X = np.random.default_rng(2).uniform(-0.8, 0.8, size=(3, 2))
    xs = np.linspace(LO, HI, 201)
    h = xs[1] - xs[0]
    G = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    s = DEFAULT.with_(shrink=shrink)
    checked = 0
    for x in X:
        m = int(net.predict(x))
        r = min_perturbation(net, x, None, "l2", 1, (LO, HI), settings=s)
        F = G[_slack(net, G, m) >= 0]
        if F.size == 0:
            assert r.lower == math.inf
            continue
        ref = float(np.linalg.norm(F - x, axis=1).min())
        assert r.optimal and r.lower <= r.upper
        # a grid point of F is a real flip (upper bound); the true nearest flip is within
        # half a cell diagonal of one
        assert ref - math.sqrt(2) / 2 * h - 1e-9 <= r.upper <= ref + 1e-6
        b = np.asarray(r.a_perturbed)
        assert flip_count(net.forward(b), m) >= 1
        assert float(np.linalg.norm(b - x)) == r.upper
        checked += 1
    assert checked >= 1


def test_delta_check_l2_on_both_sides_of_the_minimum():
    net = _halfplane_net([3.0, 4.0], 1.0)
    x = np.array([-0.3, -0.4])               # w.x = -2.5: flip set w.x >= 0 at distance 0.5
    assert delta_check(net, x, 0, 0.49, "l2", domain=(LO, HI)).status is Status.HOLDS
    v = delta_check(net, x, 0, 0.51, "l2", domain=(LO, HI))
    assert v.status is Status.VIOLATED
    b = np.asarray(v.counterexample.x)
    assert np.linalg.norm(b - x) <= 0.51 and flip_count(net.forward(b), 0) >= 1
    # the L∞ ball of 0.49 reaches w.x = -2.5 + 0.49 * 7 > 0: the norms really differ
    assert delta_check(net, x, 0, 0.49, "linf", domain=(LO, HI)).status is Status.VIOLATED
    r = min_perturbation(net, x, 0, "l2", 1, (LO, HI))
    assert r.optimal and r.upper == pytest.approx(0.5, abs=DEFAULT.opt_tol)
    small = min_perturbation(net, x, 0, "l2", 1, (LO, HI), radius=0.45)
    assert small.upper is None and small.lower == pytest.approx(0.45)


def test_divided_variants_agree_on_l2():
    from nnresilience.divide import min_perturbation_divided, phi_divided

    net = _tiny(30, [2, 4, 3])
    m = int(net.predict(np.zeros(2)))
    whole = phi(net, m, 1.0, 1, "l2", (LO, HI))
    div = phi_divided(net, m, 1.0, 1, "l2", (LO, HI), executor="serial", parts=4)
    assert whole.optimal and div.optimal
    assert div.upper == pytest.approx(whole.upper, abs=DEFAULT.opt_tol)
    x = np.array([0.1, -0.2])
    one = min_perturbation(net, x, None, "l2", 1, (LO, HI))
    mdiv = min_perturbation_divided(net, x, None, "l2", 1, (LO, HI), executor="serial",
                                    parts=4)
    assert mdiv.upper == pytest.approx(one.upper, abs=DEFAULT.opt_tol)
    assert float(np.linalg.norm(np.asarray(mdiv.a_perturbed) - x)) == mdiv.upper


def test_l2_needs_a_quadratic_backend_and_unknown_norms_are_refused():
    net = _tiny(41, [2, 3, 3])
    with pytest.raises(BackendUnavailableError, match="L2 norm .* 'highs'"):
        phi(net, 0, 1.0, 1, "l2", (LO, HI), settings=DEFAULT.with_(backend="highs"))
    with pytest.raises(BackendUnavailableError, match="L2 norm"):
        min_perturbation(net, np.zeros(2), None, "l2", 1, (LO, HI),
                         settings=DEFAULT.with_(backend="highs"))
    with pytest.raises(InputDataError):
        phi(net, 0, 1.0, 1, "l3", (LO, HI))


def test_l2_region_contains_and_clip_are_exact_in_float64():
    c = np.array([0.1, -0.2, 0.3])
    reg = InputRegion.ball(c, 0.25, "l2", -1.0, 1.0)
    assert reg.norm == "l2" and reg.is_ball
    P = np.random.default_rng(0).uniform(-1, 1, size=(500, 3))
    Q = reg.clip(P)
    assert all(reg.contains(q, tol=0.0) for q in Q)
    assert np.all(np.linalg.norm(Q - c, axis=1) <= 0.25)
    inside = c + np.array([0.1, 0.1, 0.1])
    assert reg.contains(inside, tol=0.0) and np.array_equal(reg.clip(inside), inside)
    assert not reg.contains(c + np.array([0.2, 0.2, 0.0]), tol=0.0)   # in the box, not ball
