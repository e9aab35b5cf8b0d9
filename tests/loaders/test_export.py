"""save_onnx writes models that onnxruntime and our loader read back as the same function."""

import numpy as np
import pytest

from nnresilience.loaders import load_network
from nnresilience.loaders.export import save_onnx
from nnresilience.loaders.onnx import onnxruntime_forward
from nnresilience.network import Affine, LeakyReLU, MaxPool, Network, ReLU, Tanh


def test_round_trip_through_onnxruntime_and_loader(tmp_path, rng):
    net = Network([Affine(rng.normal(size=(5, 3)), rng.normal(size=5)), LeakyReLU(5, 0.1),
                   Affine(rng.normal(size=(4, 5)), rng.normal(size=4)), Tanh(4),
                   Affine(rng.normal(size=(2, 4)), rng.normal(size=2)), ReLU(2)])
    path = save_onnx(net, tmp_path / "m.onnx")
    back = load_network(path)
    x = rng.uniform(-1, 1, size=(20, 3))
    assert np.allclose(back.forward(x), net.forward(x), atol=1e-5)
    assert np.allclose(onnxruntime_forward(back, x), net.forward(x), atol=1e-5)


def test_softmax_flag_is_written_and_read(tmp_path, rng):
    net = Network([Affine(rng.normal(size=(3, 2)), np.zeros(3))], softmax=True)
    back = load_network(save_onnx(net, tmp_path / "s.onnx"))
    assert back.softmax


def test_maxpool_is_refused(tmp_path):
    net = Network([MaxPool(np.array([[0, 1]]), n_in=2)])
    with pytest.raises(ValueError, match="cannot export"):
        save_onnx(net, tmp_path / "p.onnx")
