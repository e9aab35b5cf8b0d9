"""PyTorch loader: nn.Sequential models agree with torch's forward within 1e-6."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.errors import ModelLoadError, UnsupportedOperatorError
from nnresilience.loaders import load_network

torch = pytest.importorskip("torch")
nn = torch.nn

from nnresilience.loaders.torch import from_torch  # noqa: E402


def _compare(model, input_shape, n=8, seed=0):
    torch.manual_seed(seed)
    model = model.double().eval()
    net = from_torch(model, input_shape)
    x = np.random.default_rng(seed).normal(size=(n,) + tuple(input_shape))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().reshape(n, -1)
    np.testing.assert_allclose(net.forward(x.reshape(n, -1)), ref, rtol=1e-6, atol=1e-6)
    return net


def test_fully_connected_with_all_activations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.LeakyReLU(0.1),
                          nn.Sequential(nn.Linear(8, 7), nn.Tanh()), nn.Linear(7, 5),
                          nn.Sigmoid(), nn.Linear(5, 3))
    net = _compare(model, (6,))
    assert [layer.kind for layer in net.layers] == [
        "affine", "relu", "affine", "leaky_relu", "affine", "tanh", "affine", "sigmoid",
        "affine"]


def test_convolutional_with_pooling():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride=1, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2, padding=1), nn.Conv2d(4, 3, 3, stride=2, groups=1),
                          nn.ReLU(), nn.AvgPool2d(2, stride=1, padding=1,
                                                  count_include_pad=False),
                          nn.Flatten(), nn.Linear(3 * 3 * 3, 4))
    net = _compare(model, (2, 9, 9))
    assert "maxpool" in [layer.kind for layer in net.layers]


def test_unsupported_module():
    model = nn.Sequential(nn.Linear(3, 3), nn.GELU())
    with pytest.raises(UnsupportedOperatorError, match="GELU"):
        from_torch(model, (3,))


def test_pt_file_round_trip(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    path = tmp_path / "m.pt"
    torch.save(model, path)
    net = load_network(path)
    x = np.random.default_rng(0).normal(size=(4, 4))
    with torch.no_grad():
        ref = model(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-5, atol=1e-6)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match="state_dict"):
        load_network(tmp_path / "sd.pt")
