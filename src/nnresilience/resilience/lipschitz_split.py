"""A tighter vertex bound of Φ_m by splitting the *points on the segment*, not ``a``.

Why
---
The vertex bound (:mod:`nnresilience.bounds.vertex_difference`: the L1 vertex maximum, or
for L∞ / L2 the dual norm of the per-coordinate bounds) bounds how fast the margin
``y_j - y_m`` can move per unit of input norm, with every neuron's secant slope free in
``[0, 1]`` when it is unstable over the domain (on the digits 2x50 net: all of them).
Splitting the confident copy ``a`` by its first-layer phases does not help (follow-up
phi4 in ``benchmarks/results_phi_digits.md``): the piece ``|z1_i(a)| < δ_i`` (``δ_i`` the
most the ball moves ``z1_i``) keeps its parent's free slope, so the minimum over pieces is
stuck at the parent's bound. Here the split is two-way with **no middle piece**.

The argument
------------
Let ``X = D ⊕ B_r`` (every point within distance ``r`` of the a-box ``D``, in the query's
norm), convex, so the segment from ``a ∈ D`` to ``b`` (``||b - a|| <= r``) lies in ``X``.
Cover ``X`` by closed pieces ``P`` cut by sign conditions ``z_n(x) >= 0`` / ``<= 0`` on
neurons of any activation layer (a piece need not be convex: ``z2`` is not affine in
``x`` while the first layer is undecided). Along the segment every pre-activation is
piecewise linear, so the segment meets each piece in finitely many closed intervals and
splits into consecutive sub-segments whose two ends lie in one piece. For two points of
a piece every pre-activation lies in the piece's boxes (a split neuron's box clamped to
its side, later boxes by interval steps), so every secant slope between them lies in the
slope box of those boxes (:func:`~nnresilience.bounds.differential.slope_range` of the box
with itself; a split neuron's slope is exact) and the vertex bound of that box gives
``C·Δy <= L_P ||Δx||``. The sub-segments are collinear, so their norms add up to
``||b - a||``, and

    C·(y(b) - y(a)) <= max_P L_P · ||b - a||.

Both children of a split are no wider than their parent, and the maximum over open
pieces only falls. :func:`split_lipschitz` runs this as a best-first branch and bound on
the piece with the largest ``L`` (split on the undecided neuron, of any layer, with the
largest score: path weight from its worst row back to the neuron × how fast the neuron
moves per unit of input norm × width of its slope box), until the deadline, a piece
budget, or a goal ``L`` is met; every piece bound is a sound upper bound on its own, so
stopping anywhere is sound (the answer is the maximum over the open pieces; a child
whose clamped box is empty holds no point and is dropped).

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
    """``L`` (one per row of ``C``): ``C·(y(b) - y(a)) <= L ||b - a||`` for ``a`` in the
    a-box and ``||b - a|| <= radius`` (the search's norm); ``pieces`` bounded, ``open``
    left at the end."""

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
    """The chain's weights and the bound of one piece. A piece is a state per neuron of
    every splittable activation layer (concatenated; ``offsets`` maps a layer index to
    its slice): 0 undecided, 1 ``z >= 0``, -1 ``z <= 0``."""

    def __init__(self, network, C, lo, hi, radius: float, norm: str = "l1",
                 depth: int | None = None) -> None:
        self.net, self.C = network, np.atleast_2d(np.asarray(C, np.float64))
        self.norm = norm
        self.layers = list(network.layers)
        self.W = [la.dense_W().astype(np.float64) if la.kind == "affine" else None
                  for la in self.layers]
        self.absW = [None if W is None else np.abs(W) for W in self.W]
        self.b = [np.asarray(la.b, np.float64) if la.kind == "affine" else None
                  for la in self.layers]
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        zl, zh = _affine_box(self.W[0], self.absW[0], self.b[0], lo, hi)
        # the ball moves z1_i by at most r ||W1_i||_* (the dual norm of the row: L1 ball
        # max_k |W1_ik|, L∞ ball Σ_k |W1_ik|, L2 ball the Euclidean norm)
        A0 = self.absW[0]
        n0 = A0.shape[1]
        dual = {"l1": lambda: A0.max(1), "linf": lambda: A0.sum(1),
                "l2": lambda: np.sqrt((A0 * A0).sum(1))}[norm]()
        reach = radius * dual * (1.0 + gamma(n0 + 4)) + TINY
        reach = reach * (1.0 + 4 * UNIT) + TINY
        self.z1 = _outward(zl - reach, zh + reach, 0.0)
        # how fast each first-layer neuron moves per unit of input norm (branching rule)
        self.reach_w = dual
        self.scale = np.ones(self.C.shape[0])
        acts = [i for i, la in enumerate(self.layers) if la.kind != "affine"]
        acts = acts if depth is None else acts[:max(1, int(depth))]
        self.offsets, n = {}, 0
        for i in acts:
            size = self.layers[i].out_size
            self.offsets[i] = slice(n, n + size)
            n += size
        self.n_state = n

    def bound(self, state, deadline: float | None = None):
        """``(L per row, undecided mask, score per state entry)``, ``None`` when the piece
        is empty (a split side its box excludes), ``"over"`` when the vertex bound is
        over its budget or ``deadline`` passed.

        Every box holds for every point of the piece: a split neuron's box is clamped to
        its side, later boxes follow by interval steps."""
        lo, hi = self.z1
        slopes = {}
        for i in range(1, len(self.layers)):
            layer = self.layers[i]
            if layer.kind == "affine":
                lo, hi = _affine_box(self.W[i], self.absW[i], self.b[i], lo, hi)
            else:
                sl = self.offsets.get(i)
                if sl is not None:
                    st = state[sl]
                    lo = np.where(st == 1, np.maximum(lo, 0.0), lo)
                    hi = np.where(st == -1, np.minimum(hi, 0.0), hi)
                    if np.any(lo > hi):
                        return None
                slopes[i] = slope_range(layer, lo, hi, lo, hi)
                lo, hi = _outward(*layer.interval(lo, hi), 0.0)
        L = vertex_difference.unit_upper(self.net, self.C, slopes, self.norm, deadline)
        if L is None:
            return "over"
        # score of neuron n: (path weight from the worst row back to n) x (how fast n
        # moves per unit of input norm) x (width of its slope box)
        j = int(np.argmax(self.scale * L))
        back = {}
        w = np.abs(self.C[j])
        for i in range(len(self.layers) - 1, 0, -1):
            if self.layers[i].kind == "affine":
                w = w @ self.absW[i]
            else:
                back[i] = w
                w = w * np.maximum(np.abs(slopes[i][0]), np.abs(slopes[i][1]))
        score = np.zeros(self.n_state)
        undecided = np.zeros(self.n_state, bool)
        fw = self.reach_w
        for i in range(1, len(self.layers)):
            if self.layers[i].kind == "affine":
                fw = self.absW[i] @ fw
            else:
                glo, ghi = slopes[i]
                sl = self.offsets.get(i)
                if sl is not None:
                    undecided[sl] = (state[sl] == 0) & (glo != ghi)
                    score[sl] = back[i] * fw * (ghi - glo)
                fw = fw * np.maximum(np.abs(glo), np.abs(ghi))
        return L, undecided, score


# On 1e8-weight nets ``scale * L`` (the heap's ordering key, never the bound itself) can
# overflow to inf; an inf key only orders a piece first, so the warning is noise.
@np.errstate(over="ignore")
def split_lipschitz(network, C, lo, hi, radius: float, *, deadline: float | None = None,
                    scale=None, goal: float | None = None, max_pieces: int = 100_000,
                    norm: str = "l1", depth: int | None = 1) -> SplitLipschitz | None:
    """Best-first splitting of ``X = [lo, hi] ⊕ B_radius`` (module docstring).

    A piece's key is ``max_j scale_j L_j`` (``scale`` per row, default ones: the caller's
    ``1 / θ_j`` makes it the inverse of the radius the piece certifies); the worst piece is
    split first, and the search stops once the worst key is ``<= goal``. ``deadline`` is a
    ``time.perf_counter`` value. ``norm``: the ball's (``l1``, ``linf``, ``l2``);
    ``depth``: split only the first ``depth`` activation layers (``None``: every one).
    Default 1: with 150 pieces on digits 2x50 (classes 0-2, L1 and L∞) the first layer
    alone gave the lower ``L`` in 5 of 6 cases (follow-up phi5: splitting deeper neurons
    is sound but, with this score, not worth its pieces). ``None`` when the network is
    not supported or even the root bound is over the vertex module's budget."""
    t0 = time.perf_counter()
    if not supported(network):
        return None
    P = _Pieces(network, C, lo, hi, float(radius), norm, depth)
    root = np.zeros(P.n_state, np.int8)
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
                # a child's points are its parent's, so the parent's bound holds there
                # too (the L∞ groups of a child may differ from its parent's)
                children.append((child, (np.minimum(b[0], L),) + tuple(b[1:])))
        if children is None:
            heapq.heappush(heap, (key, -1, state, (L, und, w)))
            break
        for child, b in children:
            count += 1
            heapq.heappush(heap, (-float((scale * b[0]).max()), count, child, b))
    # every point of X lies in an open piece (a parent's points lie in its children, and
    # only children whose boxes exclude every point are dropped), so the heap cannot
    # empty; should it ever, the root bound stands
    L = np.max(np.stack([item[3][0] for item in heap]), axis=0) if heap else first[0]
    return SplitLipschitz(L, float(radius), pieces, len(heap), time.perf_counter() - t0)
