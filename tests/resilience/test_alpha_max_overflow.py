"""α_max beyond float64: the upper bound must be +inf, not exp(700), and never 0 (found by the
unseen-shape sweep on first layers of 1e6-1e12: α_max came out "optimal" at 1.01e304
while inputs reach ratios of e^(1e6) and more)."""

from __future__ import annotations

import math

import numpy as np

from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.resilience import alpha_max
from nnresilience.resilience.common import ratio_lower, ratio_upper


def test_ratio_bounds_round_the_safe_way():
    assert ratio_upper(710.0) == math.inf and ratio_upper(1e6) == math.inf
    assert ratio_upper(700.0) == math.exp(700.0)
    assert ratio_upper(-1e10) > 0.0          # e^-1e10 > 0: an upper bound may not be 0
    assert ratio_lower(1e6) <= math.exp(709.0) and ratio_lower(-5.0) == math.exp(-5.0)


def test_alpha_max_of_a_huge_logit_gap_is_not_an_optimal_finite_value():
    # y0 - y1 = 2e6 x on [0, 1]: alpha_max(class 0) = e^(2e6), far beyond float64
    net = Network([Affine(np.array([[1e6], [-1e6]]), np.zeros(2)), ReLU(2),
                   Affine(np.array([[2.0, 0.0], [0.0, 0.0]]), np.zeros(2))])
    r = alpha_max(net, 0, domain=(np.zeros(1), np.ones(1)), timeout=20.0)
    assert r.upper == math.inf
    assert not r.optimal
    assert r.lower is not None and r.lower > 1e300
