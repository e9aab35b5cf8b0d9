"""Counterexamples lie in an L1 ball exactly, not up to the rounding of the float64 sum.

Found by the ball-region sweep of helper ``sweep8``: the radial projection of
:meth:`InputRegion.clip` lands up to a few ulps outside an L1 ball, and the replay
accepted such points (``contains`` with its default tolerance 1e-9), so ``violated``
came with witnesses ``sum |x - c|`` = radius + 5.6e-17 (exact arithmetic) on 5 of 12
random instances, from the falsifier, the MILP engine and the search alike.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion, _l1_within
from nnresilience.testing.bruteforce import random_network
from nnresilience.verify import verify


def _exact_l1(x, c) -> Fraction:
    return sum((abs(Fraction(float(a)) - Fraction(float(b))) for a, b in zip(x, c, strict=True)),
               Fraction(0))


def test_exact_l1_test_agrees_with_fractions_at_the_boundary():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 6))
        c = rng.normal(size=n) * 10 ** rng.uniform(-3, 6, n)
        x = c + rng.normal(size=n) * 10 ** rng.uniform(-12, 1)
        d = _exact_l1(x, c)
        r = float(d)
        for rr in (r, np.nextafter(r, 0.0), np.nextafter(r, np.inf)):
            assert _l1_within(x, c, float(rr)) == (d <= Fraction(float(rr)))


def test_clip_point_lands_inside_exactly():
    rng = np.random.default_rng(1)
    reg = InputRegion.ball(np.array([0.3, 0.1, 1e6]), 0.17, "l1", -2e6, 2e6)
    X = reg.sample(300, rng)
    # the batch projection leaves many points a few ulps outside ...
    assert sum(_exact_l1(x, reg.center) > Fraction(reg.radius) for x in X) > 0
    for x in X:
        y = reg.clip_point(x)
        assert _exact_l1(y, reg.center) <= Fraction(reg.radius)
        assert reg.contains(y, 0.0) and np.all(y >= reg.lo) and np.all(y <= reg.hi)


def _instance(seed: int = 3006):
    """The sweep's instance: a 2-5-4-3 net, an L1 ball, the 0.9 quantile of sampled
    ``y_i - y_j`` as threshold (violated; the witnesses sit on the ball's surface)."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 5))
    kind = str(rng.choice(["relu", "leaky", "maxpool", "mixed"]))
    net = random_network(rng, [d, 5, 4, 3], kind=kind, scale=1.5)
    c, r = rng.uniform(-1, 1, d), float(rng.uniform(0.05, 1.0))
    str(rng.choice(["l1", "l2", "linf"]))
    region = InputRegion.ball(c, r, "l1", -2.0, 2.0)
    X = region.sample(4000, rng)
    Y = net.forward(X)
    i, j = rng.choice(3, 2, replace=False)
    t = float(np.quantile(Y[:, i] - Y[:, j], 0.9))
    A = np.zeros((1, 3))
    A[0, i], A[0, j] = -1.0, 1.0
    cond = OutputCondition((Conjunction(A, np.array([-t])),), 3)
    return net, Property((Case(region, cond),)), region


@pytest.mark.parametrize("engine,budget", [("milp", 0.0), ("bab", 0.0), ("auto", 0.3)])
def test_l1_witness_lies_in_the_ball_exactly(engine, budget):
    net, prop, region = _instance()
    r = verify(net, prop, engine=engine, timeout=3.0, falsify_budget=budget)
    assert r.status.value == "violated", r.message
    x = r.counterexample.x_array
    assert _exact_l1(x, region.center) <= Fraction(region.radius)
    assert np.all(x >= region.lo) and np.all(x <= region.hi)
    assert bool(prop.cases[0].unsafe.satisfied(net.forward(x)))
