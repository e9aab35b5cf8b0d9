"""``verify``: orchestration, soundness of replay, agreement with brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnresilience.verify as V
from nnresilience.engines.base import Engine, EngineAnswer
from nnresilience.errors import ShapeMismatchError
from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import sequential
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import (
    brute_force_case,
    brute_force_max_margin,
    random_network,
)


def _prop(region, A, b, n_out):
    cond = OutputCondition((Conjunction(np.atleast_2d(A), np.atleast_1d(b)),), n_out)
    return Property((Case(region, cond),))


class BruteEngine(Engine):
    """A complete engine made of the brute-force reference (to test orchestration alone)."""

    name = "brute"

    def __init__(self):
        self.calls = 0

    def check(self, network, case, bounds, timeout=None, **options):
        self.calls += 1
        status, x = brute_force_case(network, case)
        return EngineAnswer(status, x)


class BogusEngine(Engine):
    """Claims a violation with a point that is not one."""

    name = "bogus"

    def __init__(self, x):
        self.x = x

    def check(self, network, case, bounds, timeout=None, **options):
        return EngineAnswer(Status.VIOLATED, np.asarray(self.x, float), message="sat")


@pytest.fixture
def identity_net():
    # y = relu(x) - relu(-x) = x on one input
    return sequential([Affine(np.array([[1.0], [-1.0]]), np.zeros(2)), ReLU(2),
                       Affine(np.array([[1.0, -1.0]]), np.zeros(1))])


def test_falsifier_decides_violation(identity_net):
    prop = _prop(InputRegion(np.array([-1.0]), np.array([2.0])), [[-1.0]], [-1.5], 1)
    res = V.verify(identity_net, prop, engine="none")
    assert res.status is Status.VIOLATED and res.engine == "falsifier"
    assert identity_net.forward(res.counterexample.x_array)[0] >= 1.5
    assert res.counterexample.replayed_onnxruntime is None
    assert res.stats["cases"][0]["method"] == "falsifier"


def test_bounds_decide_holds(identity_net):
    prop = _prop(InputRegion(np.array([-1.0]), np.array([2.0])), [[-1.0]], [-3.0], 1)
    res = V.verify(identity_net, prop, engine="none", bounds_method="interval")
    assert res.status is Status.HOLDS and res.engine == "bounds (interval)"


def test_bogus_candidate_is_not_violated(identity_net, monkeypatch):
    """Unsafe set y >= 1.9 is unreachable on [-1, 1.8] but bounds cannot tell (loose box)."""
    net = sequential([Affine(np.array([[1.0], [-1.0]]), np.zeros(2)), ReLU(2),
                      Affine(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2))])
    # y0 = |x| <= 1.8, y1 = x; unsafe: y0 + 0 y1 >= 1.9  -> holds; interval bound y0 <= 1.8
    # add y1 term so interval bound is loose: unsafe y0 - y1 >= 2.5 (max is 2 at x=-1)
    prop = _prop(InputRegion(np.array([-1.0]), np.array([1.8])), [[-1.0, 1.0]], [-2.5], 2)
    # the whole case goes to the engine (no search, whose symbolic bounds would prove it)
    whole = {"engine": "milp", "input_split": False}
    monkeypatch.setattr(V, "_resolve_engine", lambda name: BogusEngine([0.3]))
    res = V.verify(net, prop, bounds_method="interval", falsify_budget=0.2, **whole)
    assert res.status is Status.UNKNOWN
    assert res.message == "candidate failed replay"
    # a bogus point outside the region is also refused (clipped, then still fails)
    monkeypatch.setattr(V, "_resolve_engine", lambda name: BogusEngine([-50.0]))
    res = V.verify(net, prop, bounds_method="interval", falsify_budget=0.2, **whole)
    assert res.status is Status.UNKNOWN


def test_engine_candidate_on_boundary_is_repaired(monkeypatch):
    """A solver point a hair outside the unsafe set is moved inside by replay repair."""
    net = sequential([Affine(np.array([[1.0]]), np.zeros(1))])
    prop = _prop(InputRegion(np.array([0.0]), np.array([1.0])), [[-1.0]], [-1.0], 1)
    monkeypatch.setattr(V, "falsify", lambda *a, **k: None)
    monkeypatch.setattr(V, "_resolve_engine", lambda name: BogusEngine([1.0 - 1e-10]))
    res = V.verify(net, prop, bounds_method="interval", engine="milp", input_split=False)
    assert res.status is Status.VIOLATED
    assert net.forward(res.counterexample.x_array)[0] >= 1.0


def test_size_mismatch_raises(identity_net):
    prop = _prop(InputRegion(np.zeros(2), np.ones(2)), [[1.0]], [0.0], 1)
    with pytest.raises(ShapeMismatchError):
        V.verify(identity_net, prop)


def test_multi_case_property(monkeypatch):
    """Violated if any case is; holds needs every case."""
    rng = np.random.default_rng(4)
    net = random_network(rng, [2, 4, 2], "relu")
    r1, r2 = InputRegion(-np.ones(2), np.zeros(2)), InputRegion(np.zeros(2), np.ones(2))
    cond = OutputCondition((Conjunction(np.array([[-1.0, 0.0]]), np.array([-1e4])),), 2)
    prop = Property((Case(r1, cond), Case(r2, cond)))
    eng = BruteEngine()
    monkeypatch.setattr(V, "_resolve_engine", lambda name: eng)
    res = V.verify(net, prop, bounds_method="interval")
    assert res.status is Status.HOLDS and len(res.stats["cases"]) == 2
    y = net.forward(np.array([0.9, 0.9]))
    cond2 = OutputCondition((Conjunction(np.array([[-1.0, 0.0]]), np.array([-y[0]])),), 2)
    prop2 = Property((Case(r1, cond), Case(r2, cond2)))
    res2 = V.verify(net, prop2, bounds_method="interval")
    assert res2.status is Status.VIOLATED and prop2.violated_by(
        res2.counterexample.x_array, net.forward(res2.counterexample.x_array))


def test_timeout_gives_unknown(monkeypatch):
    class Slow(Engine):
        name = "slow"

        def check(self, network, case, bounds, timeout=None, **options):
            assert timeout is not None and timeout <= 0.5
            return EngineAnswer(Status.UNKNOWN, message="time limit reached")

    rng = np.random.default_rng(9)
    net = random_network(rng, [3, 6, 2], "relu")
    prop = _prop(InputRegion(-np.ones(3), np.ones(3)), [[1.0, -1.0]], [-1e3], 2)
    monkeypatch.setattr(V, "_resolve_engine", lambda name: Slow())
    monkeypatch.setattr(V, "falsify", lambda *a, **k: None)
    monkeypatch.setattr(V, "output_box_excludes", lambda *a: False)
    monkeypatch.setattr(V, "spec_rows_exclude", lambda *a: False)
    res = V.verify(net, prop, timeout=0.5, input_split=False, engine="milp")
    assert res.status is Status.UNKNOWN and res.message == "timeout"


def _random_query(seed: int, kind: str):
    """A random 3-4-3-2 net, a random linear unsafe condition on [-1, 1]^3, and the exact
    maximum margin (> 0: violated, < 0: holds; |margin| < 1e-6 is left undecided)."""
    rng = np.random.default_rng(seed)
    net = random_network(rng, [3, 4, 3, 2], kind)
    region = InputRegion(-np.ones(3), np.ones(3))
    prop = _prop(region, rng.normal(size=(1, 2)), rng.normal(size=1), 2)
    best, _ = brute_force_max_margin(net, prop.cases[0])
    return net, prop, best


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 100_000), kind=st.sampled_from(["relu", "leaky", "maxpool"]),
       split=st.sampled_from([False, None]))
def test_orchestration_matches_brute_force(seed, kind, split):
    net, prop, best = _random_query(seed, kind)
    if abs(best) < 1e-6:
        return
    old = V._resolve_engine
    V._resolve_engine = lambda name: BruteEngine()
    try:
        res = V.verify(net, prop, bounds_method="interval", falsify_budget=0.05, seed=seed,
                       input_split=split)
    finally:
        V._resolve_engine = old
    assert res.status is (Status.VIOLATED if best > 0 else Status.HOLDS)
    if res.status is Status.VIOLATED:
        x = res.counterexample.x_array
        assert V.replay(net, prop, x)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000), kind=st.sampled_from(["relu", "leaky", "maxpool"]),
       split=st.sampled_from([False, None]))
def test_verify_with_milp_matches_brute_force(seed, kind, split):
    net, prop, best = _random_query(seed, kind)
    if abs(best) < 1e-6:
        return
    # no falsifier: the engine itself has to decide
    res = V.verify(net, prop, engine="milp", falsify_budget=0.0, timeout=30,
                   input_split=split)
    assert res.status is (Status.VIOLATED if best > 0 else Status.HOLDS)
    if res.status is Status.VIOLATED:
        assert V.replay(net, prop, res.counterexample.x_array)


def test_bounds_drop_impossible_disjuncts(monkeypatch):
    """A term the bounds exclude never reaches the engine; the verdict is unchanged."""
    rng = np.random.default_rng(11)
    net = random_network(rng, [3, 5, 2], "relu")
    region = InputRegion(-np.ones(3), np.ones(3))
    impossible = Conjunction(np.array([[-1.0, 0.0]]), np.array([-1e4]))     # y0 >= 1e4
    hard = Conjunction(np.array([[1.0, -1.0]]), np.array([-1e-3]))
    case = Case(region, OutputCondition((impossible, hard), 2))
    seen = []

    class Recorder(BruteEngine):
        def check(self, network, case, bounds, timeout=None, **options):
            seen.append(len(case.unsafe.terms))
            return super().check(network, case, bounds, timeout, **options)

    monkeypatch.setattr(V, "_resolve_engine", lambda name: Recorder())
    monkeypatch.setattr(V, "falsify", lambda *a, **k: None)
    res = V.verify(net, Property((case,)), input_split=False)
    expected, _ = brute_force_case(net, case)
    assert res.status is expected
    if seen:
        assert seen == [1]
    # rows are lower bounds of A y: -y0 >= -2e4 does not exclude -y0 <= -1e4; -3 does
    assert list(V.excluded_terms(case.unsafe, np.array([-2e4, -5.0]))) == [False, False]
    assert list(V.excluded_terms(case.unsafe, np.array([-3.0, -5.0]))) == [True, False]
    assert list(V.excluded_terms(case.unsafe, np.array([-3.0, 1.0]))) == [True, True]
    assert V.reduced_case(case, np.array([-3.0, -5.0])).unsafe.terms == (hard,)


@pytest.mark.parametrize("engine", ["auto", "milp", "bab", "reluplex", "none"])
def test_a_property_without_output_constraints_is_violated_by_any_input(engine):
    """VNN-LIB that constrains only the inputs: its unsafe set is every output, so the
    box centre is a counterexample (it crashed the bounds on a 0-row spec layer)."""
    from nnresilience.spec.vnnlib import read_vnnlib

    net = sequential([Affine(np.array([[1.0, -2.0], [0.5, 1.0]]), np.array([0.1, -0.3])),
                      ReLU(2), Affine(np.array([[1.0, 1.0]]), np.array([0.0]))])
    text = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
            "(assert (>= X_0 0.0))\n(assert (<= X_0 0.5))\n"
            "(assert (>= X_1 -1.0))\n(assert (<= X_1 1.0))\n")
    prop = read_vnnlib("inputs_only.vnnlib", text=text)
    res = V.verify(net, prop, engine=engine, timeout=10.0, falsify_budget=0.0)
    assert res.status is Status.VIOLATED
    x = np.asarray(res.counterexample.x_array)
    assert prop.cases[0].region.contains(x, 0.0)
    assert bool(prop.cases[0].unsafe.satisfied(net.forward(x)))


def test_falsify_budget_zero_turns_the_falsifier_off(monkeypatch):
    """``falsify_budget=0`` means off: the falsifier is never called, the engine decides
    (before, a zero budget still ran it briefly and answers said "falsifier")."""
    net = sequential([Affine(np.array([[1.0, -1.0], [0.5, 2.0]]), np.zeros(2)), ReLU(2),
                      Affine(np.array([[1.0, 1.0]]), np.array([0.0]))])
    region = InputRegion.box([0.0, 0.0], [1.0, 1.0])
    prop = _prop(region, [[-1.0]], [-0.5], 1)          # unsafe: y >= 0.5, reachable
    calls = []
    real = V.falsify

    def spy(*a, **k):
        calls.append(k.get("budget_seconds"))
        return real(*a, **k)

    monkeypatch.setattr(V, "falsify", spy)
    res = V.verify(net, prop, engine="milp", falsify_budget=0.0, timeout=20)
    assert res.status is Status.VIOLATED and calls == []
    assert "falsifier" not in res.engine
    assert V.replay(net, prop, res.counterexample.x_array)
    V.verify(net, prop, engine="milp", falsify_budget=0.2, timeout=20)
    assert calls and calls[0] > 0
