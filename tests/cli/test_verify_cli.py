"""``nnres verify`` / ``nnres vnncomp`` end to end, in subprocesses, on a tiny ONNX model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

# y = W2 relu(W1 x + b1) + b2 with x in [-1, 1]^2; y0 ranges over roughly [-?, 3]
W1 = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.5]])
B1 = np.array([0.0, 0.0, 0.1])
W2 = np.array([[1.0, 0.5, -1.0], [0.0, 1.0, 1.0]])
B2 = np.array([0.0, -0.5])


def _forward(x):
    return W2 @ np.maximum(W1 @ x + B1, 0) + B2


@pytest.fixture
def model(tmp_path) -> Path:
    def init(name, arr):
        return helper.make_tensor(name, TensorProto.FLOAT, arr.shape,
                                  arr.astype(np.float32).ravel().tolist())

    nodes = [helper.make_node("Gemm", ["X", "W1", "B1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "B2"], ["Y"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [init("W1", W1), init("B1", B1), init("W2", W2), init("B2", B2)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "tiny.onnx"
    onnx.save(m, str(path))
    return path


def _vnnlib(tmp_path: Path, name: str, out_assert: str) -> Path:
    text = "\n".join([
        "(declare-const X_0 Real)", "(declare-const X_1 Real)",
        "(declare-const Y_0 Real)", "(declare-const Y_1 Real)",
        "(assert (>= X_0 -1.0))", "(assert (<= X_0 1.0))",
        "(assert (>= X_1 -1.0))", "(assert (<= X_1 1.0))",
        out_assert, ""])
    p = tmp_path / name
    p.write_text(text)
    return p


def _nnres(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "nnresilience.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_verify_violated_writes_counterexample(model, tmp_path):
    prop = _vnnlib(tmp_path, "reach.vnnlib", "(assert (>= Y_0 2.0))")   # y0 = 3 at (1, 1)
    ce_file, js = tmp_path / "ce.json", tmp_path / "res.json"
    r = _nnres("verify", model, prop, "--bounds", "interval", "--counterexample", ce_file,
               "--json", js)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "violated (sat)"
    ce = json.loads(ce_file.read_text())
    x = np.array(ce["x"])
    assert np.all(np.abs(x) <= 1.0) and _forward(x)[0] >= 2.0 - 1e-6
    assert ce["vnncomp"].startswith("sat\n((X_0 ")
    assert ce["replayed_onnxruntime"] is True
    res = json.loads(js.read_text())
    assert res["status"] == "violated" and res["counterexample"]["x"] == ce["x"]


def test_verify_holds_by_bounds_and_json_stdout(model, tmp_path):
    prop = _vnnlib(tmp_path, "far.vnnlib", "(assert (>= Y_0 50.0))")
    r = _nnres("verify", model, prop, "--bounds", "interval", "--engine", "none",
               "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "holds"
    assert "holds (unsat)" in r.stderr


def test_vnncomp_result_files(model, tmp_path):
    out = tmp_path / "out.txt"
    prop = _vnnlib(tmp_path, "reach.vnnlib",
                   "(assert (or (and (>= Y_0 2.0)) (and (>= Y_1 100.0))))")
    r = _nnres("vnncomp", model, prop, out, 20)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("sat\n")
    xs = {int(i): float(v) for i, v in re.findall(r"\(X_(\d+) ([^\s()]+)\)", text)}
    ys = {int(i): float(v) for i, v in re.findall(r"\(Y_(\d+) ([^\s()]+)\)", text)}
    x = np.array([xs[0], xs[1]])
    assert np.allclose(_forward(x), [ys[0], ys[1]]) and ys[0] >= 2.0
    far = _vnnlib(tmp_path, "far.vnnlib", "(assert (>= Y_0 50.0))")
    r = _nnres("vnncomp", model, far, out, 20, "--bounds", "interval")
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "unsat\n"


def test_workers_share_the_split_search(model, tmp_path):
    """``--workers 2`` gives the serial verdicts (holds needs the split search here)."""
    near = _vnnlib(tmp_path, "near.vnnlib", "(assert (>= Y_0 3.2))")     # max y0 is 3
    reach = _vnnlib(tmp_path, "reach.vnnlib", "(assert (>= Y_0 2.0))")
    for prop, word in ((near, "holds (unsat)"), (reach, "violated (sat)")):
        serial = _nnres("verify", model, prop, "--timeout", "60")
        shared = _nnres("verify", model, prop, "--timeout", "60", "--workers", "2")
        assert serial.returncode == 0 and shared.returncode == 0, shared.stderr
        assert serial.stdout.splitlines()[0] == word
        assert shared.stdout.splitlines()[0] == word
    assert _nnres("verify", model, near, "--workers", "0").returncode == 2


def test_bad_input_exits_2_and_writes_error(model, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("unsat\n")                      # a stale answer of an earlier run
    prop = _vnnlib(tmp_path, "p.vnnlib", "(assert (>= Y_0 2.0))")
    r = _nnres("vnncomp", tmp_path / "missing.onnx", prop, out, 5)
    assert r.returncode == 2 and r.stderr.startswith("error:")
    assert out.read_text() == "error\n"            # VNN-COMP's word, never the old answer
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (>= X_0 \n")
    r = _nnres("verify", model, bad)
    assert r.returncode == 2 and "error:" in r.stderr
    r = _nnres("verify", model, prop, "--engine", "nonsense")
    assert r.returncode == 2


def test_timeout_is_honoured(shared_benchmarks, tmp_path):
    """A hard ACAS Xu instance with a 1 s limit answers 'timeout' well within the limit."""
    acas = shared_benchmarks / "acasxu"
    out = tmp_path / "out.txt"
    t0 = time.monotonic()
    r = _nnres("vnncomp", acas / "ACASXU_run2a_1_1_batch_2000.onnx", acas / "prop_1.vnnlib",
               out, 1, timeout=60)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert out.read_text().split()[0] in ("timeout", "unsat")
    assert elapsed < 20.0
