"""Shared checks for the bounds tests: containment of sampled forward values, ordering."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np

from nnresilience.network.layers import (
    Affine,
    Arctan,
    LeakyReLU,
    MaxPool,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnresilience.network.model import sequential


def sample_box(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points: all corners when there are few (<= 64), random vertices, uniform rest."""
    d = lo.size
    pts = []
    if d <= 6:
        corners = np.array(list(itertools.product([0.0, 1.0], repeat=d)))
        pts.append(lo + corners * (hi - lo))
    m = max(0, n - sum(p.shape[0] for p in pts))
    verts = rng.integers(0, 2, size=(m // 2, d)).astype(float)
    pts.append(lo + verts * (hi - lo))
    pts.append(rng.uniform(lo, hi, size=(m - m // 2, d)))
    pts.append(((lo + hi) / 2)[None, :])
    return np.clip(np.vstack(pts), lo, hi)   # lo + 1*(hi-lo) may round past hi


def assert_contains(network, bounds, X: np.ndarray, vals: list | None = None) -> None:
    """Every float64 value entering every layer (and the output) lies in the bounds.

    ``vals`` (from ``network.forward_all(X)``) may be passed to reuse one forward pass."""
    vals = network.forward_all(X) if vals is None else vals
    assert len(vals) == len(bounds.lo)
    for i, v in enumerate(vals):
        below = bounds.lo[i][None, :] - v
        above = v - bounds.hi[i][None, :]
        assert below.max() <= 0.0, f"{bounds.method}: entry {i} below lower bound by {below.max()}"
        assert above.max() <= 0.0, f"{bounds.method}: entry {i} above upper bound by {above.max()}"


def assert_nested(inner, outer, tol: float = 1e-9) -> None:
    """``inner`` boxes lie inside ``outer`` boxes (up to ``tol``), layer by layer."""
    for i, (a, b, c, d) in enumerate(zip(inner.lo, inner.hi, outer.lo, outer.hi, strict=True)):
        assert np.all(a >= c - tol), f"{inner.method} lower looser than {outer.method} at {i}"
        assert np.all(b <= d + tol), f"{inner.method} upper looser than {outer.method} at {i}"


ACT = {"relu": lambda n, rng: ReLU(n),
       "leaky": lambda n, rng: LeakyReLU(n, float(rng.uniform(0.0, 0.9))),
       "arctan": lambda n, rng: Arctan(n), "tanh": lambda n, rng: Tanh(n),
       "sigmoid": lambda n, rng: Sigmoid(n)}


def mixed_network(rng: np.random.Generator, n_in: int, widths: list[int], kinds: list[str],
                  scale: float = 1.0, pool: bool = False, double_affine: bool = False):
    """Affine/activation stack; optional max-pool after the first affine and a second
    affine directly after the first (consecutive affines)."""
    layers = []
    n = n_in
    for li, (w, kind) in enumerate(zip(widths, kinds, strict=True)):
        layers.append(Affine(rng.normal(scale=scale, size=(w, n)), rng.normal(size=w)))
        if double_affine and li == 0:
            layers.append(Affine(rng.normal(size=(w, w)), rng.normal(size=w)))
        if pool and li == 0 and w >= 2:
            g = rng.integers(0, w, size=(max(1, w // 2), 3))
            layers.append(MaxPool(g, w))
            w = g.shape[0]
        layers.append(ACT[kind](w, rng))
        n = w
    layers.append(Affine(rng.normal(size=(3, n)), rng.normal(size=3)))
    return sequential(layers)


def exact_forward_all(network, X: np.ndarray) -> list[np.ndarray]:
    """Values entering each layer computed without rounding (object arrays of Fractions)
    for piecewise-linear networks, or in ``np.longdouble`` (64-bit mantissa, 11 more bits
    than float64) when an s-shaped layer is present."""
    exact = all(lay.kind in ("affine", "relu", "leaky_relu", "maxpool") for lay in network.layers)
    if exact:
        h = np.array([[Fraction(float(v)) for v in row] for row in np.atleast_2d(X)],
                     dtype=object)
    else:
        h = np.atleast_2d(X).astype(np.longdouble)
    vals = [h]
    for layer in network.layers:
        kind = layer.kind
        if kind == "affine":
            W = layer.dense_W()
            if exact:
                Wf = np.array([[Fraction(float(w)) for w in row] for row in W], dtype=object)
                bf = np.array([Fraction(float(b)) for b in layer.b], dtype=object)
                h = h.dot(Wf.T) + bf
            else:
                h = h @ W.astype(np.longdouble).T + layer.b.astype(np.longdouble)
        elif kind == "relu":
            h = np.where(h > 0, h, 0 * h)
        elif kind == "leaky_relu":
            k = Fraction(layer.slope) if exact else np.longdouble(layer.slope)
            h = np.where(h >= 0, h, h * k)
        elif kind == "maxpool":
            h = np.stack([h[:, g].max(axis=1) for g in layer.groups], axis=1)
        elif kind == "arctan":
            h = np.arctan(h)
        elif kind == "tanh":
            h = np.tanh(h)
        elif kind == "sigmoid":
            with np.errstate(over="ignore"):
                h = 1 / (1 + np.exp(-h))
        else:
            raise NotImplementedError(kind)
        vals.append(h)
    return vals


def assert_contains_exact(bounds, vals: list[np.ndarray]) -> None:
    """The exact values (from :func:`exact_forward_all`) lie inside every box.

    Fractions and long doubles compare exactly with float64 bounds."""
    for i, v in enumerate(vals):
        if v.dtype == object:
            # Python float vs Fraction comparisons are exact
            lo, hi = bounds.lo[i].tolist(), bounds.hi[i].tolist()
            ok_lo = np.array([[a <= x for a, x in zip(lo, row, strict=True)] for row in v])
            ok_hi = np.array([[x <= b for b, x in zip(hi, row, strict=True)] for row in v])
        else:
            ok_lo = bounds.lo[i].astype(np.longdouble)[None, :] <= v
            ok_hi = v <= bounds.hi[i].astype(np.longdouble)[None, :]
        assert ok_lo.all(), f"{bounds.method}: exact value of entry {i} below its lower bound"
        assert ok_hi.all(), f"{bounds.method}: exact value of entry {i} above its upper bound"
