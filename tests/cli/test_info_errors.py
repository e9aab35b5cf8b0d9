"""CLI behaviour of ``nnres info`` / ``nnres eval`` on good input and on user errors: exit
code 2 and a single ``error: ...`` line on stderr naming the operator, file or position."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnresilience", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _model(path, cos: bool = False):
    W = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 8, "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Cos" if cos else "Relu", ["h"], ["y"], name="act_node")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                          initializer=[W])
    onnx.save(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]),
              str(path))
    return path


def _one_error_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_info_and_eval_ok(tmp_path):
    model = _model(tmp_path / "ok.onnx")
    res = _run("info", model, "--json", "-")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["n_inputs"] == 3 and data["n_outputs"] == 4
    assert [r["kind"] for r in data["layers"]] == ["affine", "relu"]
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]])
    np.save(tmp_path / "x.npy", x)
    res = _run("eval", model, tmp_path / "x.npy", "--json", "-")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    W = np.arange(12).reshape(3, 4) / 8
    np.testing.assert_allclose(out["outputs"], np.maximum(x @ W, 0))
    assert out["argmax"] == np.argmax(np.maximum(x @ W, 0), axis=1).tolist()


def test_unsupported_operator_exit_2_one_line(tmp_path):
    res = _run("info", _model(tmp_path / "cos.onnx", cos=True))
    assert res.returncode == 2
    line = _one_error_line(res)
    assert "'Cos'" in line and "act_node" in line and "cos.onnx" in line


def test_truncated_onnx_exit_2(tmp_path):
    good = _model(tmp_path / "good.onnx").read_bytes()
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(good[: len(good) // 2])
    res = _run("info", bad)
    assert res.returncode == 2
    assert "trunc.onnx" in _one_error_line(res)


def test_vnnlib_syntax_error_exit_2_with_position(tmp_path):
    model = _model(tmp_path / "ok.onnx")
    spec = tmp_path / "bad.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
                    "(declare-const X_2 Real)\n(assert (<= X_0 1)\n")
    res = _run("info", model, "--property", spec)
    assert res.returncode == 2
    assert f"{spec}:4:1:" in _one_error_line(res)


def test_eval_wrong_input_size_exit_2(tmp_path):
    model = _model(tmp_path / "ok.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 5)))
    res = _run("eval", model, tmp_path / "x.npy")
    assert res.returncode == 2
    line = _one_error_line(res)
    assert "5 values" in line and "expects 3" in line
