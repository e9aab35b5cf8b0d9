"""The resilience-sweep generator: deterministic instances, planted ties, sound checks."""

import math

import numpy as np
import pytest

from nnresilience.resilience.replay import premise_margin
from nnresilience.results import ResilienceResult
from nnresilience.testing import resilience_instances as ri
from nnresilience.testing.phi_bruteforce import brute_force_phi


@pytest.mark.parametrize("family", ri.ALL_FAMILIES)
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


def test_extra_families_leave_the_default_seeds_alone():
    assert not set(ri.EXTRA_FAMILIES) & set(ri.FAMILIES)
    assert ri.res_instance("relu", 5).describe() == ri.res_instance("relu", 5).describe()
    with pytest.raises(ValueError, match="unknown family"):
        ri.res_instance("sigmoid", 0)


def test_smooth_truth_is_one_sided_and_matches_the_gridded_reference():
    from nnresilience.testing.phi_reference import (
        flip_slacks,
        interval_distance,
        intervals_1d,
        premise_margins,
    )

    inst = ri.res_instance("smooth1", 0, domain_kind="unit")
    assert inst.smooth and {la.kind for la in inst.network.layers} & set(ri.SMOOTH)
    assert not ri.brute_force_ok(inst)
    assert ri.true_phi(inst, 0, 1.0, 1, "l1") == ri.Truth()
    assert ri.true_min_perturbation(inst, inst.lo, 0, 1, "l1") is None
    X = ri.dense_grid(inst)
    m = int(np.argmax(np.bincount(np.argmax(inst.network.forward(X), axis=1))))
    la = min(0.5 * float(premise_margins(inst.network, X, m).max()), 5.0)
    alpha = math.exp(la) if la > 0 else 1.0
    su, seen_a, seen_b = ri.sample_pairs(inst, m, alpha, 1, "l2", np.random.default_rng(0))
    P = intervals_1d(lambda Z: premise_margins(inst.network, Z, m) - math.log(alpha),
                     float(inst.lo[0]), float(inst.hi[0]), n=20001)
    F = intervals_1d(lambda Z: flip_slacks(inst.network, Z, m, 1),
                     float(inst.lo[0]), float(inst.hi[0]), n=20001)
    ref = interval_distance(P, F)
    assert seen_a and seen_b and 0 < ref < math.inf
    assert su == pytest.approx(ref, abs=1e-9)
    # a lower bound above the replayed pair is flagged; one just below it is not
    bad = ResilienceResult("phi", su * 1.01, su * 1.02, False)
    assert any("above a replayed" in w
               for w in ri.check_phi(bad, inst, m, alpha, 1, "l2", ri.Truth(), (su, True, True)))
    ok = ResilienceResult("phi", su * 0.99, None, False)
    assert ri.check_phi(ok, inst, m, alpha, 1, "l2", ri.Truth(), (su, True, True)) == []


def test_smooth_grid_only_shortens_the_sampled_flip(monkeypatch):
    inst = ri.res_instance("smooth", 4)
    assert ri.dense_grid(inst).shape == (301 * 301, 2)
    x = 0.5 * (inst.lo + inst.hi)
    label = int(np.argmax(inst.network.forward(x)))
    dense = ri.sample_flip(inst, x, label, 1, "linf", np.random.default_rng(1))
    monkeypatch.setattr(ri, "dense_grid", lambda i: np.empty((0, i.lo.size)))
    coarse = ri.sample_flip(inst, x, label, 1, "linf", np.random.default_rng(1))
    assert 0 < dense <= coarse * (1 + 1e-12) and coarse < math.inf


def test_edge_family_slopes_offsets_and_micro_domains():
    kinds = [ri.res_instance("edge", s, domain_kind="micro") for s in range(6)]
    for inst in kinds:
        assert float(np.max(inst.hi - inst.lo)) <= 2e-6
        if "slope" in inst.info:
            assert inst.info["slope"] in ri.EDGE_SLOPES
            assert inst.network.layers[1].slope == pytest.approx(inst.info["slope"], rel=1e-6)
        else:
            assert 1e3 <= inst.info["center"] <= 1e6
            assert np.all(np.abs(inst.lo - inst.info["center"]) < 2.0)
    assert {"slope" in i.info for i in kinds} == {True, False}


def test_tied_nets_have_no_brute_force_truth():
    """Outputs 0 and 1 differ by ~3e-8 everywhere: below the LP tolerance of brute force,
    which called "y_1 >= y_0" feasible on a net where it is 3e-8 short at every input."""
    seed = next(s for s in range(4000, 4100)
                if ri.res_instance("edge", s).info.get("tie_net") is not None)
    inst = ri.res_instance("edge", seed)
    W = inst.network.layers[-1].W
    assert np.abs(W[1] - W[0]).max() <= 1e-6 * np.abs(W[0]).max()
    assert not ri.brute_force_ok(inst)
    assert ri.true_phi(inst, 1, 1.0, 1, "linf") == ri.Truth()


def test_micro_domains_have_no_brute_force_truth_but_a_grid():
    inst = ri.res_instance("edge", 902)
    assert inst.domain_kind == "micro" and float(np.max(inst.hi - inst.lo)) < 1e-5
    assert not ri.brute_force_ok(inst)
    assert ri.dense_grid(inst).shape == (301 * 301, 2)
    assert ri.dense_grid(ri.res_instance("relu", 0, domain_kind="unit")).size == 0
