"""Small builders for synthetic ONNX models used by the loader tests.

Weights and inputs are multiples of 1/8 (1/16 for inputs) in a small range, so float32
arithmetic in onnxruntime is exact for the linear parts and a comparison with the float64
IR at 1e-6 tests the translation, not float32 rounding.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def dyadic(rng: np.random.Generator, shape, scale: int = 8, span: int = 8) -> np.ndarray:
    return (rng.integers(-span, span + 1, size=shape) / scale).astype(np.float32)


def init(name: str, arr) -> onnx.TensorProto:
    arr = np.asarray(arr)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return numpy_helper.from_array(arr, name)


def make_model(nodes, input_shape, inits=(), path: Path | None = None, input_name: str = "x",
               output_name: str = "y", extra_inputs=(), opset: int = 13) -> onnx.ModelProto:
    """A model with one float input ``x`` of ``input_shape`` and one output ``y``."""
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in extra_inputs]
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)
    graph = helper.make_graph(list(nodes), "synthetic", inputs, [out],
                              initializer=list(inits))
    model = helper.make_model(graph, ir_version=8,
                              opset_imports=[helper.make_opsetid("", opset)])
    if path is not None:
        onnx.save(model, str(path))
    return model


@pytest.fixture
def ox():
    """The builders above, as a fixture (tests are imported in importlib mode)."""
    return SimpleNamespace(dyadic=dyadic, init=init, make_model=make_model, helper=helper,
                           TensorProto=TensorProto)
