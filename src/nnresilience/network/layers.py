"""Layer kinds of the network IR: every layer maps flat float64 vectors to flat vectors.

Batched convention: ``forward`` takes an array of shape ``(batch, in_size)`` and returns
``(batch, out_size)``. ``interval(lo, hi)`` maps a box to a box that contains the image
(exact real arithmetic; outward rounding is the bounds module's job). Shape metadata of
images is kept on the :class:`~nnresilience.network.model.Network`, not here: convolutions
are already sparse affine maps and pooling is a max over index groups, so no layer needs
to know about channels or strides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp


class Layer:
    """Base class. ``kind`` is the stable name used by encoders, loaders and the CLI."""

    kind: ClassVar[str] = "layer"
    elementwise: ClassVar[bool] = False

    @property
    def in_size(self) -> int:
        raise NotImplementedError

    @property
    def out_size(self) -> int:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__}.interval")

    def describe(self) -> str:
        return f"{self.kind}({self.in_size}->{self.out_size})"


@dataclass(eq=False)
class Affine(Layer):
    """``y = W x + b`` with ``W`` of shape (out, in), dense ndarray or scipy.sparse matrix.

    Gemm/MatMul+Add, Conv (as a sparse matrix), folded BatchNorm, AveragePool and
    index-permuting Flatten/Reshape/Transpose all become this one kind.
    """

    W: np.ndarray | sp.spmatrix
    b: np.ndarray
    # The consecutive affine layers this one replaces (set by ``Network.merged()``): the
    # float64 forward pass of the *source* network evaluates them one by one, so the
    # rounding rule needs them (``bounds/rounding.py``, ``merged_error``). Empty otherwise.
    merged_from: tuple = field(default=(), repr=False)
    kind: ClassVar[str] = "affine"

    def __post_init__(self) -> None:
        if sp.issparse(self.W):
            self.W = sp.csr_matrix(self.W, dtype=np.float64)
        else:
            self.W = np.ascontiguousarray(np.asarray(self.W, dtype=np.float64))
            if self.W.ndim != 2:
                raise ValueError(f"Affine weight must be 2-D, got shape {self.W.shape}")
        self.b = np.asarray(self.b, dtype=np.float64).reshape(-1)
        if self.b.shape[0] != self.W.shape[0]:
            raise ValueError(f"Affine bias has {self.b.shape[0]} entries, W has "
                             f"{self.W.shape[0]} rows")

    @property
    def in_size(self) -> int:
        return int(self.W.shape[1])

    @property
    def out_size(self) -> int:
        return int(self.W.shape[0])

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.W)

    def dense_W(self) -> np.ndarray:
        """``W`` as a dense array (for small layers and back-substitution)."""
        return self.W.toarray() if sp.issparse(self.W) else self.W

    def abs_W(self) -> np.ndarray | sp.spmatrix:
        return abs(self.W) if sp.issparse(self.W) else np.abs(self.W)

    def forward(self, x: np.ndarray) -> np.ndarray:
        # A merged layer evaluates its source layers one by one: the float64 value every
        # answer is replayed in is the source network's, not the rounded product's.
        if self.merged_from:
            for layer in self.merged_from:
                x = layer.forward(x)
            return x
        return np.asarray(self.W @ x.T).T + self.b

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mid = (lo + hi) / 2.0
        rad = (hi - lo) / 2.0
        c = np.asarray(self.W @ mid).reshape(-1) + self.b
        r = np.asarray(self.abs_W() @ rad).reshape(-1)
        return c - r, c + r

    def n_parameters(self) -> int:
        nnz = self.W.nnz if sp.issparse(self.W) else self.W.size
        return int(nnz + self.b.size)


@dataclass(eq=False)
class _Elementwise(Layer):
    """Elementwise monotone non-decreasing activation of a fixed width."""

    size: int = 0
    elementwise: ClassVar[bool] = True

    @property
    def in_size(self) -> int:
        return self.size

    @property
    def out_size(self) -> int:
        return self.size

    def fn(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Monotone non-decreasing: the image of [lo, hi] is [f(lo), f(hi)].
        return self.fn(lo), self.fn(hi)


@dataclass(eq=False)
class ReLU(_Elementwise):
    kind: ClassVar[str] = "relu"

    def fn(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


@dataclass(eq=False)
class LeakyReLU(_Elementwise):
    """``max(k x, x)`` with slope ``0 <= k < 1`` (k = 0 is ReLU; k >= 1 is not piecewise-max)."""

    slope: float = 0.01
    kind: ClassVar[str] = "leaky_relu"

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.slope) < 1.0):
            raise ValueError(f"LeakyReLU slope must satisfy 0 <= k < 1, got {self.slope}")
        self.slope = float(self.slope)

    def fn(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0.0, x, self.slope * x)

    def describe(self) -> str:
        return f"leaky_relu(k={self.slope:g}, {self.size})"


@dataclass(eq=False)
class Arctan(_Elementwise):
    kind: ClassVar[str] = "arctan"

    def fn(self, x: np.ndarray) -> np.ndarray:
        return np.arctan(x)


@dataclass(eq=False)
class Tanh(_Elementwise):
    kind: ClassVar[str] = "tanh"

    def fn(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)


@dataclass(eq=False)
class Sigmoid(_Elementwise):
    kind: ClassVar[str] = "sigmoid"

    def fn(self, x: np.ndarray) -> np.ndarray:
        # Split by sign so that exp never overflows.
        out = np.empty_like(x, dtype=np.float64)
        pos = x >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
        ex = np.exp(x[~pos])
        out[~pos] = ex / (1.0 + ex)
        return out


@dataclass(eq=False)
class MaxPool(Layer):
    """``y_i = max_j x[groups[i, j]]``: max over index groups of the flat input.

    ``groups`` has shape (out, g); a window with fewer than g members (border with
    padding) repeats one of its indices, which leaves the max unchanged.
    """

    groups: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.int64))
    n_in: int = 0
    kind: ClassVar[str] = "maxpool"

    def __post_init__(self) -> None:
        self.groups = np.asarray(self.groups, dtype=np.int64)
        if self.groups.ndim != 2 or self.groups.shape[1] < 1:
            raise ValueError(f"MaxPool groups must be (out, g>=1), got {self.groups.shape}")
        if self.groups.size and (self.groups.min() < 0 or self.groups.max() >= self.n_in):
            raise ValueError("MaxPool group index out of range")

    @property
    def in_size(self) -> int:
        return self.n_in

    @property
    def out_size(self) -> int:
        return int(self.groups.shape[0])

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.groups].max(axis=2)

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return lo[self.groups].max(axis=1), hi[self.groups].max(axis=1)

    def describe(self) -> str:
        return f"maxpool({self.n_in}->{self.out_size}, window {self.groups.shape[1]})"


ACTIVATIONS: dict[str, type[_Elementwise]] = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "arctan": Arctan, "tanh": Tanh, "sigmoid": Sigmoid,
}
PIECEWISE_LINEAR = ("affine", "relu", "leaky_relu", "maxpool")
