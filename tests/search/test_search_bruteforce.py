"""The search decides like brute force: random tiny ReLU / LeakyReLU / max-pool nets,
both branching rules, with leaves forced late so the tree really branches; every
reported counterexample replays."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nnresilience.engines import get_engine
from nnresilience.results import Status
from nnresilience.search.decide import SearchSettings, decide_case
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import (
    BruteForceTooLarge,
    brute_force_max_margin,
    random_network,
)


def query(seed: int, kind: str, sizes=(3, 4, 3, 2)):
    """A random net, a random one-row unsafe condition on [-1, 1]^3 and its exact max
    margin (None when brute force refuses or the margin is within 1e-6 of zero)."""
    rng = np.random.default_rng(seed)
    net = random_network(rng, list(sizes), kind)
    case = Case(InputRegion(-np.ones(sizes[0]), np.ones(sizes[0])),
                OutputCondition((Conjunction(rng.normal(size=(1, sizes[-1])),
                                             rng.normal(size=1)),), sizes[-1]))
    try:
        best, _ = brute_force_max_margin(net, case)
    except BruteForceTooLarge:
        return net, case, None
    return net, case, (None if abs(best) < 1e-6 else best)


def check(net, case, best, status, cex):
    assert status is (Status.VIOLATED if best > 0 else Status.HOLDS)
    if status is Status.VIOLATED:
        x = cex.x_array
        assert case.region.contains(x) and case.unsafe.satisfied(net.forward(x))


@pytest.mark.slow
@settings(max_examples=14, deadline=None)
@given(seed=st.integers(0, 100_000), kind=st.sampled_from(["relu", "leaky", "maxpool"]),
       rule=st.sampled_from(["input", "neuron"]))
@example(seed=2, kind="leaky", rule="neuron").via("35 domains, 8 leaves")
@example(seed=10, kind="maxpool", rule="neuron").via("67 domains, 3 leaves")
@example(seed=55, kind="maxpool", rule="input").via("447 boxes, violated")
@example(seed=63, kind="relu", rule="input").via("16 boxes, holds")
def test_bab_matches_brute_force(seed, kind, rule):
    net, case, best = query(seed, kind)
    if best is None:
        return
    st_: dict = {}
    # leaves only once every neuron is fixed (an LP): the tree has to branch
    ans = decide_case(net, case, "milp", SearchSettings(rule=rule, leaf_unstable=0,
                                                        falsify_steps=0),
                      deadline=time.monotonic() + 60, stats=st_)
    check(net, case, best, ans.status, ans.counterexample)
    assert st_["rule"] == rule


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 100_000), kind=st.sampled_from(["relu", "leaky"]))
def test_bab_engine_through_get_engine(seed, kind):
    net, case, best = query(seed, kind)
    if best is None:
        return
    ans = get_engine("bab").check(net, case, None, timeout=60, falsify_steps=0)
    assert ans.status is (Status.VIOLATED if best > 0 else Status.HOLDS)
    if ans.status is Status.VIOLATED:
        assert case.unsafe.satisfied(net.forward(ans.x))
    assert ans.stats["label"].startswith("bab: ")


def test_neuron_rule_really_branches_and_counts():
    """A holding query that needs over a hundred splits with the fallback bounds (seed 0
    of 3-6-5-2, exact margin -0.49): the statistics add up."""
    net, case, best = query(0, "relu", (3, 6, 5, 2))
    assert best is not None and best < -0.1
    st_: dict = {}
    # the fallback bounder: the driver's accounting is under test, not the bounds
    ans = decide_case(net, case, "milp", SearchSettings(rule="neuron", leaf_unstable=0,
                                                        falsify_steps=0, bounder="symbolic"),
                      deadline=time.monotonic() + 60, stats=st_)
    assert ans.status is Status.HOLDS
    assert st_["branched"] >= 20 and st_["leaves"] >= 1
    # every domain bounded was closed by its bound or a leaf, or branched in two (a leaf
    # the engine could not close is branched: the certified MILP engine does not take a
    # solver's "infeasible" for a proof, so an empty phase pattern is split until the
    # bounds see it empty)
    assert st_["domains"] == st_["closed_bound"] + st_["closed_leaf"] + st_["branched"]
    assert st_["closed_leaf"] <= st_["leaves"] and st_["max_depth"] >= 3


def test_without_engine_input_splitting_still_decides_by_bounds():
    """No leaf engine: input bisection alone closes a holding query (bounds converge)."""
    for seed in range(100):
        net, case, best = query(seed, "relu")
        if best is None or best > -0.1:
            continue
        ans = decide_case(net, case, None, SearchSettings(rule="input", falsify_steps=0),
                          deadline=time.monotonic() + 30)
        assert ans.status is Status.HOLDS
        return
    pytest.fail("no holding query found")


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 100_000), kind=st.sampled_from(["relu", "leaky", "maxpool"]))
def test_per_term_search_matches_brute_force_on_disjunctions(seed, kind):
    """A misclassification disjunction (one term per other class) decided one search per
    term and jointly: both equal brute force, and the per-term search says how many terms
    it searched (all of them for holds)."""
    from nnresilience.spec.condition import misclassification

    rng = np.random.default_rng(seed)
    net = random_network(rng, [3, 5, 4, 4], kind)
    c = rng.uniform(-0.5, 0.5, 3)
    case = Case(InputRegion(c - 0.4, c + 0.4), misclassification(int(net.predict(c)), 4))
    try:
        best, _ = brute_force_max_margin(net, case)
    except BruteForceTooLarge:
        return
    if abs(best) < 1e-6:
        return
    from nnresilience.search import decide as decide_mod

    for per_term in (True, False):
        st_: dict = {}
        share = decide_mod.JOINT_SHARE
        decide_mod.JOINT_SHARE = 0.0            # no joint slice: the per-term path itself
        try:
            ans = decide_case(net, case, "milp",
                              SearchSettings(rule="neuron", per_term=per_term,
                                             falsify_steps=0),
                              deadline=time.monotonic() + 60, stats=st_)
        finally:
            decide_mod.JOINT_SHARE = share
        check(net, case, best, ans.status, ans.counterexample)
        if per_term:
            assert 1 <= st_["terms_searched"] <= st_["terms"] == 3
            if ans.status is Status.HOLDS:
                assert st_["terms_searched"] == 3
        else:
            assert "terms_searched" not in st_


def test_a_short_deadline_does_not_wait_for_the_torch_import(monkeypatch):
    """Importing torch cannot be interrupted (6.4 s under load): with less than
    ``TORCH_IMPORT_SECONDS`` left and torch not imported, ``auto`` uses the fallback
    bounder; with torch loaded, or time enough, or an explicit choice, it does not."""
    import sys

    from nnresilience.search.decide import TORCH_IMPORT_SECONDS, _affordable

    soon = time.monotonic() + 2.0
    later = time.monotonic() + TORCH_IMPORT_SECONDS + 5.0
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert _affordable(SearchSettings(), soon).bounder == "symbolic"
    assert _affordable(SearchSettings(), later).bounder == "auto"
    assert _affordable(SearchSettings(), None).bounder == "auto"
    assert _affordable(SearchSettings(bounder="alpha"), soon).bounder == "alpha"
    monkeypatch.setitem(sys.modules, "torch", object())
    assert _affordable(SearchSettings(), soon).bounder == "auto"
