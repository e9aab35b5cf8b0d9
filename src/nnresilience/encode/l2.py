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

Both rows are written divided by ``S²`` (``S`` = the larger of 1 and the columns'
magnitude), so their tolerance scale is about the number of terms.

**Tolerance of a quadratic row** (docs/resilience.md, "L2"). A solver accepts a point
when the row holds up to ``τ_q = ε_f · s_q`` (``s_q`` the row's scale, :func:`row_tau`,
the rule of :func:`nnresilience.backends.certify.model_tau`), i.e. up to ``S² τ_q`` in
*squared* input units. So its model may have ``Σ δ² <= r² - S² τ_q`` instead of ``r²``: a
ball short of ``r`` by up to ``S² τ_q / (2 r)``, which grows as ``r`` shrinks. Two rules
keep that from becoming a wrong bound: a *decided* ball is encoded with
``r'² = r² + 2 S² τ_q`` (:func:`inflated_radius`), so "no point of the ball flips" still
covers the radius-``r`` ball; the relaxed resilience problem has its cone row loosened by
its own ``τ_q`` (``Σ ε² - s² <= S² τ_q``), so the true optimum ``(ε*, s* = ||ε*||)`` stays
feasible in any model whose rows differ from ours by one row's tolerance, and the dual
bound ``D`` stays ``<= Φ``. The price: ``D`` may sit as low as ``sqrt(Φ² - 2 S² τ_q)``,
i.e. the interval stays open by about ``S² τ_q / Φ`` for small ``Φ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnresilience.encode.model import MilpModel, QuadConstraint


@dataclass(frozen=True)
class NormCone(QuadConstraint):
    """The cone row ``Σ ε² - s² <= hi`` of an L2 resilience MIP: the row the *relaxed*
    problem loosens by its own tolerance (:func:`nnresilience.resilience.common.relax_rows`)."""


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


def sum_of_squares_row(cols: np.ndarray, minus: int | None, hi: float, scale: float = 1.0,
                       kind: type[QuadConstraint] = QuadConstraint) -> QuadConstraint:
    """``(Σ cols² (- minus²)) / scale² <= hi``.

    ``scale`` (>= 1, the columns' magnitude) keeps the row's coefficients times its
    columns' squared magnitudes near 1, so the row's tolerance scale ``s_q`` is about the
    number of terms rather than ``d · span²`` — which would otherwise set the model-wide
    margin ``τ`` of every other row (premise, flip) too.
    """
    w = 1.0 / (scale * scale)
    quad = [(int(i), int(i), w) for i in cols]
    if minus is not None:
        quad.append((int(minus), int(minus), -w))
    return kind((), (), tuple(quad), -math.inf, float(hi))


def row_tau(arrays, q: QuadConstraint, feasibility: float) -> float:
    """``τ_q = ε_f · s_q`` of one quadratic row (the scale rule of
    :func:`nnresilience.backends.certify.model_tau`, in the row's own units)."""
    lb = np.where(np.isfinite(arrays.lb), np.abs(arrays.lb), 0.0)
    ub = np.where(np.isfinite(arrays.ub), np.abs(arrays.ub), 0.0)
    mag = np.maximum(1.0, np.maximum(lb, ub))
    s_q = 1.0 + sum(abs(v) * mag[i] for i, v in zip(q.lin_idx, q.lin_val, strict=True)) \
        + sum(abs(v) * mag[i] * mag[j] for i, j, v in q.quad) \
        + max(abs(q.lo) if math.isfinite(q.lo) else 0.0,
              abs(q.hi) if math.isfinite(q.hi) else 0.0)
    return float(feasibility * s_q)


def encode_l2_ball(model: MilpModel, x: np.ndarray, center: np.ndarray, radius: float,
                   lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """``||x - center||_2 <= radius`` on the input columns ``x`` already boxed by
    ``[lb, ub]``; returns the ``δ = x - center`` columns."""
    c = np.asarray(center, float)
    delta = _differences(model, x, None, c, lb - c, ub - c, "delta")
    R = max(1.0, float(radius))
    model.quad.append(sum_of_squares_row(delta, None, (radius / R) ** 2, R))
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
    S = max(1.0, float(span.max(initial=0.0)))
    model.quad.append(sum_of_squares_row(eps, int(s[0]), 0.0, S, NormCone))
    model.set_objective(s, 1.0)
    return s


def inflated_radius(radius: float, dim: int, feasibility: float) -> float:
    """``r'`` with ``r'² >= r² + 2 R² τ_q`` for the ball row of :func:`encode_l2_ball`
    (written divided by ``R² = max(1, r')²``; its columns ``δ`` have magnitude at most
    ``R``, so its scale is at most ``dim + 2`` and ``τ_q = ε_f (dim + 2)``, i.e.
    ``R² τ_q`` in squared input units; the factor 2 is a safety margin)."""
    r = float(radius)
    tau_q = feasibility * (dim + 2.0)
    big = r
    for _ in range(8):
        R = max(1.0, big)
        new = math.sqrt(r * r + 2.0 * R * R * tau_q)
        if new <= big:
            return big
        big = new * (1.0 + 1e-12)
    return big
