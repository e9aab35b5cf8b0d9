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

Floating point (the rule of :mod:`nnresilience.bounds.rounding`, documented in
docs/bounds.md): back-substitution bounds the *exact* value ``z_i`` (the relaxations hold
for it), so its result is widened twice. First by its own rounding: the float
coefficients ``A_j`` and constant ``c_j`` held at entry ``j`` satisfy, in real arithmetic,
``z_i >= A_j z_j + c_j - E_j``, and each step adds to ``E`` the rounding of what it
summed -- ``|A_{j+1}| (|W| m_j + |b|)`` and ``|c|`` for an affine step, ``|A_j| m_j`` and
``|A_{j+1}| max(|lb|, |ub|)`` for a relaxation step (``m_j`` = largest magnitude in the
box of entry ``j``) -- all as matrix-vector products, so the cost is small next to the
coefficient products themselves. Then by ``e_i``, the bound on |float64 forward − exact
forward| that :func:`propagate` builds layer by layer (:class:`~.rounding.ForwardError`).

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

from nnresilience.bounds.interval import interval_step
from nnresilience.bounds.relax import (
    LinearRelaxation,
    MaxPoolRelaxation,
    relax_elementwise,
    relax_maxpool,
)
from nnresilience.bounds.rounding import (
    TINY,
    ForwardError,
    enclose,
    maxabs,
    row_terms,
    sum_error,
    up,
)

CHUNK_ENTRIES = 4_000_000
MAX_NEURONS = 4000

#: ``refine(i, los, his) -> (lo_i, hi_i, method) | None``: called after the box of entry
#: ``i`` is known from interval/symbolic, with ``los[:i+1]`` final; used by LP/MILP. The
#: returned bounds are bounds of the *exact* value of entry ``i`` (real arithmetic,
#: including the refiner's own rounding); :func:`propagate` widens them by ``e_i``.
Refiner = Callable[[int, list, list], "tuple[np.ndarray, np.ndarray, str] | None"]


@dataclass
class Propagation:
    """Boxes of every entry vector plus, per entry, which method set it and its time.

    ``errors[i]`` is ``e_i`` (:class:`~.rounding.ForwardError`); ``timed_out`` says that
    the deadline cut some stage short (the boxes are still sound, only looser).
    """

    los: list[np.ndarray]
    his: list[np.ndarray]
    methods: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: list[np.ndarray] = field(default_factory=list)
    timed_out: bool = False


class RelaxationCache:
    """Relaxations of layer ``j`` built once from the final box of entry ``j``; also the
    magnitudes ``m_j = max(|lo_j|, |hi_j|)`` the rounding terms need."""

    def __init__(self, layers: list, los: list, his: list) -> None:
        self.layers, self.los, self.his = layers, los, his
        self._cache: dict[int, object] = {}
        self._mags: dict[int, np.ndarray] = {}

    def get(self, j: int) -> LinearRelaxation | MaxPoolRelaxation:
        if j not in self._cache:
            layer = self.layers[j]
            if layer.kind == "maxpool":
                self._cache[j] = relax_maxpool(layer.groups, self.los[j], self.his[j])
            else:
                self._cache[j] = relax_elementwise(layer, self.los[j], self.his[j])
        return self._cache[j]

    def mag(self, j: int) -> np.ndarray:
        if j not in self._mags:
            self._mags[j] = maxabs(self.los[j], self.his[j])
        return self._mags[j]


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


def _terms(layers: list, i: int) -> int:
    """Largest number of terms any single sum of a back-substitution to entry ``i`` adds
    (a coefficient product, a constant update, the final box evaluation), plus a margin
    for the nested float computation of the magnitudes themselves (see :func:`sum_error`).
    """
    n = [2 * layers[0].in_size + 1]
    for j in range(i - 1):
        layer = layers[j]
        if layer.kind == "affine":
            n.append(row_terms(layer.W) + 2)
        else:
            n.append(2 * layer.in_size + layer.out_size + 2)
    return 2 * max(n) + 4 * i


def backsubstitute(layers: list, i: int, rows: np.ndarray, cache: RelaxationCache,
                   lo0: np.ndarray, hi0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the exact value of entries ``rows`` of the vector entering layer ``i``
    (layer ``i-1`` affine), widened by their own rounding error (not by ``e_i``)."""
    aff = layers[i - 1]
    W = aff.W[rows] if sp.issparse(aff.W) else aff.W[rows]
    Al = W.toarray() if sp.issparse(W) else np.array(W, dtype=np.float64)
    Au = Al.copy()
    cl = aff.b[rows].copy()
    cu = cl.copy()
    # magnitudes of everything summed so far (exact start: W and b are given)
    El = np.zeros(rows.size)
    Eu = np.zeros(rows.size)
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(i - 2, -1, -1):
            layer = layers[j]
            m = cache.mag(j)
            if layer.kind == "affine":
                wm = np.asarray(layer.abs_W() @ m).reshape(-1) + np.abs(layer.b)
                El += np.abs(Al) @ wm + np.abs(cl)
                Eu += np.abs(Au) @ wm + np.abs(cu)
                cl += Al @ layer.b
                cu += Au @ layer.b
                Al = _times(Al, layer.W)
                Au = _times(Au, layer.W)
            elif layer.kind == "maxpool":
                rel = cache.get(j)
                sel, dom = _maxpool_maps(layer, rel)
                const = np.where(rel.decided, 0.0, rel.upper_const)
                gm = m[layer.groups].max(axis=1) + np.abs(const)
                El += np.abs(Al) @ gm + np.abs(cl)
                Eu += np.abs(Au) @ gm + np.abs(cu)
                Pl, Nl = np.maximum(Al, 0.0), np.minimum(Al, 0.0)
                Pu, Nu = np.maximum(Au, 0.0), np.minimum(Au, 0.0)
                cl += Nl @ const
                cu += Pu @ const
                Al = _times(Pl, sel) + _times(Nl, dom)
                Au = _times(Pu, dom) + _times(Nu, sel)
            else:
                rel = cache.get(j)
                cm = maxabs(rel.lb, rel.ub)
                El += np.abs(Al) @ cm + np.abs(cl)
                Eu += np.abs(Au) @ cm + np.abs(cu)
                Pl, Nl = np.maximum(Al, 0.0), np.minimum(Al, 0.0)
                Pu, Nu = np.maximum(Au, 0.0), np.minimum(Au, 0.0)
                cl += Pl @ rel.lb + Nl @ rel.ub
                cu += Pu @ rel.ub + Nu @ rel.lb
                Al = Pl * rel.la + Nl * rel.ua
                Au = Pu * rel.ua + Nu * rel.la
                # the new coefficients are rounded products: |A_j| m_j more
                El += np.abs(Al) @ m
                Eu += np.abs(Au) @ m
        m0 = cache.mag(0)
        lower = np.maximum(Al, 0.0) @ lo0 + np.minimum(Al, 0.0) @ hi0 + cl
        upper = np.maximum(Au, 0.0) @ hi0 + np.minimum(Au, 0.0) @ lo0 + cu
        El += np.abs(Al) @ m0 + np.abs(cl)
        Eu += np.abs(Au) @ m0 + np.abs(cu)
        n = _terms(layers, i)
        tiny = _underflow(layers, i, cache)
        pad_l = up(sum_error(El, n) + tiny)
        pad_u = up(sum_error(Eu, n) + tiny)
        lower, _ = enclose(lower, lower, pad_l)
        _, upper = enclose(upper, upper, pad_u)
    return (np.where(np.isnan(lower), -np.inf, lower),
            np.where(np.isnan(upper), np.inf, upper))


def _underflow(layers: list, i: int, cache: RelaxationCache) -> float:
    """Absolute allowance for products that underflow (gradual underflow loses at most
    ``TINY`` per product, times the magnitude it multiplies); negligible, but it keeps the
    rule valid at every magnitude."""
    total = 0.0
    for j in range(i):
        total += (layers[j].in_size + 2.0) * (1.0 + float(np.sum(cache.mag(j))))
    return TINY * total * (i + 1)


def symbolic_entry(layers: list, i: int, cache: RelaxationCache, lo0: np.ndarray,
                   hi0: np.ndarray, rows: np.ndarray | None = None,
                   deadline: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Back-substituted bounds of the exact value of (some rows of) entry ``i``, in row
    chunks; ``None`` when ``deadline`` passes before every chunk is done."""
    n = layers[i - 1].out_size
    rows = np.arange(n) if rows is None else np.asarray(rows)
    widest = max([lay.in_size for lay in layers[:i]] + [1])
    step = max(1, CHUNK_ENTRIES // widest)
    lo = np.empty(rows.size)
    hi = np.empty(rows.size)
    for s in range(0, rows.size, step):
        if s and deadline is not None and time.perf_counter() > deadline:
            return None
        lo[s:s + step], hi[s:s + step] = backsubstitute(layers, i, rows[s:s + step], cache,
                                                        lo0, hi0)
    return lo, hi


def propagate(network, lo0: np.ndarray, hi0: np.ndarray, *, symbolic: bool = True,
              prior: list[tuple[np.ndarray, np.ndarray]] | None = None,
              refine: Refiner | None = None, deadline: float | None = None,
              max_neurons: int = MAX_NEURONS) -> Propagation:
    """Layer-by-layer boxes: interval ∩ back-substitution ∩ prior, then optional refine.

    Back-substitution and ``refine`` bound the exact value of an entry; both are widened
    by ``e_i`` (built here as the boxes become final) before they are intersected. Past
    ``deadline`` (a ``time.perf_counter`` value) only interval steps are taken, which keeps
    the result sound and bounded in time.
    """
    layers = network.layers
    lo0 = np.asarray(lo0, dtype=np.float64).reshape(-1)
    hi0 = np.asarray(hi0, dtype=np.float64).reshape(-1)
    los, his = [lo0.copy()], [hi0.copy()]
    if prior is not None:
        los[0], his[0] = np.maximum(los[0], prior[0][0]), np.minimum(his[0], prior[0][1])
    methods, seconds = ["input"], [0.0]
    cache = RelaxationCache(layers, los, his)
    fe = ForwardError(los[0].size)
    timed_out = False
    for i in range(1, len(layers) + 1):
        t0 = time.perf_counter()
        lo, hi = interval_step(layers[i - 1], los[i - 1], his[i - 1])
        e = fe.step(layers[i - 1], los[i - 1], his[i - 1])
        method = "interval"
        late = deadline is not None and time.perf_counter() > deadline
        if (symbolic and layers[i - 1].kind == "affine" and i >= 2
                and layers[i - 1].out_size <= max_neurons):
            got = None if late else symbolic_entry(layers, i, cache, los[0], his[0],
                                                   deadline=deadline)
            if got is None:
                timed_out = True
            else:
                slo, shi = enclose(got[0], got[1], e)
                lo, hi = np.maximum(lo, slo), np.minimum(hi, shi)
                method = "symbolic"
        if prior is not None:
            lo, hi = np.maximum(lo, prior[i][0]), np.minimum(hi, prior[i][1])
        los.append(lo)
        his.append(hi)
        if refine is not None:
            if deadline is not None and time.perf_counter() > deadline:
                timed_out = True
            else:
                got = refine(i, los, his)
                if got is not None:
                    rlo, rhi, rmethod = got
                    rlo, rhi = enclose(rlo, rhi, e)
                    los[i], his[i] = np.maximum(lo, rlo), np.minimum(hi, rhi)
                    method = rmethod
        seconds.append(time.perf_counter() - t0)
        methods.append(method)
    return Propagation(los, his, methods, seconds, fe.e, timed_out)
