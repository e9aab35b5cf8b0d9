"""Euclidean (L2) rows: the ball of a region and the norm objective of resilience MIPs.

Both are one *quadratic* row over difference columns (``δ = x - c`` or ``ε = b - a``, tied
to the inputs by linear equalities), so only backends with quadratic constraints (SCIP)
take them:

* ball: ``Σ δ_i² <= r²`` — convex;
* norm: ``Σ ε_i² - s² <= 0`` with ``s >= 0``, minimise ``s`` — a second-order cone
  (``||ε||_2 <= s``), which SCIP recognises and handles as convex (no spatial branching).
  Minimising ``s`` rather than ``Σ ε_i²`` keeps the objective in the units of the norm, so
  cutoffs, warm-start rows and the optimality test are the same as for L1/L∞, and the
  coupling cuts bound output changes by ``||G_j||_2 · s`` (Cauchy–Schwarz).

**Tolerance of a quadratic row** (docs/resilience.md, "L2"). A solver accepts a point
when the row holds up to ``τ_q = ε_f · s_q`` (``s_q`` the row's scale,
:func:`nnresilience.backends.certify.model_tau`), in the row's own, *squared* units. So
its model may have ``Σ δ² <= r² - τ_q`` instead of ``r²`` — a ball of radius
``sqrt(r² - τ_q)``, short of ``r`` by up to ``τ_q / (2 r)``, which grows as ``r`` shrinks.
Two rules keep that from becoming a wrong bound: a *decided* ball is encoded with
``r'² = r² + τ_q`` (:func:`inflated_radius`), so "no point of the ball flips" still covers
the radius-``r`` ball; the relaxed resilience problem has its norm row loosened to
``Σ ε² - s² <= τ_q``, so the true optimum ``(ε*, s* = ||ε*||)`` stays feasible in any
model whose rows differ from ours by ``τ_q`` and the dual bound stays ``<= Φ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnresilience.encode.model import MilpModel, QuadConstraint


@dataclass(frozen=True)
class NormCone(QuadConstraint):
    """The cone row ``Σ ε² - s² <= hi`` of an L2 resilience MIP: the row the *relaxed*
    problem loosens (``hi = τ``; :func:`nnresilience.resilience.common.relax_rows`)."""


def _differences(model: MilpModel, x: np.ndarray, y: np.ndarray | None,
                 y_const: np.ndarray | None, lo: np.ndarray, hi: np.ndarray,
                 name: str) -> np.ndarray:
    """New columns ``d = x - y`` (``y`` columns, or the constant ``y_const``), bounded by
    ``[lo, hi]``, with the equality rows ``x - y - d = 0``."""
    n = x.size
    d = model.add_vars(n, lo, hi, name=name)
    r = np.arange(n)
    if y is not None:
        model.add_terms(np.r_[r, r, r], np.r_[x, y, d],
                        np.r_[np.ones(n), -np.ones(n), -np.ones(n)], n, 0.0, 0.0)
    else:
        model.add_terms(np.r_[r, r], np.r_[x, d], np.r_[np.ones(n), -np.ones(n)], n,
                        y_const, y_const)
    return d


def sum_of_squares_row(cols: np.ndarray, minus: int | None, hi: float,
                       kind: type[QuadConstraint] = QuadConstraint) -> QuadConstraint:
    """``Σ cols² (- minus²) <= hi``."""
    quad = [(int(i), int(i), 1.0) for i in cols]
    if minus is not None:
        quad.append((int(minus), int(minus), -1.0))
    return kind((), (), tuple(quad), -math.inf, float(hi))


def encode_l2_ball(model: MilpModel, x: np.ndarray, center: np.ndarray, radius: float,
                   lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """``||x - center||_2 <= radius`` on the input columns ``x`` already boxed by
    ``[lb, ub]``; returns the ``δ = x - center`` columns."""
    c = np.asarray(center, float)
    delta = _differences(model, x, None, c, lb - c, ub - c, "delta")
    model.quad.append(sum_of_squares_row(delta, None, radius * radius))
    return delta


def encode_l2_norm(model: MilpModel, b: np.ndarray, a: np.ndarray | None,
                   a_const: np.ndarray | None, span: np.ndarray) -> np.ndarray:
    """Objective column ``s >= ||b - a||_2`` (minimised); ``a`` columns or the constant
    ``a_const``; ``|b_i - a_i| <= span_i``. Returns ``[s]``; the cone row is a
    :class:`NormCone`."""
    span = np.asarray(span, float)
    eps = _differences(model, b, a, a_const, -span, span, "eps")
    s = model.add_vars(1, 0.0, float(np.linalg.norm(span)) * (1 + 1e-12) + 1e-300,
                       obj=1.0, name="s_l2")
    model.quad.append(sum_of_squares_row(eps, int(s[0]), 0.0, NormCone))
    model.set_objective(s, 1.0)
    return s


def inflated_radius(radius: float, dim: int, feasibility: float) -> float:
    """``r'`` with ``r'² = r² + τ_q`` for the ball row of :func:`encode_l2_ball` (the
    columns ``δ`` have magnitude at most ``max(1, r')``, so its scale is at most
    ``1 + dim·max(1, r')² + r'²``), computed with a 2x safety factor on ``τ_q``."""
    r = float(radius)
    big = r
    for _ in range(4):
        big1 = max(1.0, big)
        tau_q = feasibility * (1.0 + dim * big1 * big1 + big * big)
        new = math.sqrt(r * r + 2.0 * tau_q)
        if new <= big:
            return big
        big = new * (1.0 + 1e-12)
    return big
