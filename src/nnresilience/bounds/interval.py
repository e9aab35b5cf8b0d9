"""Interval dataflow analysis (seed 000, §3 "Pre-processing based on dataflow analysis").

Each layer maps a box to a box: affine layers in centre/radius form ``W·mid ± |W|·rad``,
monotone activations by their endpoints, max-pool by the max of endpoints.

Floating point (the rule of :mod:`nnresilience.bounds.rounding`): the box entering a
layer already contains both the exact and the float64 value of that vector, so the image
box needs two paddings only, both from the magnitudes of the terms involved:

* its **own computation** (``mid``, ``rad``, ``W·mid + b``, ``|W|·rad``; the libm calls of
  an s-shaped activation): :func:`~nnresilience.bounds.rounding.sum_error` of
  ``|W|(|mid| + rad) + |b|``, or the activation's evaluation error;
* the **layer's own forward rounding** (``fl(W h + b)`` for ``h`` in the box, the libm
  call in the forward pass): what :func:`~nnresilience.bounds.rounding.affine_rounding` /
  :func:`~nnresilience.bounds.rounding.activation_rounding` return.

No error carried from earlier layers is needed here (unlike bounds of the exact value,
which are widened by ``e_i``): the input box contains the float64 input itself. ReLU and
max-pool are exact and get no padding, so a dead unit's output box stays ``[0, 0]``.
"""

from __future__ import annotations

import time

import numpy as np

from nnresilience.bounds.rounding import (
    activation_rounding,
    down,
    enclose,
    maxabs,
    merged_error,
    row_terms,
    sum_error,
    up,
)
from nnresilience.bounds.types import NetworkBounds

#: Layers whose interval image is exact in float64 (max and selection are exact).
EXACT_KINDS = ("relu", "maxpool")


def _affine_image(layer, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box of ``W h + b`` (exact or float64) for every ``h`` in ``[lo, hi]``.

    ``mid`` is any float near the centre and ``rad`` is rounded up so that
    ``[mid - rad, mid + rad]`` contains ``[lo, hi]`` exactly (even when ``0.5 x``
    underflows). The rounding of ``W mid + b``, ``|W| rad`` and ``c ± r``, and the forward
    pass's own rounding (``affine_rounding``: terms ``|W| m + |b|`` with
    ``m = max(|lo|, |hi|) <= |mid| + rad``) are each within ``gamma(n + 3)`` of
    ``M = |W|(|mid| + rad) + |b|``: the pad is twice ``sum_error(M, n + 3)``.
    """
    W = layer.W
    absW = np.abs(W) if type(W) is np.ndarray else layer.abs_W()
    mid = 0.5 * lo + 0.5 * hi                   # no overflow
    rad = np.maximum(up(hi - mid), up(mid - lo))
    c = np.asarray(W @ mid).reshape(-1) + layer.b
    r = np.asarray(absW @ rad).reshape(-1)
    mag = np.asarray(absW @ (np.abs(mid) + rad)).reshape(-1) + np.abs(layer.b)
    pad = up(2.0 * sum_error(mag, row_terms(W) + 3))
    if getattr(layer, "merged_from", ()):
        # the source network evaluates the merged chain layer by layer (rounding.py)
        pad = up(pad + merged_error(layer, np.zeros(lo.size), maxabs(lo, hi)))
    # overflow gives inf - inf = nan: fmax/fmin turn it into an infinite (sound) bound
    return (np.fmax(down(c - r - pad), -np.inf), np.fmin(up(c + r + pad), np.inf))


def interval_step(layer, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sound box of a layer's output (exact and float64) given a sound box of its input."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if layer.kind == "affine":
        return _affine_image(layer, lo, hi)
    nlo, nhi = layer.interval(lo, hi)
    nlo, nhi = np.asarray(nlo, dtype=np.float64), np.asarray(nhi, dtype=np.float64)
    if layer.kind in EXACT_KINDS:
        return nlo, nhi
    # LeakyReLU (k·x rounds) and s-shaped (libm): once for computing the endpoints here,
    # once for the forward pass evaluating the layer
    err = activation_rounding(layer, maxabs(lo, hi))
    return enclose(nlo, nhi, up(2.0 * err))


def interval_bounds(network, lo: np.ndarray, hi: np.ndarray) -> NetworkBounds:
    """Interval bounds of every layer for inputs in the box ``[lo, hi]``."""
    t0 = time.perf_counter()
    lo = np.asarray(lo, dtype=np.float64).copy()
    hi = np.asarray(hi, dtype=np.float64).copy()
    los, his = [lo], [hi]
    with np.errstate(invalid="ignore", over="ignore"):     # overflow: infinite bounds
        for layer in network.layers:
            lo, hi = interval_step(layer, lo, hi)
            los.append(lo)
            his.append(hi)
    return NetworkBounds(los, his, method="interval", seconds=time.perf_counter() - t0)
