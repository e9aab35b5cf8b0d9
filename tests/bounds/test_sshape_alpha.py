"""Optimised tangent lines of sigmoid / tanh / arctan neurons (``crown_relax.s_shaped_lines``).

Every line used in a reported bound must lie below / above the activation on its whole
interval, at any magnitude and for any parameter; the optimised bounds must contain the
forward values and never be looser than the fixed relaxation they start from; and the
``bab`` verdicts on tiny s-shaped nets must agree with dense sampling.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.network.layers import Affine, Arctan, Sigmoid, Tanh
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
        fixed = CrownBounder(net, C, sshape_alpha=False).bound(lo, hi, iters=15)
        opt = CrownBounder(net, C).bound(lo, hi, iters=15)
        assert np.all(opt.lower >= fixed.lower)
        assert opt.stats["iterations"] > 0
        for b in range(2):
            X = lo[b] + rng.uniform(size=(3000, 3)) * (hi[b] - lo[b])
            X = np.vstack([X, lo[b], hi[b]])
            y = net.forward(X) @ C.T
            assert np.all(opt.lower[b] <= y.min(axis=0))


def test_optimising_tightens_a_sigmoid_bound():
    """Not only never looser: on a net with intervals crossing 0 the tangents gain."""
    from nnresilience.bounds.crown import CrownBounder

    gains = []
    for seed in range(4):
        net = _tiny("sigmoid", seed, depth=2, width=10)
        C = np.eye(3)
        lo, hi = -np.ones((1, 3)), np.ones((1, 3))
        fixed = CrownBounder(net, C, sshape_alpha=False).bound(lo, hi, iters=20).lower
        opt = CrownBounder(net, C).bound(lo, hi, iters=20).lower
        gains.append(float(np.max(opt - fixed)))
    assert max(gains) > 1e-3


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_bab_verdicts_agree_with_sampling(kind):
    """``holds`` only where no sample violates; a sampled violation is never ``holds``,
    and a reported counterexample replays."""
    from nnresilience.spec.property import robustness
    from nnresilience.verify import verify

    decided = 0
    for seed in range(4):
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
            elif res.status.value == "violated":
                x = res.counterexample.x_array
                assert prop.violated_by(x, net.forward(x))
                decided += 1
    assert decided >= 6
