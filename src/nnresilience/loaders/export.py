"""Write a :class:`Network` as an ONNX model (Gemm + activation nodes).

Why: users convert NNet or PyTorch models to ONNX to run them in other verifiers, and our
tests build small ONNX models from the IR instead of hand-writing graphs. Weights are
stored as float32 (what onnxruntime evaluates), so the written model agrees with the IR
to float32 rounding; round-tripping through :func:`~nnresilience.loaders.onnx.load_onnx`
gives the float32-rounded IR. Max-pool index groups have no faithful single-operator
ONNX form that our loader reads back, so they are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnresilience.network.layers import Affine
from nnresilience.network.model import Network

_ACTIVATION_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "arctan": "Atan"}


def save_onnx(network: Network, path: str | Path, opset: int = 13) -> Path:
    """Write ``network`` to ``path`` with input ``x`` of shape [1, n] and output ``y``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "x"
    for i, layer in enumerate(network.layers):
        out = "y" if i == len(network.layers) - 1 and not network.softmax else f"h{i}"
        if isinstance(layer, Affine):
            W = np.asarray(layer.dense_W(), dtype=np.float32)
            b = np.asarray(layer.b, dtype=np.float32)
            inits += [numpy_helper.from_array(W, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [out], transB=1,
                                          name=f"gemm{i}"))
        elif layer.kind == "leaky_relu":
            nodes.append(helper.make_node("LeakyRelu", [cur], [out], alpha=layer.slope,
                                          name=f"leaky{i}"))
        elif layer.kind in _ACTIVATION_OPS:
            nodes.append(helper.make_node(_ACTIVATION_OPS[layer.kind], [cur], [out],
                                          name=f"{layer.kind}{i}"))
        else:
            raise ValueError(f"cannot export layer {i} ({layer.describe()}) to ONNX")
        cur = out
    if network.softmax:
        nodes.append(helper.make_node("Softmax", [cur], ["y"], axis=1, name="softmax"))
    graph = helper.make_graph(
        nodes, network.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, network.n_inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, network.n_outputs])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=8, producer_name="nnresilience")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
