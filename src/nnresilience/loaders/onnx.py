"""ONNX loader: an ONNX graph with one data input becomes a :class:`Network` over flat vectors.

How the translation stays exact:

- Every tensor that depends on the data input is tracked symbolically by a
  :class:`~nnresilience.loaders._chain.ChainBuilder` (its shape, and the pending linear map
  from the last written layer). Linear operators compose into that map, so consecutive
  affine maps come out merged and index permutations (Transpose/Reshape of NCHW tensors)
  cost nothing.
- Tensors that do not depend on the data (initializers, ``Constant``, ``Shape`` of a data
  tensor, arithmetic on those) are folded to numpy arrays with ONNX's own reference
  evaluator, so PyTorch-style ``Shape -> Gather -> Concat -> Reshape`` chains load.
- Anything else is refused with :class:`UnsupportedOperatorError` naming the operator,
  the node and the supported list: never a silent mis-translation. Softmax is accepted only
  as the last operator (``Network.softmax = True``; verification reasons on the logits).

onnxruntime is used only to *check* a loaded network (:func:`onnxruntime_forward`), never
to load it. ONNX models usually compute in float32 while the IR computes in float64, so
agreement is expected to about 1e-6 relative, not bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from nnresilience.errors import ModelLoadError, UnsupportedOperatorError
from nnresilience.loaders._chain import (
    ChainBuilder,
    avgpool_matrix,
    conv2d_matrix,
    maxpool_groups,
)
from nnresilience.network.layers import Arctan, LeakyReLU, ReLU, Sigmoid, Tanh
from nnresilience.network.model import Network

SUPPORTED_OPS: tuple[str, ...] = (
    "Add", "Atan", "AveragePool", "BatchNormalization", "Constant", "Conv", "Div", "Dropout",
    "Flatten", "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu", "MatMul", "MaxPool",
    "Mul", "Neg", "Relu", "Reshape", "Shape", "Sigmoid", "Softmax", "Squeeze", "Sub", "Tanh",
    "Transpose", "Unsqueeze",
)
"""Operators accepted on the data path (any operator is accepted on constants only)."""


@dataclass
class _Data:
    """A tensor that depends on the network input: its shape and the builder state it
    belongs to (``stamp``). Consuming a tensor whose stamp is stale means the graph
    branches, which a chain of layers cannot express."""

    shape: tuple[int, ...]
    stamp: int


class _Translator:
    def __init__(self, model: Any, path: str) -> None:
        from onnx import numpy_helper

        self.model = model
        self.path = path
        g = model.graph
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          13)
        data_inputs = [i for i in g.input if i.name not in self.consts]
        if len(data_inputs) != 1:
            names = ", ".join(i.name for i in data_inputs) or "none"
            raise ModelLoadError(f"{path}: the model has {len(data_inputs)} data inputs "
                                 f"({names}); exactly one is supported")
        if len(g.output) != 1:
            raise ModelLoadError(f"{path}: the model has {len(g.output)} outputs; exactly one "
                                 "is supported")
        inp = data_inputs[0]
        self.input_name = inp.name
        dims = []
        self.dynamic_batch = False
        for k, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif k == 0:
                dims.append(1)
                self.dynamic_batch = True
            else:
                raise ModelLoadError(f"{path}: input {inp.name!r} has a symbolic dimension "
                                     f"{k}; only the batch dimension may be dynamic")
        if not dims:
            raise ModelLoadError(f"{path}: input {inp.name!r} has no shape")
        self.input_shape = tuple(dims)
        self.builder = ChainBuilder(self.input_shape)
        self.stamp = 0
        self.data: dict[str, _Data] = {inp.name: _Data(self.input_shape, 0)}
        self.output_name = g.output[0].name
        self.softmax = False
        self.inferred = self._inferred_shapes()

    # ------------------------------------------------------------ helpers
    def _inferred_shapes(self) -> dict[str, tuple[int, ...]]:
        """Static shapes from onnx shape inference, used to cross-check our own tracking."""
        import onnx

        try:
            m = onnx.shape_inference.infer_shapes(self.model)
        except Exception:  # inference is advisory only; our own shape tracking decides
            return {}
        out = {}
        for vi in list(m.graph.value_info) + list(m.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
                out[vi.name] = tuple(int(d.dim_value) for d in dims)
        return out

    def unsupported(self, node: Any, detail: str = "") -> UnsupportedOperatorError:
        return UnsupportedOperatorError(node.op_type, node.name or node.output[0],
                                        SUPPORTED_OPS, detail, source=self.path)

    def take(self, node: Any, name: str) -> _Data:
        """The data tensor ``name``, checking that it is the current head of the chain."""
        d = self.data[name]
        if d.stamp != self.stamp:
            raise self.unsupported(node, "the graph branches: a data tensor is used after "
                                         "another path changed the chain")
        return d

    def emit(self, node: Any, name: str) -> None:
        """Record the builder's current tensor as ``name`` (a new chain state)."""
        self.stamp += 1
        shape = self.builder.shape
        exp = self.inferred.get(name)
        if exp is not None and len(exp) == len(shape) and (
                exp[1:] != shape[1:] or (exp[0] != shape[0] and not self.dynamic_batch)):
            raise ModelLoadError(f"{self.path}: internal shape mismatch at node "
                                 f"{node.name or name!r}: tracked {shape}, onnx says {exp}")
        self.data[name] = _Data(shape, self.stamp)

    def const(self, node: Any, name: str, what: str) -> np.ndarray:
        if name in self.data:
            raise self.unsupported(node, f"{what} must be a constant, not a data tensor")
        if name not in self.consts:
            raise ModelLoadError(f"{self.path}: node {node.name!r} reads {name!r}, which is "
                                 "neither an initializer nor computed before")
        return self.consts[name]

    def opt_const(self, node: Any, i: int) -> np.ndarray | None:
        if len(node.input) <= i or not node.input[i]:
            return None
        return self.const(node, node.input[i], f"input {i}")

    # ----------------------------------------------------------- main loop
    def run(self) -> Network:
        from onnx import helper

        for node in self.model.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            data_in = [n for n in node.input if n and n in self.data]
            if not data_in:
                self.fold(node)
                continue
            handler = _HANDLERS.get(node.op_type)
            if handler is None or (node.domain not in ("", "ai.onnx")):
                raise self.unsupported(node)
            try:
                handler(self, node, attrs)
            except (UnsupportedOperatorError, ModelLoadError):
                raise
            except (ValueError, IndexError) as exc:
                raise ModelLoadError(f"{self.path}: cannot translate node {node.name!r} "
                                     f"({node.op_type}): {exc}") from exc
        out = self.output_name
        if out not in self.data:
            raise ModelLoadError(f"{self.path}: the output {out!r} does not depend on the input")
        if self.data[out].stamp != self.stamp:
            raise ModelLoadError(f"{self.path}: the output {out!r} is not the end of the chain")
        layers = self.builder.finish()
        shape = self.input_shape
        ir_shape = shape[1:] if len(shape) > 1 and shape[0] == 1 else shape
        return Network(layers, input_shape=ir_shape, softmax=self.softmax,
                       name=Path(self.path).stem, source=str(self.path),
                       source_format="onnx", onnx_input_name=self.input_name,
                       onnx_input_shape=shape, output_names=None)

    def fold(self, node: Any) -> None:
        """Evaluate a node whose inputs are all constants with the ONNX reference evaluator."""
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        if node.op_type == "Constant":
            attr = node.attribute[0]
            v = helper.get_attribute_value(attr)
            if attr.name == "value":
                arr = numpy_helper.to_array(v)
            elif attr.name in ("value_float", "value_int"):
                arr = np.array(v)
            elif attr.name in ("value_floats", "value_ints"):
                arr = np.array(list(v))
            else:
                raise self.unsupported(node, f"Constant attribute {attr.name!r}")
            self.consts[node.output[0]] = arr
            return
        feeds = {n: self.consts[n] for n in node.input if n}
        missing = [n for n in node.input if n and n not in self.consts]
        if missing:
            raise ModelLoadError(f"{self.path}: node {node.name!r} reads undefined tensor "
                                 f"{missing[0]!r}")
        try:
            inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(
                feeds[n].dtype), feeds[n].shape) for n in feeds]
            outputs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
            g = helper.make_graph([node], "fold", inputs, outputs)
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
            res = ReferenceEvaluator(m).run(None, feeds)
        except Exception as exc:  # folding failed: report as an unsupported constant op
            raise self.unsupported(node, f"cannot fold constant node: {exc}".replace("\n", " ")
                                   ) from exc
        for name, val in zip([o for o in node.output if o], res, strict=False):
            self.consts[name] = np.asarray(val)


# ------------------------------------------------------------------ handlers
Handler = Callable[[_Translator, Any, dict], None]


def _alias(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    t.data[node.output[0]] = d


def _dropout(t: _Translator, node: Any, attrs: dict) -> None:
    # Inference mode: identity. A requested mask output has no meaning here.
    if len(node.input) > 2 and node.input[2]:
        mode = t.const(node, node.input[2], "training_mode")
        if bool(np.asarray(mode).reshape(-1)[0]):
            raise t.unsupported(node, "training_mode=True")
    _alias(t, node, attrs)


def _act(cls: type, **fixed) -> Handler:
    def h(t: _Translator, node: Any, attrs: dict) -> None:
        t.take(node, node.input[0])
        t.builder.activation(cls, **fixed)
        t.emit(node, node.output[0])
    return h


def _leaky(t: _Translator, node: Any, attrs: dict) -> None:
    alpha = float(attrs.get("alpha", 0.01))
    if not 0.0 <= alpha < 1.0:
        raise t.unsupported(node, f"LeakyRelu alpha={alpha:g}; need 0 <= alpha < 1")
    t.take(node, node.input[0])
    t.builder.activation(LeakyReLU, slope=alpha)
    t.emit(node, node.output[0])


def _softmax(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    if node.output[0] != t.output_name:
        raise t.unsupported(node, "Softmax is supported only as the final operator")
    rank = len(d.shape)
    axis = int(attrs.get("axis", -1 if t.opset >= 13 else 1)) % rank
    # Softmax over one axis only; everything else must be trivial for it to be the
    # classifier's normalisation over the logits.
    other = [s for k, s in enumerate(d.shape) if k != axis and (t.opset >= 13 or k < axis)]
    if any(s != 1 for s in other):
        raise t.unsupported(node, f"Softmax over axis {axis} of shape {d.shape}")
    t.softmax = True
    t.data[node.output[0]] = d


def _flatten(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    axis = int(attrs.get("axis", 1))
    axis = axis + len(d.shape) if axis < 0 else axis
    t.builder.reshape((int(np.prod(d.shape[:axis])), int(np.prod(d.shape[axis:]))))
    t.emit(node, node.output[0])


def _reshape(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    target = [int(v) for v in t.const(node, node.input[1], "shape").reshape(-1)]
    allowzero = int(attrs.get("allowzero", 0))
    shape = [d.shape[k] if (v == 0 and not allowzero) else v for k, v in enumerate(target)]
    if shape.count(-1) > 1:
        raise ValueError("more than one -1 in Reshape target")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = t.builder.size // max(known, 1)
    t.builder.reshape(tuple(shape))
    t.emit(node, node.output[0])


def _axes(t: _Translator, node: Any, attrs: dict) -> list[int] | None:
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    c = t.opt_const(node, 1)
    return None if c is None else [int(a) for a in c.reshape(-1)]


def _squeeze(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    axes = _axes(t, node, attrs)
    rank = len(d.shape)
    if axes is None:
        axes = [k for k, s in enumerate(d.shape) if s == 1]
    axes = [a % rank for a in axes]
    if any(d.shape[a] != 1 for a in axes):
        raise ValueError(f"cannot squeeze axes {axes} of shape {d.shape}")
    t.builder.reshape(tuple(s for k, s in enumerate(d.shape) if k not in axes))
    t.emit(node, node.output[0])


def _unsqueeze(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    axes = _axes(t, node, attrs) or []
    rank = len(d.shape) + len(axes)
    axes = sorted(a % rank for a in axes)
    shape = list(d.shape)
    for a in axes:
        shape.insert(a, 1)
    t.builder.reshape(tuple(shape))
    t.emit(node, node.output[0])


def _transpose(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    perm = attrs.get("perm")
    perm = tuple(int(p) for p in perm) if perm is not None else tuple(
        reversed(range(len(d.shape))))
    t.builder.transpose(perm)
    t.emit(node, node.output[0])


def _shape(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.data[node.input[0]]
    rank = len(d.shape)
    start = int(attrs.get("start", 0))
    end = int(attrs.get("end", rank))
    t.consts[node.output[0]] = np.array(d.shape, dtype=np.int64)[start:end]


def _binary(t: _Translator, node: Any, attrs: dict) -> None:
    """Add/Sub/Mul/Div of the data tensor with a constant: an elementwise affine map."""
    a, b = node.input[0], node.input[1]
    if a in t.data and b in t.data:
        raise t.unsupported(node, "both operands depend on the input")
    data_first = a in t.data
    d = t.take(node, a if data_first else b)
    c = np.asarray(t.const(node, b if data_first else a, "the other operand"),
                   dtype=np.float64)
    out_shape = np.broadcast_shapes(d.shape, c.shape)
    t.builder.broadcast_to(out_shape)
    op = node.op_type
    if op == "Add":
        t.builder.scale_shift(None, c)
    elif op == "Sub":
        if data_first:
            t.builder.scale_shift(None, -c)
        else:
            t.builder.scale_shift(-1.0, c)
    elif op == "Mul":
        t.builder.scale_shift(c, None)
    elif op == "Div":
        if not data_first:
            raise t.unsupported(node, "division by a tensor that depends on the input")
        if np.any(c == 0):
            raise t.unsupported(node, "division by zero constant")
        t.builder.scale_shift(1.0 / c, None)
    t.emit(node, node.output[0])


def _neg(t: _Translator, node: Any, attrs: dict) -> None:
    t.take(node, node.input[0])
    t.builder.scale_shift(-1.0, None)
    t.emit(node, node.output[0])


def _right_matmul(t: _Translator, node: Any, shape: tuple[int, ...], W: np.ndarray
                  ) -> tuple[int, ...]:
    """Apply ``X @ W`` (W constant, 2-D (K, N)) to the data tensor X of shape (..., K)."""
    K, N = W.shape
    if shape[-1] != K:
        raise ValueError(f"MatMul: data shape {shape} does not fit weight {W.shape}")
    rows = int(np.prod(shape[:-1]))
    M = W.T if rows == 1 else sp.kron(sp.identity(rows, format="csr"), sp.csr_matrix(W.T),
                                      format="csr")
    new = tuple(shape[:-1]) + (N,)
    t.builder.linear(M, None, new)
    return new


def _left_matmul(t: _Translator, node: Any, shape: tuple[int, ...], C: np.ndarray
                 ) -> tuple[int, ...]:
    """Apply ``C @ X`` (C constant (M, K)) to the data tensor X of shape (..., K, N)."""
    Mr, K = C.shape
    if len(shape) == 1:
        if shape[0] != K:
            raise ValueError(f"MatMul: weight {C.shape} does not fit data shape {shape}")
        t.builder.linear(C, None, (Mr,))
        return (Mr,)
    if shape[-2] != K:
        raise ValueError(f"MatMul: weight {C.shape} does not fit data shape {shape}")
    N = shape[-1]
    batch = int(np.prod(shape[:-2]))
    M = sp.kron(sp.csr_matrix(C), sp.identity(N, format="csr"), format="csr")
    if batch > 1:
        M = sp.kron(sp.identity(batch, format="csr"), M, format="csr")
    new = tuple(shape[:-2]) + (Mr, N)
    t.builder.linear(M, None, new)
    return new


def _matmul(t: _Translator, node: Any, attrs: dict) -> None:
    a, b = node.input[0], node.input[1]
    if a in t.data and b in t.data:
        raise t.unsupported(node, "both operands depend on the input")
    if a in t.data:
        d = t.take(node, a)
        W = np.asarray(t.const(node, b, "the weight"), dtype=np.float64)
        if W.ndim == 1:
            _right_matmul(t, node, d.shape, W[:, None])
            t.builder.reshape(d.shape[:-1])
        elif W.ndim == 2:
            if len(d.shape) == 1:
                t.builder.reshape((1, d.shape[0]))
                _right_matmul(t, node, (1, d.shape[0]), W)
                t.builder.reshape((W.shape[1],))
            else:
                _right_matmul(t, node, d.shape, W)
        else:
            raise t.unsupported(node, f"batched constant weight of shape {W.shape}")
    else:
        d = t.take(node, b)
        C = np.asarray(t.const(node, a, "the weight"), dtype=np.float64)
        if C.ndim == 1:
            C = C[None, :]
            new = _left_matmul(t, node, d.shape, C)
            t.builder.reshape(new[:-2] + new[-1:] if len(new) > 1 else ())
        elif C.ndim == 2:
            _left_matmul(t, node, d.shape, C)
        else:
            raise t.unsupported(node, f"batched constant weight of shape {C.shape}")
    t.emit(node, node.output[0])


def _gemm(t: _Translator, node: Any, attrs: dict) -> None:
    a, b = node.input[0], node.input[1]
    alpha = float(attrs.get("alpha", 1.0))
    beta = float(attrs.get("beta", 1.0))
    ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    if a in t.data and b in t.data:
        raise t.unsupported(node, "both operands depend on the input")
    if a in t.data:
        d = t.take(node, a)
        if len(d.shape) != 2:
            raise ValueError(f"Gemm input A must be 2-D, got {d.shape}")
        if ta:
            t.builder.transpose((1, 0))
        B = np.asarray(t.const(node, b, "B"), dtype=np.float64)
        B = B.T if tb else B
        new = _right_matmul(t, node, t.builder.shape, alpha * B)
    else:
        d = t.take(node, b)
        if len(d.shape) != 2:
            raise ValueError(f"Gemm input B must be 2-D, got {d.shape}")
        if tb:
            t.builder.transpose((1, 0))
        A = np.asarray(t.const(node, a, "A"), dtype=np.float64)
        A = A.T if ta else A
        new = _left_matmul(t, node, t.builder.shape, alpha * A)
    C = t.opt_const(node, 2)
    if C is not None and beta != 0.0:
        t.builder.scale_shift(None, np.broadcast_to(beta * np.asarray(C, np.float64), new))
    t.emit(node, node.output[0])


def _spatial_attrs(t: _Translator, node: Any, attrs: dict, in_hw: tuple[int, int],
                   kernel: tuple[int, int]) -> tuple[tuple, tuple, tuple]:
    """(strides, pads (top, left, bottom, right), dilations) with auto_pad resolved."""
    strides = tuple(int(s) for s in attrs.get("strides", (1, 1)))
    dil = tuple(int(s) for s in attrs.get("dilations", (1, 1)))
    pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        lo, hi = [], []
        for size, k, s, dl in zip(in_hw, kernel, strides, dil, strict=True):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * dl + 1 - size, 0)
            small, big = total // 2, total - total // 2
            lo.append(small if auto == "SAME_UPPER" else big)
            hi.append(big if auto == "SAME_UPPER" else small)
        pads = (lo[0], lo[1], hi[0], hi[1])
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    elif auto != "NOTSET":
        raise t.unsupported(node, f"auto_pad={auto}")
    if len(strides) != 2 or len(dil) != 2 or len(pads) != 4:
        raise t.unsupported(node, "only 2-D spatial operators are supported")
    return strides, pads, dil


def _nchw(t: _Translator, node: Any, d: _Data) -> tuple[int, int, int]:
    if len(d.shape) != 4 or d.shape[0] != 1:
        raise t.unsupported(node, f"expects an NCHW tensor with batch 1, got shape {d.shape}")
    return d.shape[1], d.shape[2], d.shape[3]


def _conv(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    chw = _nchw(t, node, d)
    W = np.asarray(t.const(node, node.input[1], "the weight"), dtype=np.float64)
    if W.ndim != 4:
        raise t.unsupported(node, f"only 2-D convolution (weight {W.shape})")
    strides, pads, dil = _spatial_attrs(t, node, attrs, chw[1:], W.shape[2:])
    M, out = conv2d_matrix(chw, W, strides, pads, dil, int(attrs.get("group", 1)))
    B = t.opt_const(node, 2)
    c = None if B is None else np.repeat(np.asarray(B, np.float64), out[1] * out[2])
    t.builder.linear(M, c, (1,) + out)
    t.emit(node, node.output[0])


def _maxpool(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    if len(node.output) > 1 and node.output[1]:
        raise t.unsupported(node, "the Indices output")
    chw = _nchw(t, node, d)
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    strides, pads, dil = _spatial_attrs(t, node, attrs, chw[1:], kernel)
    groups, out = maxpool_groups(chw, kernel, strides, pads, dil,
                                 bool(attrs.get("ceil_mode", 0)))
    t.builder.maxpool(groups, (1,) + out)
    t.emit(node, node.output[0])


def _avgpool(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    chw = _nchw(t, node, d)
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    strides, pads, dil = _spatial_attrs(t, node, attrs, chw[1:], kernel)
    if dil != (1, 1):
        raise t.unsupported(node, "dilated AveragePool")
    M, out = avgpool_matrix(chw, kernel, strides, pads, bool(attrs.get("ceil_mode", 0)),
                            bool(attrs.get("count_include_pad", 0)))
    t.builder.linear(M, None, (1,) + out)
    t.emit(node, node.output[0])


def _global_avgpool(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    if len(d.shape) < 3 or d.shape[0] != 1:
        raise t.unsupported(node, f"expects (1, C, spatial...), got {d.shape}")
    C, hw = d.shape[1], int(np.prod(d.shape[2:]))
    M = sp.kron(sp.identity(C, format="csr"), sp.csr_matrix(np.full((1, hw), 1.0 / hw)),
                format="csr")
    t.builder.linear(M, None, (1, C) + (1,) * (len(d.shape) - 2))
    t.emit(node, node.output[0])


def _batchnorm(t: _Translator, node: Any, attrs: dict) -> None:
    d = t.take(node, node.input[0])
    if int(attrs.get("training_mode", 0)):
        raise t.unsupported(node, "training_mode=1")
    if len(node.output) > 1 and any(node.output[1:]):
        raise t.unsupported(node, "running statistics outputs")
    scale, bias, mean, var = (np.asarray(t.const(node, node.input[k], "a statistic"),
                                         np.float64) for k in range(1, 5))
    eps = float(attrs.get("epsilon", 1e-5))
    s = scale / np.sqrt(var + eps)
    shift = bias - mean * s
    bshape = (1, -1) + (1,) * (len(d.shape) - 2)
    t.builder.scale_shift(s.reshape(bshape), shift.reshape(bshape))
    t.emit(node, node.output[0])


_HANDLERS: dict[str, Handler] = {
    "Identity": _alias, "Dropout": _dropout,
    "Relu": _act(ReLU), "Atan": _act(Arctan), "Tanh": _act(Tanh), "Sigmoid": _act(Sigmoid),
    "LeakyRelu": _leaky, "Softmax": _softmax,
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": _transpose, "Shape": _shape,
    "Add": _binary, "Sub": _binary, "Mul": _binary, "Div": _binary, "Neg": _neg,
    "MatMul": _matmul, "Gemm": _gemm,
    "Conv": _conv, "MaxPool": _maxpool, "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool, "BatchNormalization": _batchnorm,
}
assert set(_HANDLERS) | {"Constant"} == set(SUPPORTED_OPS)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_onnx(path: str | Path) -> Network:
    """Load an ONNX model file as a :class:`Network` taking the flattened input.

    Raises :class:`ModelLoadError` for a missing, truncated or malformed file and
    :class:`UnsupportedOperatorError` for an operator outside :data:`SUPPORTED_OPS` on the
    data path.
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such model file")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf raises several unrelated types on corrupt input
        raise ModelLoadError(f"{p}: not a readable ONNX model "
                             f"({type(exc).__name__}: {_one_line(exc)})") from exc
    if not model.graph.node and not model.graph.input:
        raise ModelLoadError(f"{p}: the ONNX file holds no graph (empty or truncated)")
    # onnx.checker is deliberately not run: it rejects harmless sloppiness of exporters
    # (e.g. outputs without a declared shape). The translation checks what it relies on.
    return _Translator(model, str(p)).run()


# -------------------------------------------------------------- onnxruntime check
_SESSIONS: dict[str, tuple[float, Any]] = {}


def _session(path: str) -> Any:
    import onnxruntime as ort

    mtime = Path(path).stat().st_mtime
    cached = _SESSIONS.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    _SESSIONS[path] = (mtime, sess)
    return sess


def onnxruntime_forward(network: Network, x: np.ndarray) -> np.ndarray | None:
    """Run the network's original ONNX file with onnxruntime on flat inputs.

    ``x`` has shape ``(n_inputs,)`` or ``(batch, n_inputs)``; the result is float64 of shape
    ``(n_outputs,)`` or ``(batch, n_outputs)``. Returns ``None`` when the network was not
    loaded from ONNX (or its file is gone). Models whose first dimension is fixed (e.g. a
    batch of 1) are run one sample at a time.
    """
    if network.source_format != "onnx" or not network.source or not Path(
            network.source).is_file():
        return None
    sess = _session(network.source)
    inp = sess.get_inputs()[0]
    dtype = np.float64 if inp.type == "tensor(double)" else (
        np.float16 if inp.type == "tensor(float16)" else np.float32)
    shape = tuple(network.onnx_input_shape or network.input_shape)
    single = np.asarray(x).ndim == 1
    X = network.check_input(x)
    # A symbolic first dimension is a batch axis we can fill; a fixed one is looped over.
    dynamic_batch = bool(inp.shape) and not isinstance(inp.shape[0], int)
    if not dynamic_batch or len(shape) == 0:
        outs = [np.asarray(sess.run(None, {inp.name: row.reshape(shape).astype(dtype)})[0],
                           dtype=np.float64).reshape(-1) for row in X]
        Y = np.stack(outs) if outs else np.zeros((0, network.n_outputs))
    else:
        batch_shape = (X.shape[0],) + shape[1:]
        Y = np.asarray(sess.run(None, {inp.name: X.reshape(batch_shape).astype(dtype)})[0],
                       dtype=np.float64).reshape(X.shape[0], -1)
    return Y[0] if single else Y


__all__ = ["SUPPORTED_OPS", "load_onnx", "onnxruntime_forward"]
