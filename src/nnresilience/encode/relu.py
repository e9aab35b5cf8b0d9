"""MILP encoders of ReLU and LeakyReLU layers (seed 000, §3, constraints (2a)-(4b)).

Both kinds are ``y = max(x, k x)`` with slope ``0 <= k < 1`` (ReLU: ``k = 0``). Given the
pre-activation bounds ``l <= x <= u`` of a neuron:

* ``l >= 0`` (stable active): ``y = x``, one equality row, no binary;
* ``u <= 0`` (stable inactive): ``y = k x`` (ReLU: ``y`` fixed to 0 by its bounds);
* otherwise one binary ``d`` (``d = 1``: the neuron is active, ``x >= 0``) and four rows::

      y >= x                                   (r1)
      y >= k x                                 (r2)
      y <= x + (1 - k)(-l)(1 - d)              (r3)
      y <= k x + (1 - k) u d                   (r4)

Why this is exact: ``d = 1`` turns (r3) into ``y <= x``, so with (r1) ``y = x``, and (r2)
then forces ``x >= k x``, i.e. ``x >= 0``. ``d = 0`` turns (r4) into ``y <= k x``, so with
(r2) ``y = k x`` and (r1) forces ``x <= 0``. The relaxed rows are valid on the whole
interval: for ``d = 0``, ``x + (1-k)(-l) - k x = (1-k)(x - l) >= 0``; for ``d = 1``,
``k x + (1-k) u - x = (1-k)(u - x) >= 0``. For ``k = 0`` this is the standard per-side
big-M ReLU formulation (``M^- = -l``, ``M^+ = u``), whose LP relaxation is the triangle.

Uniform big-M mode (``big_m = M``, the paper's baseline): *every* neuron gets a binary and
exactly the paper's six rows (2a)-(4b) with the same ``M`` (for LeakyReLU the rows above
with ``l = -M``, ``u = M``, plus (3a)/(3b)). This is sound only if ``M >= max(-l, u)``;
a smaller ``M`` raises :class:`~nnresilience.encode.bigm.BigMTooSmallError` naming the
layer and neuron instead of silently cutting off real behaviour. Per-side Ms
``(1 - k)(-l)`` and ``(1 - k) u`` are rounded outward (:mod:`nnresilience.encode.bigm`).
"""

from __future__ import annotations

import numpy as np

from nnresilience.encode.bigm import check_uniform, pad_up
from nnresilience.encode.model import MilpModel
from nnresilience.errors import EngineUnsupportedError


def _rows(model: MilpModel, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
          n_rows: int, lo, hi) -> None:
    """Add ``n_rows`` rows given as (local row, column, value) triplet groups."""
    if n_rows == 0:
        return
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([np.broadcast_to(np.asarray(p[2], float), p[0].shape) for p in parts])
    model.add_terms(rows, cols, vals, n_rows, lo, hi)


def encode_piecewise_max(model: MilpModel, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                         out_lo: np.ndarray, out_hi: np.ndarray, slope: float,
                         big_m: float | None, name: str
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode ``y = max(x, slope * x)`` elementwise; returns ``(y, binaries, owners)``.

    ``owners`` (``(n_binaries, 2)``) says which neuron each binary decides: ``(i, 0)``.

    ``x`` are the pre-activation variable indices, ``lo``/``hi`` their bounds (finite for
    every unstable neuron), ``out_lo``/``out_hi`` bounds of the output (intersected with
    the image of ``[lo, hi]``).
    """
    k = float(slope)
    n = x.size
    img_lo = np.where(lo >= 0, lo, k * lo)
    img_hi = np.where(hi >= 0, hi, k * hi)
    ylo = np.maximum(img_lo, out_lo)
    yhi = np.minimum(img_hi, out_hi)
    yhi = np.maximum(yhi, ylo)                       # guard against crossed float bounds
    if big_m is not None:
        check_uniform(big_m, np.maximum(-lo, hi),
                      lambda i: f"neuron {i} of layer '{name}' (its pre-activation bound)")
        unstable = np.ones(n, dtype=bool)
        act = np.zeros(n, dtype=bool)
        l_eff = np.full(n, -float(big_m))
        u_eff = np.full(n, float(big_m))
    else:
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise EngineUnsupportedError(f"layer '{name}': pre-activation bounds must be finite "
                                         "for the per-side big-M encoding")
        act = lo >= 0
        inact = (hi <= 0) & ~act
        unstable = ~act & ~inact
        l_eff, u_eff = lo, hi
    y = model.add_vars(n, ylo, yhi, name=name)

    # Stable neurons: y = x (active) or y = k x (inactive, k > 0). For k = 0 an inactive
    # neuron needs no row: its output bounds are already [0, 0].
    lin = act if k == 0.0 else ~unstable
    ia = np.flatnonzero(lin)
    if ia.size:
        coef = np.where(act[ia], 1.0, k)
        r = np.arange(ia.size)
        _rows(model, [(r, y[ia], 1.0), (r, x[ia], -coef)], ia.size, 0.0, 0.0)

    iu = np.flatnonzero(unstable)
    m = iu.size
    if m == 0:
        return y, np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    d = model.add_binaries(m, name=f"{name}_d")
    yu, xu, lu, uu = y[iu], x[iu], l_eff[iu], u_eff[iu]
    r = np.arange(m)
    # (r1) y - x >= 0 ; (r2) y - k x >= 0
    _rows(model, [(r, yu, 1.0), (r, xu, -1.0)], m, 0.0, np.inf)
    if k != 0.0 or big_m is not None:
        _rows(model, [(r, yu, 1.0), (r, xu, -k)], m, 0.0, np.inf)
    # (r3) y - x + (1-k)(-l) d <= (1-k)(-l)   (both Ms rounded outward)
    c3 = pad_up((1.0 - k) * (-lu), -lu)
    _rows(model, [(r, yu, 1.0), (r, xu, -1.0), (r, d, c3)], m, -np.inf, c3)
    # (r4) y - k x - (1-k) u d <= 0
    c4 = pad_up((1.0 - k) * uu, uu)
    _rows(model, [(r, yu, 1.0), (r, xu, -k), (r, d, -c4)], m, -np.inf, 0.0)
    if big_m is not None:
        # (3a) x - M d <= 0 ; (3b) x - M d >= -M  (implied above, kept to match the paper)
        M = float(big_m)
        _rows(model, [(r, xu, 1.0), (r, d, -M)], m, -M, 0.0)
    return y, d, np.stack([iu, np.zeros_like(iu)], axis=1)
