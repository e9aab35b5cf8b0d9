"""Batched sound bounds over domains: the fallback bounder and the optimised-bounds adapter.

A *domain* is an input box plus pre-activation clamps (:mod:`nnresilience.search.domains`).
The search asks a *bounder* for a whole batch of them at once::

    bounder = make_bounder(network, C)                 # C: (R, n_outputs) spec rows
    res = bounder.bound(lo, hi, clamps, warm=None)     # BoundResult, rows = domains

``res.lower[b, r]`` is a sound lower bound of ``(C @ y)_r`` over domain ``b`` (``+inf`` when
the clamps make the domain empty), ``res.pre_lo[i] / pre_hi[i]`` the boxes of every entry
(the vector entering layer ``i``; the last one is the output), ``res.x_best`` the inputs
minimising the linear lower bound (falsifier seeds), ``res.scores[i]`` how much splitting
each neuron of non-linear layer ``i`` is expected to help, ``res.state`` what children
inherit (``warm``). This is the contract with ``bounds/crown.py``
(``/work/tools/tasks/INTERFACE-crown-search.md``); :func:`make_bounder` returns the
optimised ``CrownBounder`` when it is installed and this module's
:class:`SymbolicBounder` otherwise.

:class:`SymbolicBounder` is CROWN/DeepPoly back-substitution with the adaptive lower slope
(the relaxations of :mod:`nnresilience.bounds.relax`), vectorised over the batch: one
coefficient tensor ``(B, rows, width)`` walks back through the layers, affine steps are
one matrix product for the whole batch, relaxation steps are elementwise. Clamps are
intersected into the boxes before the relaxations are built, so a split ReLU becomes
exact (identity or zero) in every bound that follows.

Floating point (the rule of :mod:`nnresilience.bounds.rounding`)
-----------------------------------------------------------------
The back-substitution is read as a chain of identities: at an affine step
``Λ·z = (ΛW)·h + Λ·b`` and at a relaxation step ``Γ·h >= (Γ⁺la + Γ⁻ua)·z + Γ⁺lb + Γ⁻ub``.
The computed coefficients (``fl(ΛW)``, ``fl(Γ⁺la + Γ⁻ua)``) differ from the exact ones,
but any coefficients give a valid bound once the *residual* ``(exact - computed)·value``
is bounded, and each residual is at most ``gamma(n)`` times the magnitude of the terms
that were summed, ``|Λ|·(|W| m + |b|)`` or ``|Λ|·m + |Γ⁺|·|lb| + |Γ⁻|·|ub|`` with ``m``
the largest magnitude in the entry's box. The bounder accumulates these magnitudes along
the chain (one cheap matrix-vector product per step) and widens the result by
:func:`~nnresilience.bounds.rounding.sum_error` of their sum. The result bounds the
*exact* value; every stored box is then widened by the forward error ``e_i`` of the
float64 forward pass (built batched with the formulas of
:class:`~nnresilience.bounds.rounding.ForwardError`), and the spec rows by ``|C| e_out``,
so the float64 value that a replay computes is inside too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from nnresilience.bounds.relax import TINY_WIDTH
from nnresilience.bounds.rounding import (
    ACTIVATION_RANGE,
    ACTIVATION_ULPS,
    LIPSCHITZ,
    TINY,
    UNIT,
    down,
    gamma,
    sum_error,
    up,
)

PIECEWISE = ("relu", "leaky_relu")
S_SHAPED = ("arctan", "tanh", "sigmoid")
SPLITTABLE = PIECEWISE + S_SHAPED
#: Largest number of float64 entries in one coefficient tensor; bigger batches are chunked.
CHUNK_ENTRIES = 1 << 16
#: units of an intermediate entry are back-substituted in chunks of at most this many
#: coefficients (domains x 2 x units x widest entry), the deadline checked between them
ROW_CHUNK_ENTRIES = 4_000_000


# ------------------------------------------------------------------------ result
@dataclass(eq=False)
class BoundResult:
    """Bounds of a batch of domains (every array has the batch as its first axis).

    Field meanings are those of ``CrownResult`` in the contract; ``upper`` may be None.
    ``state`` is what :meth:`SymbolicBounder.bound` accepts as ``warm``.
    """

    lower: np.ndarray
    upper: np.ndarray | None
    pre_lo: list[np.ndarray]
    pre_hi: list[np.ndarray]
    x_best: np.ndarray
    scores: dict[int, np.ndarray]
    state: Any = None
    stats: dict[str, Any] = field(default_factory=dict)

    def select(self, idx) -> BoundResult:
        idx = np.asarray(idx)
        return BoundResult(
            self.lower[idx], None if self.upper is None else self.upper[idx],
            [a[idx] for a in self.pre_lo], [a[idx] for a in self.pre_hi], self.x_best[idx],
            {k: v[idx] for k, v in self.scores.items()}, take_rows(self.state, idx),
            dict(self.stats))


def take_rows(obj: Any, idx) -> Any:
    """Rows ``idx`` of every batched array inside ``obj`` (arrays, tensors, containers).

    Used for ``warm`` states whose layout the search does not know (the optimised
    bounder's alpha/beta); an object with its own ``select`` is asked directly.
    """
    if obj is None:
        return None
    if hasattr(obj, "select") and not isinstance(obj, np.ndarray):
        return obj.select(idx)
    if isinstance(obj, np.ndarray):
        return obj[np.asarray(idx)]
    if isinstance(obj, dict):
        return {k: take_rows(v, idx) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(take_rows(v, idx) for v in obj)
    if hasattr(obj, "index_select") and hasattr(obj, "shape"):   # a torch tensor
        import torch

        return obj[torch.as_tensor(np.asarray(idx), dtype=torch.long, device=obj.device)]
    return obj


def concat_rows(parts: list) -> Any:
    """Concatenate batched objects of the same layout along their batch axis."""
    first = parts[0]
    if first is None:
        return None
    if len(parts) == 1:
        return first
    if hasattr(type(first), "concat"):
        return type(first).concat(parts)
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if isinstance(first, dict):
        return {k: concat_rows([p[k] for p in parts]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(concat_rows([p[i] for p in parts]) for i in range(len(first)))
    if hasattr(first, "index_select") and hasattr(first, "shape"):
        import torch

        return torch.cat(parts, dim=0)
    return first


def concat_results(parts: list[BoundResult]) -> BoundResult:
    if len(parts) == 1:
        return parts[0]
    return BoundResult(
        np.concatenate([p.lower for p in parts]),
        None if any(p.upper is None for p in parts) else np.concatenate(
            [p.upper for p in parts]),
        [np.concatenate(a) for a in zip(*[p.pre_lo for p in parts], strict=True)],
        [np.concatenate(a) for a in zip(*[p.pre_hi for p in parts], strict=True)],
        np.concatenate([p.x_best for p in parts]),
        {k: np.concatenate([p.scores[k] for p in parts]) for k in parts[0].scores},
        concat_rows([p.state for p in parts]), dict(parts[0].stats))


# ---------------------------------------------------------------- batched pieces
def _rowdot(X: np.ndarray, M) -> np.ndarray:
    """``X @ M.T`` for a batch of rows ``X`` (..., n) and a dense or sparse ``M`` (m, n)."""
    shape = X.shape
    X2 = X.reshape(-1, shape[-1])
    out = np.asarray((M @ X2.T).T) if sp.issparse(M) else X2 @ M.T
    return out.reshape(shape[:-1] + (out.shape[-1],))


def _times(A: np.ndarray, M) -> np.ndarray:
    """``A @ M`` for ``A`` (..., m) and a dense or sparse ``M`` (m, n)."""
    shape = A.shape
    A2 = A.reshape(-1, shape[-1])
    out = np.asarray((M.T @ A2.T).T) if sp.issparse(M) else A2 @ M
    return out.reshape(shape[:-1] + (out.shape[-1],))


def _bdot(X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``X[b] @ v[b]`` for every domain: (B, R, k), (B, k) -> (B, R)."""
    return np.matmul(X, v[:, :, None])[:, :, 0]


def _maxabs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lo), np.abs(hi))


@dataclass(eq=False)
class _Affine:
    W: Any
    absW: Any
    b: np.ndarray
    absb: np.ndarray
    terms: int          # longest dot product (non-zeros of a row) + 1 for the bias


def _relax_batched(layer, lo: np.ndarray, hi: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``la, lb, ua, ub`` of an elementwise layer for a batch of boxes ``(B, n)``.

    :func:`nnresilience.bounds.relax.relax_elementwise` is elementwise and vectorised, so
    the batch is flattened: the one relaxation (and its outward rounding) serves both.
    """
    from nnresilience.bounds.relax import relax_elementwise

    rel = relax_elementwise(layer, lo.reshape(-1), hi.reshape(-1))
    shape = lo.shape
    return (rel.la.reshape(shape), rel.lb.reshape(shape), rel.ua.reshape(shape),
            rel.ub.reshape(shape))


def _maxpool_batched(groups: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Per domain and pooled output: lower member index, decided mask, upper constant."""
    glo = lo[:, groups]                                    # (B, out, g)
    ghi = hi[:, groups]
    j = np.argmax(glo, axis=2)                             # (B, out)
    best = np.take_along_axis(np.broadcast_to(groups, glo.shape), j[..., None], 2)[..., 0]
    best_lo = np.take_along_axis(glo, j[..., None], 2)[..., 0]
    same = np.broadcast_to(groups, glo.shape) == best[..., None]
    others_hi = np.where(same, -np.inf, ghi).max(axis=2)
    decided = best_lo >= others_hi
    return best, decided, ghi.max(axis=2)


def _scatter_add(target: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """``target[b, r, idx[b, k]] += vals[b, r, k]`` for a batch (several k may collide)."""
    B, R, _ = vals.shape
    rows = np.broadcast_to(np.arange(B * R).reshape(B, R, 1), vals.shape)
    cols = np.broadcast_to(idx[:, None, :], vals.shape)
    flat = target.reshape(B * R, -1)
    np.add.at(flat, (rows.reshape(-1), cols.reshape(-1)), vals.reshape(-1))


# -------------------------------------------------------------------- the bounder
class SymbolicBounder:
    """Batched back-substitution bounds over domains (the sound numpy fallback).

    ``network`` should be ``Network.merged()`` (clamp indices refer to its layers); any
    sequence of affine, ReLU, LeakyReLU, max-pool and s-shaped layers is accepted.
    ``C`` (R, n_outputs): the quantity bounded is ``C @ y``.

    ``intermediate``: with a ``warm`` state (the parent's boxes), ``"inherit"`` keeps the
    parent's intermediate boxes (intersected with the clamps and the interval image) and
    back-substitutes only the spec rows -- cheap, what neuron splitting wants;
    ``"recompute"`` back-substitutes every layer again. Without ``warm`` every layer is
    computed (what input splitting needs, since a smaller box changes every layer).
    """

    name = "symbolic"

    def __init__(self, network, C: np.ndarray, *, device: str = "cpu",
                 intermediate: str = "inherit", **options: Any) -> None:
        del device, options
        self.network = network
        self.layers = list(network.layers)
        self.C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        if self.C.shape[1] != network.n_outputs:
            raise ValueError(f"C has {self.C.shape[1]} columns, the network has "
                             f"{network.n_outputs} outputs")
        if intermediate not in ("inherit", "recompute"):
            raise ValueError("intermediate must be 'inherit' or 'recompute'")
        self.intermediate = intermediate
        self.sizes = [network.n_inputs] + [la.out_size for la in self.layers]
        self._aff: dict[int, _Affine] = {}
        for i, layer in enumerate(self.layers):
            if layer.kind == "affine":
                W = layer.W
                n = int(np.diff(sp.csr_matrix(W).indptr).max(initial=0)) if sp.issparse(W) \
                    else int(W.shape[1])
                self._aff[i] = _Affine(W, layer.abs_W(), layer.b, np.abs(layer.b), n + 1)
        # which entries need a box from back-substitution: those entering a non-linear
        # layer that an affine layer (not the first one) produces
        self._needs_backsub = [
            i for i in range(2, len(self.layers))
            if self.layers[i].kind != "affine" and self.layers[i - 1].kind == "affine"]
        # longest chain of summed terms of a back-substitution to entry i
        self._chain_terms = np.cumsum([0] + [s + 2 for s in self.sizes[:-1]])

    # ------------------------------------------------------------- public
    def bound(self, lo, hi, clamps: dict | None = None, *, iters: int = 20, warm=None,
              deadline: float | None = None, row_weight: np.ndarray | None = None
              ) -> BoundResult:
        """Bounds of ``C @ y`` over each domain; ``deadline`` is a ``time.monotonic()``
        value after which only interval steps are taken (still sound, looser)."""
        del iters
        t0 = time.perf_counter()
        lo = np.atleast_2d(np.asarray(lo, dtype=np.float64))
        hi = np.atleast_2d(np.asarray(hi, dtype=np.float64))
        B = lo.shape[0]
        clamps = clamps or {}
        L = len(self.layers)
        los, his = [lo.copy()], [hi.copy()]
        err = [np.zeros_like(lo)]                 # forward error e_i of each entry
        empty = np.any(lo > hi, axis=1)
        inherit = warm is not None and self.intermediate == "inherit"
        w_lo, w_hi, w_lower = (warm if warm is not None else (None, None, None))
        n_backsub = 0
        for i, layer in enumerate(self.layers):
            nlo, nhi = self._interval_step(i, layer, los[i], his[i])
            e = self._forward_error_step(i, layer, los[i], his[i], err[i])
            if warm is not None:
                nlo, nhi = np.maximum(nlo, w_lo[i + 1]), np.minimum(nhi, w_hi[i + 1])
            late = deadline is not None and time.monotonic() > deadline
            wanted = (i + 1) in self._needs_backsub and not inherit
            # the output box too (few rows): its interval image of C y is sometimes
            # tighter than back-substituting C directly
            wanted |= i + 1 == L and i >= 1 and self.sizes[L] <= 64 and layer.kind == "affine"
            if wanted and not late:
                blo, bhi = self._entry_backsub(B, i + 1, los, his, deadline)
                blo, bhi = down(blo - e), up(bhi + e)
                nlo, nhi = np.maximum(nlo, blo), np.minimum(nhi, bhi)
                n_backsub += 1
            if (i + 1) in clamps:
                clo, chi = clamps[i + 1]
                nlo, nhi = np.maximum(nlo, clo), np.minimum(nhi, chi)
            empty |= np.any(nlo > nhi, axis=1)
            los.append(nlo)
            his.append(nhi)
            err.append(e)
        # spec rows: back-substitute C from the output entry (past the deadline: only
        # the interval image of the output box, sound and instant)
        Cb = np.broadcast_to(self.C, (B,) + self.C.shape)
        if deadline is not None and time.monotonic() > deadline:
            low = np.full((B, self.C.shape[0]), -np.inf)
            mid = (los[0] + his[0]) / 2.0
            x_best = np.broadcast_to(mid[:, None, :], (B,) + (self.C.shape[0], lo.shape[1]))
            scores = {}
        else:
            low, x_best, scores = self._backsub(Cb, L, los, his, row_weight=row_weight,
                                                want_extras=True)
        low = down(low - up((err[L] @ np.abs(self.C).T) * (1.0 + 2.0 * gamma(
            self.C.shape[1] + 2))))
        # interval image of C y as a second opinion (tighter for very small boxes)
        ilo = self._interval_rows(los[L], his[L])
        lower = np.maximum(low, ilo)
        if w_lower is not None:
            # the parent's bound holds on the child (a subset): back-substitution alone
            # is not monotone under splits (the box step ignores the split constraint)
            lower = np.maximum(lower, w_lower)
        lower[empty] = np.inf
        state = ([a for a in los], [a for a in his], lower)
        return BoundResult(lower, None, los, his, x_best, scores, state,
                           {"seconds": time.perf_counter() - t0, "batch": B,
                            "backsub_layers": n_backsub})

    # ----------------------------------------------------------- internals
    def _interval_rows(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sound lower bound of ``C y`` from the output box alone."""
        C = self.C
        Cp, Cn = np.maximum(C, 0.0), np.minimum(C, 0.0)
        val = lo @ Cp.T + hi @ Cn.T
        mag = _maxabs(lo, hi) @ np.abs(C).T
        return down(val - sum_error(mag, C.shape[1]))

    def _interval_step(self, i: int, layer, lo: np.ndarray, hi: np.ndarray):
        kind = layer.kind
        if kind == "affine":
            a = self._aff[i]
            mid = (lo + hi) / 2.0
            rad = (hi - lo) / 2.0
            c = _rowdot(mid, a.W) + a.b
            r = _rowdot(rad, a.absW)
            pad = sum_error(_rowdot(_maxabs(lo, hi), a.absW) + a.absb, a.terms + 2)
            return down(c - r - pad), up(c + r + pad)
        if kind == "maxpool":
            return lo[:, layer.groups].max(axis=2), hi[:, layer.groups].max(axis=2)
        flo, fhi = layer.forward(lo), layer.forward(hi)
        if kind == "relu":
            return flo, fhi
        if kind == "leaky_relu":
            pad = up(UNIT * abs(layer.slope) * _maxabs(lo, hi) + TINY)
            return down(flo - pad), up(fhi + pad)
        pad = ACTIVATION_ULPS[kind] * UNIT * ACTIVATION_RANGE[kind] + TINY
        return down(flo - pad), up(fhi + pad)

    def _forward_error_step(self, i: int, layer, lo, hi, e_in: np.ndarray) -> np.ndarray:
        """Batched ``ForwardError.step`` (same formulas, see bounds/rounding.py)."""
        kind = layer.kind
        mag = _maxabs(lo, hi)
        if kind == "affine":
            a = self._aff[i]
            carry = up(_rowdot(e_in, a.absW) * (1.0 + 2.0 * gamma(a.terms + 1)))
            own = sum_error(_rowdot(mag, a.absW) + a.absb, a.terms)
            return up(carry + own)
        if kind == "maxpool":
            return e_in[:, layer.groups].max(axis=2)
        carry = up(LIPSCHITZ[kind] * e_in)
        if kind == "relu":
            return carry
        if kind == "leaky_relu":
            return up(carry + up(UNIT * abs(layer.slope) * mag + TINY))
        return up(carry + ACTIVATION_ULPS[kind] * UNIT * ACTIVATION_RANGE[kind] + TINY)

    def _entry_backsub(self, B: int, k: int, los: list, his: list,
                       deadline: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Back-substituted lower and upper bounds of every unit of entry ``k`` (before the
        forward-error pad), in chunks of units; units not reached by ``deadline`` keep
        infinite bounds (the caller intersects with the interval box).

        Why chunks: the identity of a 3136-unit convolution layer (16 x 14 x 14), stacked
        with its negative, is a 6272 x 3136 dense matrix; back-substituted in one piece it
        took 13 s and 2 GB at the root of ``bab`` with 3.5 s left (benchmarks/
        large_unseen.py, ``mnist_conv``), and nothing could stop it at the deadline."""
        n = self.sizes[k]
        widest = max(self.sizes[: k + 1])
        step = max(1, ROW_CHUNK_ENTRIES // max(1, 2 * B * widest))
        lo = np.full((B, n), -np.inf)
        hi = np.full((B, n), np.inf)
        s, size, per_unit = 0, step, 0.0
        if deadline is not None:
            # a chunk started just before the deadline runs to its end (0.8-1 s on a
            # 3x32x32 conv net): the first chunk is ~0.1 s of work, each later one what
            # fits in the time left at the last chunk's cost (1.5x margin), at most 0.5 s
            from nnresilience.bounds.symbolic import FIRST_CHUNK_FLOPS, row_flops

            size = min(step, max(1, int(FIRST_CHUNK_FLOPS // (B * row_flops(self.layers,
                                                                                k)))))
        while s < n:
            if deadline is not None and s:
                left = deadline - time.monotonic()
                size = min(step, int(min(left, 0.5) / (1.5 * per_unit)))
                if size < 1:
                    break
            t = time.perf_counter()
            idx = np.arange(s, min(s + size, n))
            m = idx.size
            both = np.zeros((2 * m, n))
            both[np.arange(m), idx] = 1.0                    # lower rows
            both[m + np.arange(m), idx] = -1.0               # -upper rows
            low = self._backsub(np.broadcast_to(both, (B,) + both.shape), k, los, his)[0]
            lo[:, idx], hi[:, idx] = low[:, :m], -low[:, m:]
            per_unit = max((time.perf_counter() - t) / m, 1e-9)
            s += m
        return lo, hi

    def _backsub(self, Lam: np.ndarray, i: int, los: list, his: list,
                 row_weight: np.ndarray | None = None, want_extras: bool = False):
        """Lower bounds of ``Lam · entry_i`` for a batch ``Lam`` (B, R, n_i).

        Returns ``(lower (B, R), x_best (B, R, n0) or None, scores or None)``. The
        per-layer data (relaxations, magnitude vectors) is built once for the batch; the
        walk itself runs in chunks of domains small enough for the coefficient tensor to
        stay in cache (measured: 4x faster than one big tensor on ACAS Xu).
        """
        B, R, _ = Lam.shape
        prep = []
        for j in range(i - 1, -1, -1):
            layer = self.layers[j]
            lo, hi = los[j], his[j]
            if layer.kind == "affine":
                a = self._aff[j]
                prep.append(("affine", a, _rowdot(_maxabs(lo, hi), a.absW) + a.absb))
            elif layer.kind == "maxpool":
                prep.append(("maxpool", layer, _maxpool_batched(layer.groups, lo, hi)))
            else:
                la, lb, ua, ub = _relax_batched(layer, lo, hi)
                m = _maxabs(lo, hi)
                prep.append(("relax", layer, (la, lb, ua, ub, np.abs(la) * m + np.abs(lb),
                                              np.abs(ua) * m + np.abs(ub), lo, hi)))
        widest = max(self.sizes[: i + 1])
        step = max(1, CHUNK_ENTRIES // max(1, R * widest))
        outs = []
        for s in range(0, B, step):
            sl = slice(s, s + step)
            outs.append(self._backsub_chunk(
                Lam[sl], i, prep, sl, los[0][sl], his[0][sl],
                None if row_weight is None else row_weight[sl], want_extras))
        low = np.concatenate([o[0] for o in outs])
        if not want_extras:
            return low, None, None
        xb = np.concatenate([o[1] for o in outs])
        sc = {k: np.concatenate([o[2][k] for o in outs]) for k in outs[0][2]}
        return low, xb, sc

    def _backsub_chunk(self, Lam, i, prep, sl, lo0, hi0, row_weight, want_extras):
        B, R, _ = Lam.shape
        Lam = np.array(Lam, dtype=np.float64)
        const = np.zeros((B, R))
        mag = np.zeros((B, R))          # magnitude of every term summed so far
        scores: dict[int, np.ndarray] = {}
        w = None
        if want_extras:
            w = np.ones((B, R)) if row_weight is None else np.asarray(row_weight, float)
        j = i
        for kind, obj, data in prep:
            j -= 1
            if kind == "affine":
                mag += _bdot(np.abs(Lam), data[sl])
                const += Lam @ obj.b
                Lam = _times(Lam, obj.W)
            elif kind == "maxpool":
                best, decided, upc = (d[sl] for d in data)
                N = np.minimum(Lam, 0.0)
                und = (~decided)[:, None, :]
                Nu = np.where(und, N, 0.0)
                const += _bdot(Nu, upc)
                mag -= _bdot(Nu, np.abs(upc))
                new = np.zeros((B, R, obj.in_size))
                _scatter_add(new, best, Lam - Nu)
                Lam = new
            else:
                la, lb, ua, ub, lmag, umag, lo, hi = (d[sl] for d in data)
                P = np.maximum(Lam, 0.0)
                N = Lam - P
                if want_extras and obj.kind in SPLITTABLE:
                    scores[j] = self._scores(obj, lo, hi, la, lb, ua, ub, P, N, w)
                const += _bdot(P, lb) + _bdot(N, ub)
                mag += _bdot(P, lmag) - _bdot(N, umag)
                P *= la[:, None, :]
                N *= ua[:, None, :]
                Lam = P + N
        P = np.maximum(Lam, 0.0)
        N = Lam - P
        val = _bdot(P, lo0) + _bdot(N, hi0) + const
        mag += _bdot(np.abs(Lam), _maxabs(lo0, hi0)) + np.abs(const)
        low = down(val - sum_error(mag, int(self._chain_terms[i]) + R))
        if not want_extras:
            return low, None, None
        mid = (lo0 + hi0) / 2.0
        x_best = np.where(Lam > 0, lo0[:, None, :], np.where(Lam < 0, hi0[:, None, :],
                                                               mid[:, None, :]))
        return low, x_best, scores

    @staticmethod
    def _scores(layer, lo, hi, la, lb, ua, ub, P, N, w) -> np.ndarray:
        """Estimated gain of splitting each neuron (B, n): what its relaxation costs the
        weighted spec rows. ReLU/Leaky: the upper-line intercept paid by negative
        coefficients (the BaBSR intercept score) plus a quarter of the lower-line gap
        paid by positive ones; s-shaped: the widest vertical gap of the two lines."""
        if layer.kind in PIECEWISE:
            k = float(getattr(layer, "slope", 0.0))
            unstable = (lo < 0.0) & (hi > 0.0)
            upper_cost = np.einsum("br,brk->bk", w, -N) * ub
            # lower line la*z vs max(z, kz): largest gap at an end of [lo, hi]
            lgap = np.where(la == 1.0, (k - 1.0) * lo, (1.0 - k) * hi)
            lower_cost = np.einsum("br,brk->bk", w, P) * lgap
            return np.where(unstable, upper_cost + 0.25 * lower_cost, 0.0)
        gap = np.maximum((ua - la) * lo + (ub - lb), (ua - la) * hi + (ub - lb))
        wide = (hi - lo) > TINY_WIDTH
        return np.where(wide, np.einsum("br,brk->bk", w, P - N) * gap, 0.0)


# ----------------------------------------------------------------- construction
def crown_available() -> bool:
    """Is the optimised bounder (``nnresilience.bounds.crown``) installed?"""
    import importlib.util

    return importlib.util.find_spec("nnresilience.bounds.crown") is not None


def make_bounder(network, C: np.ndarray, method: str = "auto", device: str = "cpu",
                 symbolic_options: dict | None = None, alpha_options: dict | None = None):
    """A bounder for ``network`` (merged) and spec rows ``C``.

    ``method``: ``"symbolic"`` (this module's batched back-substitution),
    ``"alpha"`` (the optimised ``CrownBounder``; an error if it is not installed or
    refuses the network) or ``"auto"`` (``alpha`` when installed and it accepts the
    network, else ``symbolic``).
    """
    if method not in ("auto", "alpha", "crown", "symbolic"):
        raise ValueError(f"unknown bounder {method!r}: use auto, symbolic or alpha")
    if method in ("alpha", "crown") or (method == "auto" and crown_available()):
        from nnresilience.bounds.crown import CrownBounder  # type: ignore[import-not-found]
        from nnresilience.errors import NNResError

        try:
            return CrownAdapter(CrownBounder(network, C, device=device,
                                             **(alpha_options or {})))
        except (NNResError, ValueError, NotImplementedError):
            if method != "auto":
                raise
    return SymbolicBounder(network, C, device=device, **(symbolic_options or {}))


class CrownAdapter:
    """Wraps a ``CrownBounder`` so its results look like :class:`BoundResult`.

    The contract's ``CrownResult`` has the same fields; the adapter only normalises
    ``x_best`` to ``(B, R, n)`` and passes ``warm``/``deadline`` through. ``row_weight``
    (a search-side hint for the fallback's scores) is dropped.
    """

    name = "alpha"

    def __init__(self, inner) -> None:
        self.inner = inner

    def split_estimates(self, res: BoundResult, parent, layer, neuron) -> np.ndarray:
        """``(K, 2, R)`` cheap estimates of the children's spec-row bounds for candidate
        splits (see ``CrownBounder.split_estimates``): for ranking splits only."""
        return self.inner.split_estimates(res.state, res.pre_lo, res.pre_hi,
                                          np.asarray(parent), np.asarray(layer),
                                          np.asarray(neuron))

    def bound(self, lo, hi, clamps=None, *, iters: int = 20, warm=None,
              deadline: float | None = None, row_weight=None) -> BoundResult:
        del row_weight
        t0 = time.perf_counter()
        res = self.inner.bound(lo, hi, clamps, iters=iters, warm=warm, deadline=deadline)
        x_best = np.asarray(res.x_best, dtype=np.float64)
        lower = np.asarray(res.lower, dtype=np.float64)
        if x_best.ndim == 2:
            x_best = np.broadcast_to(x_best[:, None, :],
                                     (x_best.shape[0], lower.shape[1], x_best.shape[1]))
        return BoundResult(lower, None if res.upper is None else np.asarray(res.upper),
                           [np.asarray(a, float) for a in res.pre_lo],
                           [np.asarray(a, float) for a in res.pre_hi], x_best,
                           {int(k): np.asarray(v, float) for k, v in res.scores.items()},
                           res.state, {"seconds": time.perf_counter() - t0,
                                       "batch": int(lower.shape[0])})
