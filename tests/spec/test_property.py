"""Regions, DNF output conditions and robustness properties."""

import numpy as np
import pytest

from nnresilience.errors import ShapeMismatchError
from nnresilience.network import Affine, Network
from nnresilience.spec import (
    Case,
    Conjunction,
    InputRegion,
    OutputCondition,
    Property,
    not_in_top_k,
    robustness,
)


def test_ball_is_intersected_with_domain():
    r = InputRegion.ball(np.array([0.0, 0.95]), 0.1, "linf", 0.0, 1.0)
    assert np.allclose(r.lo, [0.0, 0.85]) and np.allclose(r.hi, [0.1, 1.0])
    assert r.contains(np.array([0.05, 0.9]))
    assert not r.contains(np.array([0.05, 1.01]))


def test_l1_ball_contains_and_clip(rng):
    r = InputRegion.ball(np.zeros(3), 0.5, "l1", -1, 1)
    assert r.contains(np.array([0.2, 0.2, 0.1]))
    assert not r.contains(np.array([0.3, 0.3, 0.0]))
    pts = r.sample(200, rng)
    assert all(r.contains(p, 1e-12) for p in pts)


def test_empty_box_is_an_error():
    with pytest.raises(ShapeMismatchError, match="empty input box"):
        InputRegion(np.array([1.0]), np.array([0.0]))


def test_misclassification_condition():
    p = robustness(np.zeros(2), label=1, radius=0.1, n_outputs=3)
    cond = p.cases[0].unsafe
    assert len(cond.terms) == 2
    assert cond.satisfied(np.array([0.0, 1.0, 1.0]))        # tie counts as unsafe
    assert not cond.satisfied(np.array([0.0, 1.0, 0.5]))
    batch = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 0.0]])
    assert list(cond.satisfied(batch)) == [True, False]
    assert cond.max_margin(np.array([0.0, 1.0, 0.5])) == pytest.approx(-0.5)


def test_top_k_condition_counts_classes():
    cond = not_in_top_k(0, 2, 4)
    assert cond.topk == (0, 2) and len(cond.terms) == 3
    assert cond.satisfied(np.array([1.0, 2.0, 1.0, 0.0]))      # two classes reach y_0
    assert not cond.satisfied(np.array([1.0, 2.0, 0.5, 0.0]))  # only one does


def test_property_violated_by_and_network_check():
    net = Network([Affine(np.eye(2), np.zeros(2))])
    cond = OutputCondition((Conjunction(np.array([[1.0, -1.0]]), np.array([0.0])),), 2)
    prop = Property((Case(InputRegion(np.zeros(2), np.ones(2)), cond),))
    prop.check_network(net)
    x = np.array([0.2, 0.7])
    assert prop.violated_by(x, net.forward(x))
    assert not prop.violated_by(np.array([0.9, 0.1]), net.forward(np.array([0.9, 0.1])))
    with pytest.raises(ShapeMismatchError):
        prop.check_network(Network([Affine(np.ones((2, 3)), np.zeros(2))]))
    assert prop.content_hash() == Property(prop.cases).content_hash()
