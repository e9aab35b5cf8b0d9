"""NNet loader: a small file written by the test, checked against a direct numpy
evaluation of the NNet semantics (normalise, ReLU layers, de-normalise)."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.errors import ModelLoadError
from nnresilience.loaders import load_network
from nnresilience.loaders.nnet import load_nnet, write_nnet


def _reference(weights, mean, rng_, x):
    n = len(mean) - 1
    h = (x - mean[:n]) / rng_[:n]
    for k, (W, b) in enumerate(weights):
        h = h @ W.T + b
        if k < len(weights) - 1:
            h = np.maximum(h, 0.0)
    return h * rng_[n] + mean[n]


@pytest.fixture
def nnet_file(tmp_path):
    r = np.random.default_rng(3)
    sizes = [4, 6, 5, 3]
    weights = [(r.normal(size=(sizes[k + 1], sizes[k])), r.normal(size=sizes[k + 1]))
               for k in range(3)]
    lo, hi = -np.arange(1, 5, dtype=float), np.arange(1, 5, dtype=float) * 2
    mean = np.array([0.5, -1.0, 2.0, 0.0, 7.5])
    rng_ = np.array([2.0, 4.0, 0.5, 1.0, 3.0])
    path = tmp_path / "small.nnet"
    write_nnet(path, weights, lo, hi, mean, rng_)
    return path, weights, lo, hi, mean, rng_


def test_nnet_round_trip_raw_inputs(nnet_file):
    path, weights, lo, hi, mean, rng_ = nnet_file
    net = load_network(path)
    assert net.source_format == "nnet" and net.n_inputs == 4 and net.n_outputs == 3
    np.testing.assert_array_equal(net.input_lo, lo)
    np.testing.assert_array_equal(net.input_hi, hi)
    x = np.random.default_rng(0).uniform(lo, hi, size=(50, 4))
    np.testing.assert_allclose(net.forward(x), _reference(weights, mean, rng_, x),
                               rtol=1e-12, atol=1e-12)
    assert [layer.kind for layer in net.layers] == ["affine", "relu", "affine", "relu",
                                                    "affine"]


def test_nnet_without_normalisation(nnet_file):
    path, weights, lo, hi, mean, rng_ = nnet_file
    net = load_nnet(path, normalize=False)
    x = np.random.default_rng(1).normal(size=(10, 4))
    ident_mean = np.zeros(5)
    ident_rng = np.ones(5)
    np.testing.assert_allclose(net.forward(x), _reference(weights, ident_mean, ident_rng, x),
                               rtol=1e-12, atol=1e-12)


def test_nnet_truncated(nnet_file, tmp_path):
    path = nnet_file[0]
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.nnet"
    bad.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(ModelLoadError, match="truncated"):
        load_network(bad)
    bad.write_text("\n".join(lines[:4] + ["1,2,x"] + lines[5:]))
    with pytest.raises(ModelLoadError, match="bad.nnet:5"):
        load_network(bad)
