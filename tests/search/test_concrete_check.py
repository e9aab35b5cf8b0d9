"""The search's concrete check: the candidate points of every bounded domain (the bound's
minimisers and the box centre) go through the float64 forward pass, and one in the unsafe
set ends the search as a replayed counterexample.

The planted net has a tiny unsafe pocket: ``y0 = relu(1 - K |x - p|_1)`` against a
constant ``y1``, so ``y0 >= y1`` only within an L1 distance ``(1 - y1) / K`` of ``p``
(a volume of ~1e-11 of the box for K = 2000 in 3-D) and the margin is flat (gradient 0)
outside ``|x - p|_1 <= 1 / K``: neither sampling nor gradient ascent can find it, only
zooming in can.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from nnresilience.falsify import falsify
from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.results import Status
from nnresilience.search.decide import SearchSettings, decide_case
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion
from nnresilience.verify import verify

POCKET = np.array([0.6180339887, 0.2718281828, 0.4142135623])


def bump_net(K: float, level: float, p: np.ndarray = POCKET, rotate: bool = False
             ) -> Network:
    """``y0 = relu(1 - K |Q (x - p)|_1)``, ``y1 = level``; ``Q`` the identity or a fixed
    rotation (then no input bisection lines up with the bump's faces)."""
    n = p.size
    Q = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))[0] if rotate \
        else np.eye(n)
    return Network([Affine(np.vstack([Q, -Q]), np.concatenate([-Q @ p, Q @ p])),
                    ReLU(2 * n),
                    Affine(-K * np.ones((1, 2 * n)), np.ones(1)),
                    ReLU(1),
                    Affine(np.array([[1.0], [0.0]]), np.array([0.0, level]))],
                   name=f"bump-{K:g}")


def bump_case(n: int = 3) -> Case:
    # unsafe: y0 >= y1, i.e. -y0 + y1 <= 0
    return Case(InputRegion(np.zeros(n), np.ones(n)),
                OutputCondition((Conjunction(np.array([[-1.0, 1.0]]), np.zeros(1)),), 2))


def replays(net: Network, case: Case, x: np.ndarray) -> bool:
    x = np.asarray(x, dtype=np.float64)
    return bool(case.region.contains(x)) and bool(case.unsafe.satisfied(net.forward(x)))


def test_the_pocket_is_out_of_reach_of_the_falsifier():
    net, case = bump_net(2000.0, 0.5), bump_case()
    assert falsify(net, case, rng=0, budget_seconds=0.3) is None
    assert replays(net, case, POCKET)               # but it exists


def test_concrete_check_alone_finds_the_pocket():
    """No leaf engine and no gradient attack in the search: only the concrete check can
    produce a witness; without it the search cannot end before its deadline."""
    net, case = bump_net(2000.0, 0.5), bump_case()
    on = SearchSettings(falsify_share=0.0)
    ans = decide_case(net, case, None, on, deadline=time.monotonic() + 20.0)
    assert ans.status is Status.VIOLATED
    assert ans.stats["concrete_hits"] == 1 and ans.stats["falsified"] == 0
    x = ans.counterexample.x_array
    assert replays(net, case, x)
    assert float(case.unsafe.max_margin(net.forward(x))) >= 0.0
    off = SearchSettings(falsify_share=0.0, concrete=False)
    ans = decide_case(net, case, None, off, deadline=time.monotonic() + 0.5)
    assert ans.status is Status.UNKNOWN


@pytest.mark.parametrize("falsify_budget", [0.0, 0.5])
def test_verify_reports_the_pocket_with_a_replayed_witness(falsify_budget):
    net, case = bump_net(2000.0, 0.5), bump_case()
    res = verify(net, Property((case,)), engine="bab", timeout=20.0,
                 falsify_budget=falsify_budget)
    assert res.status is Status.VIOLATED
    x = res.counterexample.x_array
    assert replays(net, case, x)
    # the reported output is the float64 forward value of the reported input
    assert np.array_equal(res.counterexample.y_array, net.forward(x))


def test_a_pocket_just_outside_the_region_holds():
    """The rotated bump's pocket (L1 radius 2.5e-4 around ``p``) lies 1e-3 outside the
    region: nothing in it is unsafe, and the search, concrete check included, proves it
    after branching near the pocket (its candidates come close but never in)."""
    net = bump_net(2000.0, 0.5, rotate=True)
    lo = np.zeros(3)
    lo[0] = POCKET[0] + 1e-3
    case = Case(InputRegion(lo, np.ones(3)), bump_case().unsafe)
    ans = decide_case(net, case, None, SearchSettings(), deadline=time.monotonic() + 20.0)
    assert ans.status is Status.HOLDS
    assert ans.stats["domains"] > 1 and ans.stats["concrete_points"] > 0
    assert ans.stats["concrete_hits"] == 0


def test_acas_1_9_prop_7_is_violated_by_a_bound_corner(shared_benchmarks):
    """The VNN-COMP 2021 instance whose pocket uniform sampling hits about once in two
    million draws: the concrete check finds it (falsifier off), the witness replays."""
    from nnresilience.cli.verify import load_model, load_property

    folder = shared_benchmarks / "acasxu"
    net = load_model(folder / "ACASXU_run2a_1_9_batch_2000.onnx")
    prop = load_property(folder / "prop_7.vnnlib", net)
    res = verify(net, prop, timeout=30.0, falsify_budget=0.0)
    assert res.status is Status.VIOLATED
    x = res.counterexample.x_array
    assert prop.violated_by(x, net.forward(x))
    assert res.stats["cases"][0]["concrete_hits"] >= 1
