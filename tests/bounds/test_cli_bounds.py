"""``nnres bounds``: table and JSON output on a small ONNX model, and user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnresilience.cli.bounds import vnnlib_input_box


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnresilience", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _files(tmp_path):
    rng = np.random.default_rng(0)
    W1 = numpy_helper.from_array(rng.normal(size=(3, 6)).astype(np.float32), "W1")
    W2 = numpy_helper.from_array(rng.normal(size=(6, 2)).astype(np.float32), "W2")
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                          initializer=[W1, W2])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]),
              str(model))
    prop = tmp_path / "p.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(3)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(2)]
    for i in range(3):
        lines += [f"(assert (<= X_{i} 1.0))", f"(assert (>= X_{i} -1.0))"]
    lines += ["(assert (>= Y_0 Y_1))"]
    prop.write_text("\n".join(lines) + "\n")
    return model, prop


def test_bounds_json_and_table(tmp_path):
    model, prop = _files(tmp_path)
    res = _run("bounds", model, prop, "--method", "milp:1", "--json", "-")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)          # stdout holds only the JSON document (no banner)
    assert data["method"] == "milp:1" and data["status"] == "complete"
    assert not data["timed_out"]
    # one row per vector, labelled by the layer producing it
    assert [r["kind"] for r in data["vectors"]] == ["input", "affine", "relu", "affine"]
    assert [r["layer"] for r in data["vectors"]] == [None, 0, 1, 2]
    assert data["vectors"][1]["next_layer"] == "relu"
    assert data["unstable"] == data["vectors"][1]["undecided"]
    assert data["vectors"][2]["undecided"] is None       # relu output feeds an affine
    assert all(lo <= hi for lo, hi in zip(data["output_lo"], data["output_hi"], strict=True))
    out = tmp_path / "b.json"
    res = _run("bounds", model, prop, "--method", "symbolic", "--json", out)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["method"] == "symbolic"
    for word in ("bounds of", "undecided", "0 affine", "1 relu", "symbolic"):
        assert word in res.stdout


def test_bounds_user_errors(tmp_path):
    model, prop = _files(tmp_path)
    res = _run("bounds", model, prop, "--method", "magic")
    assert res.returncode == 2
    assert "magic" in res.stderr
    res = _run("bounds", tmp_path / "missing.onnx", prop)
    assert res.returncode == 2 and "missing.onnx" in res.stderr


def test_vnnlib_box_hull(tmp_path):
    p = tmp_path / "d.vnnlib"
    p.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
                 "(assert (or (and (<= X_0 1) (>= X_0 0) (<= X_1 2) (>= X_1 1))"
                 " (and (<= X_0 3) (>= X_0 2) (<= X_1 2) (>= X_1 1))))\n")
    lo, hi = vnnlib_input_box(p, 2)
    assert np.allclose(lo, [0, 1]) and np.allclose(hi, [3, 2])
