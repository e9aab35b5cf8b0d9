"""A *certified* maximum of the unsafe margin of a tiny piecewise-linear network over a box.

:mod:`.bruteforce` finds the maximum of ``case.unsafe.max_margin(f(x))`` by enumerating
activation patterns and trusting HiGHS. That is fine for ordinary networks, but the
adversarial instances of :mod:`.planted` (weights up to 1e3, biases up to 1e6 that cancel
between layers, logits up to 1e4, margins of 1e-7 of the logits) are made to sit where a
solver tolerance or one rounding decides the answer, so their reference answer must not
rest on either. This module computes, for a box region,

* a **point** ``x`` of the box and its float64 margin (a replayed lower bound), and
* a **rigorous upper bound** on ``max_{x in box} max_margin(forward(x))``, valid for the
  exact (real) network *and* for the float64 forward pass, at any magnitude.

How the upper bound is made rigorous (nothing below trusts a solver):

1. **Sound boxes** (:func:`sound_boxes`): interval arithmetic with every affine step
   widened by its own rounding error and by the forward error ``e_i`` of
   :mod:`nnresilience.bounds.rounding` (the project's one rule), so each box contains the
   exact and the float64 value of its entry. Units whose box does not straddle 0 are
   stable; the others are enumerated.
2. **Patterns with error bars.** Along a pattern the network is affine, ``v = M x + c``.
   ``M`` and ``c`` are products of float64 data, computed in float64, so we carry
   elementwise bounds ``|M_exact - M| <= E_M`` (and ``E_c``) through every layer
   (``gamma(n)`` of the magnitudes multiplied, plus the carried error). Each pattern
   constraint ``g x <= h`` (and each objective row) is then stated with its right-hand
   side *relaxed* by its error bound over the box, so the polyhedron we solve over
   contains the exact pattern region.
3. **Dual certificates.** Each LP ``max c.v s.t. G v <= h, v in [L, U]`` is solved by
   HiGHS, but its value is never used: for *any* ``z >= 0`` weak duality gives
   ``c.v <= z.h + max_{v in [L,U]} (c - G^T z).v``, which we evaluate in float64 with
   its rounding error added (:func:`dual_bound`). A pattern is pruned only when such a
   bound proves its (relaxed) region empty. A bad dual from the solver only loosens the
   bound; it cannot make it wrong.
4. **Float64 forward.** The bound on the exact margin is widened by a bound on
   ``|fl(margin) - margin|`` built from the forward error at the output.

Every pattern of the box is covered: the enumeration branches on every unit the sound
boxes leave undecided (one unit at a time, depth first), pruning only certified-empty
branches. A branch is kept without an LP when a sample point of the box follows it (its
float64 pattern; a wrong witness only costs time, never soundness).

Limits: box regions only (no L1 ball); affine, ReLU, LeakyReLU and max-pool layers; the
cost is exponential in the number of unstable units (:data:`MAX_UNSTABLE`). The bound is
rigorous but not exact: it exceeds the true maximum by the error bars (about
``1e-16`` times the magnitudes involved) plus the solver's dual inaccuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnresilience.bounds.rounding import (
    TINY,
    UNIT,
    ForwardError,
    enclose,
    gamma,
    maxabs,
    sum_error,
    up,
)
from nnresilience.network.layers import Affine, LeakyReLU, MaxPool, ReLU

MAX_UNSTABLE = 16
_SAMPLES = 256


class CertificationError(ValueError):
    """The network or region is outside what the certified enumeration handles."""


# ----------------------------------------------------------------------- sound boxes
@dataclass(frozen=True, eq=False)
class SoundBoxes:
    """Per-entry boxes containing both the exact and the float64 value, and ``e_i``."""

    lo: list[np.ndarray]
    hi: list[np.ndarray]
    e: list[np.ndarray]

    @property
    def output(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo[-1], self.hi[-1]


def _affine_box(layer: Affine, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Exact-arithmetic image box of ``[lo, hi]``, enclosed against its own rounding."""
    W = layer.dense_W()
    Wp, Wn = np.clip(W, 0.0, None), np.clip(W, None, 0.0)
    zlo = Wp @ lo + Wn @ hi + layer.b
    zhi = Wp @ hi + Wn @ lo + layer.b
    pad = sum_error(np.abs(W) @ maxabs(lo, hi) + np.abs(layer.b), W.shape[1] + 1)
    return enclose(zlo, zhi, pad)


def sound_boxes(network, lo: np.ndarray, hi: np.ndarray) -> SoundBoxes:
    """Boxes of every entry (``len(layers) + 1``) sound for exact and float64 values.

    Follows :mod:`nnresilience.bounds.rounding`: the exact-arithmetic box of each layer
    (itself enclosed against the rounding of computing it) is widened by ``e_i``, the bound
    on how far the float64 forward value can be from the exact one.
    """
    lo = np.asarray(lo, dtype=np.float64).copy()
    hi = np.asarray(hi, dtype=np.float64).copy()
    fe = ForwardError(lo.size)
    los, his = [lo], [hi]
    for layer in network.layers:
        e_out = fe.step(layer, lo, hi)
        if isinstance(layer, Affine):
            lo, hi = _affine_box(layer, lo, hi)
        elif isinstance(layer, (ReLU, LeakyReLU, MaxPool)):
            lo, hi = layer.interval(lo, hi)
            if isinstance(layer, LeakyReLU):     # k * lo rounds: one ulp outward
                lo, hi = enclose(lo, hi, UNIT * layer.slope * maxabs(lo, hi) + TINY)
        else:
            raise CertificationError(f"certified enumeration handles affine/relu/"
                                     f"leaky_relu/maxpool layers, not {layer.kind!r}")
        # the box holds exact values; widen by e so it holds float64 values too
        lo, hi = enclose(lo, hi, e_out)
        los.append(lo)
        his.append(hi)
    return SoundBoxes(los, his, fe.e)


# --------------------------------------------------------------------- certificates
def dual_bound(c: np.ndarray, G: np.ndarray, h: np.ndarray, L: np.ndarray, U: np.ndarray,
               z: np.ndarray) -> float:
    """Rigorous upper bound on ``max c.v s.t. G v <= h, L <= v <= U`` from any ``z``.

    Weak duality: for ``z >= 0`` and feasible ``v``, ``c.v <= z.h + (c - G^T z).v``, and the
    last term is at most its maximum over the box. Every float64 operation's error is
    added (reduced costs, products, the final sum), so the returned float is an upper
    bound of the exact value; ``+inf`` if the box is unbounded where it matters.
    """
    z = np.maximum(np.nan_to_num(np.asarray(z, dtype=np.float64), nan=0.0), 0.0)
    m = z.size
    r = c - G.T @ z if m else c.copy()
    er = sum_error(np.abs(c) + (np.abs(G).T @ z if m else 0.0), m + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        box = np.maximum(r * L, r * U)
    mag = maxabs(L, U)
    if not (np.all(np.isfinite(box)) and np.all(np.isfinite(er * mag))):
        return float("inf")
    terms = np.concatenate([z * h, box])
    val = float(np.sum(terms))
    absum = float(np.sum(np.abs(terms)))
    n = terms.size + 2
    g = gamma(n)
    pad = float(sum_error(2.0 * absum, n)) + float(up(float(np.sum(er * mag)) * (1.0 + 2 * g)))
    out = float(up(val + up(pad)))
    return out if np.isfinite(out) else float("inf")


def _pow2_scale(G: np.ndarray) -> np.ndarray:
    """Power-of-two row scales bringing each row's largest coefficient near 1 (exact)."""
    big = np.max(np.abs(G), axis=1) if G.size else np.zeros(0)
    exp = np.where(big > 0, -np.round(np.log2(np.where(big > 0, big, 1.0))), 0.0)
    return np.ldexp(1.0, exp.astype(np.int64))


class SmallLP:
    """``max c.v s.t. G v <= h, L <= v <= U`` by HiGHS (one reused solver object)."""

    def __init__(self) -> None:
        import highspy

        from nnresilience.backends.highs import new_highs

        self._hp = highspy
        self.h = new_highs()
        # one thread and no presolve: these LPs have a handful of columns, and HiGHS's
        # thread pool and presolve cost more than the solve (1.5 ms -> 0.2 ms each)
        self.h.setOptionValue("threads", 1)
        self.h.setOptionValue("presolve", "off")
        self.n_solves = 0

    def solve(self, c, G, h, L, U) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        """``(status, v, z)`` with ``z >= 0`` the duals of the rows (for :func:`dual_bound`)."""
        hp = self._hp
        self.n_solves += 1
        m, n = G.shape
        inf = hp.kHighsInf
        self.h.clearModel()
        start = np.arange(0, m * n, n, dtype=np.int32) if m else np.zeros(0, np.int32)
        index = np.tile(np.arange(n, dtype=np.int32), m)
        self.h.passModel(n, m, m * n, 2, 1, 0.0, -np.asarray(c, float), np.asarray(L, float),
                         np.asarray(U, float), np.full(m, -inf), np.asarray(h, float),
                         start, index, np.ascontiguousarray(G, float).ravel(),
                         np.zeros(n, dtype=np.int32))
        self.h.run()
        status = self.h.getModelStatus()
        if status == hp.HighsModelStatus.kOptimal:
            sol = self.h.getSolution()
            v = np.asarray(sol.col_value, dtype=np.float64)
            # minimising -c: a row at its upper bound has a dual <= 0; ours is its negative
            z = np.maximum(-np.asarray(sol.row_dual, dtype=np.float64), 0.0)
            return "optimal", v, z
        if status == hp.HighsModelStatus.kInfeasible:
            return "infeasible", None, None
        return str(status), None, None


# ------------------------------------------------------------------ linear pieces
@dataclass(eq=False)
class _Affine:
    """``v = M x + c`` with elementwise error bounds ``E_M``, ``E_c`` to the exact map."""

    M: np.ndarray
    c: np.ndarray
    EM: np.ndarray
    Ec: np.ndarray

    def through(self, layer: Affine) -> _Affine:
        W = layer.dense_W()
        aW = np.abs(W)
        k = W.shape[1]
        g = 1.0 + 2.0 * gamma(k + 2)
        M = W @ self.M
        c = W @ self.c + layer.b
        EM = up((aW @ self.EM) * g) + sum_error(aW @ np.abs(self.M), k)
        Ec = up((aW @ self.Ec) * g) + sum_error(aW @ np.abs(self.c) + np.abs(layer.b), k + 1)
        return _Affine(M, c, up(EM), up(Ec))

    def gains(self, gain: np.ndarray) -> _Affine:
        """Rows scaled by ``gain`` (1, 0 or a slope ``k``; ``k x`` rounds by half a unit)."""
        g = gain[:, None]
        M, c = g * self.M, gain * self.c
        exact = (gain == 1.0) | (gain == 0.0)
        rM = np.where(exact[:, None], 0.0, 2.0 * UNIT * np.abs(M) + TINY)
        rc = np.where(exact, 0.0, 2.0 * UNIT * np.abs(c) + TINY)
        return _Affine(M, c, up(np.abs(g) * self.EM + rM), up(np.abs(gain) * self.Ec + rc))

    def rows(self, idx: np.ndarray) -> _Affine:
        return _Affine(self.M[idx], self.c[idx], self.EM[idx], self.Ec[idx])


def _relaxed(g: np.ndarray, h: np.ndarray, eg: np.ndarray, eh: np.ndarray,
             xmag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``g x <= h`` (float data) whose right-hand sides cover the exact rows' errors.

    The exact row is ``g* x <= h*`` with ``|g* - g| <= eg``, ``|h* - h| <= eh``; any exact
    solution ``x`` in the box satisfies ``g x <= h + eh + eg.|x|max``. Rows are scaled by
    powers of two (exact) so HiGHS sees coefficients near 1.
    """
    n = g.shape[1]
    slack = up((eg @ xmag) * (1.0 + 2.0 * gamma(n + 2))) + eh
    rhs = up(h + up(slack))
    s = _pow2_scale(g)
    return g * s[:, None], rhs * s


@dataclass(eq=False)
class _Node:
    aff: _Affine                  # map to the entry of layer ``i``
    G: np.ndarray                 # relaxed pattern rows over x
    h: np.ndarray
    follow: np.ndarray            # which samples follow the partial pattern


@dataclass
class CertifiedMax:
    """Result of :func:`certified_max_margin`.

    ``upper``: rigorous upper bound on the float64 margin ``max_margin(forward(x))`` over
    the box; ``upper_exact``: the same for the exact (real-arithmetic) network;
    ``term_upper_exact``: per disjunction term. ``point``/``value``: the best replayed
    point found and its float64 margin (``value <= max <= upper``). ``float_error``: the
    per-term bound on ``|fl(margin) - margin|`` used to go from exact to float64.
    """

    upper: float
    upper_exact: float
    term_upper_exact: np.ndarray
    float_error: np.ndarray
    point: np.ndarray
    value: float
    stats: dict = field(default_factory=dict)


def margin_float_error(case, boxes: SoundBoxes) -> np.ndarray:
    """Per term: bound on ``|fl(min_r (b_r - a_r y^f)) - min_r (b_r - a_r y)|`` over the box.

    ``y^f`` (float64 output) is within ``e_out`` of the exact ``y``; evaluating
    ``b_r - a_r . y^f`` rounds by ``sum_error`` of its terms; min and max are exact.
    """
    ylo, yhi = boxes.output
    ymag = maxabs(ylo, yhi)
    e_out = boxes.e[-1]
    out = []
    for term in case.unsafe.terms:
        aA = np.abs(term.A)
        carried = up((aA @ e_out) * (1.0 + 2.0 * gamma(aA.shape[1] + 2)))
        own = sum_error(np.abs(term.b) + aA @ ymag, aA.shape[1] + 1)
        out.append(float(up(np.max(carried + own))))
    return np.asarray(out)


def _term_box(term, ylo, yhi) -> tuple[float, float]:
    """Generous finite ``[t_lo, t_hi]`` containing the term margin of every exact output."""
    A = term.A
    Ap, An = np.clip(A, 0, None), np.clip(A, None, 0)
    top = term.b - (Ap @ ylo + An @ yhi)          # b - min(a y): the row's largest margin
    bot = term.b - (Ap @ yhi + An @ ylo)
    H, L = float(np.min(top)), float(np.min(bot))
    return L - (abs(L) + 1.0), H + (abs(H) + 1.0)


class _Enumerator:
    def __init__(self, network, case, rng: np.random.Generator) -> None:
        region = case.region
        if region.norm == "l1":
            raise CertificationError("certified enumeration handles box regions only")
        self.net = network
        self.case = case
        self.lo, self.hi = region.lo, region.hi
        self.xmag = maxabs(self.lo, self.hi)
        self.boxes = sound_boxes(network, self.lo, self.hi)
        self.n_unstable = self._count_unstable()
        if self.n_unstable > MAX_UNSTABLE:
            raise CertificationError(f"{self.n_unstable} unstable units: more than "
                                     f"{MAX_UNSTABLE}, too many to enumerate")
        X = np.vstack([(self.lo + self.hi) / 2.0, region.sample(_SAMPLES, rng)])
        self.X = X
        self.vals = network.forward_all(X)        # entry values of every layer (float64)
        self.lp = SmallLP()
        self.terms = case.unsafe.terms
        ylo, yhi = self.boxes.output
        self.tbox = [_term_box(t, ylo, yhi) for t in self.terms]
        self.term_upper = np.full(len(self.terms), -np.inf)
        margins = case.unsafe.max_margin(network.forward(X))
        best = int(np.argmax(margins))
        self.best_x, self.best_val = X[best].copy(), float(margins[best])
        self.stats = {"leaves": 0, "pruned": 0, "lp_solves": 0, "uncertified_leaves": 0,
                      "unstable": self.n_unstable}

    def _count_unstable(self) -> int:
        n = 0
        for i, layer in enumerate(self.net.layers):
            lo, hi = self.boxes.lo[i], self.boxes.hi[i]
            if isinstance(layer, (ReLU, LeakyReLU)):
                n += int(np.sum((lo < 0.0) & (hi > 0.0)))
            elif isinstance(layer, MaxPool):
                n += sum(len(c) > 1 for c in _pool_candidates(layer, lo, hi))
        return n

    # -------------------------------------------------------------- emptiness
    def _empty(self, G: np.ndarray, h: np.ndarray) -> bool:
        """Is ``{x in box : G x <= h}`` certified empty? (Feasible points become samples.)"""
        n = self.lo.size
        if G.shape[0] == 0:
            return False
        # cheap: one row alone already impossible over the box
        Gp, Gn = np.clip(G, 0, None), np.clip(G, None, 0)
        row_min = Gp @ self.lo + Gn @ self.hi
        pad = sum_error(np.abs(G) @ self.xmag, n)
        if np.any(row_min - pad > h):
            return True
        # LP: max s s.t. G x + s <= h; the region is empty iff the maximum is < 0
        big = float(np.max(np.abs(h) + np.abs(G) @ self.xmag)) + 1.0
        Gs = np.hstack([G, np.ones((G.shape[0], 1))])
        c = np.zeros(n + 1)
        c[-1] = 1.0
        L = np.append(self.lo, -2.0 * big)
        U = np.append(self.hi, 1.0)
        status, v, z = self.lp.solve(c, Gs, h, L, U)
        if status != "optimal":
            return False                           # no certificate: keep the branch
        if v[-1] > 0.0:
            self._add_sample(np.clip(v[:n], self.lo, self.hi))
            return False
        return dual_bound(c, Gs, h, L, U, z) < 0.0

    def _add_sample(self, x: np.ndarray) -> None:
        new = self.net.forward_all(x[None, :])
        self.X = np.vstack([self.X, x[None, :]])
        self.vals = [np.vstack([a, b]) for a, b in zip(self.vals, new, strict=True)]

    # ---------------------------------------------------------------- search
    def run(self) -> None:
        n = self.lo.size
        start = _Affine(np.eye(n), np.zeros(n), np.zeros((n, n)), np.zeros(n))
        self._layer(0, _Node(start, np.zeros((0, n)), np.zeros(0),
                             np.ones(self.X.shape[0], dtype=bool)))

    def _follow(self, node: _Node) -> np.ndarray:
        """Extend ``follow`` to samples added since the node was made (they are unchecked)."""
        f = node.follow
        if f.size < self.X.shape[0]:
            extra = np.ones(self.X.shape[0] - f.size, dtype=bool)
            # a new sample follows the node iff it satisfies the node's rows (float check)
            Xn = self.X[f.size:]
            if node.G.shape[0]:
                extra = np.all(Xn @ node.G.T <= node.h, axis=1)
            f = np.concatenate([f, extra])
        return f

    def _layer(self, i: int, node: _Node) -> None:
        layers = self.net.layers
        if i == len(layers):
            self._leaf(node)
            return
        layer = layers[i]
        if isinstance(layer, Affine):
            self._layer(i + 1, _Node(node.aff.through(layer), node.G, node.h, node.follow))
            return
        lo, hi = self.boxes.lo[i], self.boxes.hi[i]
        if isinstance(layer, (ReLU, LeakyReLU)):
            k = layer.slope if isinstance(layer, LeakyReLU) else 0.0
            unstable = np.flatnonzero((lo < 0.0) & (hi > 0.0))
            gain = np.where(lo >= 0.0, 1.0, k)
            self._units(i, node, unstable, 0, gain, k)
            return
        if isinstance(layer, MaxPool):
            cands = _pool_candidates(layer, lo, hi)
            winners = np.array([cd[0] for cd in cands], dtype=np.int64)
            self._groups(i, node, cands, 0, winners)
            return
        raise CertificationError(f"layer kind {layer.kind!r} not supported")

    def _branch(self, node: _Node, g, h, eg, eh, follows: np.ndarray) -> _Node | None:
        """The child with rows ``g x <= h`` added, or None if certified empty."""
        gr, hr = _relaxed(np.atleast_2d(g), np.atleast_1d(h), np.atleast_2d(eg),
                          np.atleast_1d(eh), self.xmag)
        G2, h2 = np.vstack([node.G, gr]), np.concatenate([node.h, hr])
        if not np.any(follows) and self._empty(G2, h2):
            self.stats["pruned"] += 1
            return None
        return _Node(node.aff, G2, h2, follows)

    def _units(self, i, node: _Node, unstable, j, gain, k) -> None:
        if j == unstable.size:
            self._layer(i + 1, _Node(node.aff.gains(gain), node.G, node.h, node.follow))
            return
        u = int(unstable[j])
        a = node.aff
        follow = self._follow(node)
        z = self.vals[i][:, u]
        for active in (True, False):
            sgn = -1.0 if active else 1.0           # active: -z <= 0 ; inactive: z <= 0
            fol = follow & ((z >= 0.0) if active else (z <= 0.0))
            child = self._branch(node, sgn * a.M[u], -sgn * a.c[u], a.EM[u], a.Ec[u], fol)
            if child is None:
                continue
            g2 = gain.copy()
            g2[u] = 1.0 if active else k
            self._units(i, child, unstable, j + 1, g2, k)

    def _groups(self, i, node: _Node, cands, j, winners) -> None:
        if j == len(cands):
            self._layer(i + 1, _Node(node.aff.rows(winners), node.G, node.h, node.follow))
            return
        cd = cands[j]
        if cd.size == 1:
            w2 = winners.copy()
            w2[j] = cd[0]
            self._groups(i, node, cands, j + 1, w2)
            return
        a = node.aff
        follow = self._follow(node)
        Z = self.vals[i]
        for w in cd:
            others = cd[cd != w]
            g = a.M[others] - a.M[w]                  # z_k - z_w <= 0
            h = a.c[w] - a.c[others]
            eg = up(a.EM[others] + a.EM[w] + 2.0 * UNIT * np.abs(g))
            eh = up(a.Ec[others] + a.Ec[w] + 2.0 * UNIT * np.abs(h))
            fol = follow & np.all(Z[:, others] <= Z[:, [w]], axis=1)
            child = self._branch(node, g, h, eg, eh, fol)
            if child is None:
                continue
            w2 = winners.copy()
            w2[j] = w
            self._groups(i, child, cands, j + 1, w2)

    def _leaf(self, node: _Node) -> None:
        self.stats["leaves"] += 1
        a = node.aff
        n = self.lo.size
        x_lo, x_hi = self.lo, self.hi
        for t, term in enumerate(self.terms):
            A, b = term.A, term.b
            aA = np.abs(A)
            no = A.shape[1]
            gq = 1.0 + 2.0 * gamma(no + 2)
            q = A @ a.M                                         # t + q x <= b - A c
            eq = up((aA @ a.EM) * gq) + sum_error(aA @ np.abs(a.M), no)
            q0 = b - A @ a.c
            e0 = up((aA @ a.Ec) * gq) + sum_error(np.abs(b) + aA @ np.abs(a.c), no + 1)
            gr, hr = _relaxed(q, q0, eq, e0, self.xmag)
            # the t column is scaled like its row (power of two): exact
            scale = _pow2_scale(q) if q.size else np.ones(0)
            tcol = scale[:, None] if q.size else np.zeros((0, 1))
            G = np.vstack([np.hstack([gr, tcol]),
                           np.hstack([node.G, np.zeros((node.G.shape[0], 1))])])
            hh = np.concatenate([hr, node.h])
            t_lo, t_hi = self.tbox[t]
            c = np.zeros(n + 1)
            c[-1] = 1.0
            L, U = np.append(x_lo, t_lo), np.append(x_hi, t_hi)
            # cheap bound first: the pattern's margin over the whole box
            cheap = float(np.min(dual_bound_rows(gr, hr, scale, x_lo, x_hi)))
            if cheap <= max(self.best_val, float(self.term_upper[t])):
                self.term_upper[t] = max(self.term_upper[t], cheap)
                continue
            status, v, z = self.lp.solve(c, G, hh, L, U)
            if status == "optimal":
                bound = dual_bound(c, G, hh, L, U, z)
                x = np.clip(v[:n], x_lo, x_hi)
                val = float(self.case.unsafe.max_margin(self.net.forward(x)))
                if val > self.best_val:
                    self.best_x, self.best_val = x, val
            elif self._empty(node.G, node.h):
                bound = -np.inf
            else:
                self.stats["uncertified_leaves"] += 1
                bound = cheap
            self.term_upper[t] = max(self.term_upper[t], min(bound, cheap))


def dual_bound_rows(g: np.ndarray, h: np.ndarray, scale: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray) -> np.ndarray:
    """Rows ``s_r (t + q_r x) <= h_r``: rigorous ``max over the box of (h_r - s_r q_r x) / s_r``.

    The "cheap" bound of a leaf: each row's margin over the whole box, ignoring the
    pattern (``max_x min_r <= min_r max_x``). ``s_r`` are powers of two, so dividing is exact.
    """
    return np.array([_row_max(g[r], h[r], scale[r], lo, hi) for r in range(g.shape[0])])


def _row_max(g: np.ndarray, h: float, s: float, lo: np.ndarray, hi: np.ndarray) -> float:
    """Rigorous upper bound of ``(h - g x) / s`` over the box (``s`` a power of two)."""
    c = -np.asarray(g, dtype=np.float64)
    box = np.maximum(c * lo, c * hi)
    terms = np.append(box, h)
    val = float(np.sum(terms))
    pad = float(sum_error(2.0 * float(np.sum(np.abs(terms))), terms.size + 2))
    return float(up(val + pad)) / s


def _pool_candidates(layer: MaxPool, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """Members of each group that can be its maximum (``hi_j >= max lo`` of the group)."""
    out = []
    for g in layer.groups:
        g = np.unique(g)
        out.append(g[hi[g] >= lo[g].max()])
    return out


def certified_max_margin(network, case, seed: int = 0) -> CertifiedMax:
    """Best replayed point and a rigorous upper bound of the unsafe margin over the box.

    Raises :class:`CertificationError` for L1 regions, unsupported layers or more than
    :data:`MAX_UNSTABLE` undecided units.
    """
    en = _Enumerator(network, case, np.random.default_rng(seed))
    en.run()
    err = margin_float_error(case, en.boxes)
    tu = en.term_upper
    upper_exact = float(np.max(tu))
    upper = float(np.max(up(tu + err)))
    stats = dict(en.stats, lp_solves=en.lp.n_solves)
    return CertifiedMax(upper=upper, upper_exact=upper_exact, term_upper_exact=tu.copy(),
                        float_error=err, point=en.best_x, value=en.best_val, stats=stats)
