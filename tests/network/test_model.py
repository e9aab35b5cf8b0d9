"""The Network container: shape checks, the forward pass, merging, hashing."""

import numpy as np
import pytest
import scipy.sparse as sp

from nnresilience.errors import ShapeMismatchError
from nnresilience.network import Affine, LeakyReLU, MaxPool, Network, ReLU, Sigmoid


def _net(rng):
    return Network([Affine(rng.normal(size=(4, 3)), rng.normal(size=4)), ReLU(4),
                    Affine(rng.normal(size=(4, 4)), rng.normal(size=4)),
                    Affine(sp.csr_matrix(rng.normal(size=(2, 4))), np.zeros(2))])


def test_forward_matches_numpy(rng):
    net = _net(rng)
    x = rng.normal(size=(5, 3))
    W0, b0 = net.layers[0].W, net.layers[0].b
    h = np.maximum(x @ W0.T + b0, 0)
    h = h @ net.layers[2].W.T + net.layers[2].b
    expected = h @ net.layers[3].W.toarray().T
    assert np.allclose(net.forward(x), expected)
    assert net.forward(x[0]).shape == (2,)
    assert len(net.forward_all(x)) == 5


def test_merged_is_the_same_function(rng):
    net = _net(rng)
    m = net.merged()
    assert len(m.layers) == 3
    x = rng.normal(size=(7, 3))
    assert np.allclose(net.forward(x), m.forward(x))
    lead = Network([ReLU(3), Affine(np.ones((1, 3)), np.zeros(1))]).merged()
    assert lead.layers[0].kind == "affine"


def test_layer_size_mismatch_is_reported():
    with pytest.raises(ShapeMismatchError, match="outputs 4 values"):
        Network([Affine(np.ones((4, 2)), np.zeros(4)), ReLU(3)])


def test_wrong_input_size_is_reported(rng):
    with pytest.raises(ShapeMismatchError, match="expects 3"):
        _net(rng).forward(np.zeros(4))


def test_content_hash_changes_with_weights(rng):
    net = _net(rng)
    h = net.content_hash()
    assert h == net.content_hash()
    net.layers[0].W[0, 0] += 1e-9
    assert h != net.content_hash()


def test_activations_and_maxpool():
    x = np.array([[-2.0, 0.5, 3.0, -1.0]])
    assert np.allclose(LeakyReLU(4, 0.1).forward(x), [[-0.2, 0.5, 3.0, -0.1]])
    mp = MaxPool(np.array([[0, 1], [2, 3]]), n_in=4)
    assert np.allclose(mp.forward(x), [[0.5, 3.0]])
    lo, hi = mp.interval(np.array([-1, 0, 1, 2.0]), np.array([0, 1, 2, 3.0]))
    assert np.allclose(lo, [0, 2]) and np.allclose(hi, [1, 3])
    s = Sigmoid(3).forward(np.array([[-1000.0, 0.0, 1000.0]]))
    assert np.allclose(s, [[0.0, 0.5, 1.0]])
    with pytest.raises(ValueError):
        LeakyReLU(2, 1.5)


def test_probabilities_sum_to_one(rng):
    p = _net(rng).probabilities(rng.normal(size=(3, 3)))
    assert np.allclose(p.sum(axis=1), 1.0)
