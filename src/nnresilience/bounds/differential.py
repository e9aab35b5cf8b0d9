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

Implementation: torch float64 (autograd for :meth:`~DifferentialAnalysis.optimise`); a
pass on the 64-50-50-10 digits net takes a few milliseconds.
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
#: Dense weight matrices above this many entries stay sparse in torch.
DENSE_MAX = 4_000_000
#: Relative slack on derivative bounds of s-shaped functions (library error of f').
_DERIV_SLACK = 64.0 * UNIT


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed with the project
        raise EngineUnsupportedError(
            "differential bounds need torch (pip install 'nnresilience[torch]')") from exc
    return torch


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Small dense products are slower with a thread pool (measured ~20x on 2 cores)."""
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
    """Free relaxation parameters per non-linear layer index (all within [0, 1] after
    :meth:`project`; ``lam*`` are mapped to ``[k, 1]`` for LeakyReLU).

    ``lam1``/``lam2``: lower-line slopes of unstable ReLU/LeakyReLU neurons of copy 1 / 2;
    ``thu``/``thl``: weight of the two-copy plane (B) in the upper / lower difference plane
    (the rest goes to the difference plane (A)). Missing layers use the default rule.
    """

    layers: dict[int, dict[str, Any]] = field(default_factory=dict)

    def tensors(self) -> list:
        return [t for d in self.layers.values() for t in d.values()]

    def project(self) -> None:
        torch = _torch()
        with torch.no_grad():
            for t in self.tensors():
                t.clamp_(0.0, 1.0)

    def detached(self) -> DiffParams:
        return DiffParams({i: {k: v.detach().clone() for k, v in d.items()}
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
        """Per activation entry: neurons stable in copy 1, in copy 2, in both, unstable in
        both (for reports)."""
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

    A: np.ndarray
    B: np.ndarray
    c: np.ndarray


# ------------------------------------------------------------------ torch network
class _TorchNet:
    """Layers as torch tensors (dense unless large), with ``|W|`` and row lengths."""

    def __init__(self, network) -> None:
        torch = _torch()
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
                if sp.issparse(W) and W.shape[0] * W.shape[1] > DENSE_MAX:
                    Wc = sp.csr_matrix(W)
                    self.W.append(torch.sparse_csr_tensor(
                        torch.as_tensor(Wc.indptr), torch.as_tensor(Wc.indices),
                        torch.as_tensor(Wc.data), size=Wc.shape, dtype=torch.float64))
                    Wa = abs(Wc)
                    self.absW.append(torch.sparse_csr_tensor(
                        torch.as_tensor(Wa.indptr), torch.as_tensor(Wa.indices),
                        torch.as_tensor(Wa.data), size=Wa.shape, dtype=torch.float64))
                    terms = int(np.diff(Wc.indptr).max(initial=0))
                else:
                    Wd = layer.dense_W()
                    self.W.append(torch.as_tensor(np.ascontiguousarray(Wd)))
                    self.absW.append(torch.as_tensor(np.abs(Wd)))
                    terms = int(Wd.shape[1])
                self.b.append(torch.as_tensor(layer.b))
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
                self.groups.append(torch.as_tensor(layer.groups) if layer.kind == "maxpool"
                                   else None)
        # Longest sum anywhere (back-substitution products, plane formation, final max).
        self.n_sum = widest + network.n_inputs + 32


def _mm(A, W):
    """``A @ W`` for dense ``A`` and dense or sparse ``W``."""
    if W.layout != _torch().strided:
        return (W.t() @ A.t()).t()
    return A @ W


def _mv(W, v):
    return W @ v


def _pos(x):
    return x.clamp(min=0.0)


def _neg(x):
    return x.clamp(max=0.0)


def _outward(lo, hi, pad):
    """``[lo - pad, hi + pad]`` widened by enough to absorb the rounding of this step
    itself (differentiable stand-in for :func:`~nnresilience.bounds.rounding.enclose`)."""
    p = pad * (1.0 + 4 * UNIT) + TINY
    return lo - (p + 4 * UNIT * lo.abs()), hi + (p + 4 * UNIT * hi.abs())


def _up(x, pad):
    return x + (pad * (1.0 + 4 * UNIT) + 4 * UNIT * x.abs() + TINY)


# --------------------------------------------------------------------- relaxations
def _deriv(kind: str, x):
    """``f'(x)`` of an s-shaped kind, in forms without cancellation."""
    torch = _torch()
    if kind == "arctan":
        return 1.0 / (1.0 + x * x)
    if kind == "tanh":
        return 1.0 / torch.cosh(x.clamp(-350.0, 350.0)) ** 2
    e = torch.exp(-x.abs())
    return e / (1.0 + e) ** 2


def _fn(kind: str, x):
    torch = _torch()
    return {"arctan": torch.atan, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[kind](x)


def _deriv_range(kind: str, lo, hi):
    """``[min f', max f']`` over ``[lo, hi]`` (f' unimodal with its peak at 0), widened."""
    torch = _torch()
    dl, du = _deriv(kind, lo), _deriv(kind, hi)
    gmin = torch.minimum(dl, du) * (1.0 - _DERIV_SLACK)
    peak = _deriv(kind, torch.zeros_like(lo))
    gmax = torch.where((lo <= 0) & (hi >= 0), peak, torch.maximum(dl, du))
    return gmin.clamp(min=0.0), gmax * (1.0 + _DERIV_SLACK)


def _chord_upper(F_l, F_u, s, l, u):
    """Intercept of the upper line of slope ``s`` of a convex function on ``[l, u]``
    (largest gap at an endpoint), padded for the rounding of every term."""
    torch = _torch()
    c = torch.maximum(F_l - s * l, F_u - s * u)
    pad = 2 * gamma(4) * ((F_l.abs() + (s * l).abs()) + (F_u.abs() + (s * u).abs())) + TINY
    return c + pad


def _chord_lower(F_l, F_u, s, l, u):
    torch = _torch()
    c = torch.minimum(F_l - s * l, F_u - s * u)
    pad = 2 * gamma(4) * ((F_l.abs() + (s * l).abs()) + (F_u.abs() + (s * u).abs())) + TINY
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
    torch = _torch()
    kind = layer.kind
    if kind in ("relu", "leaky_relu"):
        k = float(getattr(layer, "slope", 0.0))
        act, inact = l >= 0, u <= 0
        unst = ~(act | inact)
        den = torch.where(unst, u - l, torch.ones_like(u))
        stable_slope = torch.where(act, torch.ones_like(u), torch.full_like(u, k))
        s = torch.where(unst, (u - k * l) / den, stable_slope)
        ub = torch.where(unst, _chord_upper(k * l, u, s, l, u), torch.zeros_like(u))
        la = torch.where(unst, k + (1.0 - k) * lam, stable_slope)
        return _CopyPlanes(la, torch.zeros_like(u), s, ub)
    mu, _ = _deriv_range(kind, l, u)
    f_l, f_u = _fn(kind, l), _fn(kind, u)
    err = ACTIVATION_ULPS[kind] * UNIT * ACTIVATION_RANGE[kind] + TINY
    lb = f_l - mu * l - (err + gamma(4) * (f_l.abs() + (mu * l).abs()))
    ub = f_u - mu * u + (err + gamma(4) * (f_u.abs() + (mu * u).abs()))
    return _CopyPlanes(mu, lb, mu, ub)


def _slope_range(layer, l1, u1, l2, u2):
    """Range ``[g_lo, g_hi]`` of the secant slope of f between a point of each box."""
    torch = _torch()
    if layer.kind in ("relu", "leaky_relu"):
        k = float(getattr(layer, "slope", 0.0))
        one = torch.ones_like(l1)
        glo = torch.where((l1 >= 0) & (l2 >= 0), one, k * one)
        ghi = torch.where((u1 <= 0) & (u2 <= 0), k * one, one)
        return glo, ghi
    return _deriv_range(layer.kind, torch.minimum(l1, l2), torch.maximum(u1, u2))


def _envelope(glo, ghi, dl, du):
    """Planes ``sl Δz + cl <= g Δz <= su Δz + cu`` for ``g ∈ [glo, ghi]``, ``Δz ∈ [dl, du]``."""
    torch = _torch()
    pos, neg = dl >= 0, du <= 0
    mix = ~(pos | neg)
    den = torch.where(mix, du - dl, torch.ones_like(du))
    su = torch.where(pos, ghi, torch.where(neg, glo, (ghi * du - glo * dl) / den))
    sl = torch.where(pos, glo, torch.where(neg, ghi, (glo * du - ghi * dl) / den))
    Eu_l, Eu_u = torch.maximum(glo * dl, ghi * dl), torch.maximum(glo * du, ghi * du)
    El_l, El_u = torch.minimum(glo * dl, ghi * dl), torch.minimum(glo * du, ghi * du)
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
    m_copy_a: Any
    m_copy_b: Any
    m_p1: Any
    m_pD: Any
    m_p0: Any


def _default_theta(c1, c2, su, cu, sl, cl, l1, u1, dl, du):
    """1 where the two-copy plane is the better one at the centre of the boxes."""
    z = 0.5 * (l1 + u1)
    d = 0.5 * (dl + du)
    up_b = (c2.ua - c1.la) * z + c2.ua * d + (c2.ub - c1.lb)
    lo_b = (c2.la - c1.ua) * z + c2.la * d + (c2.lb - c1.ub)
    thu = (up_b <= su * d + cu).to(z.dtype)
    thl = (lo_b >= sl * d + cl).to(z.dtype)
    return thu, thl


def _lam_default(l, u):
    """CROWN's adaptive lower slope: 1 where ``u > -l``, else the leak."""
    return (u > -l).to(l.dtype)


def _elementwise_planes(layer, c1: _CopyPlanes, l1, u1, l2, u2, dl, du, par: dict
                        ) -> _DiffPlanes:
    torch = _torch()
    if layer.kind in ("relu", "leaky_relu") and "lam2" not in par:
        par["lam2"] = _lam_default(l2, u2).detach()
    c2 = _copy_planes(layer, l2, u2, par.get("lam2"))
    glo, ghi = _slope_range(layer, l1, u1, l2, u2)
    su, cu, sl, cl = _envelope(glo, ghi, dl, du)
    if "thu" not in par or "thl" not in par:
        thu, thl = _default_theta(c1, c2, su, cu, sl, cl, l1, u1, dl, du)
        par.setdefault("thu", thu.detach())
        par.setdefault("thl", thl.detach())
    tu, tl = par["thu"], par["thl"]
    pu1 = tu * (c2.ua - c1.la)
    puD = tu * c2.ua + (1 - tu) * su
    pu0 = tu * (c2.ub - c1.lb) + (1 - tu) * cu
    pl1 = tl * (c2.la - c1.ua)
    plD = tl * c2.la + (1 - tl) * sl
    pl0 = tl * (c2.lb - c1.ub) + (1 - tl) * cl
    with torch.no_grad():
        tua, tla = tu.abs(), tl.abs()
        m_p1 = torch.maximum(tua * (c2.ua.abs() + c1.la.abs()), tla * (c2.la.abs() + c1.ua.abs()))
        m_pD = torch.maximum(tua * c2.ua.abs() + (1 - tu).abs() * su.abs(),
                             tla * c2.la.abs() + (1 - tl).abs() * sl.abs())
        m_p0 = torch.maximum(tua * (c2.ub.abs() + c1.lb.abs()) + (1 - tu).abs() * cu.abs(),
                             tla * (c2.lb.abs() + c1.ub.abs()) + (1 - tl).abs() * cl.abs())
        m_a = torch.maximum(c1.ua.abs(), c1.la.abs())
        m_b = torch.maximum(c1.ub.abs(), c1.lb.abs())
    return _DiffPlanes(c1, pu1, puD, pu0, pl1, plD, pl0, m_a, m_b, m_p1, m_pD, m_p0)


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
    torch = _torch()
    glo, ghi = lo[groups], hi[groups]
    j = torch.argmax(glo, dim=1)
    rows = torch.arange(groups.shape[0])
    best = groups[rows, j]
    others_hi = torch.where(groups == best[:, None], torch.full_like(ghi, -math.inf),
                            ghi).amax(dim=1)
    decided = (glo[rows, j] >= others_hi).to(lo.dtype)
    return _PoolSide(best, decided, ghi.amax(dim=1))


def _copy1_pool_planes(side: _PoolSide) -> _PoolPlanes:
    torch = _torch()
    return _PoolPlanes([(0, side.best, side.decided)], side.hi * (1 - side.decided),
                       [(0, side.best, torch.ones_like(side.hi))], [], None, [], None)


def _pool_planes(layer, p1: _PoolSide, l2, u2, dl, du, par: dict) -> _PoolPlanes:
    torch = _torch()
    g = torch.as_tensor(layer.groups)
    w1, dec1, hi1 = p1.best, p1.decided, p1.hi
    s2 = _pool_side(g, l2, u2)
    w2, dec2, hi2 = s2.best, s2.decided, s2.hi
    maxdu = du[g].amax(dim=1)
    mindl = dl[g].amin(dim=1)
    if "thu" not in par:
        par["thu"] = torch.zeros_like(hi1)
        par["thl"] = torch.zeros_like(hi1)
    tu, tl = par["thu"], par["thl"]
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

    def __init__(self, region: PairRegion) -> None:
        torch = _torch()
        T = lambda v: torch.as_tensor(np.asarray(v, np.float64))  # noqa: E731
        Al, Ah, L, H = T(region.a_lo), T(region.a_hi), T(region.lo), T(region.hi)
        r = region.radius
        self.Al, self.Ah, self.L, self.H = Al, Ah, L, H
        self.r, self.norm = r, region.norm
        pairs = []
        for a in (Al, Ah):
            for b in (torch.clamp(a - r, min=L), torch.clamp(a + r, max=H)):
                pairs.append((a, b - a, None))
        for b in (L, H):
            alo, ahi = torch.clamp(b - r, min=Al), torch.clamp(b + r, max=Ah)
            ok = alo <= ahi
            if not bool(ok.any()):
                continue
            for a in (alo, ahi):
                pairs.append((a, b - a, None if bool(ok.all()) else ok))
        self.pairs = pairs
        z = torch.zeros_like(Al)
        # feasible moves from the optimal a = b (module docstring), as 0/1 masks
        self.room = {k: (v).to(Al.dtype) for k, v in (
            ("hi_above_L", Ah > L), ("hi_below_H", Ah < H), ("hi_above_Al", Ah > Al),
            ("lo_below_H", Al < H), ("lo_above_L", Al > L), ("lo_below_Ah", Al < Ah))}
        self.z = z
        self.mag_ab = torch.maximum(torch.maximum(Al.abs(), Ah.abs()),
                                    torch.maximum(L.abs(), H.abs()))

    def maximise(self, g, c):
        """``(value, magnitude)`` of ``max g·a + c·ε`` per row; ``c=None`` means 0."""
        torch = _torch()
        V0 = torch.maximum(g * self.Al, g * self.Ah)
        if c is None:
            with torch.no_grad():
                mag = 4.0 * (g.abs() * self.mag_ab).sum(1)
            return V0.sum(1), mag
        Vr = V0
        for a, e, ok in self.pairs:
            v = g * a + c * e
            if ok is not None:
                v = torch.where(ok, v, V0)
            Vr = torch.maximum(Vr, v)
        r = self.r
        with torch.no_grad():
            mag = 4.0 * ((g.abs() + c.abs()) * (2 * self.mag_ab + r)).sum(1) + \
                float(g.shape[1]) * (Vr - V0).sum(1)
        if self.norm == "linf":
            return Vr.sum(1), mag
        rm = self.room
        s_pos = torch.maximum(torch.maximum(-c * rm["hi_above_L"], c * rm["hi_below_H"]),
                              (c - g) * rm["hi_above_Al"])
        s_neg = torch.maximum(torch.maximum(c * rm["lo_below_H"], -c * rm["lo_above_L"]),
                              (g - c) * rm["lo_below_Ah"])
        s = torch.where(g > 0, s_pos, torch.where(g < 0, s_neg, c.abs())).clamp(min=0.0)
        gain = Vr - V0
        with torch.no_grad():
            mag = mag + r * s.sum(1)
        if self.norm == "l2":
            return V0.sum(1) + torch.minimum(r * torch.linalg.vector_norm(s, dim=1),
                                             gain.sum(1)), mag
        pos = s > 0
        cap = torch.where(pos, gain / torch.where(pos, s, torch.ones_like(s)), torch.zeros_like(s))
        s_o, order = torch.sort(s, dim=1, descending=True)
        cap_o = torch.gather(cap, 1, order)
        before = torch.cumsum(cap_o, 1) - cap_o
        t = torch.minimum((r - before).clamp(min=0.0), cap_o)
        return V0.sum(1) + (s_o * t).sum(1), mag


# ------------------------------------------------------------------------- the pass
@dataclass
class _Copy1:
    """Copy 1 over the a-box (independent of the radius): boxes, forward errors and
    relaxations (elementwise: :class:`_CopyPlanes`; max-pool: :class:`_PoolSide`)."""

    lo: list
    hi: list
    e: list
    planes: dict


@dataclass
class _PassState:
    """Torch boxes per entry (copy 1, copy 2, difference) and relaxations per layer."""

    lo1: list
    hi1: list
    lo2: list
    hi2: list
    dlo: list
    dhi: list
    e1: list
    e2: list
    planes: dict
    mag1: list = field(default_factory=list)
    magD: list = field(default_factory=list)


class DifferentialAnalysis:
    """Differential bounds of one network over one :class:`PairRegion`.

    ``prior1`` / ``prior2`` (optional :class:`~nnresilience.bounds.types.NetworkBounds`,
    float-sound) are intersected into the copy boxes: bounds of copy 1 over the a-box and
    of copy 2 over the domain. Copy 1 does not depend on the radius: it is computed once
    (CROWN over the a-box, adaptive lower slopes) and reused by :meth:`set_radius`.
    :meth:`bounds` runs one pass; :meth:`target_upper` also bounds output targets;
    :meth:`optimise` tunes :class:`DiffParams` for targets.
    """

    def __init__(self, network, region: PairRegion, prior1=None, prior2=None) -> None:
        net = network.merged() if network.layers[0].kind != "affine" else network
        if region.dim != net.n_inputs:
            raise ShapeMismatchError(f"pair region has {region.dim} inputs, the network "
                                     f"{net.n_inputs}")
        self.network = net
        self.tn = _TorchNet(net)
        self.prior1 = prior1
        self.prior2 = prior2
        self._copy1: _Copy1 | None = None
        self.set_radius(region.radius, region)

    def set_radius(self, radius: float, region: PairRegion | None = None) -> None:
        """Move to another radius (same a-box and domain); copy 1 is kept."""
        self.region = (self.region if region is None else region).with_radius(radius)
        self.geom = _PairGeometry(self.region)

    # ---------------------------------------------------------------- public API
    def bounds(self, params: DiffParams | None = None) -> DiffBounds:
        t0 = time.perf_counter()
        params = DiffParams() if params is None else params
        with _one_thread(), _torch().no_grad():
            st = self._pass(params)
        return self._to_bounds(st, time.perf_counter() - t0)

    def target_upper(self, targets: LinearTargets, params: DiffParams | None = None
                     ) -> tuple[np.ndarray, DiffBounds]:
        """Sound upper bounds of ``A·y1 + B·Δy + c`` (exact arithmetic network values)
        over the region, and the boxes of the pass."""
        t0 = time.perf_counter()
        params = DiffParams() if params is None else params
        torch = _torch()
        with _one_thread(), torch.no_grad():
            st = self._pass(params)
            up = self._targets(st, targets)
        return up.numpy().copy(), self._to_bounds(st, time.perf_counter() - t0)

    def optimise(self, targets, params: DiffParams | None = None, iterations: int = 30,
                 lr: float = 0.2, goal: np.ndarray | None = None,
                 deadline: float | None = None, extra_vars: tuple = ()
                 ) -> tuple[np.ndarray, DiffParams, dict]:
        """Projected Adam on the relaxation parameters, minimising the sum of the
        targets' upper bounds (with ``goal``: the sum of their excess over it, stopping
        once every target is below); returns the best sound bounds seen, the parameters
        that gave them and statistics.

        ``targets`` is a :class:`LinearTargets` or a callable returning one whose arrays
        are torch tensors built from ``extra_vars`` (further variables optimised with the
        same step and kept ``>= 0``: the premise multipliers of
        :mod:`~nnresilience.resilience.certify_diff`). Every iterate is sound (any
        parameter values give valid relaxations), so the best one is kept.
        """
        torch = _torch()
        params = DiffParams() if params is None else params
        t0 = time.perf_counter()
        with _one_thread():
            with torch.no_grad():
                self._pass(params)          # fills in the default parameters
            for d in params.layers.values():
                for key in list(d):
                    d[key] = d[key].detach().clone().requires_grad_(True)
            build = targets if callable(targets) else (lambda: targets)
            opt = torch.optim.Adam(params.tensors() + list(extra_vars), lr=lr)
            goal_t = None if goal is None else torch.as_tensor(np.asarray(goal, np.float64))
            best, best_params, best_extra, hist = None, params.detached(), None, []
            for it in range(iterations + 1):
                up = self._targets(self._pass(params), build())
                val = up.detach()
                excess = val.sum() if goal_t is None else (val - goal_t).clamp(min=0.0).sum()
                hist.append(float(excess))
                if best is None or hist[-1] < best[0]:
                    best = (hist[-1], val.clone())
                    best_params = params.detached()
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
                params.project()
                with torch.no_grad():
                    for v in extra_vars:
                        v.clamp_(min=0.0)
            with torch.no_grad():
                for v, b in zip(extra_vars, best_extra or [], strict=False):
                    v.copy_(b)
        stats = {"iterations": len(hist) - 1, "first": hist[0], "best": best[0],
                 "seconds": time.perf_counter() - t0}
        return best[1].numpy().copy(), best_params, stats

    # ---------------------------------------------------------------- internals
    def _to_bounds(self, st: _PassState, seconds: float) -> DiffBounds:
        N = lambda xs: [x.detach().numpy().copy() for x in xs]  # noqa: E731
        b = DiffBounds(self.region, N(st.lo1), N(st.hi1), N(st.lo2), N(st.hi2), N(st.dlo),
                       N(st.dhi), [np.asarray(e) for e in st.e1], [np.asarray(e) for e in st.e2],
                       seconds)
        return b

    def _copy1_state(self) -> _Copy1:
        """Copy 1 over the a-box (cached): interval ∩ back-substitution ∩ prior1."""
        if self._copy1 is not None:
            return self._copy1
        torch = _torch()
        reg = self.region
        T = lambda v: torch.as_tensor(np.asarray(v, np.float64))  # noqa: E731
        st = _PassState([T(reg.a_lo)], [T(reg.a_hi)], [], [], [], [], [np.zeros(reg.dim)], [],
                        {})
        fe = ForwardError(reg.dim)
        with torch.no_grad():
            for i, layer in enumerate(self.tn.layers):
                lo, hi = st.lo1[i], st.hi1[i]
                if layer.kind == "affine":
                    r = self._affine_interval(i, lo, hi, with_bias=True)
                    if i >= 1:
                        n = layer.out_size
                        eye = torch.eye(n, dtype=torch.float64)
                        up = self._chunked(st, i + 1, torch.cat([eye, -eye], 0), None)
                        r = (torch.maximum(r[0], -up[n:]), torch.minimum(r[1], up[:n]))
                elif layer.kind == "maxpool":
                    st.planes[i] = _pool_side(torch.as_tensor(layer.groups), lo, hi)
                    r = self._act_interval(layer, lo, hi)
                else:
                    lam = _lam_default(lo, hi) if layer.kind in ("relu", "leaky_relu") else None
                    st.planes[i] = _copy_planes(layer, lo, hi, lam)
                    r = self._act_interval(layer, lo, hi)
                e = fe.step(layer, lo.numpy(), hi.numpy())
                nlo, nhi = _outward(r[0], r[1], T(e))
                nlo, nhi = self._prior(self.prior1, i + 1, nlo, nhi)
                st.lo1.append(nlo)
                st.hi1.append(torch.maximum(nhi, nlo))
                st.e1.append(e)
        self._copy1 = _Copy1(st.lo1, st.hi1, st.e1, st.planes)
        return self._copy1

    def _pass(self, params: DiffParams) -> _PassState:
        """Boxes of copy 2 and of the difference for every entry (copy 1 cached);
        relaxations are built from the final boxes."""
        torch = _torch()
        reg = self.region
        T = lambda v: torch.as_tensor(np.asarray(v, np.float64))  # noqa: E731
        c1 = self._copy1_state()
        b_lo, b_hi = reg.b_box()
        e_lo, e_hi = reg.eps_box()
        st = _PassState(c1.lo, c1.hi, [T(b_lo)], [T(b_hi)], [T(e_lo)], [T(e_hi)], c1.e,
                        [np.zeros(reg.dim)], {})
        fe2 = ForwardError(reg.dim)
        tn = self.tn
        for i, layer in enumerate(tn.layers):
            l1, u1, l2, u2, dl, du = (st.lo1[i], st.hi1[i], st.lo2[i], st.hi2[i], st.dlo[i],
                                      st.dhi[i])
            if layer.kind == "affine":
                r2 = self._affine_interval(i, l2, u2, with_bias=True)
                rd = self._affine_interval(i, dl, du, with_bias=False)
                n = layer.out_size
                eye = torch.eye(n, dtype=torch.float64)
                zero = torch.zeros((n, n), dtype=torch.float64)
                A = torch.cat([zero, zero, eye, -eye], 0)
                B = torch.cat([eye, -eye, eye, -eye], 0)
                up = self._chunked(st, i + 1, A, B)
                rd = (torch.maximum(rd[0], -up[n:2 * n]), torch.minimum(rd[1], up[:n]))
                r2 = (torch.maximum(r2[0], -up[3 * n:]), torch.minimum(r2[1], up[2 * n:3 * n]))
            else:
                par = params.layers.setdefault(i, {})
                if layer.kind == "maxpool":
                    st.planes[i] = _pool_planes(layer, c1.planes[i], l2, u2, dl, du, par)
                else:
                    st.planes[i] = _elementwise_planes(layer, c1.planes[i], l1, u1, l2, u2, dl,
                                                       du, par)
                r2 = self._act_interval(layer, l2, u2)
                rd = self._diff_interval(layer, l1, u1, l2, u2, dl, du)
            # x2 = x1 + Δ exactly; the copy-1 box contains the exact x1
            r1 = (c1.lo[i + 1], c1.hi[i + 1])
            s_lo, s_hi = _outward(r1[0] + rd[0], r1[1] + rd[1], torch.zeros_like(r1[0]))
            r2 = (torch.maximum(r2[0], s_lo), torch.minimum(r2[1], s_hi))
            s_lo, s_hi = _outward(r2[0] - r1[1], r2[1] - r1[0], torch.zeros_like(r1[0]))
            rd = (torch.maximum(rd[0], s_lo), torch.minimum(rd[1], s_hi))
            e2 = fe2.step(layer, l2.detach().numpy(), u2.detach().numpy())
            lo2, hi2 = _outward(r2[0], r2[1], T(e2))
            lo2, hi2 = self._prior(self.prior2, i + 1, lo2, hi2)
            # guard against crossing by rounding of the intersections (never in exact math)
            st.lo2.append(lo2)
            st.hi2.append(torch.maximum(hi2, lo2))
            st.dlo.append(rd[0])
            st.dhi.append(torch.maximum(rd[1], rd[0]))
            st.e2.append(e2)
        return st

    def _prior(self, prior, i, lo, hi):
        if prior is None:
            return lo, hi
        torch = _torch()
        return (torch.maximum(lo, torch.as_tensor(prior.lo[i])),
                torch.minimum(hi, torch.as_tensor(prior.hi[i])))

    def _affine_interval(self, i, lo, hi, with_bias: bool):
        tn = self.tn
        W, aW = tn.W[i], tn.absW[i]
        mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
        c = _mv(W, mid)
        if with_bias:
            c = c + tn.b[i]
        r = _mv(aW, rad)
        with _torch().no_grad():
            mag = _mv(aW, torch_maxabs(lo, hi)) + (tn.b[i].abs() if with_bias else 0.0)
            pad = 2 * gamma(tn.terms[i] + 2) * (mag + r.abs() + c.abs()) + TINY
        return _outward(c - r, c + r, pad)

    def _act_interval(self, layer, lo, hi):
        torch = _torch()
        if layer.kind == "maxpool":
            g = torch.as_tensor(layer.groups)
            return lo[g].amax(1), hi[g].amax(1)
        if layer.kind == "relu":
            return lo.clamp(min=0.0), hi.clamp(min=0.0)
        if layer.kind == "leaky_relu":
            k = layer.slope
            flo = torch.where(lo >= 0, lo, k * lo)
            fhi = torch.where(hi >= 0, hi, k * hi)
            return _outward(flo, fhi, torch.zeros_like(lo))
        err = ACTIVATION_ULPS[layer.kind] * UNIT * ACTIVATION_RANGE[layer.kind] + TINY
        return _outward(_fn(layer.kind, lo), _fn(layer.kind, hi), err * torch.ones_like(lo))

    def _diff_interval(self, layer, l1, u1, l2, u2, dl, du):
        torch = _torch()
        f1 = self._act_interval(layer, l1, u1)
        f2 = self._act_interval(layer, l2, u2)
        b_lo, b_hi = _outward(f2[0] - f1[1], f2[1] - f1[0], torch.zeros_like(f1[0]))
        if layer.kind == "maxpool":
            g = torch.as_tensor(layer.groups)
            return torch.maximum(dl[g].amin(1), b_lo), torch.minimum(du[g].amax(1), b_hi)
        glo, ghi = _slope_range(layer, l1, u1, l2, u2)
        up = torch.maximum(torch.maximum(glo * du, ghi * du), torch.maximum(glo * dl, ghi * dl))
        lo = torch.minimum(torch.minimum(glo * dl, ghi * dl), torch.minimum(glo * du, ghi * du))
        lo, up = _outward(lo, up, torch.zeros_like(lo))
        return torch.maximum(lo, b_lo), torch.minimum(up, b_hi)

    def _chunked(self, st: _PassState, j: int, A, B):
        """:meth:`_backsub` in row chunks (``B=None``: copy-1 targets only)."""
        torch = _torch()
        c = torch.zeros(A.shape[0], dtype=torch.float64)
        return torch.cat([self._backsub(st, j, A[s:s + CHUNK_ROWS],
                                        None if B is None else B[s:s + CHUNK_ROWS],
                                        c[s:s + CHUNK_ROWS])
                          for s in range(0, A.shape[0], CHUNK_ROWS)])

    def _targets(self, st: _PassState, targets):
        torch = _torch()
        A, B, c = (torch.as_tensor(np.asarray(v, np.float64)) if isinstance(v, np.ndarray)
                   else v for v in (targets.A, targets.B, targets.c))
        return self._backsub(st, len(self.tn.layers), A, B, c)

    def _backsub(self, st: _PassState, j: int, A, B, c):
        """Sound upper bound of ``A·x1_j + B·Δ_j + c`` over the region (per row);
        ``B=None`` bounds copy-1 forms (the region's a-box only)."""
        torch = _torch()
        tn = self.tn
        M = c.detach().abs().clone()
        for i in range(j - 1, -1, -1):
            layer = tn.layers[i]
            m1 = torch_maxabs(st.lo1[i], st.hi1[i]).detach()
            mD = None if B is None else torch_maxabs(st.dlo[i], st.dhi[i]).detach()
            if layer.kind == "affine":
                with torch.no_grad():
                    M = M + A.abs() @ (_mv(tn.absW[i], m1) + tn.b[i].abs())
                    if B is not None:
                        M = M + B.abs() @ _mv(tn.absW[i], mD)
                c = c + A @ tn.b[i]
                A = _mm(A, tn.W[i])
                if B is not None:
                    B = _mm(B, tn.W[i])
            elif layer.kind == "maxpool":
                A, B, c, M = self._back_pool(st.planes[i], layer, A, B, c, M, m1, mD)
            else:
                p = st.planes[i]
                q = p if isinstance(p, _CopyPlanes) else p.c1
                Ap, An = _pos(A), _neg(A)
                with torch.no_grad():
                    M = M + A.abs() @ (torch.maximum(q.ua.abs(), q.la.abs()) * m1
                                       + torch.maximum(q.ub.abs(), q.lb.abs()))
                c = c + Ap @ q.ub + An @ q.lb
                A_new = Ap * q.ua + An * q.la
                if B is not None:
                    Bp, Bn = _pos(B), _neg(B)
                    with torch.no_grad():
                        M = M + B.abs() @ (p.m_p1 * m1 + p.m_pD * mD + p.m_p0)
                    c = c + Bp @ p.pu0 + Bn @ p.pl0
                    A_new = A_new + Bp * p.pu1 + Bn * p.pl1
                    B = Bp * p.puD + Bn * p.plD
                A = A_new
        val, mag = self.geom.maximise(A, B)
        val = val + c
        with torch.no_grad():
            pad = 4 * gamma(tn.n_sum) * (M + mag + c.abs()) + TINY * (4 * len(tn.layers) + 64)
        return _up(val, pad)

    def _back_pool(self, p, layer, A, B, c, M, m1, mD):
        torch = _torch()
        if isinstance(p, _PoolSide):
            p = _copy1_pool_planes(p)
        n_in = layer.in_size
        T = A.shape[0]
        Ap, An = _pos(A), _neg(A)
        A_new = torch.zeros((T, n_in), dtype=torch.float64)
        B_new = None if B is None else torch.zeros((T, n_in), dtype=torch.float64)

        def add(coefs, terms):
            nonlocal A_new, B_new
            for var, idx, k in terms:
                contrib = coefs * k[None, :]
                if var == 0:
                    A_new = A_new.index_add(1, idx, contrib)
                else:
                    B_new = B_new.index_add(1, idx, contrib)

        def tmag(terms, const=None):
            out = torch.zeros(layer.out_size, dtype=torch.float64) if const is None \
                else const.abs().clone()
            for var, idx, k in terms:
                out = out + k.abs() * (m1 if var == 0 else mD)[idx]
            return out

        add(Ap, p.c1_up)
        add(An, p.c1_lo)
        c = c + Ap @ p.c1_up0
        with torch.no_grad():
            M = M + A.abs() @ torch.maximum(tmag(p.c1_up, p.c1_up0), tmag(p.c1_lo))
        if B is not None:
            Bp, Bn = _pos(B), _neg(B)
            add(Bp, p.d_up)
            add(Bn, p.d_lo)
            c = c + Bp @ p.d_up0 + Bn @ p.d_lo0
            with torch.no_grad():
                M = M + B.abs() @ torch.maximum(tmag(p.d_up, p.d_up0), tmag(p.d_lo, p.d_lo0))
        return A_new, B_new, c, M


def torch_maxabs(lo, hi):
    return _torch().maximum(lo.abs(), hi.abs())


def differential_bounds(network, region: PairRegion, params: DiffParams | None = None,
                        prior1=None, prior2=None) -> DiffBounds:
    """Boxes of copy 1, copy 2 and their difference for every entry (one pass)."""
    return DifferentialAnalysis(network, region, prior1, prior2).bounds(params)
