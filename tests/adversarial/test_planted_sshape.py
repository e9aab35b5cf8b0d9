"""Planted near-tie violations on sigmoid / tanh / arctan nets: never ``holds``.

An s-shaped net cannot be enumerated, so only violations are planted
(:mod:`nnresilience.testing.planted_sshape`); every engine, the bound methods alone, and
the falsifier on and off must answer ``violated`` with a replayed witness or ``unknown``.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.results import Status
from nnresilience.testing.planted_sshape import planted_sshape
from nnresilience.verify import verify

WAYS = [("auto", "symbolic", 0.0), ("auto", "symbolic", 0.1), ("milp", "symbolic", 0.0),
        ("bab", "symbolic", 0.0), ("none", "alpha", 0.0), ("none", "lp", 0.0)]


@pytest.mark.slow
@pytest.mark.parametrize("way", WAYS, ids=["/".join(map(str, w)) for w in WAYS])
def test_no_holds_on_a_planted_sshape_violation(way):
    engine, bounds, falsify = way
    for seed in range(18):
        inst = planted_sshape(seed)
        res = verify(inst.network, inst.prop, engine=engine, bounds_method=bounds,
                     falsify_budget=falsify, timeout=2.0, seed=seed, input_split=False)
        assert res.status is not Status.HOLDS, (inst.describe(), res.engine, res.message)
        if res.status is Status.VIOLATED:
            x = np.asarray(res.counterexample.x_array, float)
            assert inst.case.region.contains(x, 0.0)
            assert inst.case.unsafe.satisfied(inst.network.forward(x))
    # the planted point is a real witness: the generator's own claim is checked too
    for seed in range(18):
        inst = planted_sshape(seed)
        assert inst.case.unsafe.satisfied(inst.network.forward(inst.point))
