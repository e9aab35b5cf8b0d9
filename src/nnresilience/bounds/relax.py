"""Linear relaxations of the non-linear layer kinds, stated as data.

Given a box ``lo <= x <= hi`` on the vector entering a layer, :func:`relax_elementwise`
returns, per neuron, two lines ``la*x + lb <= f(x) <= ua*x + ub`` valid on ``[lo, hi]``,
and :func:`relax_maxpool` returns, per pooled output, one member that is a valid lower
bound and either a member that *is* the maximum (the group is decided) or a constant upper
bound. Back-substitution (:mod:`nnresilience.bounds.symbolic`) and the LP
(:mod:`nnresilience.bounds.lp`) consume these arrays; no layer class knows about them.

Soundness of each relaxation (real arithmetic):

* ReLU / LeakyReLU(k), ``f(x) = max(kx, x)``: ``f`` is convex, so the chord through
  ``(l, f(l))`` and ``(u, f(u))`` lies above it on ``[l, u]``; both lines ``kx`` and ``x``
  lie below it everywhere. The lower line is chosen adaptively (slope 1 when ``u > -l``,
  else ``k``), the DeepPoly heuristic that minimises the relaxation's area.
* S-shaped ``arctan``, ``tanh``, ``sigmoid``: convex on ``x <= 0``, concave on ``x >= 0``
  and ``f'`` is unimodal with its maximum at 0. On a convex piece the chord is above and
  the tangent at the midpoint below; on a concave piece the reverse. On a piece crossing
  0 we use the two lines of slope ``lam = min(f'(l), f'(u))`` through ``(l, f(l))`` and
  ``(u, f(u))``: since ``f' >= lam`` on ``[l, u]``, ``f(x) - f(l) >= lam (x - l)`` and
  ``f(u) - f(x) >= lam (u - x)``.
* MaxPool: every member is below the max; a member whose lower bound is at least every
  other member's upper bound equals the max.

Floating point: slopes and intercepts are computed in float64, so each intercept is moved
outward by :data:`RELAX_PAD` times the magnitude of the quantities involved; this covers
rounding in evaluating the line and in ``np.arctan``/``np.tanh``/``exp`` (a few ulps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnresilience.network.layers import Layer

RELAX_PAD = 1e-12
#: Below this width a neuron's interval is treated as a point: constant bounds f(l), f(u).
TINY_WIDTH = 1e-9
S_SHAPED = ("arctan", "tanh", "sigmoid")
PIECEWISE = ("relu", "leaky_relu")


@dataclass(frozen=True, eq=False)
class LinearRelaxation:
    """``la*x + lb <= f(x) <= ua*x + ub`` elementwise on the box it was built for."""

    la: np.ndarray
    lb: np.ndarray
    ua: np.ndarray
    ub: np.ndarray


@dataclass(frozen=True, eq=False)
class MaxPoolRelaxation:
    """Per output ``i``: ``x[lower_idx[i]] <= y_i``; ``y_i == x[lower_idx[i]]`` if
    ``decided[i]``, else ``y_i <= upper_const[i]``."""

    lower_idx: np.ndarray
    decided: np.ndarray
    upper_const: np.ndarray


def _derivative(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "arctan":
        return 1.0 / (1.0 + x * x)
    if kind == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if kind == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * x))
        return s * (1.0 - s)
    raise ValueError(kind)


def _piecewise(slope: float, lo: np.ndarray, hi: np.ndarray) -> LinearRelaxation:
    k = float(slope)
    n = lo.size
    la = np.empty(n)
    ua = np.empty(n)
    lb = np.zeros(n)
    ub = np.zeros(n)
    active = lo >= 0.0
    inactive = hi <= 0.0
    unstable = ~(active | inactive)
    la[active] = ua[active] = 1.0
    la[inactive] = ua[inactive] = k
    l, u = lo[unstable], hi[unstable]
    s = (u - k * l) / (u - l)
    ua[unstable] = s
    # chord through (u, u): intercept u - s*u = u (1 - s); pad outward.
    ub[unstable] = u * (1.0 - s) + RELAX_PAD * (np.abs(u) + np.abs(l))
    la[unstable] = np.where(u > -l, 1.0, k)
    return LinearRelaxation(la, lb, ua, ub)


def _s_shaped(layer: Layer, lo: np.ndarray, hi: np.ndarray) -> LinearRelaxation:
    kind = layer.kind
    f = layer.fn
    fl, fu = f(lo), f(hi)
    n = lo.size
    la = np.zeros(n)
    ua = np.zeros(n)
    lb = fl.copy()                       # default: constant bounds f(l) <= f(x) <= f(u)
    ub = fu.copy()
    wide = (hi - lo) > TINY_WIDTH
    chord = np.zeros(n)
    chord[wide] = (fu[wide] - fl[wide]) / (hi[wide] - lo[wide])
    mid = 0.5 * (lo + hi)
    tan_s = _derivative(kind, mid)
    tan_b = f(mid) - tan_s * mid
    convex = wide & (hi <= 0.0)
    concave = wide & (lo >= 0.0)
    mixed = wide & ~convex & ~concave
    # convex: chord above, tangent below
    ua[convex] = chord[convex]
    ub[convex] = fu[convex] - chord[convex] * hi[convex]
    la[convex] = tan_s[convex]
    lb[convex] = tan_b[convex]
    # concave: chord below, tangent above
    la[concave] = chord[concave]
    lb[concave] = fl[concave] - chord[concave] * lo[concave]
    ua[concave] = tan_s[concave]
    ub[concave] = tan_b[concave]
    # crossing the inflection point: parallel lines of the smaller endpoint slope
    lam = np.minimum(_derivative(kind, lo), _derivative(kind, hi))
    la[mixed] = ua[mixed] = lam[mixed]
    lb[mixed] = fl[mixed] - lam[mixed] * lo[mixed]
    ub[mixed] = fu[mixed] - lam[mixed] * hi[mixed]
    scale = 1.0 + np.abs(lb) + np.abs(ub) + np.maximum(np.abs(la), np.abs(ua)) * np.maximum(
        np.abs(lo), np.abs(hi))
    return LinearRelaxation(la, lb - RELAX_PAD * scale, ua, ub + RELAX_PAD * scale)


def relax_elementwise(layer: Layer, lo: np.ndarray, hi: np.ndarray) -> LinearRelaxation:
    """Linear lower/upper bounds of an elementwise activation on the box ``[lo, hi]``."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if layer.kind == "relu":
        return _piecewise(0.0, lo, hi)
    if layer.kind == "leaky_relu":
        return _piecewise(layer.slope, lo, hi)
    if layer.kind in S_SHAPED:
        return _s_shaped(layer, lo, hi)
    raise NotImplementedError(f"no linear relaxation for layer kind {layer.kind!r}")


def relax_maxpool(groups: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> MaxPoolRelaxation:
    """Member with the largest lower bound as the lower bound; decided if it dominates."""
    glo = lo[groups]
    ghi = hi[groups]
    j = np.argmax(glo, axis=1)
    rows = np.arange(groups.shape[0])
    best = groups[rows, j]
    best_lo = glo[rows, j]
    others_hi = np.where(groups == best[:, None], -np.inf, ghi).max(axis=1)
    decided = best_lo >= others_hi
    return MaxPoolRelaxation(lower_idx=best, decided=decided, upper_const=ghi.max(axis=1))


def maxpool_undecided(groups: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mask of pooled outputs whose maximising member is not determined by the box."""
    return ~relax_maxpool(groups, lo, hi).decided
