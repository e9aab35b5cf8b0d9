"""The :class:`Network`: an ordered list of layers over flat float64 vectors.

This module owns *the* forward pass. Everything that needs a concrete value (replaying a
counterexample, attacks, tests, reports) calls :meth:`Network.forward`; there is no second
evaluator to drift out of sync. ``softmax`` marks a final softmax that the IR does not
apply: verification reasons on logits (seed 000, Proposition 2), and
:meth:`Network.probabilities` applies it when a probability is wanted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from nnresilience.errors import ShapeMismatchError
from nnresilience.network.layers import Affine, Layer


@dataclass(eq=False)
class Network:
    """A feed-forward network.

    ``input_shape`` is the shape the source model expects (without batch), kept so images
    can be drawn and inputs reshaped for onnxruntime; ``input_lo``/``input_hi`` are the
    input domain when the source knows one (e.g. NNet files), else ``None``.
    ``source`` is the file it was loaded from (used to replay counterexamples through
    onnxruntime) and ``source_format`` its format (``onnx``, ``nnet``, ``torch``, ``ir``).
    """

    layers: list[Layer]
    input_shape: tuple[int, ...] = ()
    softmax: bool = False
    input_lo: np.ndarray | None = None
    input_hi: np.ndarray | None = None
    name: str = "network"
    source: str | None = None
    source_format: str = "ir"
    onnx_input_name: str | None = None
    onnx_input_shape: tuple[int, ...] | None = None
    output_names: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ShapeMismatchError("a network needs at least one layer")
        for i in range(1, len(self.layers)):
            a, b = self.layers[i - 1], self.layers[i]
            if a.out_size != b.in_size:
                raise ShapeMismatchError(
                    f"layer {i - 1} ({a.describe()}) outputs {a.out_size} values but layer "
                    f"{i} ({b.describe()}) expects {b.in_size}")
        if not self.input_shape:
            self.input_shape = (self.n_inputs,)
        if int(np.prod(self.input_shape)) != self.n_inputs:
            raise ShapeMismatchError(
                f"input shape {self.input_shape} does not hold {self.n_inputs} values")
        for name in ("input_lo", "input_hi"):
            v = getattr(self, name)
            if v is not None:
                v = np.broadcast_to(np.asarray(v, dtype=np.float64), (self.n_inputs,)).copy()
                setattr(self, name, v)

    # ----------------------------------------------------------------- sizes
    @property
    def n_inputs(self) -> int:
        return self.layers[0].in_size

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].out_size

    def layer_sizes(self) -> list[int]:
        return [self.n_inputs] + [layer.out_size for layer in self.layers]

    # --------------------------------------------------------------- forward
    def check_input(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` as a float64 ``(batch, n_inputs)`` array or raise a clear error."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 or (x.ndim > 1 and x.shape == tuple(self.input_shape)):
            x = x.reshape(1, -1)
        elif x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_inputs:
            raise ShapeMismatchError(
                f"input has {x.shape[1]} values per sample, the network expects "
                f"{self.n_inputs} (input shape {self.input_shape})")
        return x

    def forward(self, x: np.ndarray, upto: int | None = None) -> np.ndarray:
        """Logits for ``x`` (shape ``(n,)`` or ``(batch, n)``), in float64.

        ``upto`` stops after that many layers (0 = the input itself): the value *entering*
        layer ``upto``. A 1-D input gives a 1-D output.
        """
        single = np.asarray(x).ndim == 1
        h = self.check_input(x)
        for layer in self.layers[: len(self.layers) if upto is None else upto]:
            h = layer.forward(h)
        return h[0] if single else h

    def forward_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Values entering each layer and the output: ``len(layers) + 1`` arrays (batched)."""
        h = self.check_input(x)
        vals = [h]
        for layer in self.layers:
            h = layer.forward(h)
            vals.append(h)
        return vals

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Softmax of the logits (stable), whether or not the model ends in softmax."""
        z = self.forward(x)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray | int:
        y = self.forward(x)
        return int(np.argmax(y)) if y.ndim == 1 else np.argmax(y, axis=1)

    # ----------------------------------------------------------- structure
    def n_parameters(self) -> int:
        return sum(layer.n_parameters() for layer in self.layers if isinstance(layer, Affine))

    def content_hash(self) -> str:
        """SHA-256 of the layer kinds, parameters and flags: the network's identity."""
        h = hashlib.sha256()
        h.update(repr((self.input_shape, self.softmax)).encode())
        for layer in self.layers:
            h.update(layer.describe().encode())
            if isinstance(layer, Affine):
                W = layer.W
                if sp.issparse(W):
                    W = sp.csr_matrix(W)
                    W.sort_indices()
                    for arr in (W.indptr, W.indices, W.data):
                        h.update(np.ascontiguousarray(arr).tobytes())
                else:
                    h.update(np.ascontiguousarray(W).tobytes())
                h.update(np.ascontiguousarray(layer.b).tobytes())
            elif hasattr(layer, "groups"):
                h.update(np.ascontiguousarray(layer.groups).tobytes())
            elif hasattr(layer, "slope"):
                h.update(repr(layer.slope).encode())
        return h.hexdigest()

    def summary(self) -> list[dict]:
        """One dict per layer: index, kind, sizes, parameters (for ``nnres info``)."""
        rows = []
        for i, layer in enumerate(self.layers):
            rows.append({
                "index": i, "kind": layer.kind, "description": layer.describe(),
                "in": layer.in_size, "out": layer.out_size,
                "parameters": layer.n_parameters() if isinstance(layer, Affine) else 0,
            })
        return rows

    def n_neurons(self) -> int:
        """Number of non-linear units (activations and pooled maxima)."""
        return sum(layer.out_size for layer in self.layers if not isinstance(layer, Affine))

    def merged(self) -> Network:
        """A copy with consecutive affine layers multiplied into one (same function).

        Encoders and bound methods want strictly alternating affine / non-linear layers;
        a leading non-affine layer gets an identity affine in front. The products are
        rounded, so the merged function is not exactly the source's: each merged layer
        keeps its source layers (``Affine.merged_from``) and the rounding rule of
        ``bounds/rounding.py`` charges the difference, so bounds of the merged network
        still contain the *source* network's float64 forward values.
        """
        out: list[Layer] = []
        for layer in self.layers:
            if isinstance(layer, Affine) and out and isinstance(out[-1], Affine):
                prev = out[-1]
                W = layer.W @ prev.W
                b = np.asarray(layer.W @ prev.b).reshape(-1) + layer.b
                if sp.issparse(W) and W.nnz > 0.3 * W.shape[0] * W.shape[1]:
                    W = W.toarray()
                chain = (prev.merged_from or (prev,)) + (layer,)
                out[-1] = Affine(W, b, merged_from=chain)
            else:
                out.append(layer)
        if not isinstance(out[0], Affine):
            n = out[0].in_size
            out.insert(0, Affine(sp.identity(n, format="csr"), np.zeros(n)))
        return Network(out, input_shape=self.input_shape, softmax=self.softmax,
                       input_lo=self.input_lo, input_hi=self.input_hi, name=self.name,
                       source=self.source, source_format=self.source_format,
                       onnx_input_name=self.onnx_input_name,
                       onnx_input_shape=self.onnx_input_shape,
                       output_names=self.output_names)


def sequential(layers: Sequence[Layer], **kw) -> Network:
    """Shorthand used by tests and examples: ``Network(list(layers), **kw)``."""
    return Network(list(layers), **kw)
