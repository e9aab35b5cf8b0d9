"""Properties on models that end in a softmax the IR leaves out (verification reasons on the
logits): thresholds on probabilities are refused, output comparisons are decided and their
counterexample reports the model's own outputs (the probabilities onnxruntime computes)."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.errors import SpecParseError
from nnresilience.loaders import load_network
from nnresilience.loaders.export import save_onnx
from nnresilience.loaders.onnx import onnxruntime_forward
from nnresilience.network import Affine, Network
from nnresilience.network.layers import ReLU
from nnresilience.results import Status
from nnresilience.spec.vnnlib import read_vnnlib
from nnresilience.verify import verify

BOX = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
       "(declare-const Y_1 Real)\n(declare-const Y_2 Real)\n(assert (>= X_0 -1.0))\n"
       "(assert (<= X_0 1.0))\n(assert (>= X_1 -1.0))\n(assert (<= X_1 1.0))\n")


@pytest.fixture(scope="module")
def softmax_net(tmp_path_factory):
    net = Network([Affine(np.array([[1.0, 0.5], [-1.0, 0.3], [0.2, -0.4]]),
                          np.array([0.1, 0.0, -0.2])), ReLU(3),
                   Affine(np.array([[1.0, -1.0, 0.5], [0.3, 0.8, -0.2], [-0.5, 0.2, 1.0]]),
                          np.zeros(3))], softmax=True)
    return load_network(save_onnx(net, tmp_path_factory.mktemp("sm") / "sm.onnx"))


@pytest.mark.parametrize("out", ["(>= Y_0 1.5)", "(<= Y_0 -0.5)", "(>= Y_1 0.0)",
                                 "(>= (- Y_0 Y_1) 0.1)", "(>= Y_0 (* 2.0 Y_1))"])
def test_a_threshold_on_probabilities_is_refused(softmax_net, out):
    # on the logits "Y_0 >= 1.5" is reachable, on the probabilities it is not: deciding
    # it on the logits answered "violated" with a witness onnxruntime rejects
    prop = read_vnnlib("p.vnnlib", text=BOX + f"(assert {out})\n")
    with pytest.raises(SpecParseError, match="Softmax"):
        verify(softmax_net, prop, timeout=5.0)


def test_an_output_comparison_is_decided_and_reports_probabilities(softmax_net):
    prop = read_vnnlib("p.vnnlib", text=BOX + "(assert (or (>= Y_1 Y_0) (and (<= Y_0 Y_2) "
                                              "(>= Y_2 Y_1))))\n")
    res = verify(softmax_net, prop, timeout=5.0)
    assert res.status is Status.VIOLATED
    x = res.counterexample.x_array
    y_model = onnxruntime_forward(softmax_net, x)
    assert np.allclose(res.counterexample.y_array, y_model, atol=1e-6)
    assert abs(sum(res.counterexample.y) - 1.0) < 1e-12
    assert bool(prop.cases[0].unsafe.satisfied(res.counterexample.y_array))
