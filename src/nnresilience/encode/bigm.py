"""Big-M constants: computed from sound bounds with outward padding, or checked.

A big-M row ``a z <= b + M (1 - δ)`` is only exact if, with ``δ = 0``, every point the
network can produce satisfies it, i.e. ``M >= max over the bounds' box of (a z - b)``.
Two sources of ``M`` exist in this package, and each gets one treatment here:

* **from bounds** (per-side ReLU Ms, max-pool spreads, disjunction and top-k rows): the
  maximum over the box is computed in float64, so it is rounded up by the rounding rule
  of :mod:`nnresilience.bounds.rounding` (:func:`box_max`) — the bounds are sound for the
  float64 forward value, and the padding keeps the computed ``M`` above the exact maximum;
* **a uniform constant** (the paper's ``M = 10^4`` baseline): :func:`check_uniform` compares
  it with the padded maximum it must dominate and raises :class:`BigMTooSmallError`
  naming the place, the ``M`` and the bound. A too-small ``M`` silently cuts off real
  behaviour (issue 11: ``Φ = +inf, optimal`` for a true ``Φ = 0.1``), so it is an error.
"""

from __future__ import annotations

import numpy as np

from nnresilience.bounds.rounding import sum_error, up
from nnresilience.errors import EngineUnsupportedError


class BigMTooSmallError(EngineUnsupportedError):
    """A uniform big-M is smaller than a bound it must dominate (the encoding would be
    unsound); raise M, or use bounds-derived Ms (``big_m=None`` / a non-uniform preset)."""

    def __init__(self, where: str, big_m: float, bound: float) -> None:
        self.where, self.big_m, self.bound = where, float(big_m), float(bound)
        super().__init__(f"uniform big-M {big_m:g} is smaller than the bound {bound:.6g} it "
                         f"must dominate at {where}: the encoding would be unsound (use a "
                         f"larger M or big-Ms from bounds)")


def pad_up(value: np.ndarray | float, magnitude: np.ndarray | float, n_terms: int = 2
           ) -> np.ndarray:
    """``value`` rounded outward (up) for a float64 computation over terms summing to
    ``magnitude`` in absolute value (:func:`~nnresilience.bounds.rounding.sum_error`)."""
    return up(np.asarray(value, float) + sum_error(np.asarray(magnitude, float), n_terms))


def box_max(A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            extra: float = 0.0) -> np.ndarray:
    """Upper bound of ``a_r z - b_r + extra`` over the box ``[lo, hi]`` for every row.

    Exact maximum in real arithmetic (positive coefficients take ``hi``, negative ``lo``),
    then padded by the rounding error of computing it from terms of those magnitudes.
    """
    A = np.atleast_2d(np.asarray(A, float))
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    b = np.asarray(b, float)
    val = np.maximum(A, 0.0) @ hi + np.minimum(A, 0.0) @ lo - b + float(extra)
    mag = np.abs(A) @ np.maximum(np.abs(lo), np.abs(hi)) + np.abs(b) + abs(float(extra))
    return pad_up(val, mag, A.shape[1] + 2)


def check_uniform(big_m: float, need: np.ndarray, where) -> None:
    """Raise :class:`BigMTooSmallError` if some ``need[i] > big_m``.

    ``where(i)`` names the place of entry ``i`` (layer and neuron, or row) for the
    message; ``need`` must already be padded outward (:func:`box_max`, :func:`pad_up`).
    """
    need = np.asarray(need, float).reshape(-1)
    if need.size == 0:
        return
    worst = np.where(np.isnan(need), np.inf, need)     # NaN counts as too large
    i = int(np.argmax(worst))
    if not worst[i] <= float(big_m):
        raise BigMTooSmallError(where(i), big_m, float(need[i]))
