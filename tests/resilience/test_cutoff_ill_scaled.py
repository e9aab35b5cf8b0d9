"""A cutoff stop on an ill-scaled model is not a proof (found by the resilience sweep,
``--families huge --seed 700``): on a 2e7-weight net HiGHS ended the δ-check's margin
MIP "on the cutoff" for an L∞ ball holding a flip whose margin is 5e6 above it (a wrong
``holds``); the MILP engine now re-solves such a stop without the cutoff."""

from __future__ import annotations

import numpy as np

from nnresilience.resilience import delta_check
from nnresilience.resilience.replay import flip_count, norm_of
from nnresilience.testing import resilience_instances as ri
from nnresilience.testing.phi_bruteforce import brute_force_min_perturbation

X = np.array([-188.3843479809007, -214.62936245808737])


def test_delta_check_above_the_minimum_is_not_holds_on_a_huge_net():
    inst = ri.res_instance("huge", 718)
    net = inst.network
    assert inst.info["first_layer"] > 1e7
    true_min, b = brute_force_min_perturbation(net, X, 2, 2, "linf", inst.lo, inst.hi)
    # the brute-force point replays: 2 classes reach class 2 at L∞ distance true_min
    assert flip_count(net.forward(b), 2) >= 2
    assert norm_of(b - X, "linf") <= true_min * (1 + 1e-12)
    for f in (1.001, 1.002, 1.01):     # the answer at 1.001 hung on the last bit of δ
        r = delta_check(net, X, 2, true_min * f, "linf", 2, (inst.lo, inst.hi), timeout=2)
        assert r.status.value != "holds", f
        if r.status.value == "violated":
            c = r.counterexample.x_array
            assert flip_count(net.forward(c), 2) >= 2
    below = delta_check(net, X, 2, true_min * 0.99, "linf", 2, (inst.lo, inst.hi), timeout=2)
    assert below.status.value != "violated"
