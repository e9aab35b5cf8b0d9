"""Tests of ``nnresilience.engines.milp``: verdicts equal brute force on random tiny networks,
every candidate replays, uniform big-M agrees, timeouts give ``unknown``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.bounds.interval import interval_bounds
from nnresilience.engines import get_engine
from nnresilience.engines.milp import MilpEngine
from nnresilience.errors import EngineUnsupportedError
from nnresilience.network.layers import Affine, Arctan
from nnresilience.network.model import Network
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition, misclassification
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import brute_force_max_margin, random_network


def _replays(net, case, x) -> bool:
    return case.region.contains(x, tol=1e-9) and bool(case.unsafe.satisfied(net.forward(x)))


def _random_case(rng, net) -> Case:
    n = net.n_inputs
    c = rng.uniform(-1, 1, n)
    norm = str(rng.choice(["linf", "l1"]))
    reg = InputRegion.ball(c, float(rng.uniform(0.05, 0.8)), norm=norm)
    if rng.random() < 0.5:
        cond = misclassification(int(net.predict(c)), net.n_outputs)
    else:
        terms = []
        for _ in range(int(rng.integers(1, 3))):
            rows = int(rng.integers(1, 3))
            terms.append(Conjunction(rng.normal(size=(rows, net.n_outputs)),
                                     rng.normal(0, 0.5, size=rows)))
        cond = OutputCondition(terms, net.n_outputs)
    return Case(reg, cond)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000), kind=st.sampled_from(["relu", "leaky", "maxpool"]),
       backend=st.sampled_from(["highs", "scip"]), big_m=st.sampled_from([None, 1e3]))
def test_verdict_equals_brute_force(seed, kind, backend, big_m):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [3, 5, 4, 3], kind=kind)
    case = _random_case(rng, net)
    val, _ = brute_force_max_margin(net, case)
    if abs(val) < 1e-5:
        return                                   # on the boundary: tolerance decides
    bounds = interval_bounds(net, case.region.lo, case.region.hi)
    ans = MilpEngine(backend=backend, big_m=big_m).check(net, case, bounds, timeout=30)
    assert ans.status is (Status.VIOLATED if val > 0 else Status.HOLDS), (big_m, val)
    if ans.status is Status.VIOLATED:
        assert _replays(net, case, ans.x)
        assert ans.stats["replayed"] is True


@pytest.mark.parametrize("seed", range(6))
def test_uniform_big_m_gives_the_same_verdict(seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [3, 6, 5, 3], kind=["relu", "leaky", "maxpool"][seed % 3])
    case = _random_case(rng, net)
    bounds = interval_bounds(net, case.region.lo, case.region.hi)
    a = MilpEngine(backend="highs").check(net, case, bounds, timeout=30)
    b = MilpEngine(backend="highs", big_m=1e3).check(net, case, bounds, timeout=30)
    assert a.stats["n_binaries"] <= b.stats["n_binaries"]
    assert a.status is b.status and a.status is not Status.UNKNOWN


def test_stats_are_recorded(rng):
    net = random_network(rng, [3, 6, 3])
    case = Case(InputRegion.ball(np.zeros(3), 0.5), misclassification(0, 3))
    ans = MilpEngine(backend="scip").check(net, case, None, timeout=30)
    for key in ("n_vars", "n_rows", "n_binaries", "build_seconds", "solve_seconds", "backend",
                "status"):
        assert key in ans.stats
    assert ans.stats["backend"] == "scip"
    assert ans.status in (Status.HOLDS, Status.VIOLATED)


def test_timeout_gives_unknown_not_a_wrong_answer():
    rng = np.random.default_rng(5)
    net = random_network(rng, [10, 40, 40, 40, 3])
    case = Case(InputRegion.ball(np.zeros(10), 1.0),
                OutputCondition((Conjunction(np.array([[1.0, -1.0, 0.0]]), np.array([-50.0])),),
                                3))
    ans = MilpEngine().check(net, case, None, timeout=0.0)
    assert ans.status is Status.UNKNOWN
    ans = MilpEngine().check(net, case, None, timeout=0.3)
    assert ans.status in (Status.UNKNOWN, Status.HOLDS)     # y0 - y1 <= -50 is unreachable


def test_bounds_for_a_smaller_box_are_refused():
    net = random_network(np.random.default_rng(1), [2, 3, 2])
    small = interval_bounds(net, -0.1 * np.ones(2), 0.1 * np.ones(2))
    case = Case(InputRegion(-np.ones(2), np.ones(2)), misclassification(0, 2))
    with pytest.raises(ValueError, match="unsound"):
        MilpEngine().check(net, case, small, timeout=5)


def test_get_engine():
    eng = get_engine("milp:scip", big_m=1e4)
    assert isinstance(eng, MilpEngine) and eng.backend == "scip" and eng.big_m == 1e4
    assert isinstance(get_engine("milp"), MilpEngine)
    with pytest.raises(EngineUnsupportedError):
        get_engine("simplex-magic")


def test_supports_names_unknown_layers():
    class Odd(Affine):
        kind = "odd"

    net = Network([Odd(np.eye(2), np.zeros(2))])
    assert "odd" in MilpEngine().supports(net)
    assert MilpEngine().supports(random_network(np.random.default_rng(0), [2, 3, 2])) is None


def _atan_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network([Affine(rng.normal(0, 2, (4, 2)), rng.normal(0, 1, 4)), Arctan(4),
                    Affine(rng.normal(0, 1, (2, 4)), rng.normal(0, 0.5, 2))])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["pwl", "miqcp"])
def test_arctan_holds_means_no_sampled_violation(seed, mode):
    net = _atan_net(seed)
    reg = InputRegion(-np.ones(2), np.ones(2))
    X = np.random.default_rng(seed).uniform(-1, 1, (50_000, 2))
    Y = net.forward(X)
    gap = Y[:, 0] - Y[:, 1]
    for thr in (gap.min() - 0.5, gap.min() + 0.05):
        cond = OutputCondition((Conjunction(np.array([[1.0, -1.0]]), np.array([thr])),), 2)
        case = Case(reg, cond)
        ans = MilpEngine(arctan=mode).check(net, case, None, timeout=60)
        sampled_violation = bool((gap <= thr).any())
        if ans.status is Status.HOLDS:
            assert not sampled_violation
        if ans.status is Status.VIOLATED and ans.stats.get("replayed"):
            assert _replays(net, case, ans.x)
        if sampled_violation:
            assert ans.status is Status.VIOLATED        # a relaxation never proves a false claim
