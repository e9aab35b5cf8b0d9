"""A tighter L1 vertex bound of Φ_m by splitting the *points on the segment*, not ``a``.

Why
---
The L1 vertex bound (:mod:`nnresilience.bounds.vertex_difference`) bounds how fast the
margin ``y_j - y_m`` can move per unit of L1 distance, with every neuron's secant slope
free in ``[0, 1]`` when it is unstable over the domain (on the digits 2x50 net: all of
them). Splitting the confident copy ``a`` by its first-layer phases does not help (follow-up
phi4 in ``benchmarks/results_phi_digits.md``): the piece ``|z1_i(a)| < δ_i`` (``δ_i`` the
most the ball moves ``z1_i``) keeps its parent's free slope, so the minimum over pieces is
stuck at the parent's bound. Here the split is two-way with **no middle piece**.

The argument
------------
Let ``X = D ⊕ B_r`` (every point within L1 distance ``r`` of the a-box ``D``), convex, so
the segment from ``a ∈ D`` to ``b`` (``||b - a||_1 <= r``) lies in ``X``. Cover ``X`` by
pieces ``P`` cut by first-layer half-spaces ``z1_i(x) >= 0`` / ``<= 0`` (convex: the
segment meets each in one sub-segment). Along the segment, telescope over the
sub-segments: each has both endpoints in one piece, so every secant slope on it lies in
the slope box of that piece's boxes (:func:`~nnresilience.bounds.differential.slope_range`
of the box with itself; a split neuron's box is one-signed, its slope exact), and the
vertex bound of that box gives ``C·Δy <= L_P ||Δx||_1``. The sub-segments' lengths add up
to ``||b - a||_1``, so

    C·(y(b) - y(a)) <= max_P L_P · ||b - a||_1.

Both children of a split are strictly narrower than their parent, and the maximum over
open pieces only falls. :func:`split_lipschitz` runs this as a best-first branch and bound
on the piece with the largest ``L`` (split on the undecided first-layer neuron with the
largest path weight into its worst row), until the deadline, a piece budget, or a goal
``L`` is met; every piece bound is a sound upper bound on its own, so stopping anywhere is
sound (the answer is the maximum over the open pieces).

Scope: chains of affine and ReLU / LeakyReLU layers whose first layer is affine (the
vertex bound's scope minus s-shaped activations, whose image boxes would need library
error bounds). One search loop of its own, a heap of pieces: the project's search driver
(:mod:`nnresilience.search.driver`) branches on input boxes and neuron phases of *one*
query against a property, with its own bounding; here a piece is a set of half-spaces of
``X`` and its bound is the vertex bound, so only the loop would be shared.

Floating point: interval steps pad like :mod:`.vertex_difference` (``2 gamma(n + 2)``
of the magnitudes, then outward); the reach of the ball is added outward; the vertex bound
rounds outward itself. The bound is about exact values; forward errors are the caller's.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np

from nnresilience.bounds import vertex_difference
from nnresilience.bounds.differential import _maxabs, _outward, slope_range
from nnresilience.bounds.rounding import TINY, UNIT, gamma

#: Activations whose image boxes are exact up to one rounding.
PIECEWISE_LINEAR = ("relu", "leaky_relu")


def supported(network) -> bool:
    """Affine first layer, an activation after it, then affine / ReLU / LeakyReLU layers."""
    layers = network.layers
    return len(layers) >= 2 and layers[0].kind == "affine" \
        and layers[1].kind in PIECEWISE_LINEAR and all(
        la.kind == "affine" or la.kind in PIECEWISE_LINEAR for la in layers)


@dataclass
class SplitLipschitz:
    """``L`` (one per row of ``C``): ``C·(y(b) - y(a)) <= L ||b - a||_1`` for ``a`` in the
    a-box and ``||b - a||_1 <= radius``; ``pieces`` bounded, ``open`` left at the end."""

    L: np.ndarray
    radius: float
    pieces: int = 0
    open: int = 0
    seconds: float = 0.0


def _affine_box(W, absW, b, lo, hi):
    """Sound box of ``W x + b`` for ``x`` in ``[lo, hi]`` (the vertex module's padding)."""
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    c, r = W @ mid + b, absW @ rad
    pad = 2 * gamma(W.shape[1] + 3) * (absW @ _maxabs(lo, hi) + np.abs(r) + np.abs(c)
                                       + np.abs(b)) + TINY
    return _outward(c - r, c + r, pad)


class _Pieces:
    """The chain's weights and the bound of one piece (a state per first-layer neuron:
    0 undecided, 1 ``z1 >= 0``, -1 ``z1 <= 0``)."""

    def __init__(self, network, C, lo, hi, radius: float) -> None:
        self.net, self.C = network, np.atleast_2d(np.asarray(C, np.float64))
        self.layers = list(network.layers)
        self.W = [la.dense_W().astype(np.float64) if la.kind == "affine" else None
                  for la in self.layers]
        self.absW = [None if W is None else np.abs(W) for W in self.W]
        self.b = [np.asarray(la.b, np.float64) if la.kind == "affine" else None
                  for la in self.layers]
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        zl, zh = _affine_box(self.W[0], self.absW[0], self.b[0], lo, hi)
        # the ball moves z1_i by at most r max_k |W1_ik| (L1 ball, dual norm L∞)
        reach = radius * self.absW[0].max(1)
        reach = reach * (1.0 + 4 * UNIT) + TINY
        self.z1 = _outward(zl - reach, zh + reach, 0.0)
        # path weights into each output row, back to the first layer (branching rule)
        self.reach_w = self.absW[0].max(1)
        self.scale = np.ones(self.C.shape[0])

    def bound(self, state, deadline: float | None = None):
        """``(L per row, undecided mask, path weights of the worst row)``, ``None`` when
        the piece is empty (a split side the box excludes), ``"over"`` when the vertex
        bound is over its budget or ``deadline`` passed."""
        lo, hi = self.z1
        lo = np.where(state == 1, np.maximum(lo, 0.0), lo)
        hi = np.where(state == -1, np.minimum(hi, 0.0), hi)
        if np.any(lo > hi):
            return None
        slopes, ghi_list = {}, []
        for i in range(1, len(self.layers)):
            layer = self.layers[i]
            if layer.kind == "affine":
                lo, hi = _affine_box(self.W[i], self.absW[i], self.b[i], lo, hi)
            else:
                g = slope_range(layer, lo, hi, lo, hi)
                slopes[i] = g
                ghi_list.append((i, g[1]))
                lo, hi = _outward(*layer.interval(lo, hi), 0.0)
        L = vertex_difference.l1_unit_upper(self.net, self.C, slopes, deadline)
        if L is None:
            return "over"
        g1lo, g1hi = slopes[1]
        undecided = (state == 0) & (g1lo != g1hi)
        # |C_j| |W_L| diag(g_hi) ... |W_2| diag(g1_hi): how much neuron i can matter
        j = int(np.argmax(self.scale * L))
        w = np.abs(self.C[j])
        for i in range(len(self.layers) - 1, 0, -1):
            if self.layers[i].kind == "affine":
                w = w @ self.absW[i]
            else:
                w = w * np.maximum(np.abs(slopes[i][0]), np.abs(slopes[i][1]))
        return L, undecided, w * self.reach_w


def split_lipschitz(network, C, lo, hi, radius: float, *, deadline: float | None = None,
                    scale=None, goal: float | None = None, max_pieces: int = 100_000
                    ) -> SplitLipschitz | None:
    """Best-first splitting of ``X = [lo, hi] ⊕ B_radius`` (module docstring).

    A piece's key is ``max_j scale_j L_j`` (``scale`` per row, default ones: the caller's
    ``1 / θ_j`` makes it the inverse of the radius the piece certifies); the worst piece is
    split first, and the search stops once the worst key is ``<= goal``. ``deadline`` is a
    ``time.perf_counter`` value. ``None`` when the network is not supported or even the
    root bound is over the vertex module's budget."""
    t0 = time.perf_counter()
    if not supported(network):
        return None
    P = _Pieces(network, C, lo, hi, float(radius))
    n1 = P.W[0].shape[0]
    root = np.zeros(n1, np.int8)
    first = P.bound(root)
    if first is None or isinstance(first, str):
        return None
    scale = np.ones(P.C.shape[0]) if scale is None else np.asarray(scale, np.float64)
    P.scale = scale
    count = 0
    heap = [(-float((scale * first[0]).max()), count, root, first)]
    pieces = 1
    while heap and pieces < max_pieces and not (goal is not None and -heap[0][0] <= goal):
        if deadline is not None and time.perf_counter() > deadline:
            break
        key, _, state, (L, und, w) = heap[0]
        if not und.any():
            break                       # the worst piece is fully split: nothing to gain
        heapq.heappop(heap)
        i = int(np.argmax(np.where(und, w, -1.0)))
        children = []
        for side in (1, -1):
            child = state.copy()
            child[i] = side
            b = P.bound(child, deadline)
            pieces += 1
            if isinstance(b, str):      # over budget or late: keep the parent, stop
                children = None
                break
            if b is not None:
                children.append((child, b))
        if children is None:
            heapq.heappush(heap, (key, -1, state, (L, und, w)))
            break
        for child, b in children:
            count += 1
            heapq.heappush(heap, (-float((scale * b[0]).max()), count, child, b))
    # a split neuron straddles 0, so both children are non-empty: the heap never empties
    L = np.max(np.stack([item[3][0] for item in heap]), axis=0)
    return SplitLipschitz(L, float(radius), pieces, len(heap), time.perf_counter() - t0)
