"""Every benchmark ONNX network: the IR forward agrees with onnxruntime on random points of
the benchmark's VNN-LIB input boxes (float32 ONNX vs float64 IR: 1e-5 abs or relative)."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.loaders import load_network
from nnresilience.loaders.onnx import onnxruntime_forward
from nnresilience.spec.vnnlib import read_vnnlib

pytestmark = pytest.mark.benchmarks


def _agree(net, x):
    ref = onnxruntime_forward(net, x)
    got = net.forward(x)
    assert got.shape == ref.shape
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    assert float(err.max()) <= 1e-5, f"{net.name}: max scaled error {err.max():.3g}"


def test_all_acasxu_networks_agree_with_onnxruntime(shared_benchmarks):
    nets = sorted((shared_benchmarks / "acasxu").glob("*.onnx"))
    props = sorted((shared_benchmarks / "acasxu").glob("prop_*.vnnlib"))
    assert len(nets) == 45 and props
    boxes = [c.region for p in props for c in read_vnnlib(p, 5, 5).cases]
    rng = np.random.default_rng(0)
    for k, path in enumerate(nets):
        net = load_network(path)
        assert net.n_inputs == 5 and net.n_outputs == 5 and len(net.layers) == 13
        x = np.concatenate([boxes[(k + j) % len(boxes)].sample(5, rng) for j in range(4)])
        _agree(net, x)


def test_all_mnistfc_networks_agree_with_onnxruntime(shared_benchmarks):
    nets = sorted((shared_benchmarks / "mnistfc").glob("*.onnx"))
    assert len(nets) == 3
    rng = np.random.default_rng(1)
    props = sorted((shared_benchmarks / "mnistfc").glob("prop_*_0.05.vnnlib"))[:4]
    boxes = [read_vnnlib(p, 784, 10).cases[0].region for p in props]
    for path in nets:
        net = load_network(path)
        assert net.n_inputs == 784 and net.n_outputs == 10 and not net.softmax
        x = np.concatenate([b.sample(5, rng) for b in boxes])
        _agree(net, x)
