"""Difference bounds vertex by vertex: how far ``C·y`` can move within an L1 (L∞, L2) ball.

Why
---
The differential back-substitution (:mod:`.differential`) bounds ``Δ = x(b) - x(a)`` for
*all* ``ε = b - a`` of the ball at once, so for an L1 ball every intermediate box of
``Δz`` is symmetric (``[-w, w]``), every neuron unstable in a copy gets the chord of
``g Δz`` over ``[-w, w]`` (slope 1/2, intercept ``w/2``), and the intercepts add up: on
the digits 2x50 net the certified radius of Φ_m was 0.0755 while pairs from attacks
move the margin by only ~0.9 of the needed ``ln 20 ≈ 3`` at that radius (measured in
``benchmarks/results_phi_digits.md``, follow-up phi3). Per vertex it is 0.174.

The argument
------------
For an elementwise activation ``f``, ``f(z2) - f(z1) = g (z2 - z1)`` with ``g`` a secant
slope, ``g ∈ [g_lo, g_hi]`` (the range of :func:`.differential.slope_range` over the two
copies' boxes: ReLU ``[0, 1]``, LeakyReLU ``[min(k,1), max(k,1)]``, s-shaped
``[min f', max f']``). So for every pair of a region whose copy boxes give these ranges,
``C·Δy = C·J(G) ε`` with ``J(G) = W_L G_{L-1} ... G_1 W_1`` and ``G`` diagonal in the
slope box 𝒢. Let ``F(ε) = sup_{G ∈ 𝒢} C·J(G) ε``: a supremum of linear functions of
``ε``, hence convex and positively homogeneous. Its maximum over the L1 ball of radius
``r`` is reached at a vertex ``±r e_i``, so

    C·Δy <= r · max_i max(F(e_i), F(-e_i)).

For one vertex ``v`` the chain ``J(G) v`` has *point* input: the first difference box is
``W_1 v`` exactly (its sign is known, no intercept), and later boxes are those of this
one direction, not of the whole ball. ``F(v)`` is bounded by a CROWN-style
back-substitution through the chain with the chord planes of ``g Δz`` over each box
(:func:`_planes`, intercepts outward as in :mod:`.differential`; the chords are the
tightest planes of the envelopes ``max(g_lo x, g_hi x)`` / ``min(...)``, so there is
nothing to optimise), the boxes from interval steps intersected with back-substitution
(every vertex, every neuron, batched). The back-substitution stops at the box after a
first affine layer (a padded point), so the first weight matrix is never multiplied
through. Nothing here refers to the domain of ``a`` or ``b``: the region enters
only through 𝒢 (on the whole domain of a 64-input digits net every neuron is unstable,
and the bound is a sound Lipschitz constant of each row of ``C·y`` in L1).

L∞ and L2 balls have too many vertices to visit, but the same per-vertex bounds serve:
for every ``G``, ``(C J(G))_ti ε_i <= |ε_i| max(F_t(e_i), F_t(-e_i))``, so summing over
``i`` (the supremum of a sum is at most the sum of the suprema) ``C_t·Δy <= Σ_i L_ti |ε_i|
<= ||L_t||_* ||ε||`` with the dual norm (Hölder; :func:`coordinate_upper`,
:func:`dual_norm_upper`). On the digits 2x50 net over ``[0, 1]^64`` this lifts the L∞
certificate of Φ_0 from 0.00356 to 0.00406 (follow-up phi5).

That sum lets every coordinate pick its own ``G`` (worst row of that net: ``Σ_i L_i =
739``, while one shared ``G`` found by local search reaches ``||C J(G)||_1`` ≈ 228). For
L∞ the coordinates are therefore bounded in groups (:func:`group_upper`): for every
``G``, ``C_t J(G) ε <= Σ_g ||(C_t J(G))_g||_1 ||ε||_∞`` and ``sup_G ||x_g||_1 =
max_{σ ∈ {±1}^g} F_t(σ)``, the same vertex bound at the ``2^|g|`` sign vectors of the
group (the other coordinates 0), where one ``G`` serves all of the group's coordinates.
Groups of 8 give 359 on that row (0.8 s for the 9 rows); the certificate of Φ_0 rises
from 0.00406 to 0.00833 (follow-up phi6). The groups are chosen so that their coordinates
want different slopes (:func:`sign_groups`).

Both bounds relax every unstable neuron after the first activation by a chord over its
difference box (the first one sees a point and is exact). ``C J(G) v`` is multilinear in
the slopes, so its supremum over the box is at a vertex of the box: :func:`_refine`
splits slope boxes into their two ends, branch and bound, inside the L∞ groups and at
the L1 vertices (``refine=`` of :func:`unit_upper`; digits 2x50 class 0, worst row: L∞
359 -> 300 in 10 s, L1 17.2 -> 13.4, the exact free-slope supremum, in ~2.5 s; follow-up
phi7).

The intermediate boxes are *not* intersected with the region's difference boxes: those
hold for real pairs, while ``F`` is a supremum over every ``G`` of 𝒢.

Floating point
--------------
Interval steps are padded like :meth:`.differential.DifferentialAnalysis._affine_interval`
(``2 gamma(n + 2)`` times the magnitudes, then :func:`.differential._outward`); the chord
intercepts are outward (:func:`.differential._chord_upper`); a back-substitution tracks
the magnitude of every product it forms and pads its value by ``4 gamma(N)`` of it, the
rule of :meth:`.differential.DifferentialAnalysis._backsub`. The bounds are about exact
values; forward errors of the copies are the caller's (the certifier's thresholds).
"""

from __future__ import annotations

import time

import numpy as np

from nnresilience.bounds.differential import (
    ELEMENTWISE,
    _chord_lower,
    _chord_upper,
    _maxabs,
    _outward,
    _up,
)
from nnresilience.bounds.rounding import TINY, gamma

#: Entries of the largest per-block coefficient tensor (vertices x targets x width).
BLOCK_ENTRIES = 4_000_000
#: Multiply-adds allowed for one bound (digits 4x50: 2.0e8 with the tightening, 0.2-0.7 s
#: per class at load 3-4; an MNIST 784-256-256-10 net would need 9.6e8 without it and is
#: skipped: 180 s measured with the tightening before this budget existed).
MAX_FLOPS = 3e8


def supported(network) -> bool:
    """Chains of affine and elementwise layers (no max-pool: not a diagonal ``G``)."""
    return all(layer.kind == "affine" or layer.kind in ELEMENTWISE for layer in network.layers)


def _planes(glo, ghi, dl, du):
    """Chord planes ``sl x + cl <= g x <= su x + cu`` for ``g ∈ [glo, ghi]``,
    ``x ∈ [dl, du]`` (the envelopes are convex / concave: gap largest at an endpoint)."""
    pos, neg = dl >= 0, du <= 0
    mix = ~(pos | neg)
    den = np.where(mix, du - dl, 1.0)
    su = np.where(pos, ghi, np.where(neg, glo, (ghi * du - glo * dl) / den))
    sl = np.where(pos, glo, np.where(neg, ghi, (glo * du - ghi * dl) / den))
    cu = _chord_upper(np.maximum(glo * dl, ghi * dl), np.maximum(glo * du, ghi * du), su,
                      dl, du)
    cl = _chord_lower(np.minimum(glo * dl, ghi * dl), np.minimum(glo * du, ghi * du), sl,
                      dl, du)
    return su, cu, sl, cl


def _col(g):
    """A layer's slope bound as a column (n_i, 1) shared by every vertex, or per vertex
    (n_i, nv) as given."""
    return g[:, None] if g.ndim == 1 else g


class _Chain:
    """Weights of the network and the slope box 𝒢 (per elementwise layer)."""

    def __init__(self, network, slopes, tighten: bool = True) -> None:
        self.tighten = tighten
        self.layers = list(network.layers)
        self.W, self.absW, self.terms = [], [], []
        widest = network.n_inputs
        for layer in self.layers:
            widest = max(widest, layer.out_size, layer.in_size)
            if layer.kind == "affine":
                W = np.ascontiguousarray(layer.dense_W(), dtype=np.float64)
                self.W.append(W)
                self.absW.append(np.abs(W))
                self.terms.append(W.shape[1] + 1)
            else:
                self.W.append(None)
                self.absW.append(None)
                self.terms.append(4)
        self.n_sum = widest + network.n_inputs + 32
        self.slopes = slopes

    def back(self, Lam, j: int, boxes, V, record: dict | None = None):
        """Sound upper bound of ``Lam · x_j`` per (vertex, target) over 𝒢 for the chain
        started at the vertices ``V`` (columns); ``Lam`` is (nv, T, n_j). ``record``
        receives, per elementwise layer, the chord intercepts' share of the bound (nv, T,
        n_i): what fixing a neuron's slope could remove (the branching score of
        :func:`_refine`)."""
        const = np.zeros(Lam.shape[:2])
        M = np.zeros(Lam.shape[:2])
        # the box after a first affine layer is a (padded) point: stop there instead of
        # multiplying by the first weight matrix (784 columns on MNIST)
        stop = 1 if self.layers[0].kind == "affine" else 0
        for i in range(j - 1, stop - 1, -1):
            lo, hi = boxes[i]                     # box of x_i, (n_i, nv)
            m = _maxabs(lo, hi).T[:, None, :]     # (nv, 1, n_i)
            if self.layers[i].kind == "affine":
                W = self.W[i]
                M = M + np.einsum("vtk,vk->vt", np.abs(Lam), m[:, 0, :] @ self.absW[i].T)
                Lam = Lam @ W
            else:
                glo, ghi = (_col(g) for g in self.slopes[i])
                su, cu, sl, cl = (x.T[:, None, :] for x in _planes(glo, ghi, lo, hi))
                P, N = np.maximum(Lam, 0.0), np.minimum(Lam, 0.0)
                M = M + (np.abs(Lam) * (np.maximum(abs(su), abs(sl)) * m
                                        + np.maximum(abs(cu), abs(cl)))).sum(2)
                slack = P * cu + N * cl
                if record is not None:
                    record[i] = slack
                const = const + slack.sum(2)
                Lam = P * su + N * sl
        if stop == 1:
            lo, hi = boxes[1]
            P, N = np.maximum(Lam, 0.0), np.minimum(Lam, 0.0)
            val = const + np.einsum("vti,iv->vt", P, hi) + np.einsum("vti,iv->vt", N, lo)
            M = M + np.einsum("vti,iv->vt", np.abs(Lam), _maxabs(lo, hi))
        else:
            val = const + np.einsum("vti,iv->vt", Lam, V)
            M = M + np.einsum("vti,iv->vt", np.abs(Lam), np.abs(V))
        pad = 4 * gamma(self.n_sum) * (M + np.abs(const)) + TINY * (4 * len(self.layers) + 64)
        return _up(val, pad)

    def block(self, V, C, record: dict | None = None):
        """Upper bounds of ``F(v)`` for the rows of ``C`` and the vertices ``V``:
        (T, nv). ``C`` is (T, n_out) for every vertex or (nv, T, n_out) per vertex; a
        layer's slopes are (n_i,) for every vertex or (n_i, nv) per vertex."""
        lo = hi = V
        boxes = []
        for i, layer in enumerate(self.layers):
            boxes.append((lo, hi))
            if layer.kind == "affine":
                W, aW = self.W[i], self.absW[i]
                mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
                c, r = W @ mid, aW @ rad
                pad = 2 * gamma(self.terms[i] + 2) * (aW @ _maxabs(lo, hi) + abs(r) + abs(c)) \
                    + TINY
                lo, hi = _outward(c - r, c + r, pad)
                nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
                if self.tighten and nxt is not None and nxt.kind != "affine" and sum(
                        la.kind != "affine" for la in self.layers[:i]) >= 2:
                    # tighten the pre-activation boxes by back-substitution (both sides).
                    # Not after the first activation: from a point input its box is a
                    # product of independent slope ranges, so the interval step of the
                    # affine layer after it is already exact (a back-substitution there
                    # gave the same boxes at 4x the cost on digits 2x50, follow-up phi6)
                    n, nv = W.shape[0], V.shape[1]
                    eye = np.eye(n)
                    T = np.broadcast_to(np.concatenate([eye, -eye])[None], (nv, 2 * n, n))
                    up = self.back(T.copy(), i + 1, boxes, V)       # (nv, 2n)
                    lo = np.maximum(lo, -up[:, n:].T)
                    hi = np.minimum(hi, up[:, :n].T)
                    hi = np.maximum(hi, lo)
            else:
                glo, ghi = (_col(g) for g in self.slopes[i])
                cands = (glo * lo, ghi * lo, glo * hi, ghi * hi)
                lo, hi = _outward(np.minimum.reduce(cands), np.maximum.reduce(cands), 0.0)
        boxes.append((lo, hi))
        nv = V.shape[1]
        C = np.asarray(C, np.float64)
        Lam = C.copy() if C.ndim == 3 else np.broadcast_to(C[None], (nv,) + C.shape).copy()
        return self.back(Lam, len(self.layers), boxes, V, record).T


def cost(network, n_targets: int) -> tuple[float, float]:
    """Multiply-adds of the final back-substitutions and of the box tightening, over all
    ``2 n_inputs`` vertices (the first affine layer is never multiplied through)."""
    nv = 2 * network.n_inputs
    affine = [layer for layer in network.layers if layer.kind == "affine"][1:]
    final = sum(nv * n_targets * layer.in_size * layer.out_size for layer in affine)
    tighten = 0.0
    for t, layer in enumerate(affine[:-1]):
        if t == 0:
            continue                      # exact by interval steps (see _Chain.block)
        tighten += sum(nv * 2 * layer.out_size * a.in_size * a.out_size
                       for a in affine[:t + 1])
    return float(final), float(tighten)


def coordinate_upper(network, C, slopes, deadline: float | None = None
                     ) -> np.ndarray | None:
    """Per row of ``C`` and input coordinate (T, n_in): ``L_ti >= max(F_t(e_i), F_t(-e_i),
    0)``, so that ``C_t·(y(b) - y(a)) <= Σ_i L_ti |b_i - a_i|`` for every pair whose secant
    slopes lie in ``slopes`` (every ``G`` of the box gives ``(C J(G))_ti ε_i <= |ε_i|
    F_t(sign(ε_i) e_i)``; the sum of the suprema bounds the supremum of the sum).

    ``None`` when the work exceeds :data:`MAX_FLOPS` or ``deadline`` (a
    ``time.perf_counter`` value) passes: no bound, never a wrong one. The box tightening
    by back-substitution is dropped (interval steps only) when it alone would exceed the
    budget."""
    n0 = network.n_inputs
    C = np.atleast_2d(np.asarray(C, np.float64))
    work = cost(network, C.shape[0])
    if work[0] > MAX_FLOPS:
        return None
    chain = _Chain(network, slopes, tighten=work[0] + work[1] <= MAX_FLOPS)
    widest = max(max(layer.out_size, layer.in_size) for layer in network.layers)
    per = max(1, BLOCK_ENTRIES // max(1, 2 * widest * max(widest, C.shape[0])))
    out = np.zeros((C.shape[0], n0))
    idx = np.arange(n0)
    for s in range(0, n0, per):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        cols = idx[s:s + per]
        V = np.zeros((n0, 2 * cols.size))
        V[cols, np.arange(cols.size)] = 1.0
        V[cols, cols.size + np.arange(cols.size)] = -1.0
        F = chain.block(V, C)
        out[:, cols] = np.maximum(np.maximum(F[:, :cols.size], F[:, cols.size:]), 0.0)
    return out


def dual_norm_upper(L: np.ndarray, norm: str) -> np.ndarray:
    """Per row, an upper bound of the dual norm of ``L`` (T, n_in), entries ``>= 0``:
    ``C_t·Δy <= Σ_i L_ti |ε_i| <= result_t ||ε||`` (Hölder). L1: the largest entry
    (exact); L∞: the sum; L2: the Euclidean norm (both rounded upward)."""
    n = L.shape[1]
    if norm == "l1":
        return L.max(1)
    if norm == "linf":
        s = L.sum(1)
    elif norm == "l2":
        s = np.sqrt(np.nextafter((L * L).sum(1) * (1.0 + gamma(n + 2)) + TINY, np.inf))
    else:
        raise ValueError(f"unknown norm {norm!r}")
    return np.nextafter(s * (1.0 + gamma(n + 4)) + TINY, np.inf)


def sign_groups(network, weight: np.ndarray, size: int) -> list[np.ndarray]:
    """A partition of the input coordinates into groups of at most ``size`` whose joint
    sign choice costs the per-coordinate sum the most (:func:`group_upper`).

    Two coordinates whose first-layer columns point the same way (or opposite ways) want
    the same slopes, so bounding them together gains nothing; nearly orthogonal columns
    want different ones. Greedy: the heaviest coordinate left (``weight``) opens a group,
    which then takes the coordinate whose largest ``|cos|`` with the group's columns is
    smallest. (digits 2x50, class 0, groups of 8, worst row, its ``L`` as the weight: 356
    with this rule, 390 in weight order alone, 466 with the *largest* ``|cos|``;
    follow-up phi6.)"""
    n0 = network.n_inputs
    first = network.layers[0]
    if first.kind == "affine":
        W = np.asarray(first.dense_W(), np.float64)
        top = np.abs(W).max(0, keepdims=True)
        W = W / np.where(top > 0, top, 1.0)            # no overflow in the norms
        A = W / np.maximum(np.linalg.norm(W, axis=0, keepdims=True), 1e-300)
        cos = np.abs(A.T @ A)
    else:                                  # elementwise first: every pair is a conflict
        cos = np.eye(n0)
    left = [int(i) for i in np.argsort(-np.asarray(weight, np.float64), kind="stable")]
    groups = []
    while left:
        group = [left.pop(0)]
        while len(group) < size and left:
            worst = cos[np.ix_(left, group)].max(1)
            group.append(left.pop(int(np.argmin(worst))))
        groups.append(np.array(group))
    return groups


def group_upper(network, C, slopes, groups, L, deadline: float | None = None,
                refine: float | None = None, max_nodes: int | None = None
                ) -> np.ndarray | None:
    """Per row of ``C`` and group (T, n_groups): an upper bound of ``sup_G ||(C_t
    J(G))_g||_1`` over the slope box, every coordinate of the group sharing one ``G``.

    ``||x_g||_1 = max_σ σ·x_g`` over the sign vectors ``σ`` of the group, so the supremum
    is ``max_σ F_t(σ)`` (the same vertex bound, at the cube's vertices of the group's
    coordinates, the others 0): all ``2^|g|`` of them are bounded (batched), never more
    than the sum of the group's per-coordinate bounds ``L`` (T, n_in), also sound.
    ``None`` when ``deadline`` passes or the work is over :data:`GROUP_FLOPS`.

    ``refine`` (a ``time.perf_counter`` value) then splits the slope boxes of the second
    and deeper activation layers inside the vertex bound until then (:func:`_refine`), at
    most ``max_nodes`` bounds; the groups' bounds only fall."""
    n0 = network.n_inputs
    C = np.atleast_2d(np.asarray(C, np.float64))
    out = np.stack([L[:, g].sum(1) for g in groups], 1)
    todo = [t for t, g in enumerate(groups) if g.size > 1]
    if not todo:
        return out
    if group_cost(network, C.shape[0], [groups[t].size for t in todo]) > GROUP_FLOPS:
        return None
    chain = _Chain(network, slopes, tighten=True)
    widest = max(max(layer.out_size, layer.in_size) for layer in network.layers)
    per = max(1, BLOCK_ENTRIES // max(1, 2 * widest * max(widest, C.shape[0])))
    # the vertices of every group, one column each, and the group of each column
    cols, owner = [], []
    for t in todo:
        g = groups[t]
        bits = ((np.arange(2 ** g.size)[None, :] >> np.arange(g.size)[:, None]) & 1)
        V = np.zeros((n0, bits.shape[1]))
        V[g] = 2.0 * bits - 1.0
        cols.append(V)
        owner.append(np.full(bits.shape[1], t))
    V, owner = np.concatenate(cols, 1), np.concatenate(owner)
    best = np.full((C.shape[0], len(groups)), -np.inf)
    split = _split_layers(network)
    keep = refine is not None and bool(split)
    Fall, Sall = [], []
    for s in range(0, V.shape[1], per):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        rec = {} if keep else None
        F = chain.block(V[:, s:s + per], C, rec)
        if keep:
            Fall.append(F)
            Sall.append(np.concatenate([rec[i] for i in split], 2))   # (nv, T, n_state)
        for t in np.unique(owner[s:s + per]):
            mine = owner[s:s + per] == t
            best[:, t] = np.maximum(best[:, t], F[:, mine].max(1))
    if keep:
        F, S = np.concatenate(Fall, 1), np.concatenate(Sall, 0)
        best = _refine(network, C, slopes, V, owner, len(groups), F, S, best,
                       refine, max_nodes)
    best = np.maximum(best, 0.0)
    out[:, todo] = np.minimum(out[:, todo], best[:, todo])
    return out


def _first_scores(network, slopes, split, sizes, V, states, score):
    """Branching scores of the first activation layer's neurons (nv, n_1): fixing the
    slope of neuron ``l`` removes its share ``(g_hi - g_lo) |z_l| |W2_kl|`` from the width
    of the next layer's difference box ``k``; a chord intercept shrinks with the width,
    so the score is that share times the intercept's weight per unit of width, summed
    over ``k`` (the next layer's recorded scores ``score``)."""
    i1, i2 = split[0], split[1]
    W1 = network.layers[i1 - 1].dense_W()
    W2 = network.layers[i2 - 1].dense_W()
    u = np.abs(W1 @ V)                                   # (n1, nv)
    glo, ghi = slopes[i1]
    free = (states[:, :sizes[0]] == 0).T                 # (n1, nv)
    r = np.where(free, (ghi - glo)[:, None] * u, 0.0)
    width = np.abs(W2) @ r                               # (n2, nv)
    s2 = score[:, sizes[0]:sizes[0] + sizes[1]].T        # (n2, nv)
    per = np.where(width > 0, s2 / np.maximum(width, 1e-300), 0.0)
    return (r * (np.abs(W2).T @ per)).T


#: Most nodes split per round of :func:`_refine` (one batched vertex bound of twice as
#: many columns; digits 2x50: ~35 µs per node); fewer when a round would take more than
#: 0.25 s or a quarter of the time left.
REFINE_BATCH = 512


def _split_layers(network) -> list[int]:
    """Activation layers whose slope boxes :func:`_refine` splits (none with fewer than
    two). A later layer sees a difference *box*, and its chord intercepts are what the
    vertex bound loses; the first one sees a point, where its planes are exact, but
    fixing one of its slopes narrows the next layer's boxes (split too when affine layers
    precede both: :func:`_first_scores`; digits 2x50, worst row, 20,000 / 60,000 bounds:
    317 / 298 with the later layers alone, 306 / 288 with the first one too)."""
    layers = network.layers
    acts = [i for i, la in enumerate(layers) if la.kind != "affine"]
    if len(acts) < 2:
        return []
    if acts[0] >= 1 and layers[acts[0] - 1].kind == "affine" \
            and layers[acts[1] - 1].kind == "affine":
        return acts
    return acts[1:]


def _with_first(network, split) -> bool:
    """True when ``split`` includes the first activation layer (:func:`_first_scores`)."""
    return len(split) > 1 and split[0] == next(
        i for i, la in enumerate(network.layers) if la.kind != "affine")


def _node_slopes(slopes, split, sizes, states):
    """Per-column slope boxes: a split neuron's box is its ``g_hi`` (state 1) or
    ``g_lo`` (state -1) alone; ``states`` (nv, n_state) over the split layers."""
    out, off = dict(slopes), 0
    for i, n in zip(split, sizes, strict=True):
        glo, ghi = (np.asarray(g, np.float64) for g in slopes[i])
        st = states[:, off:off + n].T                   # (n_i, nv)
        out[i] = (np.where(st > 0, ghi[:, None], glo[:, None]),
                  np.where(st < 0, glo[:, None], ghi[:, None]))
        off += n
    return out


def _local_values(network, slopes, V, rows, starts: int = 2, rounds: int = 8, seed: int = 0):
    """Values ``c_t·J(G) v`` of slope matrices ``G`` at the vertices of the slope box found
    by alternating search (each layer in turn takes, per neuron, the end of its slope box
    that increases ``c_t·J(G) v`` for the others fixed): the best of ``starts`` starts per
    column. Float64, not rounded: they only serve :func:`_refine` as the level below which
    a node cannot raise its group's maximum, and that level is part of its answer."""
    layers = network.layers
    Ws = [np.asarray(la.dense_W(), np.float64) if la.kind == "affine" else None
          for la in layers]
    acts = [i for i, la in enumerate(layers) if la.kind != "affine"]
    rng = np.random.default_rng(seed)
    nv = V.shape[1]
    best = np.full(nv, -np.inf)
    for start in range(starts):
        g = {}
        for i in acts:
            glo, ghi = (np.asarray(x, np.float64)[:, None] for x in slopes[i])
            pick = np.ones((glo.shape[0], nv), bool) if start == 0 else \
                rng.random((glo.shape[0], nv)) < 0.5
            g[i] = np.where(pick, ghi, glo)
        for _ in range(rounds):
            changed = 0
            for i in acts:
                x = V
                for j in range(i):
                    x = Ws[j] @ x if Ws[j] is not None else g[j] * x
                lam = rows.T
                for j in range(len(layers) - 1, i, -1):
                    lam = Ws[j].T @ lam if Ws[j] is not None else g[j] * lam
                glo, ghi = (np.asarray(x_, np.float64)[:, None] for x_ in slopes[i])
                gain = lam * x
                new = np.where(gain > 0, ghi, np.where(gain < 0, glo, g[i]))
                changed += int((new != g[i]).sum())
                g[i] = new
            if not changed:
                break
        x = V
        for j in range(len(layers)):
            x = Ws[j] @ x if Ws[j] is not None else g[j] * x
        best = np.maximum(best, (rows * x.T).sum(1))
    return best


@np.errstate(invalid="ignore", over="ignore")
def _refine(network, C, slopes, V, owner, n_groups: int, F, S, best, deadline,
            max_nodes: int | None = None, combine: str = "sum") -> np.ndarray:
    """Branch and bound over the slope boxes of the second and deeper activation layers,
    inside the grouped vertex bound: lowers ``best`` (T, n_groups), the groups' bounds
    of :func:`group_upper`, where the rows' sums are largest.

    Why: the vertex bound ``F(σ)`` is exact at the first activation (a point box) but
    relaxes every later unstable neuron by the chord of ``g Δz`` over its difference
    box; the intercepts add up (digits 2x50, class 0, worst row: groups of 8 sum to 359,
    while slope matrices found by local search reach 263). ``c J(G) v`` is multilinear in
    the slopes, so its supremum over the box is at a vertex of the box, and splitting a
    neuron's slope box into its two ends ``{g_lo}``, ``{g_hi}`` loses nothing: the maximum
    of the children's suprema is the parent's. A child with a point slope has that
    neuron's planes exact. A node is (vertex ``v`` of a group, row ``t``, a state per
    split neuron: free / ``g_hi`` / ``g_lo``); its bound is the vertex bound with those
    boxes (never above its parent's); it is split on the neuron whose chord intercepts
    weigh most in its bound (recorded by :meth:`_Chain.back`).

    The answer per (row, group) is the maximum of the open nodes' bounds and of the level
    ``inc`` (:func:`_local_values`, and the bounds of nodes with nothing left to split):
    every slope matrix lies in an open node, in a finished one, or in one dropped because
    its bound was ``<= inc``, so the answer is a sound upper bound wherever the search
    stops. Each round splits the nodes of the row with the largest sum (the one that
    decides the certified radius) whose bounds are highest relative to their groups'.

    ``combine="max"`` (the L1 vertex maximum, one group per coordinate): a row's value is
    the maximum over its groups, so a node at or below the row's best level cannot raise
    it (dropped), and the highest nodes are split first."""
    split = _split_layers(network)
    sizes = [network.layers[i].out_size for i in split]
    T, nvx = F.shape
    # the boxes tightened by back-substitution as at the root: from interval steps alone
    # no child of digits 4x50 ever went below its parent (20,000 bounds)
    chain = _Chain(network, slopes, tighten=True)
    inc = np.full((T, n_groups), -np.inf)
    searched = np.zeros(T, bool)
    # open nodes: vertex column, row, bound, state, score
    col = np.tile(np.arange(nvx), T)
    row = np.repeat(np.arange(T), nvx)
    bnd = F.reshape(-1).copy()
    state = np.zeros((bnd.size, sum(sizes)), np.int8)
    score = np.transpose(S, (1, 0, 2)).reshape(bnd.size, -1).copy()
    if _with_first(network, split):
        score[:, :sizes[0]] = _first_scores(network, slopes, split, sizes, V[:, col], state,
                                            score)
    done = 0
    batch = 32                              # nodes split in the first round

    def level():
        U = inc.copy()
        np.maximum.at(U, (row, owner[col]), bnd)
        return np.minimum(U, best)

    def floor():
        """Per node, the level at or below which it cannot raise its row's value."""
        if combine == "max":
            return inc.max(1)[row]
        return inc[row, owner[col]]

    while max_nodes is None or done < max_nodes:
        if time.perf_counter() > deadline:
            break
        U = level()
        t = int(np.argmax(U.max(1) if combine == "max" else U.sum(1)))
        if not searched[t]:
            # the level of every group of this row: the best slope matrices found
            mine = row == t
            vals = _local_values(network, slopes, V, np.broadcast_to(C[t], (nvx, C.shape[1])))
            np.maximum.at(inc[t], owner, vals)
            searched[t] = True
            live = ~mine | (bnd > floor())
            col, row, bnd, state, score = col[live], row[live], bnd[live], state[live], \
                score[live]
            continue
        cand = np.flatnonzero((row == t) & (bnd > floor()))
        if cand.size == 0:
            break                   # this row's groups are at their levels: exact
        key = bnd[cand] if combine == "max" else bnd[cand] - U[t, owner[col[cand]]]
        pick = cand[np.argsort(-key, kind="stable")[:batch]]
        rest = np.ones(bnd.size, bool)
        rest[pick] = False
        pc, pr, pb, ps = col[pick], row[pick], bnd[pick], state[pick]
        sc = np.where(ps == 0, score[pick], -np.inf)
        k = np.argmax(sc, 1)
        top = sc[np.arange(k.size), k]
        # nothing left worth splitting (only rounding pads): the node's bound is final
        leaf = ~(top > 1e-12 * (np.abs(pb) + TINY))
        if leaf.any():
            np.maximum.at(inc, (pr[leaf], owner[pc[leaf]]), pb[leaf])
        pc, pr, pb, ps, k = pc[~leaf], pr[~leaf], pb[~leaf], ps[~leaf], k[~leaf]
        col, row, bnd, state, score = col[rest], row[rest], bnd[rest], state[rest], \
            score[rest]
        if pb.size == 0:
            continue
        m = pb.size
        cs = np.concatenate([ps, ps])
        cs[np.arange(m), k] = 1
        cs[m + np.arange(m), k] = -1
        cc, cr = np.concatenate([pc, pc]), np.concatenate([pr, pr])
        chain.slopes = _node_slopes(slopes, split, sizes, cs)
        rec = {}
        t_round = time.perf_counter()
        cb = chain.block(V[:, cc], C[cr][:, None, :], rec)[0]
        # the next round's size: about 0.25 s and a quarter of the time left, so that
        # the last round ends near the deadline (digits 4x50: ~0.4 ms per node)
        per_node = (time.perf_counter() - t_round) / m
        left = max(deadline - time.perf_counter(), 0.0)
        batch = int(np.clip(min(0.25, 0.25 * left) / max(per_node, 1e-9), 8, REFINE_BATCH))
        cb = np.minimum(cb, np.concatenate([pb, pb]))      # a child's points are its parent's
        done += 2 * m
        live = cb > (inc[cr].max(1) if combine == "max" else inc[cr, owner[cc]])
        cscore = np.concatenate([rec[i][:, 0, :] for i in split], 1)
        if _with_first(network, split):
            cscore[:, :sizes[0]] = _first_scores(network, slopes, split, sizes, V[:, cc], cs,
                                                 cscore)
        col, row = np.concatenate([col, cc[live]]), np.concatenate([row, cr[live]])
        bnd = np.concatenate([bnd, cb[live]])
        state = np.concatenate([state, cs[live]])
        score = np.concatenate([score, cscore[live]])
    return level()


#: Largest number of coordinates per group of the L∞ bound (:func:`unit_upper`): 2^8 =
#: 256 vertices per 8 coordinates, 16x the per-coordinate bound's 2 per coordinate.
#: Worst row of digits 2x50 class 0: 739 / 432 / 382 / 359 / 350 for groups of 1 / 4 /
#: 6 / 8 / 10, in 0.02 / 0.07 / 0.26 / 0.8 / 1.5 s (follow-up phi6).
LINF_GROUP = 8
#: Multiply-adds allowed for the groups' vertices (digits 2x50, groups of 8: 5.5e7;
#: 4x50: groups of 6, 9.3e8, ~1.8 s at load ~3).
GROUP_FLOPS = 1e9


def group_cost(network, n_targets: int, sizes) -> float:
    """Multiply-adds of :func:`group_upper` for groups of these sizes: the vertex bound's
    per vertex (:func:`cost`) times ``Σ 2^size`` vertices."""
    final, tighten = cost(network, n_targets)
    return (final + tighten) * sum(2.0 ** s for s in sizes) / (2 * network.n_inputs)


def group_size(network, n_targets: int, largest: int = LINF_GROUP) -> int:
    """The largest group size up to ``largest`` whose groups fit :data:`GROUP_FLOPS`
    (1: per coordinate)."""
    n0 = network.n_inputs
    for size in range(max(1, int(largest)), 1, -1):
        full, rest = divmod(n0, size)
        if group_cost(network, n_targets, [size] * full + [rest] * bool(rest)) <= GROUP_FLOPS:
            return size
    return 1


def unit_upper(network, C, slopes, norm: str, deadline: float | None = None,
               group: int | None = None, group_deadline: float | None = None,
               refine: float | None = None, max_nodes: int | None = None
               ) -> np.ndarray | None:
    """Per row of ``C`` (T, n_out): ``L`` with ``C·(y(b) - y(a)) <= L ||b - a||`` in
    ``norm`` for every pair whose secant slopes lie in ``slopes`` (``{layer index: (g_lo,
    g_hi)}`` for every elementwise layer; module docstring). For L1 the vertex maximum;
    for L2 the dual norm of the per-coordinate bounds (:func:`coordinate_upper`), whose
    ball has too many vertices to visit. For L∞, with groups of up to ``group`` (default
    :data:`LINF_GROUP`; fewer when over :data:`GROUP_FLOPS`) > 1 coordinates, the sum
    over the groups of their joint bound (:func:`group_upper`; for every ``G``,
    ``x·ε <= Σ_g ||x_g||_1 ||ε||_∞``), else the sum of the per-coordinate bounds (each
    coordinate picking its own slopes: 739 on the worst row of digits 2x50 class 0,
    where the groups of 8 give 359). ``None`` as
    :func:`coordinate_upper`; the per-coordinate sum when only the groups are late (past
    ``group_deadline`` if given, else ``deadline``) or over budget. ``refine`` (a
    ``time.perf_counter`` value; L∞ groups and L1) splits the slope boxes of the
    activation layers inside the vertex bounds until then, at most ``max_nodes`` bounds
    (:func:`_refine`)."""
    L = coordinate_upper(network, C, slopes, deadline)
    if L is None:
        return None
    if norm == "l1" and refine is not None:
        return _l1_refined(network, C, slopes, L, refine, max_nodes)
    size = group_size(network, L.shape[0], LINF_GROUP if group is None else group)
    if norm != "linf" or size <= 1:
        return dual_norm_upper(L, norm)
    with np.errstate(invalid="ignore", over="ignore"):   # inf rows on 1e8-weight nets
        weight = np.nan_to_num((L / np.maximum(L.sum(1, keepdims=True), TINY)).sum(0),
                               nan=0.0, posinf=1.0)
    groups = sign_groups(network, weight, size)
    G = group_upper(network, C, slopes, groups, L,
                    deadline if group_deadline is None else group_deadline,
                    refine=refine, max_nodes=max_nodes)
    if G is None:
        return dual_norm_upper(L, norm)
    return dual_norm_upper(G, norm)


def _l1_refined(network, C, slopes, L, refine: float, max_nodes: int | None
                ) -> np.ndarray:
    """The L1 vertex maximum ``max_i L_ti`` with the slope boxes split at the vertices
    ``±e_i`` (:func:`_refine`, one group per coordinate, the row's value their maximum);
    never above ``max_i L_ti``."""
    n0 = network.n_inputs
    C = np.atleast_2d(np.asarray(C, np.float64))
    top = L.max(1)
    split = _split_layers(network)
    if not split or time.perf_counter() > refine or (max_nodes is not None and max_nodes <= 0):
        return top
    chain = _Chain(network, slopes, tighten=True)
    widest = max(max(layer.out_size, layer.in_size) for layer in network.layers)
    per = max(1, BLOCK_ENTRIES // max(1, 2 * widest * max(widest, C.shape[0])))
    V = np.concatenate([np.eye(n0), -np.eye(n0)], 1)
    owner = np.concatenate([np.arange(n0), np.arange(n0)])
    Fall, Sall = [], []
    for s in range(0, V.shape[1], per):
        if time.perf_counter() > refine:
            return top
        rec = {}
        Fall.append(chain.block(V[:, s:s + per], C, rec))
        Sall.append(np.concatenate([rec[i] for i in split], 2))
    F, S = np.concatenate(Fall, 1), np.concatenate(Sall, 0)
    best = np.minimum(np.maximum(F[:, :n0], F[:, n0:]), L)
    U = _refine(network, C, slopes, V, owner, n0, F, S, best, refine, max_nodes,
                combine="max")
    return np.minimum(top, np.maximum(U, 0.0).max(1))


def l1_unit_upper(network, C, slopes, deadline: float | None = None) -> np.ndarray | None:
    """Per row of ``C`` (T, n_out): an upper bound ``L`` with ``C·(y(b) - y(a)) <= L ||b -
    a||_1`` for every pair whose secant slopes lie in ``slopes`` (see
    :func:`unit_upper`)."""
    return unit_upper(network, C, slopes, "l1", deadline)
