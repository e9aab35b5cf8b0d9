"""α_max's lower end is the ratio its witness reaches when replayed alone through the
user's network (found by the resilience sweep on a tanh net with logits of 1.6e7: the
batch forward pass that ranked the candidates put ``lower`` 3.7e-9 (relative) above the
witness's replayed ratio)."""

from __future__ import annotations

import math

import numpy as np

from nnresilience.resilience import alpha_max
from nnresilience.resilience.replay import premise_margin
from nnresilience.testing import resilience_instances as ri


def test_lower_is_reached_by_the_replayed_witness_at_large_logits():
    inst = ri.res_instance("smooth1", 4020)        # 1-5-4-3 tanh, last layer x 1.6e7
    assert inst.info["last_layer"] > 1e7
    net = inst.network
    for m in range(net.n_outputs):
        r = alpha_max(net, m, (inst.lo, inst.hi), timeout=2)
        assert r.a is not None and r.lower is not None and r.lower > 0
        got = premise_margin(net.forward(np.asarray(r.a, float)), m)
        assert math.log(r.lower) <= got + 1e-12 * max(1.0, abs(got))
        assert r.lower <= r.upper
