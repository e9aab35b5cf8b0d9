"""Cross-check against exact ranges from brute force (activation-pattern enumeration).

For every vector an affine layer produces (pre-activations and outputs) of a tiny
piecewise-linear network, the exact min and max over the input box are computed by
:mod:`nnresilience.testing.bruteforce` on the network truncated after that layer. Every
method's box must contain them (exact soundness, not sampled), and ``milp:W`` with a window
covering the whole network must meet them up to its MIP gap on the units it refines
(outputs and pre-activations still undecided after LP).
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnresilience.testing.bruteforce as bf
from nnresilience.bounds import compute_bounds
from nnresilience.bounds.interval import interval_bounds
from nnresilience.network.model import sequential
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion

from .helpers import mixed_network


def _interval_only(network, region):
    # brute force prunes patterns with bounds; use plain interval ones here so the
    # reference does not depend on the code under test
    return interval_bounds(network, region.lo, region.hi)


def _exact_range(net, region, j: int) -> tuple[float, float]:
    n = net.n_outputs
    e = np.zeros((1, n))
    e[0, j] = 1.0
    hi, _ = bf.brute_force_max_margin(net, Case(region, OutputCondition((Conjunction(-e, [0.0]),),
                                                                        n)))
    neg, _ = bf.brute_force_max_margin(net, Case(region, OutputCondition((Conjunction(e, [0.0]),),
                                                                         n)))
    return -neg, hi


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(st.sampled_from(["relu", "leaky"]),
       min_size=2, max_size=2), pool=st.booleans())
def test_bounds_contain_exact_ranges(seed, kinds, pool):
    rng = np.random.default_rng(seed)
    net = mixed_network(rng, 2, [4, 4], kinds, pool=pool)
    region = InputRegion(-np.ones(2), np.ones(2))
    got = {m: compute_bounds(net, region, method=m)
           for m in ("interval", "symbolic", "lp", "milp:3")}
    for i in range(1, len(net.layers) + 1):
        if net.layers[i - 1].kind != "affine":
            continue
        sub = sequential(net.layers[:i])
        for j in range(sub.n_outputs):
            try:
                with patch.object(bf, "_bounds", _interval_only):
                    lo, hi = _exact_range(sub, region, j)
            except bf.BruteForceTooLarge:
                return
            for m, b in got.items():
                assert b.lo[i][j] <= lo + 1e-9, (m, i, j)
                assert b.hi[i][j] >= hi - 1e-9, (m, i, j)
            # MIPs run for outputs and for pre-activations the LP left undecided
            last = i == len(net.layers)
            undecided = (net.layers[i].kind in ("relu", "leaky_relu") if not last else False) \
                and got["lp"].lo[i][j] < 0.0 < got["lp"].hi[i][j]
            if last or undecided:
                exact = got["milp:3"]
                tol = 2e-3 * (1.0 + abs(lo) + abs(hi))
                assert exact.lo[i][j] >= lo - tol and exact.hi[i][j] <= hi + tol, (i, j)
