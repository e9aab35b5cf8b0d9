"""S-shaped networks: a leaf candidate that fails the float64 replay refines the domain
(the neuron whose relaxation explains it is split) instead of ending the query."""

from __future__ import annotations

import time

import numpy as np

from nnresilience.network.layers import Affine, Sigmoid, Tanh
from nnresilience.network.model import sequential
from nnresilience.results import Status
from nnresilience.search.decide import SearchSettings, decide_case
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion
from nnresilience.verify import verify


def _constant_one():
    """y = sigmoid(x) + sigmoid(-x) == 1 on [-4, 4]; unsafe y >= 1.01 is unreachable,
    but every linear relaxation of the two sigmoids allows it."""
    net = sequential([Affine(np.array([[1.0], [-1.0]]), np.zeros(2)), Sigmoid(2),
                      Affine(np.array([[1.0, 1.0]]), np.zeros(1))])
    case = Case(InputRegion(np.array([-4.0]), np.array([4.0])),
                OutputCondition((Conjunction(np.array([[-1.0]]), np.array([-1.01])),), 1))
    return net, case


def test_failed_replay_refines_until_decided():
    net, case = _constant_one()
    st: dict = {}
    ans = decide_case(net, case, "milp", SearchSettings(rule="neuron", falsify_steps=0),
                      deadline=time.monotonic() + 60, stats=st)
    assert ans.status is Status.HOLDS
    assert st.get("failed_replays", 0) >= 1 and st.get("refinements", 0) >= 1


def test_verify_auto_decides_the_sigmoid_net():
    net, case = _constant_one()
    res = verify(net, Property((case,)), timeout=60, falsify_budget=0.2)
    assert res.status is Status.HOLDS
    assert res.engine.startswith("bab: ") and "MILP leaves" in res.engine
    # the whole-case MILP alone only has its relaxation's candidate: honest unknown
    res = verify(net, Property((case,)), engine="milp", input_split=False, timeout=30,
                 falsify_budget=0.2)
    assert res.status is Status.UNKNOWN and res.message == "candidate failed replay"


def test_tanh_violation_is_found_and_replays():
    # y = tanh(2x) - tanh(x) peaks at about 0.30 near x = 0.55; unsafe y >= 0.25
    net = sequential([Affine(np.array([[2.0], [1.0]]), np.zeros(2)), Tanh(2),
                      Affine(np.array([[1.0, -1.0]]), np.zeros(1))])
    case = Case(InputRegion(np.array([-3.0]), np.array([3.0])),
                OutputCondition((Conjunction(np.array([[-1.0]]), np.array([-0.25])),), 1))
    ans = decide_case(net, case, "milp", SearchSettings(falsify_steps=0),
                      deadline=time.monotonic() + 60)
    assert ans.status is Status.VIOLATED
    assert net.forward(ans.counterexample.x_array)[0] >= 0.25
