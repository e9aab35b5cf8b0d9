"""Where to cut: influence scores, exact box bisection, split cases and pruned frontiers.

The cover argument (cuts share the same float on both sides, so the leaves cover the box
exactly) is in :mod:`nnresilience.divide`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from nnresilience.errors import EngineUnsupportedError
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion


# ------------------------------------------------------------------------ influence
def _slope_bound(layer, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per-neuron upper bound of ``|activation'(z)|`` for ``z`` in ``[lo, hi]``."""
    kind = layer.kind
    if kind == "relu":
        return (hi > 0).astype(float)
    if kind == "leaky_relu":
        return np.where(hi > 0, 1.0, abs(float(layer.slope)))
    # smooth, monotone activations: the slope peaks at the point of [lo, hi] nearest 0
    z = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    if kind == "arctan":
        return 1.0 / (1.0 + z * z)
    if kind == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    return np.ones_like(lo)


def influence(network, lo: np.ndarray, hi: np.ndarray,
              rows: np.ndarray | None = None) -> np.ndarray:
    """``width_i * sum_r sup |d (rows @ y)_r / d x_i|`` over the box (a bound, shape (n,)).

    ``rows`` (r, n_outputs) are the output combinations that matter (the unsafe
    condition's ``A``); default: every output. Cost: one interval pass and one backward
    pass of an ``(r, n)`` matrix per layer.
    """
    from nnresilience.bounds.interval import interval_bounds

    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    nb = interval_bounds(network, lo, hi)
    G = np.abs(np.eye(network.n_outputs) if rows is None else np.asarray(rows, float))
    for i in range(len(network.layers) - 1, -1, -1):
        layer = network.layers[i]
        if layer.kind == "affine":
            W = layer.W
            G = np.asarray((abs(W).T @ G.T).T) if hasattr(W, "tocsr") else G @ np.abs(W)
        elif layer.kind == "maxpool":
            Gin = np.zeros((G.shape[0], layer.in_size))
            for j in range(layer.groups.shape[1]):  # g members per window, vectorised
                np.add.at(Gin.T, layer.groups[:, j], G.T)
            G = Gin
        else:
            G = G * _slope_bound(layer, nb.lo[i], nb.hi[i])[None, :]
    return G.sum(axis=0) * (hi - lo)


def split_box(lo: np.ndarray, hi: np.ndarray, parts: int,
              score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """At least ``parts`` sub-boxes covering ``[lo, hi]`` exactly, by greedy bisection.

    The box with the largest best score is split along its best dimension at the middle;
    ``score(lo, hi) -> (n,)`` (default: the widths). Degenerate dimensions (zero width)
    are never cut; a box of zero volume in every dimension stays whole, so fewer than
    ``parts`` boxes come back only when nothing can be cut.
    """
    lo = np.asarray(lo, float).copy()
    hi = np.asarray(hi, float).copy()
    full = np.maximum(hi - lo, 1e-300)

    def key(blo: np.ndarray, bhi: np.ndarray) -> tuple[float, int]:
        width = bhi - blo
        s = np.asarray(score(blo, bhi), float) if score is not None else width.copy()
        s = np.where(np.isfinite(s), s, 0.0)
        rel = width / full
        k = s / max(float(s.max(initial=0.0)), 1e-300) + 0.1 * rel
        k[width <= 0.0] = -1.0
        # mid-point must differ from both ends, else the dimension cannot be cut
        mid = blo + width / 2.0
        k[(mid <= blo) | (mid >= bhi)] = -1.0
        d = int(np.argmax(k))
        return float(k[d]) * float(s.max(initial=0.0) + rel.max(initial=0.0)), d

    counter = 0
    k0, d0 = key(lo, hi)
    heap: list = [(-k0, counter, lo, hi, d0)]
    done: list[tuple[np.ndarray, np.ndarray]] = []
    while heap and len(heap) + len(done) < parts:
        negk, _, blo, bhi, d = heapq.heappop(heap)
        width = bhi[d] - blo[d]
        cut = blo[d] + width / 2.0
        if width <= 0.0 or not blo[d] < cut < bhi[d]:
            done.append((blo, bhi))
            continue
        left_hi, right_lo = bhi.copy(), blo.copy()
        left_hi[d] = cut
        right_lo[d] = cut
        for a, b in ((blo, left_hi), (right_lo, bhi)):
            counter += 1
            k, dd = key(a, b)
            heapq.heappush(heap, (-k, counter, a, b, dd))
    done.extend((b[2], b[3]) for b in heap)
    return done


def _sub_region(region: InputRegion, lo: np.ndarray, hi: np.ndarray) -> InputRegion:
    return InputRegion(lo, hi, center=region.center, radius=region.radius, norm=region.norm)


def _gradient_score(network, case: Case, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``|d margin / d x_i| * width_i`` at the box centre (what ``verify``'s own split
    search uses): local, cheap, and blind to what happens away from the centre."""
    from nnresilience.falsify import margin_and_grad

    sub = Case(_sub_region(case.region, lo, hi), case.unsafe)
    _, g = margin_and_grad(network, sub, ((lo + hi) / 2.0)[None, :])
    return np.abs(g[0]) * (hi - lo)


SCORES = ("influence", "gradient", "width")


def split_case(network, case: Case, parts: int, strategy: str = "input",
               bounds=None, score: str = "influence") -> list[Case]:
    """``case`` split into at least ``parts`` sub-cases whose regions cover its region.

    Input splitting along the dimensions of largest :func:`influence` on the unsafe
    rows. ``bounds`` is accepted for interface symmetry (the score recomputes interval
    bounds per sub-box, which is what makes it adapt as boxes shrink). Sub-cases come
    back ordered most suspicious first (largest unsafe margin at the box centre), so a
    counterexample tends to be found by the first tasks.
    """
    del bounds
    if strategy == "neurons":
        raise EngineUnsupportedError(
            "neuron splitting needs half-space input constraints, which the engine "
            "interface does not take; use strategy='input'")
    if strategy != "input":
        raise ValueError(f"strategy must be 'input' or 'neurons', got {strategy!r}")
    parts = max(1, int(parts))
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    rows = np.vstack([t.A for t in case.unsafe.terms]) if case.unsafe.terms else None
    fn = {"influence": lambda a, b: influence(network, a, b, rows),
          "gradient": lambda a, b: _gradient_score(network, case, a, b),
          "width": None}[score]
    boxes = split_box(case.region.lo, case.region.hi, parts, fn)
    subs = [Case(_sub_region(case.region, a, b), case.unsafe) for a, b in boxes]
    if len(subs) > 1:
        mids = np.vstack([s.region.clip((s.region.lo + s.region.hi) / 2.0) for s in subs])
        margin = np.asarray(case.unsafe.max_margin(network.forward(mids)), float)
        subs = [subs[i] for i in np.argsort(-margin, kind="stable")]
    return subs


def frontier_cases(network, case: Case, parts: int, score: str = "influence",
                   max_splits: int | None = None) -> tuple[list[Case], int]:
    """Open sub-cases after a short breadth-first split that drops proven boxes.

    The largest open box is bisected (by ``score``, as :func:`split_case`); a child
    whose symbolic bounds on the unsafe rows ``A y`` exclude every term (the test
    ``verify`` uses, :func:`nnresilience.verify.spec_rows_exclude`) holds and is
    dropped. Stops with at least ``parts`` open boxes or after ``max_splits`` (default
    ``8 * parts``) bisections. Returns ``(open sub-cases, number of proven boxes)``;
    the open boxes and the proven ones cover the region, so the case holds iff every
    open sub-case does (none left: it holds already). Workers then get only the hard
    part, in pieces of similar size, instead of static halves of which one may be
    trivial.
    """
    from nnresilience.bounds import compute_bounds
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network
    from nnresilience.verify import spec_rows_exclude

    A = np.vstack([t.A for t in case.unsafe.terms])
    spec_net = Network(list(network.layers) + [Affine(A, np.zeros(A.shape[0]))],
                       input_shape=network.input_shape, name=network.name)

    def proven(lo: np.ndarray, hi: np.ndarray) -> bool:
        nb = compute_bounds(spec_net, (lo, hi), method="symbolic")
        return spec_rows_exclude(case.unsafe, nb.lo[-1])

    full = np.maximum(case.region.hi - case.region.lo, 1e-300)

    def size(lo: np.ndarray, hi: np.ndarray) -> float:  # log relative volume
        w = (hi - lo) / full
        return float(np.sum(np.log(w[w > 0]))) if np.any(w > 0) else -np.inf

    lo0, hi0 = case.region.lo, case.region.hi
    if proven(lo0, hi0):
        return [], 1
    heap: list = [(-size(lo0, hi0), 0, lo0, hi0)]
    n_proven, counter = 0, 0
    budget = 8 * max(1, parts) if max_splits is None else int(max_splits)
    while heap and len(heap) < parts and budget > 0:
        _, _, lo, hi = heapq.heappop(heap)
        budget -= 1
        sub = Case(_sub_region(case.region, lo, hi), case.unsafe)
        halves = [c.region for c in split_case(network, sub, 2, score=score)]
        if len(halves) < 2:        # cannot be cut further: stays open
            counter += 1
            heapq.heappush(heap, (np.inf, counter, lo, hi))
            break
        for r in halves:
            if proven(r.lo, r.hi):
                n_proven += 1
            else:
                counter += 1
                heapq.heappush(heap, (-size(r.lo, r.hi), counter, r.lo, r.hi))
    subs = [Case(_sub_region(case.region, b[2], b[3]), case.unsafe) for b in heap]
    if len(subs) > 1:
        mids = np.vstack([s.region.clip((s.region.lo + s.region.hi) / 2.0) for s in subs])
        margin = np.asarray(case.unsafe.max_margin(network.forward(mids)), float)
        subs = [subs[i] for i in np.argsort(-margin, kind="stable")]
    return subs, n_proven
