"""Domains, the frontier and the branching rules: children cover their parent exactly,
the frontier pops best-first (deepest-first when over its memory budget) and returns
exactly what was pushed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.search.decide import CaseProblem, SearchSettings
from nnresilience.search.domains import Domains, Frontier
from nnresilience.search.rules import _bisect, neuron_split
from nnresilience.spec.condition import misclassification
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import random_network


def _doms(rng, B, n=3, layer=1, w=4):
    lo = rng.uniform(-1, 0, size=(B, n))
    clo = np.where(rng.uniform(size=(B, w)) < 0.3, 0.0, -np.inf)
    return Domains(lo, lo + rng.uniform(0, 1, size=(B, n)), {layer: (clo, np.full((B, w), np.inf))},
                   depth=rng.integers(0, 5, size=B))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_bisection_covers_the_box_exactly(seed):
    rng = np.random.default_rng(seed)
    doms = _doms(rng, 4)
    d = rng.integers(0, 3, size=4)
    kids = _bisect(doms, d)
    for b in range(4):
        a, c = kids.take([2 * b]), kids.take([2 * b + 1])
        # the same float on both sides of the cut, every other bound unchanged
        assert a.hi[0, d[b]] == c.lo[0, d[b]]
        assert np.array_equal(a.lo[0], doms.lo[b]) and np.array_equal(c.hi[0], doms.hi[b])
        assert doms.lo[b, d[b]] <= a.hi[0, d[b]] <= doms.hi[b, d[b]]
        assert np.array_equal(a.clamps[1][0][0], doms.clamps[1][0][b])
        assert a.depth[0] == c.depth[0] == doms.depth[b] + 1


def test_neuron_split_covers_the_parent():
    rng = np.random.default_rng(3)
    net = random_network(rng, [3, 6, 5, 3], "relu")
    case = Case(InputRegion(-np.ones(3), np.ones(3)), misclassification(0, 3))
    prob = CaseProblem(net, case, None, SearchSettings(rule="neuron"))
    root = prob.root()
    b = prob.bound(root, None)
    kids, keys = neuron_split(prob, root, b, None)
    assert len(kids) == 2 and np.all(keys == b.keys[0])
    (layer,) = kids.clamps
    clo, chi = kids.clamps[layer]
    j = int(np.flatnonzero(np.isfinite(chi[0]))[0])
    assert chi[0, j] == 0.0 and clo[1, j] == 0.0          # z <= 0 | z >= 0
    assert np.isneginf(clo[0]).all() and np.isposinf(chi[1]).all()
    # every sampled input lies in some child (its z_j is <= 0 or >= 0): and the chosen
    # neuron was unstable on the parent
    assert b.result.pre_lo[layer][0, j] < 0 < b.result.pre_hi[layer][0, j]


def test_frontier_order_and_round_trip():
    rng = np.random.default_rng(0)
    fr = Frontier()
    a, b = _doms(rng, 5), _doms(rng, 4)
    ka, kb = rng.normal(size=5), rng.normal(size=4)
    fr.push(a, ka)
    fr.push(b, kb)
    assert len(fr) == 9 and fr.min_key() == min(ka.min(), kb.min())
    got, keys = fr.pop(3)
    assert np.array_equal(keys, np.sort(np.concatenate([ka, kb]))[:3])
    rest, rkeys = fr.drain()
    assert len(fr) == 0 and len(got) + len(rest) == 9
    # the popped rows are exactly the pushed ones (matched by their lower corner)
    pushed = {tuple(r) for r in np.vstack([a.lo, b.lo])}
    popped = {tuple(r) for r in np.vstack([got.lo, rest.lo])}
    assert pushed == popped


def test_frontier_goes_depth_first_when_memory_is_tight():
    rng = np.random.default_rng(1)
    doms = _doms(rng, 6)
    fr = Frontier(max_bytes=1)            # always over budget
    fr.push(doms, np.arange(6, dtype=float))
    got, _ = fr.pop(1)
    assert fr.depth_first and got.depth[0] == doms.depth.max()


def test_concat_fills_missing_clamps_with_free_neurons():
    rng = np.random.default_rng(2)
    a = _doms(rng, 2)
    b = Domains(a.lo.copy(), a.hi.copy())
    c = Domains.concat([a, b])
    clo, chi = c.clamps[1]
    assert clo.shape == (4, 4) and np.isneginf(clo[2:]).all() and np.isposinf(chi[2:]).all()
