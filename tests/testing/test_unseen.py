"""The unseen-shape generator: every family loads through the ONNX loader, agrees with
onnxruntime, and its near-tie query is violated by a witness that replays."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nnresilience.loaders import load_network
from nnresilience.loaders.onnx import onnxruntime_forward
from nnresilience.spec.vnnlib import read_vnnlib
from nnresilience.testing.unseen import (
    ALL_FAMILIES,
    EXTRA_FAMILIES,
    FAMILIES,
    instance,
    judge,
    judge_property,
    prop_replays,
    variants,
)


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


@pytest.mark.parametrize("family", EXTRA_FAMILIES)
def test_extra_family_loads_agrees_and_plants_a_two_box_tie(family, tmp_path):
    seed = 2 * EXTRA_FAMILIES.index(family) + 1
    inst = instance(family, seed)
    path = tmp_path / f"{family}.onnx"
    onnx.save(inst.model, str(path))
    net = load_network(path)
    assert (net.n_inputs, net.n_outputs) == (inst.n_inputs, inst.n_outputs)
    ops = {node.op_type for node in inst.model.graph.node}
    if family == "conv_ops":
        assert {"Conv", "BatchNormalization", "Mul"} <= ops
    elif family == "reshape_ops":
        assert {"Reshape", "Transpose", "Unsqueeze", "Squeeze", "Neg", "Div"} <= ops
    elif family == "pinned":
        pinned = inst.lo == inst.hi
        assert pinned.any() and not pinned.all()
    elif family == "far":                   # inputs at 1e5..1e6, boxes <= 1e-3 wide
        assert np.all(np.abs(inst.lo) >= 1e5) and np.all(inst.hi - inst.lo <= 1.001e-3)
    else:                                   # ulp: every side 0 or 1 float64 step wide
        steps = np.where(inst.hi > inst.lo, np.nextafter(inst.lo, 3.0), inst.lo)
        assert np.array_equal(steps, inst.hi) and np.any(inst.hi > inst.lo)
        corners = np.array(np.meshgrid(*zip(inst.lo, inst.hi, strict=True))).reshape(
            inst.n_inputs, -1).T
        assert len({tuple(y) for y in net.forward(corners)}) > 1   # the net sees 1 ulp
    if family not in ("far", "ulp"):        # float32 inputs cannot resolve these boxes
        X = np.random.default_rng(seed).uniform(inst.lo, inst.hi, (16, inst.n_inputs))
        scale = max(1.0, max(float(np.abs(a).max()) for a in net.forward_all(X)))
        assert np.abs(onnxruntime_forward(net, X) - net.forward(X)).max() <= 1e-5 * scale
    multi = [q for q in variants(inst, net, multi_case=True) if q.name.startswith("multi")]
    assert len(multi) == 1
    q = multi[0]
    prop = read_vnnlib("multi", text=q.text)
    assert len(prop.cases) == 2 and q.truth == "violated"
    assert prop_replays(net, prop, q.witness)
    # exactly one half is violated by the witness: the other half's terms are harder
    y = net.forward(q.witness)
    assert sorted(bool(c.unsafe.satisfied(y)) for c in prop.cases) == [False, True]
    assert judge_property(net, prop, "violated", q.witness, q.truth) == ""
    assert judge_property(net, prop, "holds", None, q.truth) != ""
    outside = np.asarray(q.witness) + 2.0 * (inst.hi - inst.lo + 1.0)
    assert judge_property(net, prop, "violated", outside, None) != ""


def test_extra_families_keep_the_recorded_seed_map():
    """Adding families must not move the seed -> family map of the recorded runs."""
    assert ALL_FAMILIES[: len(FAMILIES)] == FAMILIES
    assert not set(EXTRA_FAMILIES) & set(FAMILIES)
    # the queries of a recorded family do not change with the two-box query on
    inst = instance("deep", 3)
    path_net = load_network_from(inst)
    plain = [q.text for q in variants(inst, path_net)]
    with_multi = [q.text for q in variants(inst, path_net, multi_case=True)]
    assert with_multi[: len(plain)] == plain and len(with_multi) == len(plain) + 1


def load_network_from(inst):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        onnx.save(inst.model, str(p))
        net = load_network(p)
        net.forward(np.asarray(inst.lo))
        return net
