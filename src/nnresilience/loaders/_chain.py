"""Shared machinery of the loaders: a chain builder that turns tensor ops into IR layers.

Every loader (ONNX graph, PyTorch ``nn.Sequential``) walks a *chain* of operators over one
data tensor. Linear operators (MatMul, Gemm, Conv, BatchNorm, AveragePool, elementwise
scale/shift) and pure index maps (Flatten, Reshape, Transpose, Squeeze, broadcasting) are
not turned into layers one by one: they are composed into a *pending* linear map that is
written out as a single :class:`~nnresilience.network.layers.Affine` only when a
non-linear operator (ReLU, MaxPool, ...) or the end of the graph needs it. This merges
consecutive affine maps for free and makes index permutations cost nothing, while every
composition is exact (matrix products in float64; no approximation is involved, only the
usual float64 rounding of the products).

Flat index convention: a tensor of shape ``S`` is stored as ``t.ravel()`` (C order). With
that convention Flatten, Reshape, Squeeze and Unsqueeze are the identity on the flat
vector; only Transpose and broadcasting move entries.

The module also holds the index arithmetic of convolution and pooling windows (NCHW),
shared by the ONNX and the PyTorch loader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nnresilience.network.layers import Affine, Layer, MaxPool

Matrix = np.ndarray | sp.spmatrix

# A sparse product denser than this fraction is stored dense (cheaper to multiply).
_DENSE_FRACTION = 0.3


def matmul(A: Matrix, B: Matrix) -> Matrix:
    """``A @ B`` for any mix of dense and sparse operands; sparse results stay csr
    unless they are dense enough that an ndarray is the cheaper representation."""
    if sp.issparse(A) and sp.issparse(B):
        C = sp.csr_matrix(A @ B)
    elif sp.issparse(A):
        C = np.asarray(A @ B)
    elif sp.issparse(B):
        C = np.asarray((B.T @ A.T).T)
    else:
        C = A @ B
    if sp.issparse(C) and C.shape[0] * C.shape[1] > 0 \
            and C.nnz > _DENSE_FRACTION * C.shape[0] * C.shape[1]:
        C = C.toarray()
    return C


def selection_matrix(idx: np.ndarray, n0: int) -> sp.csr_matrix:
    """The 0/1 matrix ``S`` with ``S @ x == x[idx]``."""
    m = idx.size
    return sp.csr_matrix((np.ones(m), (np.arange(m), idx)), shape=(m, n0))


@dataclass
class _Pending:
    """The linear map from the last written layer's output (size ``n0``) to the current
    tensor: either a pure index map ``x[idx]`` (``W is None``) or ``W x + b``."""

    n0: int
    idx: np.ndarray | None = None
    W: Matrix | None = None
    b: np.ndarray | None = None

    @property
    def is_index(self) -> bool:
        return self.W is None

    def is_identity(self) -> bool:
        return (self.W is None and self.idx.size == self.n0
                and bool(np.all(self.idx == np.arange(self.n0))))

    def full(self) -> tuple[Matrix, np.ndarray]:
        if self.W is None:
            return selection_matrix(self.idx, self.n0), np.zeros(self.idx.size)
        return self.W, self.b


class ChainBuilder:
    """Accumulates layers for a single-input, single-path network.

    ``shape`` is the current tensor shape (including a batch dimension when the source
    format has one); ``size`` is its number of entries.
    """

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.layers: list[Layer] = []
        self.shape: tuple[int, ...] = tuple(int(d) for d in input_shape)
        n = self.size
        self.pending = _Pending(n, idx=np.arange(n))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    # ----------------------------------------------------------- linear ops
    def reshape(self, new_shape: tuple[int, ...]) -> None:
        """Change the shape only (row-major flat order is unchanged)."""
        new_shape = tuple(int(d) for d in new_shape)
        if int(np.prod(new_shape, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot reshape {self.shape} to {new_shape}")
        self.shape = new_shape

    def index(self, idx: np.ndarray, new_shape: tuple[int, ...]) -> None:
        """New tensor = current flat tensor ``[idx]`` with shape ``new_shape``."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        p = self.pending
        if p.is_index:
            self.pending = _Pending(p.n0, idx=p.idx[idx])
        else:
            W = p.W[idx] if not sp.issparse(p.W) else sp.csr_matrix(p.W)[idx]
            self.pending = _Pending(p.n0, W=W, b=p.b[idx])
        self.shape = tuple(int(d) for d in new_shape)

    def transpose(self, perm: tuple[int, ...]) -> None:
        ar = np.arange(self.size).reshape(self.shape).transpose(perm)
        self.index(ar.ravel(), ar.shape)

    def broadcast_to(self, new_shape: tuple[int, ...]) -> None:
        if tuple(new_shape) == self.shape:
            return
        ar = np.broadcast_to(np.arange(self.size).reshape(self.shape), new_shape)
        self.index(ar.ravel(), ar.shape)

    def scale_shift(self, scale: np.ndarray | float | None, shift: np.ndarray | float | None
                    ) -> None:
        """Elementwise ``y = scale * x + shift``; ``scale``/``shift`` broadcast to the
        current shape (the caller broadcasts the tensor first if they are larger)."""
        n = self.size
        s = None if scale is None else np.broadcast_to(
            np.asarray(scale, dtype=np.float64), self.shape).reshape(-1)
        t = np.zeros(n) if shift is None else np.broadcast_to(
            np.asarray(shift, dtype=np.float64), self.shape).reshape(-1).copy()
        p = self.pending
        if s is None and not np.any(t):
            return
        W, b = p.full()
        if s is not None:
            W = s[:, None] * W if not sp.issparse(W) else sp.csr_matrix(sp.diags(s) @ W)
            b = s * b
        self.pending = _Pending(p.n0, W=W, b=b + t)

    def linear(self, M: Matrix, c: np.ndarray | None, new_shape: tuple[int, ...]) -> None:
        """New tensor = ``M @ flat + c`` with shape ``new_shape``."""
        new_shape = tuple(int(d) for d in new_shape)
        m = int(np.prod(new_shape, dtype=np.int64))
        if M.shape != (m, self.size):
            raise ValueError(f"linear map of shape {M.shape} does not map {self.shape} to "
                             f"{new_shape}")
        c = np.zeros(m) if c is None else np.broadcast_to(
            np.asarray(c, dtype=np.float64).reshape(-1), (m,)).copy()
        p = self.pending
        if p.is_identity():
            W, b = (sp.csr_matrix(M) if sp.issparse(M) else np.asarray(M, float)), c
        elif p.is_index:
            W = matmul(M, selection_matrix(p.idx, p.n0))
            b = c
        else:
            W = matmul(M, p.W)
            b = np.asarray(M @ p.b).reshape(-1) + c
        self.pending = _Pending(p.n0, W=W, b=b)
        self.shape = new_shape

    # -------------------------------------------------------- non-linear ops
    def flush(self) -> None:
        """Write the pending linear map as an Affine layer (nothing if it is the identity)."""
        p = self.pending
        if p.is_identity():
            return
        W, b = p.full()
        self.layers.append(Affine(W, b))
        self.pending = _Pending(self.size, idx=np.arange(self.size))

    def activation(self, layer_cls: type, **kw) -> None:
        """Append an elementwise activation. Elementwise maps commute with index maps, so
        a pending index map is kept and the activation acts on the smaller base vector."""
        p = self.pending
        if p.is_index:
            self.layers.append(layer_cls(size=p.n0, **kw))
            return
        self.flush()
        self.layers.append(layer_cls(size=self.size, **kw))

    def maxpool(self, groups: np.ndarray, new_shape: tuple[int, ...]) -> None:
        """Max over index groups of the current flat tensor (groups index the tensor)."""
        p = self.pending
        if p.is_index:
            g = p.idx[groups]
            n_in = p.n0
        else:
            self.flush()
            g, n_in = groups, self.size
        self.layers.append(MaxPool(groups=g, n_in=n_in))
        self.shape = tuple(int(d) for d in new_shape)
        n = self.size
        self.pending = _Pending(n, idx=np.arange(n))

    def finish(self) -> list[Layer]:
        self.flush()
        if not self.layers:
            n = self.size
            self.layers.append(Affine(sp.identity(n, format="csr"), np.zeros(n)))
        return self.layers


# ------------------------------------------------------------ window arithmetic
def pool_out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int,
                  ceil_mode: bool) -> int:
    span = dilation * (k - 1) + 1
    num = size + pad_lo + pad_hi - span
    if num < 0:
        raise ValueError("window larger than the padded input")
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    # A window that would start inside the right padding only is dropped (ONNX/PyTorch).
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1
    return int(out)


def _window_positions(in_hw: tuple[int, int], kernel: tuple[int, int],
                      strides: tuple[int, int], pads: tuple[int, int, int, int],
                      dilations: tuple[int, int], ceil_mode: bool
                      ) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Input row/column of every (output position, kernel offset), possibly out of range.

    Returns ``(out_hw, rows, cols)`` where ``rows``/``cols`` have shape
    ``(OH, OW, kH, kW)``. ``pads`` is ONNX order (top, left, bottom, right).
    """
    H, W = in_hw
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    OH = pool_out_size(H, kh, sh, pt, pb, dh, ceil_mode)
    OW = pool_out_size(W, kw, sw, pl, pr, dw, ceil_mode)
    oh = np.arange(OH)[:, None, None, None]
    ow = np.arange(OW)[None, :, None, None]
    ih = np.arange(kh)[None, None, :, None]
    iw = np.arange(kw)[None, None, None, :]
    rows = np.broadcast_to(oh * sh - pt + ih * dh, (OH, OW, kh, kw))
    cols = np.broadcast_to(ow * sw - pl + iw * dw, (OH, OW, kh, kw))
    return (OH, OW), rows, cols


def conv2d_matrix(in_shape: tuple[int, int, int], weight: np.ndarray,
                  strides: tuple[int, int], pads: tuple[int, int, int, int],
                  dilations: tuple[int, int], group: int
                  ) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """Sparse matrix of a 2-D convolution (cross-correlation, as ONNX/PyTorch) on a
    ``(C, H, W)`` tensor with ``weight`` of shape ``(M, C/group, kH, kW)``.

    Zero padding contributes nothing, so out-of-range taps are simply dropped. Returns
    the matrix of shape ``(M*OH*OW, C*H*W)`` and the output shape ``(M, OH, OW)``.
    """
    C, H, W = in_shape
    M, Cg, kh, kw = weight.shape
    if Cg * group != C or M % group:
        raise ValueError(f"conv weight {weight.shape} does not fit {C} channels in "
                         f"{group} groups")
    (OH, OW), rows, cols = _window_positions((H, W), (kh, kw), strides, pads, dilations,
                                             False)
    Mg = M // group
    m = np.arange(M)[:, None, None, None, None, None]
    c = np.arange(Cg)[None, None, None, :, None, None]
    full = (M, OH, OW, Cg, kh, kw)
    r = np.broadcast_to(rows[None, :, :, None, :, :], full)
    q = np.broadcast_to(cols[None, :, :, None, :, :], full)
    cin = np.broadcast_to((m // Mg) * Cg + c, full)
    out = np.broadcast_to(
        (m * OH + np.arange(OH)[None, :, None, None, None, None]) * OW
        + np.arange(OW)[None, None, :, None, None, None], full)
    vals = np.broadcast_to(weight[:, None, None, :, :, :].astype(np.float64), full)
    ok = (r >= 0) & (r < H) & (q >= 0) & (q < W)
    col = (cin * H + r) * W + q
    A = sp.csr_matrix((vals[ok], (out[ok], col[ok])), shape=(M * OH * OW, C * H * W))
    A.eliminate_zeros()
    return A, (M, OH, OW)


def maxpool_groups(in_shape: tuple[int, int, int], kernel: tuple[int, int],
                   strides: tuple[int, int], pads: tuple[int, int, int, int],
                   dilations: tuple[int, int], ceil_mode: bool
                   ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Index groups of a 2-D max pooling on ``(C, H, W)``.

    Padding is -inf for a max, so a window simply has fewer members; missing members are
    replaced by a repeat of the window's first valid member (the max is unchanged).
    """
    C, H, W = in_shape
    (OH, OW), rows, cols = _window_positions((H, W), kernel, strides, pads, dilations,
                                             ceil_mode)
    ok = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    if not np.all(ok.reshape(OH, OW, -1).any(axis=2)):
        raise ValueError("a pooling window lies entirely in the padding")
    flat = (np.clip(rows, 0, H - 1) * W + np.clip(cols, 0, W - 1)).reshape(OH, OW, -1)
    okf = ok.reshape(OH, OW, -1)
    first = np.take_along_axis(flat, np.argmax(okf, axis=2)[:, :, None], axis=2)
    flat = np.where(okf, flat, first)                      # (OH, OW, g)
    ch = np.arange(C)[:, None, None, None] * (H * W)
    groups = (ch + flat[None]).reshape(C * OH * OW, -1)
    return groups, (C, OH, OW)


def avgpool_matrix(in_shape: tuple[int, int, int], kernel: tuple[int, int],
                   strides: tuple[int, int], pads: tuple[int, int, int, int],
                   ceil_mode: bool, count_include_pad: bool
                   ) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """Sparse matrix of a 2-D average pooling on ``(C, H, W)``.

    Divisor: the number of valid (non-pad) members when ``count_include_pad`` is false;
    otherwise the members lying inside the *padded* input (PyTorch/onnxruntime semantics:
    a ceil-mode window hanging past the padding is not charged for that part).
    """
    C, H, W = in_shape
    pt, pl, pb, pr = pads
    (OH, OW), rows, cols = _window_positions((H, W), kernel, strides, pads, (1, 1), ceil_mode)
    ok = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    if count_include_pad:
        inpad = (rows >= -pt) & (rows < H + pb) & (cols >= -pl) & (cols < W + pr)
        cnt = inpad.reshape(OH, OW, -1).sum(axis=2)
    else:
        cnt = ok.reshape(OH, OW, -1).sum(axis=2)
    if np.any(cnt == 0):
        raise ValueError("a pooling window lies entirely in the padding")
    g = rows.shape[2] * rows.shape[3]
    flat = (rows * W + cols).reshape(OH * OW, g)
    okf = ok.reshape(OH * OW, g)
    w = np.broadcast_to((1.0 / cnt).reshape(OH * OW, 1), (OH * OW, g))
    out_idx = np.broadcast_to(np.arange(OH * OW)[:, None], (OH * OW, g))
    r_all, c_all, v_all = [], [], []
    for ch in range(C):   # C small sparse blocks; each block is fully vectorised
        r_all.append(out_idx[okf] + ch * OH * OW)
        c_all.append(flat[okf] + ch * H * W)
        v_all.append(w[okf])
    A = sp.csr_matrix((np.concatenate(v_all), (np.concatenate(r_all), np.concatenate(c_all))),
                      shape=(C * OH * OW, C * H * W))
    return A, (C, OH, OW)
