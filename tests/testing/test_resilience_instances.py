"""The resilience-sweep generator: deterministic instances, planted ties, sound checks."""

import math

import numpy as np
import pytest

from nnresilience.resilience.replay import premise_margin
from nnresilience.results import ResilienceResult
from nnresilience.testing import resilience_instances as ri
from nnresilience.testing.phi_bruteforce import brute_force_phi


@pytest.mark.parametrize("family", ri.FAMILIES)
def test_instances_are_deterministic_and_two_classes_win(family):
    a = ri.res_instance(family, 3)
    b = ri.res_instance(family, 3)
    X = np.random.default_rng(0).uniform(a.lo, a.hi, (500, a.lo.size))
    assert np.array_equal(a.network.forward(X), b.network.forward(X))
    assert np.all(a.lo < a.hi)
    assert np.unique(np.argmax(a.network.forward(
        np.random.default_rng(1).uniform(a.lo, a.hi, (4000, a.lo.size))), axis=1)).size >= 2


def test_huge_first_layer_and_tiny_domain():
    inst = ri.res_instance("huge", 0, domain_kind="tiny")
    W = inst.network.layers[0].W
    assert 1e3 < np.abs(W).max() < 1e9
    assert float(np.max(inst.hi - inst.lo)) <= 2e-2


def test_tie_samples_are_near_ties_of_their_label():
    inst = ri.res_instance("relu", 0)
    ties = ri.tie_samples(inst, np.random.default_rng(0))
    assert len(ties) == len(ri.TIE_REL)
    for (x, label, rel), want in zip(ties, ri.TIE_REL, strict=True):
        y = inst.network.forward(x)
        assert int(np.argmax(y)) == label
        gap = premise_margin(y, label) / max(1.0, float(np.abs(y).max()))
        assert want <= gap <= 2.0 * want + 1e-15
        assert rel == pytest.approx(gap)


def test_one_input_truth_matches_brute_force_and_checks_catch_a_wrong_lower():
    inst = ri.res_instance("onein", 1, domain_kind="unit")
    t = ri.true_phi(inst, 0, 1.0, 1, "l1")
    assert t.feasible and t.phi == pytest.approx(0.0, abs=1e-9)
    t = ri.true_phi(inst, 0, 1.5, 1, "l2")          # every norm is |ε| in one dimension
    bf, feasible = brute_force_phi(inst.network, 0, 1.5, 1, "l1", inst.lo, inst.hi)
    assert feasible and t.phi == pytest.approx(bf, rel=1e-6) and t.phi > 0.1
    bad = ResilienceResult("phi", t.phi * 1.5, t.phi * 1.6, False)
    why = ri.check_phi(bad, inst, 0, 1.5, 1, "l2", t, (math.inf, True, True))
    assert any("above the true" in w for w in why)


def test_check_phi_rejects_a_witness_that_does_not_replay():
    inst = ri.res_instance("relu", 0, domain_kind="unit")
    a = tuple(inst.lo)
    res = ResilienceResult("phi", 0.0, 0.0, True, a=a, a_perturbed=a)
    m = int(np.argmin(inst.network.forward(np.asarray(a))))    # a is not confident for m
    why = ri.check_phi(res, inst, m, 1.0, 1, "l1", ri.Truth(), (math.inf, True, True))
    assert any("premise" in w for w in why)
