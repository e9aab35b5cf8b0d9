"""Encoders of S-shaped activations: arctan (seed 000, §3), tanh and sigmoid.

Two modes:

``pwl`` — a sound *linear relaxation* (no binaries, keeps the model a MILP/LP). Each of
these functions ``f`` is increasing, convex for ``x < 0`` and concave for ``x > 0``, and
``f'`` is even and unimodal, so for any slope ``a`` the function ``g(x) = f(x) - a x`` has at
most two stationary points ``±x*(a)`` (where ``f'(x) = a``). The exact offsets
``c_lo = min g`` and ``c_hi = max g`` over ``[l, u]`` are therefore attained at ``l``, ``u``
or ``±x*(a)`` clipped into ``[l, u]``, and ``a x + c_lo <= f(x) <= a x + c_hi`` holds on the
whole interval with both lines touching the graph. We use the chord slope and the tangent
slopes at ``l``, the midpoint and ``u`` (four slopes, eight rows per neuron) plus the box
``[f(l), f(u)]``. Offsets are widened by :data:`PWL_PAD` so float64 evaluation stays inside.
The relaxation contains the graph: *infeasible* proves the property; a feasible point is
only a candidate (its replay through the real forward pass decides).

``miqcp`` (arctan only) — the paper's quadratic approximation ``A(x) = π/4 x + 0.273 x
(1 - |x|)`` on ``|x| <= 1`` (max error 0.00376 measured on a 2e6-point grid, band
:data:`ATAN_BAND` = 0.0039 used) and ``atan(x) = sign(x) π/2 - atan(1/x)`` outside, with a
variable ``z`` and the quadratic constraint ``z x = 1``. Four cases (``x <= -1``,
``-1 <= x <= 0``, ``0 <= x <= 1``, ``x >= 1``; only those meeting ``[l, u]``) are selected by
binaries through big-M rows. Because the band covers the true error, the true graph
satisfies the constraints, so this too is a relaxation (in exact arithmetic); the quadratic
rows are non-convex, so only solvers with MIQCP support (SCIP) accept the model. An encoded
output lies within the band of ``A(x)``, hence within ``2 * band`` of ``atan(x)``; an optimum
over the MIQCP is within ``2 * band * sum |w|`` (propagated through the next layers) of
the true one, and never above it. Tanh and sigmoid always use ``pwl``.
"""

from __future__ import annotations

import math

import numpy as np

from nnresilience.encode.bigm import pad_up
from nnresilience.encode.model import MilpModel, QuadConstraint
from nnresilience.encode.relu import _rows
from nnresilience.errors import EngineUnsupportedError

ATAN_BAND = 0.0039
ATAN_C = 0.273
PWL_PAD = 1e-9


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


FUNCS = {"arctan": np.arctan, "tanh": np.tanh, "sigmoid": _sigmoid}


def _deriv(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "arctan":
        return 1.0 / (1.0 + x * x)
    if kind == "tanh":
        return 1.0 - np.tanh(x) ** 2
    s = _sigmoid(x)
    return s * (1.0 - s)


def _stationary(kind: str, a: np.ndarray) -> np.ndarray:
    """``x* >= 0`` with ``f'(±x*) = a``; NaN where no such point exists."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "arctan":
            xs = np.sqrt(1.0 / a - 1.0)
            ok = (a > 0) & (a <= 1)
        elif kind == "tanh":
            xs = np.arctanh(np.sqrt(1.0 - a))
            ok = (a > 0) & (a <= 1)
        else:
            s = 0.5 * (1.0 + np.sqrt(1.0 - 4.0 * a))
            xs = np.log(s / (1.0 - s))
            ok = (a > 0) & (a <= 0.25)
    return np.where(ok & np.isfinite(xs), xs, np.nan)


def pwl_lines(kind: str, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Slopes ``a`` (n, s) and offsets ``c_lo``, ``c_hi`` with ``a x + c_lo <= f <= a x + c_hi``."""
    f = FUNCS[kind]
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        chord = np.where(width > 1e-12, (f(hi) - f(lo)) / width, _deriv(kind, lo))
    mid = 0.5 * (lo + hi)
    a = np.stack([chord, _deriv(kind, lo), _deriv(kind, mid), _deriv(kind, hi)], axis=1)
    xs = _stationary(kind, a)
    cand = [np.broadcast_to(lo[:, None], a.shape), np.broadcast_to(hi[:, None], a.shape)]
    for sgn in (1.0, -1.0):
        p = sgn * xs
        cand.append(np.where(np.isnan(p), lo[:, None], np.clip(p, lo[:, None], hi[:, None])))
    vals = np.stack([f(c) - a * c for c in cand], axis=0)
    pad = PWL_PAD * (1.0 + np.abs(a) * np.maximum(np.abs(lo), np.abs(hi))[:, None])
    return a, vals.min(axis=0) - pad, vals.max(axis=0) + pad


def encode_sshape(model: MilpModel, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  out_lo: np.ndarray, out_hi: np.ndarray, kind: str, mode: str,
                  name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(y, binaries, owners)``; owners ``(i, case)`` only in ``miqcp`` mode, with
    case 0: ``x <= -1``, 1: ``-1 <= x <= 0``, 2: ``0 <= x <= 1``, 3: ``x >= 1``."""
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise EngineUnsupportedError(f"layer '{name}': {kind} pre-activation bounds must be finite")
    if kind == "arctan" and mode == "miqcp":
        return _encode_atan_miqcp(model, x, lo, hi, out_lo, out_hi, name)
    if mode not in ("pwl", "miqcp"):
        raise ValueError(f"arctan mode must be 'pwl' or 'miqcp', got {mode!r}")
    f = FUNCS[kind]
    n = x.size
    ylo = np.maximum(f(lo) - PWL_PAD, out_lo)
    yhi = np.maximum(np.minimum(f(hi) + PWL_PAD, out_hi), ylo)
    y = model.add_vars(n, ylo, yhi, name=name)
    a, clo, chi = pwl_lines(kind, lo, hi)
    s = a.shape[1]
    r = np.arange(n * s)
    yy, xx = np.repeat(y, s), np.repeat(x, s)
    # c_lo <= y - a x <= c_hi
    _rows(model, [(r, yy, 1.0), (r, xx, -a.reshape(-1))], n * s, clo.reshape(-1),
          chi.reshape(-1))
    return y, np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)


def _q(lin: dict[int, float], quad: list[tuple[int, int, float]], lo: float,
       hi: float) -> QuadConstraint:
    keys = tuple(lin)
    return QuadConstraint(keys, tuple(lin[k] for k in keys), tuple(quad), lo, hi)


def _atan_miqcp_neuron(model: MilpModel, xi: int, yi: int, li: float, ui: float,
                       name: str) -> list[tuple[int, int]]:
    """One neuron of the paper's MIQCP encoding; returns its (case binary, case id) pairs.

    Case ``c`` has an interval ``[a_c, b_c]`` of ``x`` and an approximation ``q_c`` with
    ``|atan(x) - q_c| <= band`` there, written as ``expr_c = rhs_c`` (within ``±band``).
    ``R`` bounds ``|expr_c - rhs_c|`` on the whole box (``|y| <= π/2``, ``|z| <= 1``,
    ``|x| <= xmax``), so ``rhs - band - R(1-δ) <= expr <= rhs + band + R(1-δ)`` switches a
    case on with its binary ``δ`` and is void otherwise.
    """
    k1 = math.pi / 4 + ATAN_C
    cases = [(-np.inf, -1.0, "neg_out"), (-1.0, 0.0, "neg_in"), (0.0, 1.0, "pos_in"),
             (1.0, np.inf, "pos_out")]
    live = [(a, b, t, c) for c, (a, b, t) in enumerate(cases) if b >= li and a <= ui]
    xmax = max(abs(li), abs(ui))
    outer = [t for _, _, t, _ in live if t.endswith("_out")]
    z = None
    if outer:
        zlo = -1.0 if "neg_out" in outer else 0.0
        zhi = 1.0 if "pos_out" in outer else 0.0
        z = int(model.add_vars(1, zlo, zhi, name=f"{name}_inv")[0])
    deltas = (model.add_binaries(len(live), name=f"{name}_case") if len(live) > 1
              else np.zeros(0, dtype=np.int64))
    # R must dominate |expr_c - rhs_c| everywhere on the box: |y| <= π/2 + band (its
    # bounds), |x| <= xmax, |z| <= 1; rounded outward like every bounds-derived big-M
    inner = math.pi / 2 + ATAN_BAND + k1 * xmax + ATAN_C * xmax ** 2
    outer = math.pi + ATAN_BAND + k1 + ATAN_C
    R = float(pad_up(max(inner, outer), max(inner, outer), 6))
    for ci, (a, b, tag, _) in enumerate(live):
        dv = int(deltas[ci]) if deltas.size else None
        if dv is not None:
            # x in [a, b] when selected: x - (a - l) δ >= l  and  x - (b - u) δ <= u
            if np.isfinite(a) and a > li:
                model.add_terms(np.zeros(2, int), np.array([xi, dv]), np.array([1.0, li - a]),
                                1, li, np.inf)
            if np.isfinite(b) and b < ui:
                model.add_terms(np.zeros(2, int), np.array([xi, dv]), np.array([1.0, ui - b]),
                                1, -np.inf, ui)
        if tag in ("neg_in", "pos_in"):
            # pos_in: q = k1 x - c x^2 ; neg_in: q = k1 x + c x^2 ; expr = y - q, rhs = 0
            sq = ATAN_C if tag == "pos_in" else -ATAN_C
            lin, quad, rhs = {yi: 1.0, xi: -k1}, [(xi, xi, sq)], 0.0
        else:
            # y = ±π/2 - q(z), q(z) = k1 z ∓ c z^2  ->  expr = y + k1 z ∓ c z^2, rhs = ±π/2
            sgn = 1.0 if tag == "pos_out" else -1.0
            lin, quad, rhs = {yi: 1.0, z: k1}, [(z, z, -sgn * ATAN_C)], sgn * math.pi / 2
        if dv is None:
            model.quad.append(_q(lin, quad, rhs - ATAN_BAND, rhs + ATAN_BAND))
        else:
            model.quad.append(_q({**lin, dv: -R}, quad, rhs - ATAN_BAND - R, np.inf))
            model.quad.append(_q({**lin, dv: R}, quad, -np.inf, rhs + ATAN_BAND + R))
    if z is not None:
        # z x = 1 in the outer cases: |z x - 1| <= Mz (1 - sum δ_out), Mz = xmax + 1
        dz = [int(deltas[i]) for i, (_, _, t, _) in enumerate(live) if t.endswith("_out")] \
            if deltas.size else []
        if not dz:
            model.quad.append(_q({}, [(z, xi, 1.0)], 1.0, 1.0))
        else:
            Mz = float(pad_up(xmax + 1.0, xmax + 1.0))     # |z x - 1| <= |x| + 1
            model.quad.append(_q({d: -Mz for d in dz}, [(z, xi, 1.0)], 1.0 - Mz, np.inf))
            model.quad.append(_q({d: Mz for d in dz}, [(z, xi, 1.0)], -np.inf, 1.0 + Mz))
    if deltas.size:
        _rows(model, [(np.zeros(deltas.size, int), deltas, 1.0)], 1, 1.0, 1.0)
    return [(int(d), live[i][3]) for i, d in enumerate(deltas)]


def _encode_atan_miqcp(model: MilpModel, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                       out_lo: np.ndarray, out_hi: np.ndarray,
                       name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-neuron loop: quadratic constraints are objects, arctan nets are small."""
    n = x.size
    ylo = np.maximum(np.arctan(lo) - ATAN_BAND, out_lo)
    yhi = np.maximum(np.minimum(np.arctan(hi) + ATAN_BAND, out_hi), ylo)
    y = model.add_vars(n, ylo, yhi, name=name)
    bins: list[int] = []
    owners: list[tuple[int, int]] = []
    for i in range(n):
        for d, case in _atan_miqcp_neuron(model, int(x[i]), int(y[i]), float(lo[i]),
                                          float(hi[i]), f"{name}[{i}]"):
            bins.append(d)
            owners.append((i, case))
    return (y, np.asarray(bins, dtype=np.int64),
            np.asarray(owners, dtype=np.int64).reshape(-1, 2))
