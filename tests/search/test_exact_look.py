"""The exact second look at undecided MILP leaves (``SearchSettings.exact_seconds``).

A property that holds by less than the MILP's tolerance band τ cannot be proved by a MILP
leaf, and its near-tie points need not replay, so the input-splitting search split such
leaves until the deadline (crafted near ties on LeakyReLU nets, slopes 1e-6 / 0.999:
``unknown`` at every time-out). Reluplex decides those leaves; the tests check that the
look closes them (and that without it the same query stays ``unknown``), that a property
violated by a near tie is still reported with a replayed witness, and that the leaves see
the spec rows widened by the original network's forward error when merging changed it.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.loaders import load_network
from nnresilience.spec.vnnlib import read_vnnlib
from nnresilience.testing import unseen
from nnresilience.testing.bruteforce import brute_force_max_margin
from nnresilience.verify import verify


def _near_tie(monkeypatch, tmp_path, seed: int, kind: str):
    """A LeakyReLU net of the unseen generator (slopes 1e-6 / 0.999) and its ``tie_hold``
    query (a random disjunction whose exact maximum unsafe margin is moved just below 0)
    or its ``tie_bf`` query (just above 0: violated, the brute-force maximiser a witness).
    """
    import onnx

    monkeypatch.setattr(unseen, "LEAKY_SLOPES", (1e-6, 0.999))
    inst = unseen.instance("leaky", seed)
    onnx.save(inst.model, str(tmp_path / "net.onnx"))
    net = load_network(tmp_path / "net.onnx")
    queries = unseen.variants(inst, net, lambda case: brute_force_max_margin(net, case))
    q = next(q for q in queries if q.name.startswith(kind))
    return net, read_vnnlib("t", text=q.text), inst


@pytest.mark.parametrize("seed", [709, 717])
def test_near_tie_that_holds_is_decided_and_only_with_the_look(monkeypatch, tmp_path, seed):
    net, prop, inst = _near_tie(monkeypatch, tmp_path, seed, "tie_hold")
    # a dense sample never reaches the unsafe set (the planted maximum is below it)
    X = np.random.default_rng(1).uniform(inst.lo, inst.hi, (20000, net.n_inputs))
    assert not np.any(prop.cases[0].unsafe.satisfied(net.forward(X)))
    on = verify(net, prop, engine="auto", timeout=5.0)
    assert on.status.value == "holds"
    assert "closed by reluplex" in on.message or any(
        c.get("exact_closed", 0) > 0 for c in on.stats["cases"])
    off = verify(net, prop, engine="auto", timeout=1.5,
                 engine_options={"exact_seconds": 0.0})
    assert off.status.value == "unknown"


def test_near_tie_that_is_violated_still_gives_a_replayed_witness(monkeypatch, tmp_path):
    net, prop, _ = _near_tie(monkeypatch, tmp_path, 717, "tie_bf")
    for falsify in (1.0, 0.0):
        res = verify(net, prop, engine="auto", timeout=5.0, falsify_budget=falsify)
        assert res.status.value == "violated"
        y = net.forward(res.counterexample.x_array)
        assert prop.cases[0].unsafe.satisfied(y)


def test_leaf_rows_are_widened_by_the_forward_error_of_the_original():
    from nnresilience.search.decide import _widened
    from nnresilience.spec.condition import Conjunction, OutputCondition

    cond = OutputCondition((Conjunction(np.eye(3)[:2], np.array([1.0, 2.0])),
                            Conjunction(np.eye(3)[2:], np.array([3.0]))), 3, topk=(0, 1))
    assert _widened(cond, np.zeros(3)) is cond
    wide = _widened(cond, np.array([0.5, 0.25, 0.125]))
    assert [t.b.tolist() for t in wide.terms] == [[1.5, 2.25], [3.125]]
    assert wide.topk is None        # the compact top-k form would ignore the rows
