"""Differential bounds: one network at two inputs ``a`` and ``b = a + ε``.

Why
---
MIP (6) of seed 000 couples two copies of the network only through ``b = a + ε``. Bounds
on each copy alone (over the domain D) say nothing about how far apart the copies are,
so the LP relaxation can put both copies' relaxed activations anywhere and reach
``ε ≈ 0``. This module bounds the *difference* ``Δ_i = x_i(b) - x_i(a)`` of every vector
``x_i`` entering layer ``i``, together with a box of each copy, for all pairs in a
:class:`PairRegion`::

    a ∈ [a_lo, a_hi] ⊆ D,   b = a + ε ∈ D = [lo, hi],   ||ε|| <= r   (L1, L∞ or L2).

For small ``r`` the difference bounds are small even where both copies' boxes are wide,
which is what a certified lower bound of Φ_m (:mod:`nnresilience.resilience.certify_diff`)
and the difference rows of MIP (6) (:mod:`nnresilience.resilience.difference_rows`) need.

Symbolic form
-------------
Every bound is a linear form in two vectors per entry, the copy-1 value ``x1_i`` and the
difference ``Δ_i``: a target ``A·x1_i + B·Δ_i + c`` (copy 1: ``A = I, B = 0``; the
difference: ``A = 0, B = I``; copy 2 = copy 1 + difference: ``A = B = I``) is
back-substituted layer by layer to ``A_0·a + B_0·ε + c_0`` (CROWN-style, sign split of
the coefficients picks the upper or the lower relaxation) and maximised over the pair
region in closed form (:class:`_PairGeometry`). Intermediate boxes of both copies and
of the difference are computed this way for every affine output, intersected with the
interval boxes, and feed the relaxations of the next non-linear layer.

Relaxations (real arithmetic) and why they are sound
----------------------------------------------------
Write ``z1``/``z2`` for a neuron's pre-activation in copy 1/2 (boxes ``[l1, u1]``,
``[l2, u2]``), ``Δz = z2 - z1 ∈ [dl, du]`` and ``Δh = f(z2) - f(z1)``.

* Copy relaxations (each copy alone): ReLU / LeakyReLU(k): upper chord, lower line of
  slope ``λ ∈ [k, 1]`` through 0 (``f`` convex: any line of slope in ``[k, 1]`` through
  the origin lies below ``max(kx, x)``); exact lines when stable. S-shaped f: the two
  lines of slope ``μ = min f'`` over ``[l, u]`` through ``(l, f(l))`` and ``(u, f(u))``
  (mean-value theorem: ``f(x) - f(l) >= μ (x - l)`` and ``f(u) - f(x) >= μ (u - x)``).
* (A) difference planes in ``Δz`` alone. By the mean-value theorem ``Δh = g Δz`` with
  ``g`` a secant slope of ``f`` between ``z1`` and ``z2``, so ``g ∈ [g_lo, g_hi]``, the
  range of ``f'`` over the hull of both boxes (ReLU: ``g = 1`` if both copies are active,
  ``g = 0`` if both are inactive, else ``[0, 1]``; LeakyReLU the same with ``k`` for 0).
  Hence ``min(g_lo Δz, g_hi Δz) <= Δh <= max(g_lo Δz, g_hi Δz)``; the upper envelope is
  convex, the lower one concave, and their chords over ``[dl, du]`` are the planes. They
  are exact when the neuron is stable in the same phase in both copies and shrink with
  ``|Δz|``, i.e. with ``r``: this is the coupling the two-copy relaxation lacks.
* (B) two-copy planes: ``Δh <= U2(z2) - L1(z1)`` and ``Δh >= L2(z2) - U1(z1)`` from the
  copy relaxations, in the variables ``(z1, Δz)`` with ``z2 = z1 + Δz``. They are exact
  when the neuron is stable in both copies (also in opposite phases, where (A) is not)
  and tight when it is stable in one (copy 1 active: ``Δh = max(Δz, -z1)``, and the lower
  plane with ``λ2`` is any convex combination of the two pieces).
* Any convex combination ``θ (B) + (1 - θ) (A)`` of two valid upper (lower) planes is a
  valid upper (lower) plane; ``θ ∈ [0, 1]`` per neuron and side, like ``λ``, is a free
  parameter (:class:`DiffParams`): the default picks the plane that is lower (higher) at
  the centre of the boxes, and :meth:`DifferentialAnalysis.optimise` tunes all parameters
  by projected gradient on the final targets (the α-CROWN idea, here on two copies).
* Max-pool ``y = max_g x``: copy planes are the member with the largest lower bound
  (below) and the decided member or the largest upper bound (above). Difference:
  ``max x2 - max x1 <= x2_w - x1_w = Δ_w`` where ``w`` wins in copy 2 (decided), else
  ``<= max_g du``; ``>= Δ_w`` where ``w`` wins in copy 1, else ``>= min_g dl``; and the
  two-copy planes ``U2 - L1`` / ``L2 - U1``, mixed by ``θ`` as above.

Interval steps run alongside (difference through an affine layer: ``W Δ``; through an
activation: ``[min, max]`` of ``g Δz`` and ``[f(l2) - f(u1), f(u2) - f(l1)]``; max-pool:
``[min_g dl, max_g du]``); every box is the intersection of all sound boxes, including
``x2 ∈ x1 + Δ``.

The pair region (:class:`_PairGeometry`)
-----------------------------------------
A linear form ``g·a + c·ε`` separates by coordinate. Per coordinate ``(a_i, b_i)`` ranges
over ``a_i ∈ [Al, Ah]``, ``b_i ∈ [L, H]``, ``|b_i - a_i| <= t_i``; its maximum ``V_i(t)``
is concave and non-decreasing in ``t`` (an LP value as a function of its right-hand
side). ``V_i(0)`` and ``V_i(r)`` are computed exactly (vertex enumeration), and the slope
``s_i`` of ``V_i`` at ``t = 0`` by the feasible moves from the optimal ``a = b``. Then

* L∞: ``Σ V_i(r)`` (exact);
* L1: ``max Σ V_i(t_i)`` over ``Σ t_i <= r`` is at most the same with
  ``V_i(t) <= min(V_i(0) + s_i t, V_i(r))``, a fractional knapsack solved greedily;
* L2: ``Σ V_i(0) + min(r ||s||_2, Σ (V_i(r) - V_i(0)))``.

Floating point (the rule of :mod:`nnresilience.bounds.rounding`)
----------------------------------------------------------------
Copy boxes contain both the exact value of entry ``i`` and the float64 forward value
(real-arithmetic bound, padded for its own computation, then widened by the forward
error ``e_i`` of that copy, :class:`~nnresilience.bounds.rounding.ForwardError`). The
difference box bounds the *exact* difference; the float64 forward values differ by at
most ``e1_i + e2_i`` more (:meth:`DiffBounds.float_delta`). Relaxation intercepts are
computed outward from the endpoints (the gap of a convex function to a line is largest
at an endpoint), with a ``gamma`` pad for the products involved and the library error
of s-shaped functions. A back-substitution accumulates, per target, the magnitude of
every product it forms (``|A| |W| max|x|``, ``|B| |planes| max|Δ|``, ...); the computed
coefficients are exact coefficients of a valid bound up to those rounding errors, so the
final value is padded by ``4 gamma(N)`` times that magnitude (``N`` the longest sum).

Implementation: numpy float64 through a small array namespace (:class:`_Ops`), so the
same code runs on torch tensors when :meth:`DifferentialAnalysis.optimise` needs
autograd (torch is imported only then). A pass on the 64-50-50-10 digits net takes a
few milliseconds on a quiet machine.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from nnresilience.bounds.rounding import (
    ACTIVATION_RANGE,
    ACTIVATION_ULPS,
    TINY,
    UNIT,
    ForwardError,
    gamma,
)
from nnresilience.errors import EngineUnsupportedError, InputDataError, ShapeMismatchError

NORMS = ("l1", "linf", "l2")
ELEMENTWISE = ("relu", "leaky_relu", "arctan", "tanh", "sigmoid")
S_SHAPED = ("arctan", "tanh", "sigmoid")
#: Targets per back-substitution chunk (rows of the coefficient matrices).
CHUNK_ROWS = 2048
#: Sparse weight matrices up to this many entries are made dense.
DENSE_MAX = 4_000_000
#: Relative slack on derivative bounds of s-shaped functions (library error of f').
_DERIV_SLACK = 64.0 * UNIT


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed with the project
        raise EngineUnsupportedError(
            "optimised differential bounds need torch (pip install 'nnresilience[torch]')"
        ) from exc
    return torch


# ------------------------------------------------------------------ array namespace
class _Ops:
    """The array operations the analysis uses, for numpy (default) and torch (autograd).

    Every function of this module that touches arrays takes its namespace from the type
    of an argument (:func:`_ns`), so one implementation serves both."""

    def __init__(self, torch=None) -> None:
        self.torch = torch
        self.is_torch = torch is not None

    # creation / conversion
    def asarray(self, v):
        if self.is_torch:
            return v if isinstance(v, self.torch.Tensor) else self.torch.as_tensor(
                np.asarray(v, np.float64))
        return np.asarray(v.detach().numpy() if hasattr(v, "detach") else v, np.float64)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.float64) if self.is_torch \
            else np.zeros(shape)

    def eye(self, n):
        return self.torch.eye(n, dtype=self.torch.float64) if self.is_torch else np.eye(n)

    def full_like(self, x, v):
        return self.torch.full_like(x, v) if self.is_torch else np.full_like(x, v, float)

    def tofloat(self, mask):
        return mask.to(self.torch.float64) if self.is_torch else mask.astype(np.float64)

    def numpy(self, x):
        return x.detach().numpy().copy() if self.is_torch else np.array(x, np.float64)

    def detach(self, x):
        return x.detach() if self.is_torch else x

    def no_grad(self):
        return self.torch.no_grad() if self.is_torch else contextlib.nullcontext()

    # elementwise
    def maximum(self, a, b):
        return self.torch.maximum(a, b) if self.is_torch else np.maximum(a, b)

    def minimum(self, a, b):
        return self.torch.minimum(a, b) if self.is_torch else np.minimum(a, b)

    def where(self, c, a, b):
        return self.torch.where(c, a, b) if self.is_torch else np.where(c, a, b)

    def clamp(self, x, lo=None, hi=None):
        if self.is_torch:
            return x.clamp(min=lo, max=hi)
        return np.clip(x, lo, hi)

    def fn(self, kind: str, x):
        if self.is_torch:
            return {"arctan": self.torch.atan, "tanh": self.torch.tanh,
                    "sigmoid": self.torch.sigmoid}[kind](x)
        if kind == "sigmoid":
            # imported here: scipy.special costs ~0.15 s to import, and only sigmoid
            # networks need it (a Φ query's deadline includes the first call's imports)
            from scipy.special import expit

            return expit(x)
        return {"arctan": np.arctan, "tanh": np.tanh}[kind](x)

    def cosh(self, x):
        return self.torch.cosh(x) if self.is_torch else np.cosh(x)

    def exp(self, x):
        return self.torch.exp(x) if self.is_torch else np.exp(x)

    # reductions / reshaping
    def cat(self, xs, axis=0):
        return self.torch.cat(xs, axis) if self.is_torch else np.concatenate(xs, axis)

    def amax(self, x, axis):
        return x.amax(axis) if self.is_torch else x.max(axis)

    def amin(self, x, axis):
        return x.amin(axis) if self.is_torch else x.min(axis)

    def argmax(self, x, axis):
        return self.torch.argmax(x, dim=axis) if self.is_torch else np.argmax(x, axis)

    def sort_desc(self, x):
        """Rows sorted in decreasing order and the permutation."""
        if self.is_torch:
            return self.torch.sort(x, dim=1, descending=True)
        idx = np.argsort(-x, axis=1, kind="stable")
        return np.take_along_axis(x, idx, 1), idx

    def gather(self, x, idx):
        return self.torch.gather(x, 1, idx) if self.is_torch else np.take_along_axis(x, idx, 1)

    def cumsum(self, x):
        return self.torch.cumsum(x, 1) if self.is_torch else np.cumsum(x, 1)

    def norm2(self, x):
        return self.torch.linalg.vector_norm(x, dim=1) if self.is_torch \
            else np.sqrt((x * x).sum(1))

    def mm(self, A, W):
        """``A @ W`` for dense ``A`` and a dense or sparse ``W``."""
        if sp.issparse(W):
            return np.asarray((W.T @ A.T).T)
        if self.is_torch and W.layout != self.torch.strided:
            return (W.t() @ A.t()).t()
        return A @ W

    def mv(self, W, v):
        return np.asarray(W @ v).reshape(-1) if sp.issparse(W) else W @ v

    def index_add(self, A, idx, contrib):
        """``A`` plus ``contrib`` (T, k) added into the columns ``idx`` (k,)."""
        if self.is_torch:
            return A.index_add(1, idx, contrib)
        out = A.copy()
        np.add.at(out.T, idx, contrib.T)
        return out

    def as_index(self, v):
        return self.torch.as_tensor(np.asarray(v)) if self.is_torch else np.asarray(v)


_NP = _Ops()


def _ns(x) -> _Ops:
    """The namespace of an array (numpy unless it is a torch tensor)."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return _NP
    return _Ops(_torch())


_BLAS: list = []


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread for the duration: the products here are small, and a
    thread pool on a busy machine spins (measured on the shared 2-core machine: a
    200x50 @ 50x64 product took 23 ms with the default pool, 0.5 ms with one thread)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    with _BLAS[0].limit(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The same for torch's intra-op pool (small products: ~20x slower with it)."""
    torch = _torch()
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


# ---------------------------------------------------------------------------- region
@dataclass(frozen=True, eq=False)
class PairRegion:
    """Pairs ``(a, b)`` with ``a ∈ [a_lo, a_hi] ⊆ [lo, hi]``, ``b ∈ [lo, hi]`` and
    ``||b - a||_norm <= radius``."""

    lo: np.ndarray
    hi: np.ndarray
    norm: str
    radius: float
    a_lo: np.ndarray | None = None
    a_hi: np.ndarray | None = None

    def __post_init__(self) -> None:
        lo = np.asarray(self.lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(self.hi, dtype=np.float64).reshape(-1)
        a_lo = lo if self.a_lo is None else np.asarray(self.a_lo, np.float64).reshape(-1)
        a_hi = hi if self.a_hi is None else np.asarray(self.a_hi, np.float64).reshape(-1)
        if not (lo.shape == hi.shape == a_lo.shape == a_hi.shape):
            raise ShapeMismatchError("pair region: domain and a-box sizes differ")
        if self.norm not in NORMS:
            raise InputDataError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not (math.isfinite(self.radius) and self.radius >= 0.0):
            raise InputDataError(f"radius must be finite and >= 0, got {self.radius}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InputDataError("the domain box must be finite")
        if np.any(lo > hi) or np.any(a_lo > a_hi):
            raise InputDataError("empty domain or a-box")
        if np.any(a_lo < lo) or np.any(a_hi > hi):
            raise InputDataError("the a-box must lie inside the domain")
        for name, v in (("lo", lo), ("hi", hi), ("a_lo", a_lo), ("a_hi", a_hi)):
            object.__setattr__(self, name, v)
        object.__setattr__(self, "radius", float(self.radius))

    @property
    def dim(self) -> int:
        return int(self.lo.size)

    def with_radius(self, radius: float) -> PairRegion:
        return PairRegion(self.lo, self.hi, self.norm, radius, self.a_lo, self.a_hi)

    def eps_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Box of ``ε = b - a`` (every norm bounds each coordinate by the radius)."""
        r = self.radius
        e_lo = np.maximum(np.nextafter(self.lo - self.a_hi, -np.inf), -r)
        e_hi = np.minimum(np.nextafter(self.hi - self.a_lo, np.inf), r)
        return e_lo, e_hi

    def b_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Box of ``b``: the domain cut by ``|b_i - a_i| <= r``."""
        r = self.radius
        return (np.maximum(self.lo, np.nextafter(self.a_lo - r, -np.inf)),
                np.minimum(self.hi, np.nextafter(self.a_hi + r, np.inf)))

    def diameter(self) -> float:
        """Largest ``||b - a||`` over the region without the radius limit."""
        w = np.maximum(self.hi - self.a_lo, self.a_hi - self.lo)
        if self.norm == "l1":
            return float(w.sum())
        if self.norm == "linf":
            return float(w.max(initial=0.0))
        return float(np.sqrt((w * w).sum()))


# ------------------------------------------------------------------------ parameters
@dataclass
class DiffParams:
    """Free relaxation parameters per non-linear layer index (numpy arrays, or torch
    leaves while :meth:`DifferentialAnalysis.optimise` runs), all within [0, 1].

    ``lam2``: lower-line slope of unstable ReLU/LeakyReLU neurons of copy 2 (mapped to
    ``[k, 1]``); ``thu``/``thl``: weight of the two-copy plane (B) in the upper / lower
    difference plane (the rest goes to the difference plane (A)). Copy 1 keeps CROWN's
    adaptive slopes: it does not depend on the radius and is computed once. Missing
    entries use the default rules.
    """

    layers: dict[int, dict[str, Any]] = field(default_factory=dict)

    def tensors(self) -> list:
        return [t for d in self.layers.values() for t in d.values()]

    def as_numpy(self) -> DiffParams:
        return DiffParams({i: {k: _NP.asarray(v).copy() for k, v in d.items()}
                           for i, d in self.layers.items()})


# -------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class DiffBounds:
    """Boxes of both copies and of their difference for every entry vector.

    ``lo1[i]``/``hi1[i]`` bound copy 1 (the vector entering layer ``i`` at ``a``),
    ``lo2``/``hi2`` copy 2 (at ``b``); both contain the exact and the float64 forward
    values. ``dlo``/``dhi`` bound the exact difference ``x_i(b) - x_i(a)``;
    :meth:`float_delta` adds the forward errors ``e1 + e2`` for the float64 difference.
    """

    region: PairRegion
    lo1: list[np.ndarray]
    hi1: list[np.ndarray]
    lo2: list[np.ndarray]
    hi2: list[np.ndarray]
    dlo: list[np.ndarray]
    dhi: list[np.ndarray]
    e1: list[np.ndarray]
    e2: list[np.ndarray]
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def float_delta(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on ``forward(b)_i - forward(a)_i`` computed in float64 (exact difference
        of the two float64 values)."""
        pad = np.nextafter(self.e1[i] + self.e2[i], np.inf)
        return (np.nextafter(self.dlo[i] - pad, -np.inf),
                np.nextafter(self.dhi[i] + pad, np.inf))

    def stable_counts(self) -> list[dict[str, int]]:
        """Per entry: neurons stable in copy 1, in copy 2, in both, unstable in both
        (for reports; meaningful at activation inputs)."""
        out = []
        for i in range(len(self.lo1) - 1):
            l1, u1, l2, u2 = self.lo1[i], self.hi1[i], self.lo2[i], self.hi2[i]
            s1 = (l1 >= 0) | (u1 <= 0)
            s2 = (l2 >= 0) | (u2 <= 0)
            out.append({"entry": i, "stable1": int(s1.sum()), "stable2": int(s2.sum()),
                        "both": int((s1 & s2).sum()), "neither": int((~s1 & ~s2).sum())})
        return out


@dataclass(frozen=True)
class LinearTargets:
    """Rows ``A·y1 + B·Δy + c`` over the network output (``A``, ``B``: (T, n_out))."""

    A: Any
    B: Any
    c: Any


# ------------------------------------------------------------------ network arrays
class _NetArrays:
    """Layer weights in one namespace (numpy: dense, or scipy.sparse when large;
    torch: dense or sparse CSR), with ``|W|`` and the longest dot product per layer."""

    def __init__(self, network, xp: _Ops) -> None:
        self.xp = xp
        self.layers = list(network.layers)
        self.W: list = []
        self.absW: list = []
        self.b: list = []
        self.terms: list[int] = []
        self.groups: list = []
        widest = network.n_inputs
        for layer in self.layers:
            widest = max(widest, layer.out_size, layer.in_size)
            if layer.kind == "affine":
                W = layer.W
                big = sp.issparse(W) and W.shape[0] * W.shape[1] > DENSE_MAX
                if big:
                    Wc = sp.csr_matrix(W)
                    terms = int(np.diff(Wc.indptr).max(initial=0))
                    self.W.append(self._sparse(Wc))
                    self.absW.append(self._sparse(abs(Wc)))
                else:
                    Wd = np.ascontiguousarray(layer.dense_W(), dtype=np.float64)
                    terms = int(Wd.shape[1])
                    self.W.append(xp.asarray(Wd))
                    self.absW.append(xp.asarray(np.abs(Wd)))
                self.b.append(xp.asarray(layer.b))
                self.terms.append(terms + 1)
                self.groups.append(None)
            else:
                if layer.kind not in ELEMENTWISE and layer.kind != "maxpool":
                    raise EngineUnsupportedError(
                        f"differential bounds: unsupported layer kind {layer.kind!r}")
                self.W.append(None)
                self.absW.append(None)
                self.b.append(None)
                self.terms.append(4)
                self.groups.append(xp.as_index(layer.groups) if layer.kind == "maxpool"
                                   else None)
        # Longest sum anywhere (back-substitution products, plane formation, final max).
        self.n_sum = widest + network.n_inputs + 32

    def _sparse(self, Wc):
        if not self.xp.is_torch:
            return Wc
        t = self.xp.torch
        return t.sparse_csr_tensor(t.as_tensor(Wc.indptr), t.as_tensor(Wc.indices),
                                   t.as_tensor(Wc.data), size=Wc.shape, dtype=t.float64)


def _maxabs(lo, hi):
    return _ns(lo).maximum(abs(lo), abs(hi))


def _outward(lo, hi, pad):
    """``[lo - pad, hi + pad]`` widened by enough to absorb the rounding of this step
    itself (differentiable stand-in for :func:`~nnresilience.bounds.rounding.enclose`)."""
    p = pad * (1.0 + 4 * UNIT) + TINY
    return lo - (p + 4 * UNIT * abs(lo)), hi + (p + 4 * UNIT * abs(hi))


def _up(x, pad):
    return x + (pad * (1.0 + 4 * UNIT) + 4 * UNIT * abs(x) + TINY)


# --------------------------------------------------------------------- relaxations
def _deriv(kind: str, x):
    """``f'(x)`` of an s-shaped kind, in forms without cancellation."""
    xp = _ns(x)
    if kind == "arctan":
        return 1.0 / (1.0 + x * x)
    if kind == "tanh":
        return 1.0 / xp.cosh(xp.clamp(x, -350.0, 350.0)) ** 2
    e = xp.exp(-abs(x))
    return e / (1.0 + e) ** 2


def _deriv_range(kind: str, lo, hi):
    """``[min f', max f']`` over ``[lo, hi]`` (f' unimodal with its peak at 0), widened."""
    xp = _ns(lo)
    dl, du = _deriv(kind, lo), _deriv(kind, hi)
    gmin = xp.minimum(dl, du) * (1.0 - _DERIV_SLACK)
    peak = _deriv(kind, xp.full_like(lo, 0.0))
    gmax = xp.where((lo <= 0) & (hi >= 0), peak, xp.maximum(dl, du))
    return xp.clamp(gmin, 0.0), gmax * (1.0 + _DERIV_SLACK)


def _chord_upper(F_l, F_u, s, l, u):
    """Intercept of the upper line of slope ``s`` of a convex function on ``[l, u]``
    (largest gap at an endpoint), padded for the rounding of every term."""
    c = _ns(F_l).maximum(F_l - s * l, F_u - s * u)
    pad = 2 * gamma(4) * ((abs(F_l) + abs(s * l)) + (abs(F_u) + abs(s * u))) + TINY
    return c + pad


def _chord_lower(F_l, F_u, s, l, u):
    c = _ns(F_l).minimum(F_l - s * l, F_u - s * u)
    pad = 2 * gamma(4) * ((abs(F_l) + abs(s * l)) + (abs(F_u) + abs(s * u))) + TINY
    return c - pad


@dataclass
class _CopyPlanes:
    """``la*z + lb <= f(z) <= ua*z + ub`` on one copy's box."""

    la: Any
    lb: Any
    ua: Any
    ub: Any


def _copy_planes(layer, l, u, lam):
    """Copy relaxation of an elementwise layer; ``lam`` in [0, 1] is mapped to [k, 1]."""
    xp = _ns(l)
    kind = layer.kind
    if kind in ("relu", "leaky_relu"):
        k = float(getattr(layer, "slope", 0.0))
        act, inact = l >= 0, u <= 0
        unst = ~(act | inact)
        one = xp.full_like(u, 1.0)
        den = xp.where(unst, u - l, one)
        stable_slope = xp.where(act, one, xp.full_like(u, k))
        s = xp.where(unst, (u - k * l) / den, stable_slope)
        ub = xp.where(unst, _chord_upper(k * l, u, s, l, u), xp.full_like(u, 0.0))
        la = xp.where(unst, k + (1.0 - k) * lam, stable_slope)
        return _CopyPlanes(la, xp.full_like(u, 0.0), s, ub)
    mu, _ = _deriv_range(kind, l, u)
    f_l, f_u = xp.fn(kind, l), xp.fn(kind, u)
    err = ACTIVATION_ULPS[kind] * UNIT * ACTIVATION_RANGE[kind] + TINY
    lb = f_l - mu * l - (err + gamma(4) * (abs(f_l) + abs(mu * l)))
    ub = f_u - mu * u + (err + gamma(4) * (abs(f_u) + abs(mu * u)))
    return _CopyPlanes(mu, lb, mu, ub)


def _slope_range(layer, l1, u1, l2, u2):
    """Range ``[g_lo, g_hi]`` of the secant slope of f between a point of each box."""
    xp = _ns(l1)
    if layer.kind in ("relu", "leaky_relu"):
        k = float(getattr(layer, "slope", 0.0))
        one, kk = xp.full_like(l1, 1.0), xp.full_like(l1, k)
        glo = xp.where((l1 >= 0) & (l2 >= 0), one, kk)
        ghi = xp.where((u1 <= 0) & (u2 <= 0), kk, one)
        return glo, ghi
    return _deriv_range(layer.kind, xp.minimum(l1, l2), xp.maximum(u1, u2))


def _envelope(glo, ghi, dl, du):
    """Planes ``sl Δz + cl <= g Δz <= su Δz + cu`` for ``g ∈ [glo, ghi]``, ``Δz ∈ [dl, du]``."""
    xp = _ns(dl)
    pos, neg = dl >= 0, du <= 0
    mix = ~(pos | neg)
    den = xp.where(mix, du - dl, xp.full_like(du, 1.0))
    su = xp.where(pos, ghi, xp.where(neg, glo, (ghi * du - glo * dl) / den))
    sl = xp.where(pos, glo, xp.where(neg, ghi, (glo * du - ghi * dl) / den))
    Eu_l, Eu_u = xp.maximum(glo * dl, ghi * dl), xp.maximum(glo * du, ghi * du)
    El_l, El_u = xp.minimum(glo * dl, ghi * dl), xp.minimum(glo * du, ghi * du)
    cu = _chord_upper(Eu_l, Eu_u, su, dl, du)
    cl = _chord_lower(El_l, El_u, sl, dl, du)
    return su, cu, sl, cl


@dataclass
class _DiffPlanes:
    """Elementwise layer: copy-1 planes and the mixed difference planes
    ``Δh <= pu1 z1 + puD Δz + pu0`` / ``Δh >= pl1 z1 + plD Δz + pl0`` plus magnitude
    companions (``m*`` >= the sum of absolute values of the terms forming each number)."""

    c1: _CopyPlanes
    pu1: Any
    puD: Any
    pu0: Any
    pl1: Any
    plD: Any
    pl0: Any
    m_p1: Any
    m_pD: Any
    m_p0: Any


def _default_theta(c1, c2, su, cu, sl, cl, l1, u1, dl, du):
    """1 where the two-copy plane is the better one at the centre of the boxes.

    Measured against two alternatives (plane (B) only where the neuron is stable in both
    copies; the plane with the smaller maximum over the box): identical at the root of
    the digits nets and on tiny nets, best on a-boxes around a point (certified radius
    0.202 / 0.246 vs 0.191 / 0.230 and 0.197 / 0.239 for half-widths 0.05 / 0.02 on the
    digits 2x50 net), which is what the branching uses."""
    xp = _ns(l1)
    z = 0.5 * (l1 + u1)
    d = 0.5 * (dl + du)
    up_b = (c2.ua - c1.la) * z + c2.ua * d + (c2.ub - c1.lb)
    lo_b = (c2.la - c1.ua) * z + c2.la * d + (c2.lb - c1.ub)
    return xp.tofloat(up_b <= su * d + cu), xp.tofloat(lo_b >= sl * d + cl)


def _lam_default(l, u):
    """CROWN's adaptive lower slope: 1 where ``u > -l``, else the leak."""
    return _ns(l).tofloat(u > -l)


def _param(xp: _Ops, par: dict, key: str, default):
    """``par[key]`` in namespace ``xp``, filled with the default rule when missing."""
    if key not in par:
        par[key] = xp.numpy(default) if not xp.is_torch else xp.detach(default)
    v = par[key]
    return v if (xp.is_torch and not isinstance(v, np.ndarray)) else xp.asarray(v)


def _elementwise_planes(layer, c1: _CopyPlanes, l1, u1, l2, u2, dl, du, par: dict
                        ) -> _DiffPlanes:
    xp = _ns(l1)
    lam2 = None
    if layer.kind in ("relu", "leaky_relu"):
        lam2 = _param(xp, par, "lam2", _lam_default(l2, u2))
    c2 = _copy_planes(layer, l2, u2, lam2)
    glo, ghi = _slope_range(layer, l1, u1, l2, u2)
    su, cu, sl, cl = _envelope(glo, ghi, dl, du)
    if "thu" not in par or "thl" not in par:
        thu, thl = _default_theta(c1, c2, su, cu, sl, cl, l1, u1, dl, du)
        _param(xp, par, "thu", thu)
        _param(xp, par, "thl", thl)
    tu, tl = _param(xp, par, "thu", None), _param(xp, par, "thl", None)
    pu1 = tu * (c2.ua - c1.la)
    puD = tu * c2.ua + (1 - tu) * su
    pu0 = tu * (c2.ub - c1.lb) + (1 - tu) * cu
    pl1 = tl * (c2.la - c1.ua)
    plD = tl * c2.la + (1 - tl) * sl
    pl0 = tl * (c2.lb - c1.ub) + (1 - tl) * cl
    with xp.no_grad():
        tua, tla, tub, tlb = abs(tu), abs(tl), abs(1 - tu), abs(1 - tl)
        m_p1 = xp.maximum(tua * (abs(c2.ua) + abs(c1.la)), tla * (abs(c2.la) + abs(c1.ua)))
        m_pD = xp.maximum(tua * abs(c2.ua) + tub * abs(su), tla * abs(c2.la) + tlb * abs(sl))
        m_p0 = xp.maximum(tua * (abs(c2.ub) + abs(c1.lb)) + tub * abs(cu),
                          tla * (abs(c2.lb) + abs(c1.ub)) + tlb * abs(cl))
    return _DiffPlanes(c1, pu1, puD, pu0, pl1, plD, pl0, xp.detach(m_p1), xp.detach(m_pD),
                       xp.detach(m_p0))


@dataclass
class _PoolSide:
    """One copy of a max-pool layer: the member with the largest lower bound, whether it
    is decided (its lower bound beats every other member's upper bound), the largest
    upper bound of the group."""

    best: Any
    decided: Any
    hi: Any


@dataclass
class _PoolPlanes:
    """Max-pool: ``terms`` are ``(var, idx, coef)`` with var 0 = copy 1, 1 = difference."""

    c1_up: list
    c1_up0: Any
    c1_lo: list
    d_up: list
    d_up0: Any
    d_lo: list
    d_lo0: Any


def _pool_side(groups, lo, hi) -> _PoolSide:
    xp = _ns(lo)
    glo, ghi = lo[groups], hi[groups]
    j = xp.argmax(glo, 1)
    rows = xp.as_index(np.arange(groups.shape[0]))
    best = groups[rows, j]
    others_hi = xp.amax(xp.where(groups == best[:, None], xp.full_like(ghi, -math.inf), ghi),
                        1)
    decided = xp.tofloat(glo[rows, j] >= others_hi)
    return _PoolSide(best, decided, xp.amax(ghi, 1))


def _copy1_pool_planes(side: _PoolSide) -> _PoolPlanes:
    xp = _ns(side.hi)
    return _PoolPlanes([(0, side.best, side.decided)], side.hi * (1 - side.decided),
                       [(0, side.best, xp.full_like(side.hi, 1.0))], [], None, [], None)


def _pool_planes(layer, p1: _PoolSide, groups, l2, u2, dl, du, par: dict) -> _PoolPlanes:
    xp = _ns(l2)
    g = groups
    w1, dec1, hi1 = p1.best, p1.decided, p1.hi
    s2 = _pool_side(g, l2, u2)
    w2, dec2, hi2 = s2.best, s2.decided, s2.hi
    maxdu = xp.amax(du[g], 1)
    mindl = xp.amin(dl[g], 1)
    tu = _param(xp, par, "thu", xp.full_like(hi1, 0.0))
    tl = _param(xp, par, "thl", xp.full_like(hi1, 0.0))
    d_up = [(0, w2, tu * dec2), (1, w2, dec2), (0, w1, -tu)]
    d_up0 = (tu * hi2 + (1 - tu) * maxdu) * (1 - dec2)
    d_lo = [(0, w2, tl), (1, w2, tl), (1, w1, (1 - tl) * dec1), (0, w1, -tl * dec1)]
    d_lo0 = (-tl * hi1 + (1 - tl) * mindl) * (1 - dec1)
    c1 = _copy1_pool_planes(p1)
    return _PoolPlanes(c1.c1_up, c1.c1_up0, c1.c1_lo, d_up, d_up0, d_lo, d_lo0)


# ------------------------------------------------------------------ pair maximum
class _PairGeometry:
    """The vertices that can maximise a linear form per coordinate of the pair region
    (precomputed per radius): ``a`` at an end of its box with ``b`` at an end of its
    feasible interval, and ``b`` at an end of D with ``a`` at an end of its feasible
    interval (every vertex of the 2-D polygon lies on one of the four box lines)."""

    def __init__(self, region: PairRegion, xp: _Ops) -> None:
        Al, Ah = region.a_lo, region.a_hi
        L, H = region.lo, region.hi
        r = region.radius
        self.xp = xp
        self.r, self.norm = r, region.norm
        pairs = []
        for a in (Al, Ah):
            for b in (np.maximum(a - r, L), np.minimum(a + r, H)):
                pairs.append((a, b - a, None))
        for b in (L, H):
            alo, ahi = np.maximum(b - r, Al), np.minimum(b + r, Ah)
            ok = alo <= ahi
            if not ok.any():
                continue
            for a in (alo, ahi):
                pairs.append((a, b - a, None if ok.all() else ok))
        T = xp.asarray
        self.pairs = [(T(a), T(e), None if ok is None else xp.as_index(ok))
                      for a, e, ok in pairs]
        self.Al, self.Ah = T(Al), T(Ah)
        # feasible moves from the optimal a = b (module docstring), as 0/1 masks
        self.room = {k: T(v.astype(np.float64)) for k, v in (
            ("hi_above_L", Ah > L), ("hi_below_H", Ah < H), ("hi_above_Al", Ah > Al),
            ("lo_below_H", Al < H), ("lo_above_L", Al > L), ("lo_below_Ah", Al < Ah))}
        self.mag_ab = T(np.maximum(np.maximum(abs(Al), abs(Ah)), np.maximum(abs(L), abs(H))))

    def maximise(self, g, c):
        """``(value, magnitude)`` of ``max g·a + c·ε`` per row; ``c=None`` means 0."""
        xp = self.xp
        V0 = xp.maximum(g * self.Al, g * self.Ah)
        if c is None:
            with xp.no_grad():
                mag = 4.0 * (abs(g) * self.mag_ab).sum(1)
            return V0.sum(1), xp.detach(mag)
        Vr = V0
        for a, e, ok in self.pairs:
            v = g * a + c * e
            if ok is not None:
                v = xp.where(ok, v, V0)
            Vr = xp.maximum(Vr, v)
        r = self.r
        with xp.no_grad():
            mag = 4.0 * ((abs(g) + abs(c)) * (2 * self.mag_ab + r)).sum(1) + \
                float(g.shape[1]) * (Vr - V0).sum(1)
        if self.norm == "linf":
            return Vr.sum(1), xp.detach(mag)
        rm = self.room
        s_pos = xp.maximum(xp.maximum(-c * rm["hi_above_L"], c * rm["hi_below_H"]),
                           (c - g) * rm["hi_above_Al"])
        s_neg = xp.maximum(xp.maximum(c * rm["lo_below_H"], -c * rm["lo_above_L"]),
                           (g - c) * rm["lo_below_Ah"])
        s = xp.clamp(xp.where(g > 0, s_pos, xp.where(g < 0, s_neg, abs(c))), 0.0)
        gain = Vr - V0
        with xp.no_grad():
            mag = mag + r * s.sum(1)
        mag = xp.detach(mag)
        if self.norm == "l2":
            return V0.sum(1) + xp.minimum(r * xp.norm2(s), gain.sum(1)), mag
        pos = s > 0
        cap = xp.where(pos, gain / xp.where(pos, s, xp.full_like(s, 1.0)), xp.full_like(s, 0.0))
        s_o, order = xp.sort_desc(s)
        cap_o = xp.gather(cap, order)
        before = xp.cumsum(cap_o) - cap_o
        t = xp.minimum(xp.clamp(r - before, 0.0), cap_o)
        return V0.sum(1) + (s_o * t).sum(1), mag


# ------------------------------------------------------------------------- the pass
@dataclass
class _PassState:
    """Boxes per entry (copy 1, copy 2, difference) and relaxations per layer."""

    lo1: list
    hi1: list
    lo2: list
    hi2: list
    dlo: list
    dhi: list
    e1: list
    e2: list
    planes: dict


class DifferentialAnalysis:
    """Differential bounds of one network over one :class:`PairRegion`.

    ``prior1`` / ``prior2`` (optional :class:`~nnresilience.bounds.types.NetworkBounds`,
    float-sound) are intersected into the copy boxes: bounds of copy 1 over the a-box and
    of copy 2 over the domain. Copy 1 does not depend on the radius: it is computed once
    (CROWN over the a-box, adaptive lower slopes) and kept by :meth:`set_radius`.
    :meth:`bounds` runs one pass; :meth:`target_upper` also bounds output targets;
    :meth:`optimise` tunes :class:`DiffParams` for targets (torch).
    """

    def __init__(self, network, region: PairRegion, prior1=None, prior2=None,
                 xp: _Ops | None = None) -> None:
        # entries are those of the merged network (what the MIP encoder and the
        # resilience queries use): consecutive affine layers are one
        net = network.merged()
        if region.dim != net.n_inputs:
            raise ShapeMismatchError(f"pair region has {region.dim} inputs, the network "
                                     f"{net.n_inputs}")
        self.network = net
        self.xp = _NP if xp is None else xp
        self.arrays = _NetArrays(net, self.xp)
        self.prior1 = prior1
        self.prior2 = prior2
        self._copy1: _PassState | None = None
        self._twin: DifferentialAnalysis | None = None
        self.set_radius(region.radius, region)

    def set_radius(self, radius: float, region: PairRegion | None = None) -> None:
        """Move to another radius (same a-box and domain); copy 1 is kept."""
        self.region = (self.region if region is None else region).with_radius(radius)
        self.geom = _PairGeometry(self.region, self.xp)

    # ---------------------------------------------------------------- public API
    def bounds(self, params: DiffParams | None = None) -> DiffBounds:
        t0 = time.perf_counter()
        params = DiffParams() if params is None else params
        with one_blas_thread(), self.xp.no_grad():
            st = self._pass(params)
        return self._to_bounds(st, time.perf_counter() - t0)

    def target_upper(self, targets: LinearTargets, params: DiffParams | None = None
                     ) -> tuple[np.ndarray, DiffBounds]:
        """Sound upper bounds of ``A·y1 + B·Δy + c`` (exact arithmetic network values)
        over the region, and the boxes of the pass."""
        t0 = time.perf_counter()
        params = DiffParams() if params is None else params
        with one_blas_thread(), self.xp.no_grad():
            st = self._pass(params)
            up = self._targets(st, targets)
        return self.xp.numpy(up), self._to_bounds(st, time.perf_counter() - t0)

    def optimise(self, targets, params: DiffParams | None = None, iterations: int = 30,
                 lr: float = 0.2, goal: np.ndarray | None = None,
                 deadline: float | None = None, extra_vars: tuple = ()
                 ) -> tuple[np.ndarray, DiffParams, dict]:
        """Projected Adam (torch) on the relaxation parameters, minimising the sum of the
        targets' upper bounds (with ``goal``: the sum of their excess over it, stopping
        once every target is below); returns the best bounds seen, the parameters that
        gave them (numpy) and statistics.

        ``targets`` is a :class:`LinearTargets` or a callable returning one whose arrays
        are torch tensors built from ``extra_vars`` (further torch leaves optimised with
        the same step and kept ``>= 0``: the premise multipliers of
        :mod:`~nnresilience.resilience.certify_diff`). Every iterate is sound (any
        parameter values give valid relaxations), so the best one is kept; callers that
        need float-exact verdicts re-run :meth:`target_upper` with the returned params.
        """
        torch = _torch()
        tw = self._torch_twin()
        params = DiffParams() if params is None else params
        t0 = time.perf_counter()
        with _one_thread(), one_blas_thread():
            with torch.no_grad():
                tw._pass(params)            # fills in the default parameters
            for d in params.layers.values():
                for key in list(d):
                    d[key] = torch.as_tensor(np.asarray(_NP.asarray(d[key]))).clone() \
                        .requires_grad_(True)
            build = targets if callable(targets) else (lambda: targets)
            opt = torch.optim.Adam(params.tensors() + list(extra_vars), lr=lr)
            goal_t = None if goal is None else torch.as_tensor(np.asarray(goal, np.float64))
            best, best_params, best_extra, hist = None, params.as_numpy(), None, []
            for it in range(iterations + 1):
                up = tw._targets(tw._pass(params), build())
                val = up.detach()
                excess = val.sum() if goal_t is None else (val - goal_t).clamp(min=0.0).sum()
                hist.append(float(excess))
                if best is None or hist[-1] < best[0]:
                    best = (hist[-1], val.clone())
                    best_params = params.as_numpy()
                    best_extra = [v.detach().clone() for v in extra_vars]
                if goal_t is not None and bool((val < goal_t).all()):
                    break
                if it == iterations or (deadline is not None
                                        and time.perf_counter() > deadline):
                    break
                loss = up.sum() if goal_t is None else (up - goal_t).clamp(min=0.0).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for t in params.tensors():
                        t.clamp_(0.0, 1.0)
                    for v in extra_vars:
                        v.clamp_(min=0.0)
            with torch.no_grad():
                for v, b in zip(extra_vars, best_extra or [], strict=False):
                    v.copy_(b)
        stats = {"iterations": len(hist) - 1, "first": hist[0], "best": best[0],
                 "seconds": time.perf_counter() - t0}
        return best[1].numpy().copy(), best_params, stats

    # ---------------------------------------------------------------- internals
    def _torch_twin(self) -> DifferentialAnalysis:
        """The same analysis on torch tensors (copy 1 converted, not recomputed)."""
        if self._twin is None:
            tx = _Ops(_torch())
            tw = DifferentialAnalysis(self.network, self.region, self.prior1, self.prior2,
                                      xp=tx)
            c1 = self._copy1_state()
            T = tx.asarray

            def conv(p):
                if isinstance(p, _CopyPlanes):
                    return _CopyPlanes(T(p.la), T(p.lb), T(p.ua), T(p.ub))
                return _PoolSide(tx.as_index(p.best), T(p.decided), T(p.hi))

            tw._copy1 = _PassState([T(x) for x in c1.lo1], [T(x) for x in c1.hi1], [], [], [],
                                   [], list(c1.e1), [], {i: conv(p)
                                                         for i, p in c1.planes.items()})
            self._twin = tw
        self._twin.set_radius(self.region.radius)
        return self._twin

    def _to_bounds(self, st: _PassState, seconds: float) -> DiffBounds:
        N = lambda xs: [self.xp.numpy(x) for x in xs]  # noqa: E731
        return DiffBounds(self.region, N(st.lo1), N(st.hi1), N(st.lo2), N(st.hi2), N(st.dlo),
                          N(st.dhi), [np.asarray(e) for e in st.e1],
                          [np.asarray(e) for e in st.e2], seconds)

    def _copy1_state(self) -> _PassState:
        """Copy 1 over the a-box (cached): interval ∩ back-substitution ∩ prior1."""
        if self._copy1 is not None:
            return self._copy1
        xp, reg, na = self.xp, self.region, self.arrays
        st = _PassState([xp.asarray(reg.a_lo)], [xp.asarray(reg.a_hi)], [], [], [], [],
                        [np.zeros(reg.dim)], [], {})
        fe = ForwardError(reg.dim)
        with xp.no_grad():
            for i, layer in enumerate(na.layers):
                lo, hi = st.lo1[i], st.hi1[i]
                if layer.kind == "affine":
                    r = self._affine_interval(i, lo, hi, with_bias=True)
                    if i >= 1:
                        n = layer.out_size
                        eye = xp.eye(n)
                        up = self._chunked(st, i + 1, xp.cat([eye, -eye], 0), None)
                        r = (xp.maximum(r[0], -up[n:]), xp.minimum(r[1], up[:n]))
                elif layer.kind == "maxpool":
                    st.planes[i] = _pool_side(na.groups[i], lo, hi)
                    r = self._act_interval(i, lo, hi)
                else:
                    lam = _lam_default(lo, hi) if layer.kind in ("relu", "leaky_relu") else None
                    st.planes[i] = _copy_planes(layer, lo, hi, lam)
                    r = self._act_interval(i, lo, hi)
                e = fe.step(layer, xp.numpy(lo), xp.numpy(hi))
                nlo, nhi = _outward(r[0], r[1], xp.asarray(e))
                nlo, nhi = self._prior(self.prior1, i + 1, nlo, nhi)
                st.lo1.append(nlo)
                st.hi1.append(xp.maximum(nhi, nlo))
                st.e1.append(e)
        self._copy1 = st
        return st

    def _pass(self, params: DiffParams) -> _PassState:
        """Boxes of copy 2 and of the difference for every entry (copy 1 cached);
        relaxations are built from the final boxes."""
        xp, reg, na = self.xp, self.region, self.arrays
        c1 = self._copy1_state()
        b_lo, b_hi = reg.b_box()
        e_lo, e_hi = reg.eps_box()
        st = _PassState(c1.lo1, c1.hi1, [xp.asarray(b_lo)], [xp.asarray(b_hi)],
                        [xp.asarray(e_lo)], [xp.asarray(e_hi)], c1.e1, [np.zeros(reg.dim)], {})
        fe2 = ForwardError(reg.dim)
        for i, layer in enumerate(na.layers):
            l1, u1, l2, u2, dl, du = (st.lo1[i], st.hi1[i], st.lo2[i], st.hi2[i], st.dlo[i],
                                      st.dhi[i])
            if layer.kind == "affine":
                r2 = self._affine_interval(i, l2, u2, with_bias=True)
                rd = self._affine_interval(i, dl, du, with_bias=False)
                n = layer.out_size
                eye, zero = xp.eye(n), xp.zeros((n, n))
                A = xp.cat([zero, zero, eye, -eye], 0)
                B = xp.cat([eye, -eye, eye, -eye], 0)
                up = self._chunked(st, i + 1, A, B)
                rd = (xp.maximum(rd[0], -up[n:2 * n]), xp.minimum(rd[1], up[:n]))
                r2 = (xp.maximum(r2[0], -up[3 * n:]), xp.minimum(r2[1], up[2 * n:3 * n]))
            else:
                par = params.layers.setdefault(i, {})
                if layer.kind == "maxpool":
                    st.planes[i] = _pool_planes(layer, c1.planes[i], na.groups[i], l2, u2, dl,
                                                du, par)
                else:
                    st.planes[i] = _elementwise_planes(layer, c1.planes[i], l1, u1, l2, u2, dl,
                                                       du, par)
                r2 = self._act_interval(i, l2, u2)
                rd = self._diff_interval(i, l1, u1, l2, u2, dl, du)
            # x2 = x1 + Δ exactly; the copy-1 box contains the exact x1
            r1 = (c1.lo1[i + 1], c1.hi1[i + 1])
            zero = xp.full_like(r1[0], 0.0)
            s_lo, s_hi = _outward(r1[0] + rd[0], r1[1] + rd[1], zero)
            r2 = (xp.maximum(r2[0], s_lo), xp.minimum(r2[1], s_hi))
            s_lo, s_hi = _outward(r2[0] - r1[1], r2[1] - r1[0], zero)
            rd = (xp.maximum(rd[0], s_lo), xp.minimum(rd[1], s_hi))
            e2 = fe2.step(layer, xp.numpy(l2), xp.numpy(u2))
            lo2, hi2 = _outward(r2[0], r2[1], xp.asarray(e2))
            lo2, hi2 = self._prior(self.prior2, i + 1, lo2, hi2)
            # guard against crossing by rounding of the intersections (never in exact math)
            st.lo2.append(lo2)
            st.hi2.append(xp.maximum(hi2, lo2))
            st.dlo.append(rd[0])
            st.dhi.append(xp.maximum(rd[1], rd[0]))
            st.e2.append(e2)
        return st

    def _prior(self, prior, i, lo, hi):
        if prior is None:
            return lo, hi
        xp = self.xp
        return (xp.maximum(lo, xp.asarray(prior.lo[i])),
                xp.minimum(hi, xp.asarray(prior.hi[i])))

    def _affine_interval(self, i, lo, hi, with_bias: bool):
        xp, na = self.xp, self.arrays
        W, aW = na.W[i], na.absW[i]
        mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
        c = xp.mv(W, mid)
        if with_bias:
            c = c + na.b[i]
        r = xp.mv(aW, rad)
        with xp.no_grad():
            mag = xp.mv(aW, _maxabs(lo, hi)) + (abs(na.b[i]) if with_bias else 0.0)
            pad = xp.detach(2 * gamma(na.terms[i] + 2) * (mag + abs(r) + abs(c)) + TINY)
        return _outward(c - r, c + r, pad)

    def _act_interval(self, i, lo, hi):
        xp = self.xp
        layer = self.arrays.layers[i]
        if layer.kind == "maxpool":
            g = self.arrays.groups[i]
            return xp.amax(lo[g], 1), xp.amax(hi[g], 1)
        if layer.kind == "relu":
            return xp.clamp(lo, 0.0), xp.clamp(hi, 0.0)
        zero = xp.full_like(lo, 0.0)
        if layer.kind == "leaky_relu":
            k = layer.slope
            return _outward(xp.where(lo >= 0, lo, k * lo), xp.where(hi >= 0, hi, k * hi), zero)
        err = ACTIVATION_ULPS[layer.kind] * UNIT * ACTIVATION_RANGE[layer.kind] + TINY
        return _outward(xp.fn(layer.kind, lo), xp.fn(layer.kind, hi), zero + err)

    def _diff_interval(self, i, l1, u1, l2, u2, dl, du):
        xp = self.xp
        layer = self.arrays.layers[i]
        f1 = self._act_interval(i, l1, u1)
        f2 = self._act_interval(i, l2, u2)
        zero = xp.full_like(f1[0], 0.0)
        b_lo, b_hi = _outward(f2[0] - f1[1], f2[1] - f1[0], zero)
        if layer.kind == "maxpool":
            g = self.arrays.groups[i]
            return xp.maximum(xp.amin(dl[g], 1), b_lo), xp.minimum(xp.amax(du[g], 1), b_hi)
        glo, ghi = _slope_range(layer, l1, u1, l2, u2)
        up = xp.maximum(xp.maximum(glo * du, ghi * du), xp.maximum(glo * dl, ghi * dl))
        lo = xp.minimum(xp.minimum(glo * dl, ghi * dl), xp.minimum(glo * du, ghi * du))
        lo, up = _outward(lo, up, xp.full_like(lo, 0.0))
        return xp.maximum(lo, b_lo), xp.minimum(up, b_hi)

    def _chunked(self, st: _PassState, j: int, A, B):
        """:meth:`_backsub` in row chunks (``B=None``: copy-1 targets only)."""
        xp = self.xp
        c = xp.zeros(A.shape[0])
        return xp.cat([self._backsub(st, j, A[s:s + CHUNK_ROWS],
                                     None if B is None else B[s:s + CHUNK_ROWS],
                                     c[s:s + CHUNK_ROWS])
                       for s in range(0, A.shape[0], CHUNK_ROWS)])

    def _targets(self, st: _PassState, targets):
        xp = self.xp
        A, B, c = (xp.asarray(v) for v in (targets.A, targets.B, targets.c))
        return self._backsub(st, len(self.arrays.layers), A, B, c)

    def _backsub(self, st: _PassState, j: int, A, B, c):
        """Sound upper bound of ``A·x1_j + B·Δ_j + c`` over the region (per row);
        ``B=None`` bounds copy-1 forms (the region's a-box only)."""
        xp, na = self.xp, self.arrays
        M = xp.detach(abs(c)) + 0.0
        for i in range(j - 1, -1, -1):
            layer = na.layers[i]
            m1 = xp.detach(_maxabs(st.lo1[i], st.hi1[i]))
            mD = None if B is None else xp.detach(_maxabs(st.dlo[i], st.dhi[i]))
            if layer.kind == "affine":
                with xp.no_grad():
                    M = M + abs(A) @ (xp.mv(na.absW[i], m1) + abs(na.b[i]))
                    if B is not None:
                        M = M + abs(B) @ xp.mv(na.absW[i], mD)
                c = c + A @ na.b[i]
                A = xp.mm(A, na.W[i])
                if B is not None:
                    B = xp.mm(B, na.W[i])
            elif layer.kind == "maxpool":
                A, B, c, M = self._back_pool(st.planes[i], layer, A, B, c, M, m1, mD)
            else:
                p = st.planes[i]
                q = p if isinstance(p, _CopyPlanes) else p.c1
                Ap, An = xp.clamp(A, 0.0), xp.clamp(A, None, 0.0)
                with xp.no_grad():
                    M = M + abs(A) @ (xp.maximum(abs(q.ua), abs(q.la)) * m1
                                      + xp.maximum(abs(q.ub), abs(q.lb)))
                c = c + Ap @ q.ub + An @ q.lb
                A_new = Ap * q.ua + An * q.la
                if B is not None:
                    Bp, Bn = xp.clamp(B, 0.0), xp.clamp(B, None, 0.0)
                    with xp.no_grad():
                        M = M + abs(B) @ (p.m_p1 * m1 + p.m_pD * mD + p.m_p0)
                    c = c + Bp @ p.pu0 + Bn @ p.pl0
                    A_new = A_new + Bp * p.pu1 + Bn * p.pl1
                    B = Bp * p.puD + Bn * p.plD
                A = A_new
        val, mag = self.geom.maximise(A, B)
        val = val + c
        with xp.no_grad():
            pad = 4 * gamma(na.n_sum) * (xp.detach(M) + mag + xp.detach(abs(c))) \
                + TINY * (4 * len(na.layers) + 64)
        return _up(val, pad)

    def _back_pool(self, p, layer, A, B, c, M, m1, mD):
        xp = self.xp
        if isinstance(p, _PoolSide):
            p = _copy1_pool_planes(p)
        n_in = layer.in_size
        T = A.shape[0]
        Ap, An = xp.clamp(A, 0.0), xp.clamp(A, None, 0.0)
        A_new = xp.zeros((T, n_in))
        B_new = None if B is None else xp.zeros((T, n_in))

        def add(coefs, terms):
            nonlocal A_new, B_new
            for var, idx, k in terms:
                contrib = coefs * k[None, :]
                if var == 0:
                    A_new = xp.index_add(A_new, idx, contrib)
                else:
                    B_new = xp.index_add(B_new, idx, contrib)

        def tmag(terms, const=None):
            out = xp.zeros(layer.out_size) if const is None else abs(const) + 0.0
            for var, idx, k in terms:
                out = out + abs(k) * (m1 if var == 0 else mD)[idx]
            return xp.detach(out)

        add(Ap, p.c1_up)
        add(An, p.c1_lo)
        c = c + Ap @ p.c1_up0
        with xp.no_grad():
            M = M + abs(A) @ xp.maximum(tmag(p.c1_up, p.c1_up0), tmag(p.c1_lo))
        if B is not None:
            Bp, Bn = xp.clamp(B, 0.0), xp.clamp(B, None, 0.0)
            add(Bp, p.d_up)
            add(Bn, p.d_lo)
            c = c + Bp @ p.d_up0 + Bn @ p.d_lo0
            with xp.no_grad():
                M = M + abs(B) @ xp.maximum(tmag(p.d_up, p.d_up0), tmag(p.d_lo, p.d_lo0))
        return A_new, B_new, c, M


def differential_bounds(network, region: PairRegion, params: DiffParams | None = None,
                        prior1=None, prior2=None) -> DiffBounds:
    """Boxes of copy 1, copy 2 and their difference for every entry (one pass)."""
    return DifferentialAnalysis(network, region, prior1, prior2).bounds(params)


# ---------------------------------------------------------- helpers for MIP rows
def difference_planes(layer, l1, u1, l2, u2, dl, du
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plane (A) of an elementwise layer as numpy arrays ``(su, cu, sl, cl)``:
    ``sl Δz + cl <= f(z2) - f(z1) <= su Δz + cu`` for ``z1 ∈ [l1, u1]``, ``z2 ∈ [l2, u2]``,
    ``Δz = z2 - z1 ∈ [dl, du]`` (intercepts rounded outward; used as MIP rows)."""
    A = [np.asarray(v, np.float64) for v in (l1, u1, l2, u2, dl, du)]
    glo, ghi = _slope_range(layer, *A[:4])
    return _envelope(glo, ghi, A[4], A[5])


def slope_range(layer, l1, u1, l2, u2) -> tuple[np.ndarray, np.ndarray]:
    """``[g_lo, g_hi]``: the range of the secant slope of an elementwise layer between a
    point of ``[l1, u1]`` and a point of ``[l2, u2]``."""
    return _slope_range(layer, *(np.asarray(v, np.float64) for v in (l1, u1, l2, u2)))


def envelope_intercepts(glo, ghi, su, sl, dl, du) -> tuple[np.ndarray, np.ndarray]:
    """Intercepts ``(cu, cl)`` of the lines of given slopes ``su`` / ``sl`` that bound
    ``g Δz`` (``g ∈ [glo, ghi]``, ``Δz ∈ [dl, du]``) from above / below, rounded outward.

    The upper envelope ``max(glo x, ghi x)`` is convex and the lower one concave, so the
    gap to any line is extreme at an endpoint (valid for any slope)."""
    glo, ghi, su, sl, dl, du = (np.asarray(v, np.float64) for v in (glo, ghi, su, sl, dl, du))
    cu = _chord_upper(np.maximum(glo * dl, ghi * dl), np.maximum(glo * du, ghi * du), su, dl, du)
    cl = _chord_lower(np.minimum(glo * dl, ghi * dl), np.minimum(glo * du, ghi * du), sl, dl, du)
    return cu, cl
