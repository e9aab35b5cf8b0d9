"""Resilience MIPs on nets with huge first-layer weights (benchmarks/resilience_sweep.py).

Both found by the sweep's ``huge`` family (2-4-3-3 ReLU nets, first layers of 1e4..1e8):

* seed 4: the L∞ coupling rows carried coefficients up to 2.5e9 on the norm column and
  HiGHS returned an "optimal" minimum perturbation of 0.2677 (lower bound included) where
  brute force gives 0.2198 (rows above ``_COUPLING_MAX_COEF`` are now left out);
* seed 130: at the default tolerance factor 1000 (ε_f = 1e-9, below the rounding of rows
  of scale 4e9) HiGHS returned wrong optima without any error (``usable_factor`` caps it).
"""

import numpy as np

from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.resilience import DEFAULT, min_perturbation
from nnresilience.resilience.encode import network_bounds, sensitivity_matrices
from nnresilience.testing.phi_bruteforce import brute_force_min_perturbation
from nnresilience.testing.resilience_instances import res_instance


def test_huge_first_layer_min_perturbation_not_above_truth():
    inst = res_instance("huge", 4)
    x = np.array([-0.7428595944616008, -0.0014442751197700776])
    truth, _ = brute_force_min_perturbation(inst.network, x, 0, 1, "linf", inst.lo, inst.hi)
    assert abs(truth - 0.2198) < 1e-3
    r = min_perturbation(inst.network, x, 0, "linf", 1, (inst.lo, inst.hi),
                         settings=DEFAULT.with_(shrink=False), timeout=5)
    assert r.lower <= truth + 1e-6
    assert r.upper is not None and r.upper >= truth - 1e-6


def test_small_coupling_rows_are_kept():
    rng = np.random.default_rng(0)
    net = Network([Affine(rng.normal(size=(4, 2)), rng.normal(size=4)), ReLU(4),
                   Affine(rng.normal(size=(3, 4)), rng.normal(size=3))])
    b = network_bounds(net, -np.ones(2), np.ones(2), DEFAULT, None)
    assert max(float(G.sum(axis=1).max()) for G in sensitivity_matrices(net, b)) < 1e3
    x = np.array([0.1, -0.2])
    r = min_perturbation(net, x, None, "linf", 1, (-1, 1), settings=DEFAULT.with_(shrink=False),
                         timeout=5)
    assert r.stats.get("coupling_rows", 0) > 0


def test_tolerance_factor_is_capped_by_the_model_magnitude():
    """At factor 1000 HiGHS returned α_max <= e^6.4 (certified) for a true e^7.9e6 and a
    minimum perturbation of 65.6 (optimal) for a true 1.3e-7 on this 1e5-weight net."""
    import math

    from nnresilience.resilience import alpha_max
    from nnresilience.testing.phi_bruteforce import brute_force_alpha_max

    inst = res_instance("huge", 130)
    dom = (inst.lo, inst.hi)
    true_ln, _ = brute_force_alpha_max(inst.network, 2, inst.lo, inst.hi)
    r = alpha_max(inst.network, 2, dom, timeout=5)
    assert r.upper is not None and (r.upper == math.inf or math.log(r.upper) >= true_ln - 1.0)
    x = np.array([-39.757988214610634, -72.66042927900529])
    truth, _ = brute_force_min_perturbation(inst.network, x, 1, 1, "linf", inst.lo, inst.hi)
    r = min_perturbation(inst.network, x, 1, "linf", 1, dom,
                         settings=DEFAULT.with_(shrink=False), timeout=5)
    assert r.lower <= truth + 1e-6


def test_ordinary_nets_keep_the_requested_factor():
    from nnresilience.resilience.common import usable_factor
    from nnresilience.resilience.encode import build_local_mip

    rng = np.random.default_rng(1)
    net = Network([Affine(rng.normal(size=(5, 3)), rng.normal(size=5)), ReLU(5),
                   Affine(rng.normal(size=(3, 5)), rng.normal(size=3))])
    lo, hi = -np.ones(3), np.ones(3)
    b = network_bounds(net, lo, hi, DEFAULT, None)
    mip = build_local_mip(net, np.zeros(3), 0, 1, "l1", lo, hi, b, DEFAULT)
    assert usable_factor(mip.model.arrays(), DEFAULT, 1000.0) == 1000.0


def test_scip_dual_bound_on_an_ill_scaled_model_is_not_a_lower_bound():
    """SCIP's dual bound on this 1e8-weight net was 0.790 ("optimal") for a true L∞
    minimum of 0.2198, and 0.00957 in L2 where a replayed point lies 2.3e-7 away, at every
    feasibility tolerance tried: on an ill-scaled model only SCIP's points count."""
    inst = res_instance("huge", 4)
    dom = (inst.lo, inst.hi)
    x = np.array([-0.7428595944616008, -0.0014442751197700776])
    truth, _ = brute_force_min_perturbation(inst.network, x, 0, 1, "linf", inst.lo, inst.hi)
    r = min_perturbation(inst.network, x, 0, "linf", 1, dom,
                         settings=DEFAULT.with_(shrink=False, backend="scip"), timeout=5)
    assert r.lower <= truth + 1e-6
    assert not (r.optimal and r.upper is not None and r.upper > truth + 1e-6)
    x2 = np.array([-0.23131313067717624, -0.1581171208333132])
    l1_truth, _ = brute_force_min_perturbation(inst.network, x2, 0, 1, "l1", inst.lo, inst.hi)
    r2 = min_perturbation(inst.network, x2, 0, "l2", 1, dom,
                          settings=DEFAULT.with_(shrink=False), timeout=5)
    assert r2.lower <= l1_truth + 1e-9          # ||ε||_2 <= ||ε||_1: the L1 minimum bounds it
