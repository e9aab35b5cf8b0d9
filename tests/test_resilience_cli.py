"""``nnres resilience`` / ``alpha-max`` / ``min-perturbation`` end to end on a tiny ONNX net."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")


def _tiny_onnx(path):
    """y0 = x, y1 = -x, y2 = relu(x) - 2 on one input (Φ_0 at alpha = e^0.5 is 0.25)."""
    from onnx import TensorProto, helper, numpy_helper

    W1 = np.array([[1.0], [-1.0], [1.0]], np.float32)
    W2 = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    inits = [numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(np.zeros(3, np.float32),
                                                                         "b1"),
             numpy_helper.from_array(W2, "W2"),
             numpy_helper.from_array(np.array([0.0, 0.0, -2.0], np.float32), "b2")]
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        [1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]),
              str(path))
    return path


def test_resilience_cli(tmp_path, capsys):
    from nnresilience.cli import main

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    out = tmp_path / "phi.json"
    rc = main(["resilience", str(model), "--class", "0", "--alpha", str(math.exp(0.5)),
               "--norm", "l1", "--domain", "-1:1", "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["command"] == "resilience" and d["model"] == str(model)
    r = d["results"][0]
    assert r["class"] == 0 and r["sample"] is None and r["status"] == "optimal"
    assert r["optimal"] and abs(r["upper"] - 0.25) < 1e-6 and r["value"] == r["upper"]
    assert r["witness"] is not None and len(r["witness"]["a"]) == 1
    # infeasible premise is an answer: exit 0 and a clear message
    rc = main(["resilience", str(model), "--class", "0", "--alpha", "100", "--domain", "-1:1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "no input in the domain reaches confidence ratio" in text
    # all classes -> Xi
    rc = main(["resilience", str(model), "--alpha", "1.0", "--domain", "-1:1", "--json", "-"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert "xi" in d and [r["class"] for r in d["results"]] == [0, 1, 2]
    assert d["xi"]["upper"] == pytest.approx(min(p["upper"] for p in d["results"]
                                                 if p["upper"] is not None))


def test_min_perturbation_and_alpha_max_cli(tmp_path, capsys):
    from nnresilience.cli import main

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    data = tmp_path / "x.npy"
    np.save(data, np.array([[0.5], [-0.3]]))
    rc = main(["min-perturbation", str(model), "--data", str(data), "--norm", "linf",
               "--domain", "-1:1", "--json", "-"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "min-perturbation" and doc["model"] == str(model)
    rows = doc["results"]
    assert [r["sample"] for r in rows] == [0, 1] and [r["label"] for r in rows] == [0, 1]
    assert rows[0]["upper"] == pytest.approx(0.5, abs=1e-6)
    assert rows[1]["upper"] == pytest.approx(0.3, abs=1e-6)
    rc = main(["alpha-max", str(model), "--class", "0", "--domain", "-1:1", "--json", "-"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    am = doc["results"][0]
    assert doc["command"] == "alpha-max" and am["class"] == 0
    assert am["upper"] == pytest.approx(math.exp(2.0), rel=1e-6)
    # resilience, alpha-max and min-perturbation share one result shape
    assert set(am) == set(rows[0])
    # a user error is a one-line error with exit code 2
    rc = main(["resilience", str(model), "--class", "0", "--alpha", "0.5", "--domain", "-1:1"])
    assert rc == 2


def test_domain_from_vnnlib_and_data(tmp_path, capsys):
    from nnresilience.cli import main

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    spec = tmp_path / "p.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                    "(declare-const Y_1 Real)\n(declare-const Y_2 Real)\n"
                    "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= Y_1 Y_0))\n")
    rc = main(["resilience", str(model), "--class", "0", "--alpha", str(math.exp(0.5)),
               "--domain-from", str(spec), "--json", "-"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert abs(r["upper"] - 0.25) < 1e-6
    # --data: the domain is the data's bounding box [-0.1, 1] -> the flip set is [-0.1, 0]
    data = tmp_path / "x.csv"
    data.write_text("-0.1\n1.0\n0.6\n")
    rc = main(["resilience", str(model), "--class", "0", "--alpha", str(math.exp(0.5)),
               "--data", str(data), "--warm-start", "--json", "-"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert abs(r["upper"] - 0.25) < 1e-6 and r["stats"]["ini_source"] == "data"
