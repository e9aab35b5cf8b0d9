"""The reluplex engine against brute force (and MILP), SAT assignments, timeouts, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nnresilience.engines.milp import MilpEngine
from nnresilience.engines.reluplex import ReluplexEngine
from nnresilience.engines.reluplex.rules import FEAS_TOL, PAIR_TOL, act
from nnresilience.engines.reluplex.search import ReluplexSearch, SearchOptions, build_query
from nnresilience.engines.reluplex.stats import RULES, ReluplexStats
from nnresilience.errors import EngineUnsupportedError
from nnresilience.network.layers import Affine, MaxPool, ReLU
from nnresilience.network.model import Network
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition, misclassification
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import brute_force_max_margin, random_network

ENGINE = ReluplexEngine()


def _random_case(rng: np.random.Generator, net: Network, robustness: bool) -> Case:
    n_in, n_out = net.n_inputs, net.n_outputs
    c = rng.uniform(-1.0, 1.0, n_in)
    if robustness:
        region = InputRegion.ball(c, float(rng.uniform(0.05, 0.6)), "linf", -1.0, 1.0)
        cond = misclassification(int(net.predict(c)), n_out)
    else:
        w = rng.uniform(0.0, 0.8, n_in)
        region = InputRegion(np.maximum(c - w, -1.0), np.minimum(c + w, 1.0))
        terms = []
        for _ in range(int(rng.integers(1, 3))):
            rows = int(rng.integers(1, 3))
            A = rng.normal(size=(rows, n_out))
            y0 = net.forward(c)
            b = A @ y0 + rng.normal(0.0, 0.5, rows)
            terms.append(Conjunction(A, b))
        cond = OutputCondition(tuple(terms), n_out)
    return Case(region, cond)


def _check_assignment(net: Network, case: Case, preprocess: bool) -> None:
    """Every SAT assignment of a term satisfies tableau, bounds and pairs within tolerance."""
    merged = net.merged()
    for term in case.unsafe.terms:
        q = build_query(merged, case.region.lo, case.region.hi, term.A, term.b)
        A0, lo0, hi0 = q.tab.A.copy(), q.tab.lo.copy(), q.tab.hi.copy()
        res = ReluplexSearch(q, SearchOptions(preprocess=preprocess), None, ReluplexStats()).run()
        if res.status != "sat":
            continue
        x = res.x
        scale = 1.0 + np.abs(A0) @ np.abs(x)
        assert np.all(np.abs(A0 @ x) <= 1e-9 * scale)
        assert np.all(x >= lo0 - FEAS_TOL * (1 + np.abs(lo0)))
        assert np.all(x <= hi0 + FEAS_TOL * (1 + np.abs(hi0)))
        xb, xf = x[q.pairs.b], x[q.pairs.f]
        assert np.all(np.abs(xf - act(q.pairs.k, xb)) <= PAIR_TOL * (1 + np.abs(xb)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), leaky=st.booleans(), robustness=st.booleans(),
       n_in=st.integers(2, 3), h1=st.integers(2, 6), h2=st.integers(2, 6),
       n_out=st.integers(2, 3))
def test_matches_brute_force(seed, leaky, robustness, n_in, h1, h2, n_out):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [n_in, h1, h2, n_out], kind="leaky" if leaky else "relu")
    case = _random_case(rng, net, robustness)
    margin, _ = brute_force_max_margin(net, case)
    assume(abs(margin) > 1e-5)          # exact answer not decided by rounding
    expected = Status.VIOLATED if margin >= 0 else Status.HOLDS
    for preprocess in (True, False):
        ans = ENGINE.check(net, case, None, timeout=30, preprocess=preprocess)
        assert ans.status is expected, (preprocess, ans.message)
        if ans.status is Status.VIOLATED:
            assert case.region.contains(ans.x, 0.0)
            assert case.unsafe.satisfied(net.forward(ans.x))
    _check_assignment(net, case, preprocess=True)
    m = MilpEngine().check(net, case, None, timeout=30)
    if m.status is not Status.UNKNOWN:
        assert m.status is expected


def test_rule_statistics_reported(rng):
    net = random_network(rng, [3, 6, 6, 3], kind="leaky", slope=0.1)
    case = _random_case(rng, net, robustness=True)
    ans = ENGINE.check(net, case, None, timeout=30)
    for key in (*RULES, "pivots", "splits", "max_depth", "restorations", "bound_tightenings",
                "phase_fixes", "eliminations", "nodes"):
        assert key in ans.stats and ans.stats[key] >= 0
    assert ans.stats["nodes"] >= 1


def test_leaky_witness_uses_leaky_rules():
    # Robustness around a point that is not robust for a big radius: SAT through search.
    rng = np.random.default_rng(7)
    fired = 0
    for _ in range(6):
        net = random_network(rng, [3, 6, 6, 3], kind="leaky", slope=0.2)
        case = Case(InputRegion(-np.ones(3), np.ones(3)), misclassification(0, 3))
        ans = ENGINE.check(net, case, None, timeout=30, preprocess=False)
        assert ans.status is not Status.UNKNOWN
        fired += sum(ans.stats[r] for r in ("L-Update_b1", "L-Update_b2", "L-Update_f"))
        assert ans.stats["Update_b"] == 0 and ans.stats["Update_f"] == 0
    assert fired > 0


def test_timeout_returns_unknown_fast():
    rng = np.random.default_rng(3)
    net = random_network(rng, [5, 40, 40, 40, 4], kind="relu")
    case = Case(InputRegion(-np.ones(5), np.ones(5)), misclassification(0, 4))
    ans = ENGINE.check(net, case, None, timeout=1e-3)
    assert ans.seconds < 5.0
    if ans.status is Status.VIOLATED:      # a witness found before the first time check
        assert case.unsafe.satisfied(net.forward(ans.x))
    else:
        assert ans.status is Status.UNKNOWN and "timeout" in ans.message
    # a query that needs thousands of search nodes (not decided in 20 s here) ends on time
    rng = np.random.default_rng(3)
    net = random_network(rng, [5, 40, 40, 40, 4], kind="relu")
    hard = Case(InputRegion(-0.3 * np.ones(5), 0.3 * np.ones(5)), misclassification(1, 4))
    ans = ENGINE.check(net, hard, None, timeout=0.5)
    assert ans.status is Status.UNKNOWN and "timeout" in ans.message
    assert ans.seconds < 5.0


def test_unsupported_layers_and_regions():
    net = Network([Affine(np.eye(4), np.zeros(4)), ReLU(4),
                   Affine(np.eye(4), np.zeros(4)), MaxPool(np.array([[0, 1], [2, 3]]), n_in=4),
                   Affine(np.ones((2, 2)), np.zeros(2))])
    reason = ENGINE.supports(net)
    assert reason is not None and "got maxpool at layer 3" in reason
    case = Case(InputRegion(-np.ones(4), np.ones(4)), misclassification(0, 2))
    with pytest.raises(EngineUnsupportedError, match="maxpool at layer 3"):
        ENGINE.check(net, case, None)
    relu_net = random_network(np.random.default_rng(0), [2, 3, 2])
    l1 = Case(InputRegion.ball(np.zeros(2), 0.5, "l1", -1, 1), misclassification(0, 2))
    with pytest.raises(EngineUnsupportedError, match="L1"):
        ENGINE.check(relu_net, l1, None)
    with pytest.raises(ValueError, match="unknown reluplex option"):
        ENGINE.check(relu_net, case_of(relu_net), None, split_treshold=3)


def case_of(net: Network) -> Case:
    return Case(InputRegion(-np.ones(net.n_inputs), np.ones(net.n_inputs)),
                misclassification(0, net.n_outputs))


def _ctg():
    path = Path(__file__).resolve().parents[3] / "src" / "nnresilience" / "data"
    onnx_path, samples = path / "ctg_leaky.onnx", path / "ctg_samples.npz"
    from nnresilience.loaders import load_network

    return load_network(onnx_path), np.load(samples)


@pytest.mark.parametrize("sample,delta", [(0, 0.035), (4, 0.035), (5, 0.015)])
def test_ctg_leaky_queries(sample, delta):
    net, data = _ctg()
    x, label = data["x"][sample], int(data["labels"][sample])
    region = InputRegion.ball(x, delta, "linf", -1.0, 1.0)
    case = Case(region, misclassification(label, 3))
    ans = ENGINE.check(net, case, None, timeout=60)
    assert ans.status is not Status.UNKNOWN, ans.message
    if ans.status is Status.VIOLATED:
        assert region.contains(ans.x, 0.0)
        assert int(np.argmax(net.forward(ans.x))) != label or case.unsafe.satisfied(
            net.forward(ans.x))
    m = MilpEngine().check(net, case, None, timeout=60)
    if m.status is not Status.UNKNOWN:
        assert m.status is ans.status


@pytest.mark.parametrize("timeout", [0.3, 1.5])
def test_deadline_holds_on_a_wide_net(timeout):
    """A dense tableau of ~1e6 entries: one round of row bounds cost seconds in one piece
    and a 1 s query took 51 s on MNIST-FC 256x6; the rounds are now cut into blocks with
    the deadline checked between them, and a query whose set-up alone would overrun is not
    started. The promise: ``T + max(1 s, 5 %)``."""
    rng = np.random.default_rng(5)
    net = random_network(rng, [400, 400, 400, 10], kind="relu")
    c = rng.uniform(-0.5, 0.5, 400)
    case = Case(InputRegion.ball(c, 0.05, "linf", -1.0, 1.0),
                misclassification(int(net.predict(c)), 10))
    ans = ENGINE.check(net, case, None, timeout=timeout)
    assert ans.seconds <= timeout + 1.0
    if ans.status is Status.VIOLATED:
        assert case.unsafe.satisfied(net.forward(ans.x))
    else:
        assert ans.status is Status.UNKNOWN and "timeout" in ans.message
