"""Interval dataflow analysis (seed 000, §3 "Pre-processing based on dataflow analysis").

Each layer maps a box to a box (affine: centre/radius form ``W·mid ± |W|·rad``;
monotone activations: endpoints; max-pool: max of endpoints). Floating-point soundness:
after every layer the box is widened outward by a relative-plus-absolute margin
(:data:`REL_MARGIN`, :data:`ABS_MARGIN`), far above float64 rounding error of a dot
product of the sizes we handle, so every float64 forward value stays inside. ReLU,
LeakyReLU and max-pool are exact under rounding and get no margin; s-shaped activations
(evaluated by libm within a few ulps) do.
"""

from __future__ import annotations

import time

import numpy as np

from nnresilience.bounds.types import NetworkBounds

REL_MARGIN = 1e-9
ABS_MARGIN = 1e-9
#: Layers whose interval image is computed exactly in float64 (max, selection and the
#: multiplication by the slope are monotone under rounding), so no margin is needed.
#: Affine layers round; s-shaped functions are evaluated by library code within a few ulps.
EXACT_KINDS = ("relu", "leaky_relu", "maxpool")


def widen(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward rounding margin applied after every layer."""
    pad_lo = ABS_MARGIN + REL_MARGIN * np.abs(lo)
    pad_hi = ABS_MARGIN + REL_MARGIN * np.abs(hi)
    return lo - pad_lo, hi + pad_hi


def interval_bounds(network, lo: np.ndarray, hi: np.ndarray) -> NetworkBounds:
    """Interval bounds of every layer for inputs in the box ``[lo, hi]``."""
    t0 = time.perf_counter()
    lo = np.asarray(lo, dtype=np.float64).copy()
    hi = np.asarray(hi, dtype=np.float64).copy()
    los, his = [lo], [hi]
    for layer in network.layers:
        lo, hi = layer.interval(lo, hi)
        if layer.kind not in EXACT_KINDS:
            lo, hi = widen(lo, hi)
        los.append(lo)
        his.append(hi)
    return NetworkBounds(los, his, method="interval", seconds=time.perf_counter() - t0)
