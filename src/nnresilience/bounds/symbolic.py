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

Memory: target rows are processed in chunks so that the (stacked lower/upper)
coefficient matrix never holds more than :data:`CHUNK_ENTRIES` numbers; layers wider
than ``max_neurons`` keep their interval bounds (documented fallback for big
convolutional layers).
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
    down,
    enclose,
    maxabs,
    sum_error,
    up,
)

CHUNK_ENTRIES = 4_000_000
#: with a deadline: the first back-substitution chunk (it measures the cost of a row) has
#: as many rows as this many flops (~0.1 s), at least one; on a small net that is the whole
#: entry, as without a deadline (extra small chunks cost more than they save there) ...
FIRST_CHUNK_FLOPS = 5e8
#: ... the longest a later chunk may take, and the safety factor on the measured cost
CHUNK_SECONDS = 0.5
CHUNK_MARGIN = 1.5
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
        self._cache: dict[object, object] = {}
        self._mags: dict[int, np.ndarray] = {}
        self._acc: list[tuple[int, float]] = []

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

    def pad_terms(self, i: int) -> tuple[int, float]:
        """``(n, tiny)`` for the own-rounding pad of entry ``i``.

        Every sum a back-substitution to entry ``i`` computes (coefficient products, the
        constant, accumulated across steps, the final box evaluation) has at most ``T``
        terms in all, ``T`` summed over the layers; ``n = T + 4 i`` adds a margin for the
        nested float computation of the magnitudes themselves (see
        :func:`~.rounding.sum_error`). ``tiny`` allows for products that underflow
        (gradual underflow loses at most ``TINY`` per product, times the magnitude it
        multiplies) -- negligible, but it keeps the rule valid at every magnitude.
        Accumulated over the layers once per propagation (entries ``< i`` are final)."""
        acc = self._acc
        while len(acc) < i:
            j = len(acc)
            layer = self.layers[j]
            t_j = 2 * layer.in_size + 2 * layer.out_size + 2
            u_j = (t_j + 2.0) * (1.0 + float(np.sum(self.mag(j))))
            prev_t, prev_u = acc[-1] if acc else (2 * self.layers[0].in_size + 1, 0.0)
            acc.append((prev_t + t_j, prev_u + u_j))
        total_t, total_u = acc[i - 1]
        return total_t + 4 * i, TINY * total_u

    def relax_mags(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``(v_la, v_ua)`` of the relaxation step through layer ``j``: with
        ``A_new = P la + N ua``, ``|A| max(|lb|,|ub|) + |A_new| (m_j + w)`` is
        ``P @ v_la - N @ v_ua``, where ``w = |W_{j-1}| m_{j-1} + |b_{j-1}|`` if layer
        ``j-1`` is affine (its step's terms, paid here), else 0."""
        key = ("relax_mags", j)
        if key not in self._cache:
            rel = self.get(j)
            nxt = self.mag(j)
            if j >= 1 and self.layers[j - 1].kind == "affine":
                nxt = nxt + self.wm(j - 1)
            cm = maxabs(rel.lb, rel.ub)
            self._cache[key] = (cm + np.abs(rel.la) * nxt, cm + np.abs(rel.ua) * nxt)
        return self._cache[key]

    def wm(self, j: int) -> np.ndarray:
        """``|W_j| m_j + |b_j|`` of the affine layer ``j``: the size of its terms."""
        key = -1 - j
        if key not in self._mags:
            layer = self.layers[j]
            self._mags[key] = (np.asarray(layer.abs_W() @ self.mag(j)).reshape(-1)
                               + np.abs(layer.b))
        return self._mags[key]


def _times(A: np.ndarray, M) -> np.ndarray:
    """Dense ``A @ M`` for dense or sparse ``M`` (sparse product done on the transpose)."""
    if type(M) is not np.ndarray and sp.issparse(M):
        return np.asarray((M.T @ A.T).T)
    return A @ M


def _maxpool_maps(layer, rel: MaxPoolRelaxation) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    out, n_in = layer.out_size, layer.in_size
    rows = np.arange(out)
    sel = sp.csr_matrix((np.ones(out), (rows, rel.lower_idx)), shape=(out, n_in))
    d = rel.decided
    dom = sp.csr_matrix((np.ones(int(d.sum())), (rows[d], rel.lower_idx[d])), shape=(out, n_in))
    return sel, dom


def _split(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(max(A, 0), min(A, 0))``; ``A`` is overwritten by the second."""
    P = np.maximum(A, 0.0)
    return P, np.minimum(A, 0.0, out=A)


def _combine(P: np.ndarray, p: np.ndarray, N: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``P * p + N * n`` (column scalings), computed in the storage of ``P`` and ``N``."""
    P *= p
    N *= n
    P += N
    return P


def backsubstitute(layers: list, i: int, rows: np.ndarray, cache: RelaxationCache,
                   lo0: np.ndarray, hi0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the exact value of entries ``rows`` of the vector entering layer ``i``
    (layer ``i-1`` affine), widened by their own rounding error (not by ``e_i``).

    Lower and upper bounds are one computation: the upper bound of ``a.z`` is minus the
    lower bound of ``-a.z`` (negation is exact), so the coefficient matrix stacks ``W``
    and ``-W`` and every step below is the lower-bound step, once.
    """
    aff = layers[i - 1]
    W = aff.W[rows] if sp.issparse(aff.W) else aff.W[rows]
    W = W.toarray() if sp.issparse(W) else np.asarray(W, dtype=np.float64)
    r = rows.size
    A = np.empty((2 * r, W.shape[1]))
    A[:r] = W
    np.negative(W, out=A[r:])
    c = np.concatenate([aff.b[rows], -aff.b[rows]])
    # Magnitudes of every term summed so far (W and b are given exactly, |b| is the first
    # term of the constant). |A| @ v is taken as P @ v - N @ v where the sign split exists
    # anyway (no |A| array is built).
    E = np.abs(c)
    paid = False              # |A| (|W| m + |b|) of the next affine step already added
    for j in range(i - 2, -1, -1):
        layer = layers[j]
        if layer.kind == "affine":
            if not paid:
                E += np.abs(A) @ cache.wm(j)
            c += A @ layer.b
            A = _times(A, layer.W)
            paid = False
        elif layer.kind == "maxpool":
            # y >= x_sel (P side); y <= x_dom if decided, else y <= const (N side)
            rel = cache.get(j)
            sel, dom = _maxpool_maps(layer, rel)
            const = np.where(rel.decided, 0.0, rel.upper_const)
            E += np.abs(A) @ (cache.mag(j)[layer.groups].max(axis=1) + np.abs(const))
            P, N = _split(A)
            c += N @ const
            A = _times(P, sel) + _times(N, dom)
            paid = False
        else:
            # la x + lb <= f(x) <= ua x + ub: P takes the lower line, N the upper one
            rel = cache.get(j)
            v_la, v_ua = cache.relax_mags(j)
            # (in place where possible: fresh large arrays cost page faults)
            P, N = _split(A)
            # (matrix-vector products: a 2-column product is slower in OpenBLAS)
            E += P @ v_la - N @ v_ua
            c += P @ rel.lb + N @ rel.ub
            A = _combine(P, rel.la, N, rel.ua)
            paid = j >= 1 and layers[j - 1].kind == "affine"
    m0 = cache.mag(0)
    P, N = _split(A)
    val = P @ lo0 + N @ hi0 + c
    E += P @ m0 - N @ m0
    n, tiny = cache.pad_terms(i)
    # overflow gives inf - inf = nan somewhere: fmax turns it into an infinite bound
    val = np.fmax(down(val - up(sum_error(E, n) + tiny)), -np.inf)
    return val[:r], -val[r:]


def row_flops(layers: list, i: int) -> float:
    """Rough floating-point operations of back-substituting one row of entry ``i`` (its
    lower and upper copies) through the affine layers below it."""
    size = sum(float(lay.W.nnz if sp.issparse(lay.W) else lay.W.size)
               for lay in layers[:i - 1] if lay.kind == "affine")
    return max(4.0 * size, 1.0)


def symbolic_entry(layers: list, i: int, cache: RelaxationCache, lo0: np.ndarray,
                   hi0: np.ndarray, rows: np.ndarray | None = None,
                   deadline: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Back-substituted bounds of the exact value of (some rows of) entry ``i``, in row
    chunks; ``None`` when ``deadline`` passes before every chunk is done."""
    n = layers[i - 1].out_size
    rows = np.arange(n) if rows is None else np.asarray(rows)
    widest = max([lay.in_size for lay in layers[:i]] + [1])
    step = max(1, CHUNK_ENTRIES // (2 * widest))        # W and -W are stacked
    lo = np.empty(rows.size)
    hi = np.empty(rows.size)
    if deadline is None:
        for s in range(0, rows.size, step):
            lo[s:s + step], hi[s:s + step] = backsubstitute(layers, i, rows[s:s + step],
                                                            cache, lo0, hi0)
        return lo, hi
    # With a deadline a chunk must fit in the time left: one chunk of a wide net (1000 rows
    # through 2000 x 1500 and 2000 x 784 layers) takes over a second, and checking the
    # clock only between chunks ran compute_bounds(timeout=2) to 3.5 s. A small first chunk
    # measures the cost of a row; each later chunk takes what fits at the cost of the one
    # before (with a margin for a noisy clock on a shared machine), at most CHUNK_SECONDS;
    # None when not even one row fits. Bound-wise nothing changes: every row is
    # back-substituted the same way.
    first = max(1, int(FIRST_CHUNK_FLOPS // row_flops(layers, i)))
    s, n_next, per_row = 0, min(step, first), 0.0
    while s < rows.size:
        left = deadline - time.perf_counter()
        if per_row > 0.0:
            n_next = min(step, int(min(left, CHUNK_SECONDS) / (CHUNK_MARGIN * per_row)))
        if left <= 0.0 or n_next < 1:
            return None
        t = time.perf_counter()
        e = min(s + n_next, rows.size)
        lo[s:e], hi[s:e] = backsubstitute(layers, i, rows[s:e], cache, lo0, hi0)
        # the latest chunk's cost: the first one also pays for the lazily built
        # relaxations of every layer, which would keep the chunks needlessly small
        per_row = max((time.perf_counter() - t) / (e - s), 1e-9)
        s = e
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
    fe = ForwardError(los[0].size)
    cache = RelaxationCache(layers, los, his)
    with np.errstate(invalid="ignore", over="ignore"):   # overflow: infinite bounds
        timed_out = _propagate_loop(layers, los, his, prior, refine, deadline, symbolic,
                                    max_neurons, methods, seconds, fe, cache)
    return Propagation(los, his, methods, seconds, fe.e, timed_out)


def _propagate_loop(layers, los, his, prior, refine, deadline, symbolic, max_neurons,
                    methods, seconds, fe, cache) -> bool:
    """The body of :func:`propagate`; fills ``los``, ``his``, ``methods``, ``seconds``
    and ``fe``, returns whether the deadline cut a stage short."""
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
    return timed_out
