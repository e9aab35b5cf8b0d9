"""Symbolic bounds: CROWN/DeepPoly-style back-substitution to the input box.

For every vector produced by an affine layer (the pre-activations, and the output) we
start from the identity ``z_i = W z_{i-1} + b`` and replace each earlier layer by its
linear relaxation (:mod:`nnresilience.bounds.relax`), going back layer by layer until the
expression is linear in the network input, where the box gives the bound:
``min over box of a.x + c = a+ . lo + a- . hi + c``. Positive and negative coefficients
pick the lower or the upper relaxation line (sign split), so the whole step is a few
dense matrix products per earlier layer, for all neurons of the layer at once.

Vectors produced by an elementwise activation or a max-pool get the interval image of
the previous box, which is exact per coordinate for monotone maps. Every computed box is
intersected with the interval box and with any ``prior`` bounds (all are sound, so the
intersection is), which makes the result never looser than its inputs.

Floating point: the back-substitution result is moved outward by
``REL_PAD * (|bound| + mag) + ABS_PAD`` where ``mag = |A| . max(|lo|,|hi|) + |c|`` is the
size of the terms summed. Float64 rounding of the forward pass and of this computation
is ~1e-16 per operation times depth and width, well below ``REL_PAD = 1e-9``; the tests
check that sampled float64 forward values never leave the bounds.

Memory: target rows are processed in chunks so that a coefficient matrix never holds more
than :data:`CHUNK_ENTRIES` numbers; layers wider than ``max_neurons`` keep their interval
bounds (documented fallback for big convolutional layers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from nnresilience.bounds.interval import widen
from nnresilience.bounds.relax import (
    LinearRelaxation,
    MaxPoolRelaxation,
    relax_elementwise,
    relax_maxpool,
)

REL_PAD = 1e-9
ABS_PAD = 1e-9
CHUNK_ENTRIES = 4_000_000
MAX_NEURONS = 4000

#: ``refine(i, los, his) -> (lo_i, hi_i, method) | None``: called after the box of entry
#: ``i`` is known from interval/symbolic, with ``los[:i+1]`` final; used by LP/MILP.
Refiner = Callable[[int, list, list], "tuple[np.ndarray, np.ndarray, str] | None"]


@dataclass
class Propagation:
    """Boxes of every entry vector plus, per entry, which method set it and its time."""

    los: list[np.ndarray]
    his: list[np.ndarray]
    methods: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class RelaxationCache:
    """Relaxations of layer ``j`` built once from the final box of entry ``j``."""

    def __init__(self, layers: list, los: list, his: list) -> None:
        self.layers, self.los, self.his = layers, los, his
        self._cache: dict[int, object] = {}

    def get(self, j: int) -> LinearRelaxation | MaxPoolRelaxation:
        if j not in self._cache:
            layer = self.layers[j]
            if layer.kind == "maxpool":
                self._cache[j] = relax_maxpool(layer.groups, self.los[j], self.his[j])
            else:
                self._cache[j] = relax_elementwise(layer, self.los[j], self.his[j])
        return self._cache[j]


def _times(A: np.ndarray, M) -> np.ndarray:
    """Dense ``A @ M`` for dense or sparse ``M`` (sparse product done on the transpose)."""
    if sp.issparse(M):
        return np.asarray((M.T @ A.T).T)
    return A @ M


def _maxpool_maps(layer, rel: MaxPoolRelaxation) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    out, n_in = layer.out_size, layer.in_size
    rows = np.arange(out)
    sel = sp.csr_matrix((np.ones(out), (rows, rel.lower_idx)), shape=(out, n_in))
    d = rel.decided
    dom = sp.csr_matrix((np.ones(int(d.sum())), (rows[d], rel.lower_idx[d])), shape=(out, n_in))
    return sel, dom


def backsubstitute(layers: list, i: int, rows: np.ndarray, cache: RelaxationCache,
                   lo0: np.ndarray, hi0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of entries ``rows`` of the vector entering layer ``i`` (layer ``i-1`` affine).

    Returns ``(lower, upper)`` already padded outward for floating point.
    """
    aff = layers[i - 1]
    W = aff.W[rows] if sp.issparse(aff.W) else aff.W[rows]
    Al = W.toarray() if sp.issparse(W) else np.array(W, dtype=np.float64)
    Au = Al.copy()
    cl = aff.b[rows].copy()
    cu = cl.copy()
    for j in range(i - 2, -1, -1):
        layer = layers[j]
        if layer.kind == "affine":
            cl += Al @ layer.b
            cu += Au @ layer.b
            Al = _times(Al, layer.W)
            Au = _times(Au, layer.W)
        elif layer.kind == "maxpool":
            rel = cache.get(j)
            sel, dom = _maxpool_maps(layer, rel)
            const = np.where(rel.decided, 0.0, rel.upper_const)
            Pl, Nl = np.maximum(Al, 0.0), np.minimum(Al, 0.0)
            Pu, Nu = np.maximum(Au, 0.0), np.minimum(Au, 0.0)
            cl += Nl @ const
            cu += Pu @ const
            Al = _times(Pl, sel) + _times(Nl, dom)
            Au = _times(Pu, dom) + _times(Nu, sel)
        else:
            rel = cache.get(j)
            Pl, Nl = np.maximum(Al, 0.0), np.minimum(Al, 0.0)
            Pu, Nu = np.maximum(Au, 0.0), np.minimum(Au, 0.0)
            cl += Pl @ rel.lb + Nl @ rel.ub
            cu += Pu @ rel.ub + Nu @ rel.lb
            Al = Pl * rel.la + Nl * rel.ua
            Au = Pu * rel.ua + Nu * rel.la
    mag_x = np.maximum(np.abs(lo0), np.abs(hi0))
    lower = np.maximum(Al, 0.0) @ lo0 + np.minimum(Al, 0.0) @ hi0 + cl
    upper = np.maximum(Au, 0.0) @ hi0 + np.minimum(Au, 0.0) @ lo0 + cu
    mag_l = np.abs(Al) @ mag_x + np.abs(cl)
    mag_u = np.abs(Au) @ mag_x + np.abs(cu)
    lower = lower - (REL_PAD * (np.abs(lower) + mag_l) + ABS_PAD)
    upper = upper + (REL_PAD * (np.abs(upper) + mag_u) + ABS_PAD)
    return lower, upper


def symbolic_entry(layers: list, i: int, cache: RelaxationCache, lo0: np.ndarray,
                   hi0: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Back-substituted bounds of (some rows of) entry ``i``, in row chunks."""
    n = layers[i - 1].out_size
    rows = np.arange(n) if rows is None else np.asarray(rows)
    widest = max([lay.in_size for lay in layers[:i]] + [1])
    step = max(1, CHUNK_ENTRIES // widest)
    lo = np.empty(rows.size)
    hi = np.empty(rows.size)
    for s in range(0, rows.size, step):
        lo[s:s + step], hi[s:s + step] = backsubstitute(layers, i, rows[s:s + step], cache,
                                                        lo0, hi0)
    return lo, hi


def _interval_step(layer, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nlo, nhi = layer.interval(lo, hi)
    if layer.kind in ("relu", "leaky_relu", "maxpool"):
        # max, k*x and selection are monotone and exactly rounded: no margin needed
        return np.asarray(nlo, float), np.asarray(nhi, float)
    return widen(np.asarray(nlo, float), np.asarray(nhi, float))


def propagate(network, lo0: np.ndarray, hi0: np.ndarray, *, symbolic: bool = True,
              prior: list[tuple[np.ndarray, np.ndarray]] | None = None,
              refine: Refiner | None = None, deadline: float | None = None,
              max_neurons: int = MAX_NEURONS) -> Propagation:
    """Layer-by-layer boxes: interval ∩ back-substitution ∩ prior, then optional refine.

    Past ``deadline`` (a ``time.perf_counter`` value) only interval steps are taken, which
    keeps the result sound and bounded in time.
    """
    layers = network.layers
    lo0 = np.asarray(lo0, dtype=np.float64).reshape(-1)
    hi0 = np.asarray(hi0, dtype=np.float64).reshape(-1)
    los, his = [lo0.copy()], [hi0.copy()]
    if prior is not None:
        los[0], his[0] = np.maximum(los[0], prior[0][0]), np.minimum(his[0], prior[0][1])
    methods, seconds = ["input"], [0.0]
    cache = RelaxationCache(layers, los, his)
    for i in range(1, len(layers) + 1):
        t0 = time.perf_counter()
        lo, hi = _interval_step(layers[i - 1], los[i - 1], his[i - 1])
        method = "interval"
        late = deadline is not None and time.perf_counter() > deadline
        if (symbolic and not late and layers[i - 1].kind == "affine" and i >= 2
                and layers[i - 1].out_size <= max_neurons):
            slo, shi = symbolic_entry(layers, i, cache, los[0], his[0])
            lo, hi = np.maximum(lo, slo), np.minimum(hi, shi)
            method = "symbolic"
        if prior is not None:
            lo, hi = np.maximum(lo, prior[i][0]), np.minimum(hi, prior[i][1])
        los.append(lo)
        his.append(hi)
        if refine is not None and not (deadline is not None and time.perf_counter() > deadline):
            got = refine(i, los, his)
            if got is not None:
                rlo, rhi, rmethod = got
                los[i], his[i] = np.maximum(lo, rlo), np.minimum(hi, rhi)
                method = rmethod
        seconds.append(time.perf_counter() - t0)
        methods.append(method)
    return Propagation(los, his, methods, seconds)
