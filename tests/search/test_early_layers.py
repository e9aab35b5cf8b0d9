"""``early_depth`` (:func:`nnresilience.search.rules.neuron_split`): above that depth a
domain is split before the last hidden layer while it can be. The search must still
decide like brute force, and the rule must really move the first splits off the last
hidden layer."""

from __future__ import annotations

import time

import numpy as np

from nnresilience.search import decide
from nnresilience.search.decide import SearchSettings, decide_case

from .test_search_bruteforce import check, query


def _run(early: int, monkeypatch) -> tuple[int, int]:
    """Decide three tiny queries (checked against brute force); returns how many children
    of depth <= 3 were made and how many of them have splits only before the last
    hidden layer."""
    kids_seen = [0, 0]
    inner = decide.neuron_split

    def spy(problem, doms, bounded, deadline):
        kids, keys = inner(problem, doms, bounded, deadline)
        last = max(i for i, lay in enumerate(problem.net.layers) if lay.kind == "relu")
        for d in np.flatnonzero(kids.depth <= 3):
            split = [i for i, (clo, chi) in kids.clamps.items()
                     if np.any((clo[d] >= 0) | (chi[d] <= 0))]
            kids_seen[0] += 1
            kids_seen[1] += int(bool(split) and last not in split)
        return kids, keys

    monkeypatch.setattr(decide, "neuron_split", spy)
    done = 0
    # seeds whose trees branch: 52 holds (23-29 domains), 120
    # violated (3-5)
    for seed in (52, 120):
        net, case, best = query(seed, "relu", (2, 5, 5, 5, 2))
        if best is None:
            continue
        ans = decide_case(net, case, "milp",
                          SearchSettings(rule="neuron", leaf_unstable=0, falsify_steps=0,
                                         bounder="alpha", early_depth=early,
                                         iters=5, child_iters=0),
                          deadline=time.monotonic() + 30)
        check(net, case, best, ans.status, ans.counterexample)
        done += 1
    assert done == 2
    return kids_seen[0], kids_seen[1]


def test_early_layer_splits_match_brute_force(monkeypatch):
    n0, early0 = _run(0, monkeypatch)
    n3, early3 = _run(3, monkeypatch)
    assert n0 > 0 and n3 > 0
    # more of the first levels' children split before the last hidden layer
    assert early3 / n3 > early0 / n0
