"""Building a Reluplex query from a network and searching it depth first.

Query (one conjunction ``A y <= b`` of the unsafe condition): variables are the constant
``one`` (index 0), the inputs, for every affine layer its outputs (the ``x^b`` of the next
pair, or the network outputs), for every (Leaky)ReLU layer its outputs ``x^f``, and one
slack ``s_r = a_r . y`` per condition row with ``u(s_r) = b_r``. The initial basis holds
every variable defined by an equation (affine outputs and slacks); the initial assignment
is the forward pass of the box centre, so the tableau and every pair hold at the start
and only the slack bounds are violated.

Search (Reluplex §3-4, seed 004 §III): at each node

1. restore the tableau from the original equations, derive bounds from every row and
   through every pair until a fixpoint (or ``tighten_rounds``), fix the phase of each
   pair whose bounds decide it and eliminate it (add ``x^f = x^b`` or ``x^f = k x^b`` to the
   tableau); a bound conflict is Failure;
2. loop: Update every non-basic variable out of bounds; one simplex step (Pivot1/Pivot2 +
   Update with Bland's rule, or Failure); once all bounds hold, repair the first broken
   pair with Update_b/Update_f/L-Update_b1/L-Update_b2/L-Update_f (PivotForRelu first if
   both its variables are basic); when a pair has been repaired more than
   ``split_threshold`` times at this node, ReluSplit on it; if nothing is broken,
   (L-)ReluSuccess after a restoration and a final check of tableau, bounds and pairs.
   Every ``restore_every`` steps the tableau is restored and bounds re-derived.

Soundness of UNSAT: a node is closed only by Failure -- a bound conflict that clears
:func:`.rules.conflict_margin`, a rigorous row range (:func:`.rules.row_range`) or a
contradicting equation (:meth:`.Tableau.add_equation`) -- and every bound involved is
rigorous for the exact network (rows carry their defect, see :meth:`.Tableau.defect`);
the slacks' bounds include the float64 replay error (:func:`float_slack_pad`). A node
that cannot be decided (numerically stuck, depth limit) makes the whole answer UNKNOWN.
Completeness: with every pair split the problem is an LP and the simplex with Bland's
rule terminates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nnresilience.bounds.rounding import down, gamma, maxabs, sum_error, up
from nnresilience.engines.reluplex import rules
from nnresilience.engines.reluplex.rules import Pairs
from nnresilience.engines.reluplex.stats import ReluplexStats
from nnresilience.engines.reluplex.tableau import ONE, Tableau


@dataclass(frozen=True)
class SearchOptions:
    """Settings of the search (all documented in docs/reluplex.md).

    ``split_threshold``: repairs of one pair at one node before ReluSplit on it. Reluplex
    leaves the number open ("some fixed number"); 5 keeps the lazy repair useful on
    easy nodes while bounding the time spent before a split on hard ones (measured on
    the CTG net: 2-20 behave alike, 1 splits too eagerly).
    ``preprocess``: start from the bounds module's per-neuron bounds (symbolic) instead of
    the input box alone. ``restore_every``: simplex/repair steps between restorations of
    the tableau from the original equations. ``max_depth``: splits deeper than this make
    the branch UNKNOWN (None: unlimited). ``tighten_rounds``: rounds of row/pair bound
    derivation per node (the root uses enough rounds to cross every layer).
    ``node_bounds``: at every node below the root, re-run the symbolic (back-substitution)
    bound pass of :mod:`nnresilience.bounds.symbolic` on the node's current box of every
    layer (which includes the split decisions) and intersect the result in. Sound within
    the node; not part of the 2017 calculus (it is what Marabou later added), so it can
    be switched off to run the plain rules.
    """

    split_threshold: int = 5
    preprocess: bool = True
    restore_every: int = 50
    max_depth: int | None = None
    tighten_rounds: int = 4
    node_bounds: bool = True


@dataclass(eq=False)
class Query:
    tab: Tableau
    pairs: Pairs
    inputs: np.ndarray
    outputs: np.ndarray
    slacks: np.ndarray
    n_layers: int
    layer_vars: list[np.ndarray]
    net: object = None


class _Timeout(Exception):
    pass


def build_query(net, lo_in: np.ndarray, hi_in: np.ndarray, A_cond: np.ndarray,
                b_cond: np.ndarray, layer_bounds=None,
                slack_pad: np.ndarray | None = None) -> Query:
    """The tableau of ``net`` (affine and (Leaky)ReLU layers, in any order) and one conjunction.

    ``layer_bounds`` (a NetworkBounds of ``net``) sets the initial bounds of every affine
    output and activation output, and of the slacks (from the output box); without it
    they start from interval arithmetic (what the root's row derivation reaches anyway:
    rigorous row reasoning needs every variable bounded, see :meth:`Tableau.defect`).
    ``slack_pad`` (per row, default 0) raises the slacks' upper
    bounds ``b`` so that the query also covers outputs whose *float64* evaluation
    satisfies the condition (see :func:`float_slack_pad`).
    """
    if layer_bounds is None:
        from nnresilience.bounds.interval import interval_bounds

        layer_bounds = interval_bounds(net, lo_in, hi_in)
    n_in = net.n_inputs
    sizes = [n_in]
    kinds = []
    for layer in net.layers:
        kinds.append(layer.kind)
        sizes.append(layer.out_size)
    n_vars = 1 + sum(sizes) + A_cond.shape[0]
    lo = np.full(n_vars, -np.inf)
    hi = np.full(n_vars, np.inf)
    lo[ONE] = hi[ONE] = 1.0
    x = np.zeros(n_vars)
    x[ONE] = 1.0
    inputs = np.arange(1, 1 + n_in)
    lo[inputs], hi[inputs] = lo_in, hi_in
    val = np.clip(0.5 * (lo_in + hi_in), lo_in, hi_in)
    x[inputs] = val
    blocks: list[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = []
    pb, pf, pk = [], [], []
    layer_vars = [inputs]
    cur, nxt = inputs, 1 + n_in
    for i, layer in enumerate(net.layers):
        out = np.arange(nxt, nxt + layer.out_size)
        nxt += layer.out_size
        if layer.kind == "affine":
            W = layer.dense_W()
            blocks.append((out, [(out, np.eye(out.size)), (cur, -W),
                                 (np.array([ONE]), -layer.b[:, None])]))
            val = W @ val + layer.b
        else:
            k = 0.0 if layer.kind == "relu" else float(layer.slope)
            pb.append(cur)
            pf.append(out)
            pk.append(np.full(out.size, k))
            val = rules.act(k, val)
        x[out] = val
        if layer_bounds is not None:
            lo[out] = layer_bounds.lo[i + 1]
            hi[out] = layer_bounds.hi[i + 1]
        cur = out
        layer_vars.append(out)
    outputs = cur
    slacks = np.arange(nxt, nxt + A_cond.shape[0])
    if slacks.size:
        blocks.append((slacks, [(slacks, np.eye(slacks.size)), (outputs, -A_cond)]))
        hi[slacks] = b_cond if slack_pad is None else up(b_cond + slack_pad)
        x[slacks] = A_cond @ val
        # s = A y over the output box, rounded outward
        ylo, yhi = layer_bounds.lo[-1], layer_bounds.hi[-1]
        Ap, An = np.clip(A_cond, 0, None), np.clip(A_cond, None, 0)
        lo[slacks] = down(Ap @ ylo + An @ yhi
                          - sum_error(np.abs(A_cond) @ maxabs(ylo, yhi), A_cond.shape[1]))
    m = sum(rows.size for rows, _ in blocks)
    A = np.zeros((m, n_vars))
    basis = np.zeros(m, dtype=np.int64)
    r0 = 0
    for rows, parts in blocks:
        sl = slice(r0, r0 + rows.size)
        for cols, mat in parts:
            A[sl, cols] += mat
        basis[sl] = rows
        r0 += rows.size
    empty = np.zeros(0, dtype=np.int64)
    pairs = Pairs(np.concatenate(pb) if pb else empty, np.concatenate(pf) if pf else empty,
                  np.concatenate(pk) if pk else np.zeros(0))
    tab = Tableau.from_equations(A, basis, lo, hi, x)
    return Query(tab, pairs, inputs, outputs, slacks, len(net.layers), layer_vars, net)


def float_slack_pad(network, A_cond: np.ndarray, b_cond: np.ndarray, los, his
                    ) -> np.ndarray:
    """Per row: how far the float64 replay of ``b_r - a_r . y`` can be from the exact value.

    The search reasons about the exact network; the answer is judged on the float64
    forward pass. With ``y^f`` within ``e_out`` of the exact ``y`` (the forward error of
    :mod:`nnresilience.bounds.rounding`, from boxes ``los``/``his`` of ``network`` that
    contain the float64 values) and the evaluation of ``b_r - a_r . y^f`` rounding by
    ``sum_error`` of its terms, an exact ``a_r . y > b_r + pad_r`` makes the replayed margin
    negative. So a query with ``u(s_r) = b_r + pad_r`` that is UNSAT proves that no input
    satisfies the condition in float64 either.
    """
    from nnresilience.bounds.rounding import forward_errors

    e = forward_errors(network.layers, los, his)[-1]
    ymag = maxabs(los[-1], his[-1])
    aA = np.abs(A_cond)
    carried = up((aA @ e) * (1.0 + 2.0 * gamma(aA.shape[1] + 2)))
    own = sum_error(np.abs(b_cond) + aA @ ymag, aA.shape[1] + 1)
    return up(carried + own)


@dataclass(eq=False)
class _Node:
    tab: Tableau
    phase: np.ndarray
    depth: int
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]
    conflict: bool = False

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = np.zeros(self.phase.size, dtype=np.int64)

    def child(self) -> _Node:
        return _Node(self.tab.copy(), self.phase.copy(), self.depth + 1)


@dataclass
class SearchResult:
    status: str                    # "sat", "unsat", "unknown"
    x: np.ndarray | None = None    # full assignment at SAT
    message: str = ""


class ReluplexSearch:
    """Depth-first Reluplex search of one :class:`Query` until ``deadline`` (perf_counter)."""

    def __init__(self, query: Query, options: SearchOptions, deadline: float | None,
                 stats: ReluplexStats) -> None:
        self.q = query
        self.opt = options
        self.deadline = deadline
        self.stats = stats
        self.pairs = query.pairs
        self.leaky_any = bool(np.any(query.pairs.k > 0.0))

    # ------------------------------------------------------------------ driver
    def run(self) -> SearchResult:
        st = self.stats
        st.queries += 1
        st.pairs = max(st.pairs, self.pairs.n)
        root = _Node(self.q.tab.copy(), np.zeros(self.pairs.n, dtype=np.int8), 0)
        stack = [root]
        undecided = ""
        first = True
        try:
            while stack:
                self._check_time()
                node = stack.pop()
                st.nodes += 1
                st.max_depth = max(st.max_depth, node.depth)
                rounds = 2 * self.q.n_layers + 4 if first else self.opt.tighten_rounds
                outcome = self._solve(node, rounds, root=first)
                first = False
                if outcome == "sat":
                    return SearchResult("sat", node.tab.x.copy())
                if outcome == "unsat":
                    continue
                if isinstance(outcome, str):
                    undecided = outcome
                    continue
                p = int(outcome)
                if self.opt.max_depth is not None and node.depth >= self.opt.max_depth:
                    undecided = f"depth limit {self.opt.max_depth} reached"
                    continue
                st.splits += 1
                st.fire("ReluSplit")
                stack.extend(self._split(node, p))
        except _Timeout:
            return SearchResult("unknown", None, "timeout")
        if undecided:
            return SearchResult("unknown", None, undecided)
        return SearchResult("unsat")

    def _check_time(self) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise _Timeout

    def _split(self, node: _Node, p: int) -> list[_Node]:
        """ReluSplit: two children with the pair fixed active / inactive; preferred last."""
        tab = node.tab
        b, f = int(self.pairs.b[p]), int(self.pairs.f[p])
        active = node.child()
        active.tab.lo[b] = max(active.tab.lo[b], 0.0)
        active.tab.lo[f] = max(active.tab.lo[f], 0.0)
        self._eliminate(active, p, +1)
        inactive = node.child()
        inactive.tab.hi[b] = min(inactive.tab.hi[b], 0.0)
        inactive.tab.hi[f] = min(inactive.tab.hi[f], 0.0)
        self._eliminate(inactive, p, -1)
        # Explore first the phase the current assignment leans to (popped last-in).
        return [inactive, active] if tab.x[b] >= 0.0 else [active, inactive]

    # ------------------------------------------------------------- one node
    def _solve(self, node: _Node, rounds: int, root: bool = False) -> str | int:
        """Run the rules at one node: "sat", "unsat", a pair index to split, or a reason."""
        tab, st, opt = node.tab, self.stats, self.opt
        if not tab.restore():
            st.stuck_branches += 1
            return "singular basis"
        st.restorations += 1
        if opt.node_bounds and not root and not self._node_bounds(node):
            st.fire("Failure")
            return "unsat"
        if not self._propagate(node, rounds):
            return "unsat"
        if root:
            st.unstable_at_root += int(np.sum(node.phase == 0))
        steps = 0
        success_misses = 0
        run = 0                                   # consecutive simplex pivots
        bland_after = tab.n_rows + tab.n_vars     # then Bland's rule, for termination
        while True:
            steps += 1
            if steps % 16 == 0:
                self._check_time()
            if steps % opt.restore_every == 0:
                if not tab.restore():
                    st.stuck_branches += 1
                    return "singular basis"
                st.restorations += 1
                if not self._propagate(node, 1):
                    return "unsat"
            rules.clamp_nonbasic(tab, st)
            outcome = rules.simplex_step(tab, st, bland=run > bland_after)
            if outcome == "failure":
                return "unsat"
            if outcome == "stuck":
                st.stuck_branches += 1
                return "numerically stuck simplex row"
            if outcome == "pivoted":
                run += 1
                continue
            run = 0
            free = np.flatnonzero(node.phase == 0)
            broken = free[rules.pair_broken(tab, self.pairs, free)] if free.size else free
            if broken.size == 0:
                if self._success(node):
                    return "sat"
                success_misses += 1
                if success_misses > 20:
                    st.stuck_branches += 1
                    return "final check keeps failing after restoration"
                continue
            p = int(broken[0])
            node.counts[p] += 1
            if node.counts[p] > opt.split_threshold:
                return p
            if not rules.repair_pair(tab, self.pairs, p, st):
                return p

    def _success(self, node: _Node) -> bool:
        """(L-)ReluSuccess after restoring the tableau: bounds, pairs and T0 all hold."""
        tab = node.tab
        if not tab.restore():
            return False
        self.stats.restorations += 1
        if tab.residual() > 1e-9:
            return False
        if not rules.relu_success(tab, self.pairs):
            return False
        self.stats.fire("L-ReluSuccess" if self.leaky_any else "ReluSuccess")
        return True

    # --------------------------------------------------- bounds and phases
    def _node_bounds(self, node: _Node) -> bool:
        """Symbolic bounds of every layer under the node's current boxes; False on conflict."""
        from nnresilience.bounds.symbolic import propagate

        tab, q = node.tab, self.q
        if node.conflict or rules.bound_conflict(tab):
            return False
        rules.merge_touching_bounds(tab)         # relaxations need l <= u exactly
        prior = [(tab.lo[v], tab.hi[v]) for v in q.layer_vars]
        got = propagate(q.net, prior[0][0], prior[0][1], symbolic=True, prior=prior)
        cand_lo = np.full(tab.n_vars, -np.inf)
        cand_hi = np.full(tab.n_vars, np.inf)
        for v, lo, hi in zip(q.layer_vars, got.los, got.his, strict=True):
            cand_lo[v], cand_hi[v] = lo, hi
        self.stats.node_bound_passes += 1
        rules.apply_bounds(tab, cand_lo, cand_hi, self.stats)
        return not rules.bound_conflict(tab)

    def _propagate(self, node: _Node, rounds: int) -> bool:
        """Derive bounds (rows, pairs), fix and eliminate decided pairs; False on Failure."""
        tab, st = node.tab, self.stats
        for _ in range(max(1, rounds)):
            self._check_time()
            n = rules.tighten_rows(tab, st, self._check_time)
            n += rules.propagate_pair_bounds(tab, self.pairs, st)
            if rules.bound_conflict(tab):
                st.fire("Failure")
                return False
            rules.merge_touching_bounds(tab)
            fixed = self._fix_phases(node)
            if node.conflict or rules.bound_conflict(tab):
                st.fire("Failure")
                return False
            if n == 0 and fixed == 0:
                break
        return True

    def _fix_phases(self, node: _Node) -> int:
        """Fix every free pair whose bounds decide its phase (seed 004 §III.C)."""
        tab, pairs = node.tab, self.pairs
        free = node.phase == 0
        if not free.any():
            return 0
        lb, ub = tab.lo[pairs.b], tab.hi[pairs.b]
        lf, uf = tab.lo[pairs.f], tab.hi[pairs.f]
        leaky = pairs.k > 0.0
        active = free & ((lb >= 0.0) | (lf > 0.0) | (leaky & (lf >= 0.0)))
        inactive = free & ~active & ((ub <= 0.0) | (uf <= 0.0))
        idx = np.flatnonzero(active | inactive)
        for p in idx:
            self._check_time()                 # one elimination: ~0.1 s on MNIST-sized nets
            self._eliminate(node, int(p), +1 if active[p] else -1)
        self.stats.phase_fixes += int(idx.size)
        return int(idx.size)

    def _eliminate(self, node: _Node, p: int, phase: int) -> None:
        """Fix pair ``p`` in ``phase`` and add its linear equation to the tableau.

        Active: ``x^f = x^b``; bounds of both become their intersection; the assignments
        are made equal. Inactive: ``x^f = k x^b``; bounds ``u(x^b) = u(x^f)/k`` etc. (for
        ``k = 0``: ``x^f = 0`` and ``u(x^b) <= 0``); ``alpha(x^b) := alpha(x^f)/k`` when
        ``x^b`` is non-basic (seed 004 §III.C, third step). The equation is brought into
        the tableau with ``x^f`` as its basic variable when possible, which is "replace
        ``x^f`` by ``k x^b`` in T" of the paper.
        """
        tab, pairs, st = node.tab, self.pairs, self.stats
        b, f, k = int(pairs.b[p]), int(pairs.f[p]), float(pairs.k[p])
        node.phase[p] = phase
        a = np.zeros(tab.n_vars)
        if phase > 0:
            lo = max(tab.lo[b], tab.lo[f], 0.0)
            hi = min(tab.hi[b], tab.hi[f])
            tab.lo[b] = tab.lo[f] = lo
            tab.hi[b] = tab.hi[f] = hi
            if not tab.is_basic(b):
                tab.update(b, tab.x[f] - tab.x[b])
            elif not tab.is_basic(f):
                tab.update(f, tab.x[b] - tab.x[f])
            a[f], a[b] = 1.0, -1.0
        else:
            if k > 0.0:
                # divisions and products by k round: each bound moves one float outward
                lo_b = max(tab.lo[b], float(down(tab.lo[f] / k)))
                hi_b = min(tab.hi[b], float(up(tab.hi[f] / k)), 0.0)
                tab.lo[b], tab.hi[b] = lo_b, hi_b
                tab.lo[f], tab.hi[f] = float(down(k * lo_b)), min(float(up(k * hi_b)), 0.0)
                if not tab.is_basic(b):
                    tab.update(b, tab.x[f] / k - tab.x[b])
            else:
                tab.hi[b] = min(tab.hi[b], 0.0)
                tab.lo[f] = tab.hi[f] = 0.0
            a[f], a[b] = 1.0, -k
        added = tab.add_equation(a, prefer=(f, b))
        if added > 0:
            st.pivots += 1
        elif added < 0:
            node.conflict = True          # T implies x^f - k x^b = c != 0: empty node
        st.eliminations += 1
