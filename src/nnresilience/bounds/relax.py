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

Floating point: slopes and intercepts are computed in float64, so "the chord" or "the
tangent" is only approximately what we return. What matters is that each returned line
``a x + c`` (with the float ``a`` and ``c`` as returned) is valid *in real arithmetic* for
the exact function on ``[lo, hi]``: then it is valid for the exact network, which is what
back-substitution, the LP and the MILP encoder reason about (the float64 forward value is
accounted for separately, see :mod:`nnresilience.bounds.rounding`). So whatever slope the
float computation gave, the intercept is derived for *that* slope, rounded outward:

* a line above a convex function (below a concave one) only has to pass above (below)
  both interval ends: ``c = max(f(l) - a l, f(u) - a u)`` (min for below);
* a tangent-like line of slope ``a ~ f'(m)`` below a convex function (above a concave
  one): ``f(x) - a x >= f(m) - a m - |f'(m) - a| max|x - m|``, with ``|f'(m) - a|`` bounded
  by :data:`DERIVATIVE_ERROR`;
* the parallel lines of the mixed case: ``f' >= lam`` on ``[l, u]``, so with the float
  ``a ~ lam``, ``f(x) - a x`` stays above ``f(l) - a l - |lam - a| (u - l)`` (and below
  the corresponding value at ``u``).

``f(l)``, ``f(u)``, ``f(m)`` are library values, off by at most
:func:`~nnresilience.bounds.rounding.activation_rounding`; each intercept evaluation is
padded by :func:`~nnresilience.bounds.rounding.sum_error` of the magnitudes it combines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnresilience.bounds.rounding import UNIT, activation_rounding, down, sum_error, up
from nnresilience.network.layers import Layer

#: Below this width a neuron's interval is treated as a point: constant bounds f(l), f(u).
TINY_WIDTH = 1e-9
S_SHAPED = ("arctan", "tanh", "sigmoid")
PIECEWISE = ("relu", "leaky_relu")
#: Absolute error of :func:`_derivative` (all three kinds have ``0 < f' <= 1``):
#: ``1/(1+x^2)`` is three roundings (<= 3u); ``1 - tanh^2`` inherits twice the error of
#: tanh (8u, :data:`~.rounding.ACTIVATION_ULPS`) plus two roundings (<= 18u); sigmoid's
#: ``s(1-s)`` with ``s = (1 + tanh(x/2))/2`` at most |1-2s| times half that, plus two.
DERIVATIVE_ERROR = 32.0 * UNIT


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
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + x * x)
    if kind == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if kind == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * x))
        return s * (1.0 - s)
    raise ValueError(kind)


def _above(fx: np.ndarray, x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A float ``c >= fx - a x`` (real arithmetic): the intercept of slope ``a`` through
    ``(x, fx)``, rounded up."""
    with np.errstate(invalid="ignore", over="ignore"):
        ax = a * x
        return up(fx - ax + sum_error(np.abs(fx) + np.abs(ax), 2))


def _below(fx: np.ndarray, x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A float ``c <= fx - a x`` (real arithmetic), rounded down."""
    with np.errstate(invalid="ignore", over="ignore"):
        ax = a * x
        return down(fx - ax - sum_error(np.abs(fx) + np.abs(ax), 2))


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
    # f is convex: a line above both ends (f(u) = u, f(l) = k l) is above f on [l, u];
    # both intercepts (equal in exact arithmetic) rounded up by the error of their terms
    su, sl, kl = s * u, s * l, k * l
    ub[unstable] = up(np.maximum(u - su, kl - sl)
                      + sum_error(np.abs(u) + np.abs(su) + np.abs(kl) + np.abs(sl), 3))
    la[unstable] = np.where(u > -l, 1.0, k)
    return LinearRelaxation(la, lb, ua, ub)


def _s_shaped(layer: Layer, lo: np.ndarray, hi: np.ndarray) -> LinearRelaxation:
    kind = layer.kind
    f = layer.fn
    # |library f - f|: the same allowance for every x
    err = np.full(lo.shape, float(np.max(activation_rounding(layer, lo), initial=0.0)))
    fl, fu = f(lo), f(hi)
    fl_dn, fl_up = down(fl - err), up(fl + err)  # real bounds of f(lo), f(hi)
    fu_dn, fu_up = down(fu - err), up(fu + err)
    n = lo.size
    la = np.zeros(n)
    ua = np.zeros(n)
    lb = fl_dn.copy()                     # default: constant bounds f(l) <= f(x) <= f(u)
    ub = fu_up.copy()
    with np.errstate(over="ignore"):      # hi - lo > max float: inf, handled below
        width = hi - lo
    wide = width > TINY_WIDTH
    chord = np.zeros(n)
    chord[wide] = (fu[wide] - fl[wide]) / width[wide]
    mid = 0.5 * lo + 0.5 * hi
    fm = f(mid)
    rad = np.maximum(up(hi - mid), up(mid - lo))           # |x - mid| <= rad on [lo, hi]
    tan_s = _derivative(kind, mid)
    slack = up(DERIVATIVE_ERROR * rad)                       # |f'(mid) - tan_s| * |x - mid|
    convex = wide & (hi <= 0.0)
    concave = wide & (lo >= 0.0)
    mixed = wide & ~convex & ~concave
    # convex: chord above (through both ends), tangent below
    c = convex
    ua[c] = chord[c]
    ub[c] = np.maximum(_above(fu_up[c], hi[c], chord[c]), _above(fl_up[c], lo[c], chord[c]))
    la[c] = tan_s[c]
    lb[c] = down(_below(down(fm[c] - err[c]), mid[c], tan_s[c]) - slack[c])
    # concave: chord below, tangent above
    c = concave
    la[c] = chord[c]
    lb[c] = np.minimum(_below(fl_dn[c], lo[c], chord[c]), _below(fu_dn[c], hi[c], chord[c]))
    ua[c] = tan_s[c]
    ub[c] = up(_above(up(fm[c] + err[c]), mid[c], tan_s[c]) + slack[c])
    # crossing the inflection point: parallel lines of the smaller endpoint slope
    lam = np.minimum(_derivative(kind, lo), _derivative(kind, hi))
    # A box wider than the largest float (hi - lo overflows) keeps the constant bounds
    # f(l) <= f(x) <= f(u): the drift of a sloped line would be infinite.
    c = mixed & np.isfinite(width)
    drift = up(DERIVATIVE_ERROR * up(width[c]))             # |lam - float lam| * (u - l)
    la[c] = ua[c] = lam[c]
    lb[c] = down(_below(fl_dn[c], lo[c], lam[c]) - drift)
    ub[c] = up(_above(fu_up[c], hi[c], lam[c]) + drift)
    return LinearRelaxation(la, lb, ua, ub)


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
