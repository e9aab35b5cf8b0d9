"""The unseen-shape generator: every family loads through the ONNX loader, agrees with
onnxruntime, and its near-tie query is violated by a witness that replays."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nnresilience.loaders import load_network
from nnresilience.loaders.onnx import onnxruntime_forward
from nnresilience.spec.vnnlib import read_vnnlib
from nnresilience.testing.unseen import FAMILIES, instance, judge, variants


@pytest.mark.parametrize("family", FAMILIES)
def test_family_loads_agrees_and_plants_a_replaying_tie(family, tmp_path):
    seed = FAMILIES.index(family)
    inst = instance(family, seed)
    path = tmp_path / f"{family}.onnx"
    onnx.save(inst.model, str(path))
    net = load_network(path)
    assert (net.n_inputs, net.n_outputs) == (inst.n_inputs, inst.n_outputs)
    X = np.random.default_rng(seed).uniform(inst.lo, inst.hi, (16, inst.n_inputs))
    y = net.forward(X)
    scale = max(1.0, max(float(np.abs(a).max()) for a in net.forward_all(X)))
    assert np.abs(onnxruntime_forward(net, X) - y).max() <= 1e-5 * scale
    queries = {q.name[:3]: q for q in variants(inst, net)}
    tie = queries["tie"]
    case = read_vnnlib("tie", text=tie.text).cases[0]
    assert tie.truth == "violated"
    assert case.region.contains(tie.witness, 0.0)
    assert bool(case.unsafe.satisfied(net.forward(tie.witness)))
    # the judge accepts the witness and rejects "holds" on it
    assert judge(net, case, "violated", tie.witness, tie.truth) == ""
    assert judge(net, case, "holds", None, tie.truth) != ""


def test_leaky_slopes_can_be_swapped(monkeypatch):
    from nnresilience.testing import unseen

    monkeypatch.setattr(unseen, "LEAKY_SLOPES", (1e-6, 0.999))
    net_slopes = set()
    for seed in range(4):
        inst = instance("leaky", seed, bruteforce=False)
        alphas = [a.f for node in inst.model.graph.node if node.op_type == "LeakyRelu"
                  for a in node.attribute if a.name == "alpha"]
        assert alphas
        net_slopes.update(float(a) for a in alphas)
    assert net_slopes <= {float(np.float32(1e-6)), float(np.float32(0.999))}
