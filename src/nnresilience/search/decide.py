"""Deciding one case (input region + unsafe disjunction) with the search driver.

:class:`CaseProblem` supplies the driver's pieces for a decision query:

* **bound**: the bounder's lower bounds of every row ``A y`` of the unsafe terms; a term
  is excluded when one of its rows clears ``b`` (the test of
  :func:`nnresilience.verify.excluded_terms`), a domain is *closed* when every term is.
  Its key is ``min over terms of max over rows (lower - b)``: the most negative domains
  are the least proved and the likeliest to hold a counterexample.
* **concrete check** (inside ``bound``): every domain the bound leaves open has its
  candidate points evaluated by the float64 forward pass, in one batch: the inputs that
  minimise each spec row's linear lower bound (``x_best``, the box corner the signs of
  the bound's input coefficients pick, free with the bound) and the box centre. A point
  in the unsafe set is replayed (:func:`nnresilience.falsify.confirm`) and handed to the
  driver (``pending``). Bounds only
  say where a counterexample *may* be; these points are where the bound itself says
  the property is weakest, and they cost one forward pass per point (ACAS Xu 1_9 prop 7:
  a corner of one of the root's look-ahead halves violates by 9.3e-5, where uniform
  sampling hits the pocket once in ~2 million draws).
* **falsify**: targeted gradient ascent (:func:`nnresilience.falsify.attack`) from the
  bound's minimisers ``x_best`` and the box centres of the most promising domains; every
  hit is replayed in float64 (:func:`nnresilience.falsify.confirm`) before it counts.
* **leaf**: a domain with at most ``leaf_unstable`` undecided neurons goes to the
  complete engine (``engine.check(network, sub_case, bounds)``) with the domain's boxes
  as its bounds, so clamped neurons are encoded as stable; with every neuron fixed the
  MILP is an LP. A candidate that fails the float64 replay means *refine*: on an
  s-shaped net the neuron whose relaxation error at the candidate is largest (weighted
  by how much the margin depends on it) is split at the candidate's pre-activation; a
  piecewise-linear domain goes back to ordinary branching while something can still be
  split, and is otherwise left undecided (``candidate failed replay``). A MILP leaf left
  undecided on a small ReLU / LeakyReLU net gets a short second look by the reluplex
  engine first (``exact_seconds``: near ties inside the MILP's tolerance band).
* **branch**: the rule (``input`` or ``neuron``, :mod:`.rules`).

Soundness: bounds are sound for the float64 forward pass of the network they were
computed on (the merged network); when merging changed the layer list, the spec rows
are additionally widened by ``|A| e`` with ``e`` the forward error of the *original*
network on the root box, so a ``holds`` also covers what a replay of the original
computes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.results import Status
from nnresilience.search.bounder import PIECEWISE, S_SHAPED, make_bounder
from nnresilience.search.domains import Domains, Frontier
from nnresilience.search.driver import Bounded, LeafAnswer, SearchOutcome, run
from nnresilience.search.rules import input_split, neuron_split, split_neuron_at

#: Share of a per-term decision's time given first to one joint search (see decide_case).
JOINT_SHARE = 0.1
#: Inputs of at most this many dimensions (box regions) are split by input, not neuron.
INPUT_SPLIT_MAX_DIM = 12
#: Unsafe candidates of one concrete check replayed at most (a failed replay is repaired
#: by small ascent steps, which costs; the next batch brings new candidates anyway).
CONCRETE_CONFIRMS = 4
#: Input values per forward call of the concrete check (memory of one chunk: a few MB).
CONCRETE_CHUNK = 1 << 19


@dataclass
class SearchSettings:
    """Knobs of one decision search (defaults chosen by the measurements in
    ``docs/verify.md``)."""

    rule: str = "auto"                  # "input" | "neuron" | "auto"
    bounder: str = "auto"               # "symbolic" | "alpha" | "auto"
    device: str = "cpu"
    leaf_unstable: int | None = None    # None: 4 for input splitting, 12 for neurons
    lookahead_depth: int = 10
    smear_points: int = 15
    falsify_share: float = 0.1          # of the search time, at most
    falsify_domains: int = 4            # domains attacked per batch
    falsify_steps: int = 12
    max_bytes: int = 1 << 30            # frontier memory before depth-first
    intermediate: str = "inherit"       # symbolic bounder with neuron splits
    leaf_seconds: float | None = None   # cap per leaf call (None: the time left)
    seed: int = 0
    blas_threads: int | None = 1        # see blas_threads()
    # optimisation steps of the optimised bounder at the root / for children, which start
    # from their parent's parameters (MNIST-FC 256x2 prop 1, load 3-4: 20 steps 49.6 s,
    # 10 steps 27.6 s, 5 steps 37.2 s to holds)
    iters: int = 20
    child_iters: int = 10
    # neuron rule on a disjunction: one search per term (see decide_case)
    per_term: bool = True
    # neuron rule: candidates of filtered smart branching (1: the score's best alone)
    branch_candidates: int = 8
    # neuron rule: while a domain is shallower than this, split only before the last
    # hidden layer (while such a neuron is unstable). Children keep their parent's
    # intermediate boxes, so the split score favours the last layer, whose splits
    # tighten only the final bound; early splits first let the search close (0: off).
    # MNIST-FC 256x4 ε = 0.03 props 0 and 13: unknown at 60 s -> holds in 46 and 32 s;
    # depths 5-20 measured in benchmarks/RESULTS.md §11 (follow-up mnist6)
    early_depth: int = 8
    # seconds of an exact second look (the reluplex engine) at a MILP leaf that the MILP
    # left undecided (a margin inside its tolerance band, or a candidate that does not
    # replay) on a ReLU / LeakyReLU net over a box; 0: off. Crafted near ties (properties
    # that hold by 1e-9..1e-12 of the logits) were unknown at every time-out by MILP
    # leaves, which split on and on; reluplex decides each leaf in well under a second
    exact_seconds: float = 1.0
    onnx_replay: bool = True
    # evaluate the bound's candidate points of every open domain (see the module docstring)
    concrete: bool = True
    engine_options: dict = field(default_factory=dict)

    def resolved_rule(self, case) -> str:
        if self.rule != "auto":
            return self.rule
        box = case.region.norm != "l1"
        return "input" if box and case.region.dim <= INPUT_SPLIT_MAX_DIM else "neuron"


def _forward_error_rows(original, merged, case, A: np.ndarray) -> np.ndarray:
    """``|A| e_out`` of the original network when merging changed it, else zeros."""
    same = len(original.layers) == len(merged.layers) and all(
        a is b for a, b in zip(original.layers, merged.layers, strict=True))
    if same:
        return np.zeros(A.shape[0])
    from nnresilience.bounds.interval import interval_bounds
    from nnresilience.bounds.rounding import forward_errors, up

    ib = interval_bounds(original, case.region.lo, case.region.hi)
    e = forward_errors(original.layers, ib.lo, ib.hi)[-1]
    return up(np.abs(A) @ e * 1.01)


def _widened(unsafe, pad: np.ndarray):
    """``unsafe`` with every row's ``b`` raised by ``pad`` (the rows in term order): a
    leaf engine that proves the widened condition unreachable on the merged network has
    proved the original condition unreachable for the original's float64 forward pass."""
    if not np.any(pad):
        return unsafe
    from nnresilience.spec.condition import Conjunction, OutputCondition

    terms, k = [], 0
    for t in unsafe.terms:
        n = t.A.shape[0]
        terms.append(Conjunction(t.A, t.b + pad[k:k + n]))
        k += n
    # the compact top-k encoding reads (m, k), not the rows: drop it with widened rows
    return OutputCondition(tuple(terms), unsafe.n_outputs)


class CaseProblem:
    """The driver's pieces for "does some input of ``case.region`` reach ``case.unsafe``?"."""

    def __init__(self, network, case, engine=None, settings: SearchSettings | None = None,
                 stats: dict | None = None) -> None:
        self.network = network
        self.net = network.merged()
        self.case = case
        self.engine = engine
        self.s = settings or SearchSettings()
        self.stats = stats if stats is not None else {}
        terms = case.unsafe.terms
        self.A = np.vstack([t.A for t in terms])
        self.b = np.concatenate([t.b for t in terms])
        self.term_of_row = np.concatenate([np.full(t.A.shape[0], k) for k, t in
                                           enumerate(terms)])
        self.row_pad = _forward_error_rows(network, self.net, case, self.A)
        self.leaf_unsafe = _widened(case.unsafe, self.row_pad)
        self.rule = self.s.resolved_rule(case)
        intermediate = "recompute" if self.rule == "input" else self.s.intermediate
        # "auto": the optimised bounds pay off when neurons are split on a wide input
        # box; splitting a low-dimensional box makes boxes small fast, where the plain
        # back-substitution is as tight and ~6x cheaper per call (ACAS Xu 1_1 prop 1:
        # 2.6 s symbolic, 14.7 s optimised, 26 boxes each)
        method = self.s.bounder
        if method == "auto" and self.rule == "input":
            method = "symbolic"
        self.bounder = make_bounder(self.net, self.A, method, self.s.device,
                                    symbolic_options={"intermediate": intermediate})
        self.leaf_unstable = self.s.leaf_unstable if self.s.leaf_unstable is not None \
            else (4 if self.rule == "input" else 12)
        self.rng = np.random.default_rng(self.s.seed)
        self.t0 = time.monotonic()
        self.witness = None
        self._pending = None
        self._dropped: str | None = None
        self.failed_replays = 0
        self.sshape = any(la.kind in S_SHAPED for la in self.net.layers)

    # ----------------------------------------------------------- helpers
    def stats_add(self, key: str, n: float) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def root(self) -> Domains:
        return Domains.root(self.case.region.lo, self.case.region.hi)

    def _status(self, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys and closed mask from spec-row lower bounds (B, R)."""
        from nnresilience.verify import excluded_terms

        keys = self.keys_of(lower)
        lower = lower - self.row_pad
        closed = np.all(np.isposinf(lower), axis=1)        # clamps made it empty
        for b in np.flatnonzero((keys > 0) & ~closed):
            closed[b] = bool(np.all(excluded_terms(self.case.unsafe, lower[b])))
        return keys, closed

    def keys_of(self, lower: np.ndarray) -> np.ndarray:
        """``min over terms of max over rows (lower - pad - b)`` per domain (B, R) -> (B,)."""
        marg = lower - self.row_pad - self.b
        B = lower.shape[0]
        best = np.full((len(self.case.unsafe.terms), B), -np.inf)
        np.maximum.at(best, self.term_of_row, marg.T)
        return best.min(axis=0)

    # ------------------------------------------------------------ pieces
    def bound(self, doms: Domains, deadline: float | None) -> Bounded:
        iters = self.s.iters if doms.warm is None else self.s.child_iters
        res = self.bounder.bound(doms.lo, doms.hi, doms.clamps, iters=iters, warm=doms.warm,
                                 deadline=deadline)
        # the contract has the clamps intersected into the boxes already; doing it again
        # costs nothing and keeps the rules and leaves right whatever the bounder does
        for i, (clo, chi) in doms.clamps.items():
            res.pre_lo[i] = np.maximum(res.pre_lo[i], clo)
            res.pre_hi[i] = np.minimum(res.pre_hi[i], chi)
        keys, closed = self._status(res.lower)
        self.stats_add("bounded", len(doms))
        if self.s.concrete:
            self._concrete(doms, res, closed, deadline)
        return Bounded(keys, closed, res)

    def _concrete(self, doms: Domains, res, closed: np.ndarray, deadline: float | None
                  ) -> None:
        """The concrete check: evaluate the candidate points of every open domain (closed
        ones hold no counterexample); a point in the unsafe set is confirmed in float64 and
        kept for :meth:`pending`."""
        t = time.monotonic()
        n = doms.lo.shape[1]
        idx = np.flatnonzero(~closed)
        if idx.size == 0:
            return
        xb = np.asarray(res.x_best)
        if xb.ndim == 2:
            xb = xb[:, None, :]
        elif xb.shape[1] > 1 and xb.strides[1] == 0:     # one point broadcast to every row
            xb = xb[:, :1]
        pts = np.concatenate([xb[idx], ((doms.lo[idx] + doms.hi[idx]) / 2.0)[:, None, :]],
                             axis=1)
        X = self.case.region.clip(pts.reshape(-1, n))
        step = max(1, CONCRETE_CHUNK // max(n, 1))
        margin = np.concatenate([self.case.unsafe.max_margin(self.network.forward(X[a:a + step]))
                                 for a in range(0, X.shape[0], step)])
        margin = np.nan_to_num(margin, nan=-np.inf)
        self.stats_add("concrete_points", X.shape[0])
        if self._pending is None and self.witness is None:
            hits = np.flatnonzero(margin >= 0.0)
            for r in hits[np.argsort(-margin[hits], kind="stable")][:CONCRETE_CONFIRMS]:
                from nnresilience.falsify import confirm

                cex = confirm(self.network, self.case, X[r], self.s.onnx_replay, deadline)
                if cex is not None:
                    self._pending = cex
                    break
        self.stats_add("seconds_concrete", time.monotonic() - t)

    def pending(self):
        """A counterexample the concrete check met since the last call (else None)."""
        cex, self._pending = self._pending, None
        return cex

    def falsify(self, doms: Domains, bounded: Bounded, deadline: float | None):
        from nnresilience.falsify import attack, confirm

        elapsed = time.monotonic() - self.t0
        spent = self.stats.get("seconds_falsify", 0.0)
        if spent > self.s.falsify_share * max(elapsed, 1.0):
            return None
        order = np.argsort(bounded.keys, kind="stable")[: self.s.falsify_domains]
        res = bounded.result
        seeds, los, his = [], [], []
        for b in order:
            xb = res.x_best[b]
            pts = np.vstack([xb, (doms.lo[b] + doms.hi[b]) / 2.0])
            seeds.append(pts)
            los.append(np.broadcast_to(doms.lo[b], pts.shape))
            his.append(np.broadcast_to(doms.hi[b], pts.shape))
        X = np.vstack(seeds)
        lo, hi = np.vstack(los), np.vstack(his)
        # one restart per (seed, term): the seed of row r targets that row's term
        terms = self._open_terms(res.lower[order])
        end = time.monotonic() + 0.5
        x = attack(self.network, self.case, X, lo=lo, hi=hi, terms=terms,
                   steps=self.s.falsify_steps, deadline=end if deadline is None
                   else min(end, deadline), device=self.s.device)
        if x is None:
            return None
        return confirm(self.network, self.case, x, self.s.onnx_replay, deadline)

    def _open_terms(self, lower: np.ndarray) -> np.ndarray:
        from nnresilience.verify import excluded_terms

        gone = np.ones(len(self.case.unsafe.terms), dtype=bool)
        for row in np.atleast_2d(lower):
            gone &= excluded_terms(self.case.unsafe, row - self.row_pad)
        return np.flatnonzero(~gone)

    def undecided_count(self, res) -> np.ndarray:
        """Per domain: unstable ReLUs/LeakyReLUs and undecided max-pool groups (the
        binaries a leaf MILP would need; s-shaped neurons are LP rows, not counted)."""
        from nnresilience.search.bounder import _maxpool_batched

        B = res.lower.shape[0]
        n = np.zeros(B, dtype=np.int64)
        for i, layer in enumerate(self.net.layers):
            lo, hi = res.pre_lo[i], res.pre_hi[i]
            if layer.kind in PIECEWISE:
                n += np.sum((lo < 0) & (hi > 0), axis=1)
            elif layer.kind == "maxpool":
                n += np.sum(~_maxpool_batched(layer.groups, lo, hi)[1], axis=1)
        return n

    def leaf_mask(self, doms: Domains, bounded: Bounded) -> np.ndarray:
        if self.engine is None:
            return np.zeros(len(doms), dtype=bool)
        return self.undecided_count(bounded.result) <= self.leaf_unstable

    def leaf(self, dom: Domains, bounded: Bounded, deadline: float | None) -> LeafAnswer:
        from nnresilience.bounds.types import NetworkBounds
        from nnresilience.falsify import confirm
        from nnresilience.spec.property import Case
        from nnresilience.spec.region import InputRegion

        res = bounded.result
        r = self.case.region
        sub = Case(InputRegion(dom.lo[0], dom.hi[0], center=r.center, radius=r.radius,
                               norm=r.norm), self.leaf_unsafe)
        nb = NetworkBounds([a[0] for a in res.pre_lo], [a[0] for a in res.pre_hi],
                           method="search")
        rem = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self.s.leaf_seconds is not None:
            rem = self.s.leaf_seconds if rem is None else min(rem, self.s.leaf_seconds)
        ans = self.engine.check(self.net, sub, nb, timeout=rem, **self.s.engine_options)
        self.stats_add("leaf_calls", 1)
        if ans.status is Status.HOLDS:
            return LeafAnswer("closed")
        if ans.status is Status.VIOLATED:
            cex = confirm(self.network, self.case, ans.x, self.s.onnx_replay, deadline)
            if cex is not None:
                return LeafAnswer("witness", cex)
            self.failed_replays += 1
            self.stats_add("failed_replays", 1)
            second = self._exact_look(sub, nb, deadline)
            return second if second is not None else self._refine(dom, res, ans.x)
        msg = ans.message or ""
        if deadline is not None and time.monotonic() >= deadline - 1e-3:
            return LeafAnswer("timeout")
        second = self._exact_look(sub, nb, deadline)
        if second is not None:
            return second
        if "time" in msg.lower() and self.s.leaf_seconds is not None:
            return LeafAnswer("split")          # capped leaf: split further instead
        if self.undecided_count(res)[0] > 0 or np.any(dom.hi > dom.lo):
            return LeafAnswer("split")
        return LeafAnswer("undecided", reason=msg or "engine gave no answer")

    def _exact_look(self, sub, nb, deadline: float | None) -> LeafAnswer | None:
        """Reluplex on a MILP leaf left undecided, for at most ``exact_seconds``
        (:func:`nnresilience.engines.reluplex.second_look`, which says why). Its ``holds``
        closes the leaf, its candidate counts only once replayed; anything else leaves the
        leaf to the search."""
        if self.s.exact_seconds <= 0 or getattr(self.engine, "name", "") != "milp":
            return None
        from nnresilience.engines.reluplex import second_look
        from nnresilience.falsify import confirm

        ans = second_look(self.net, sub, nb, self.s.exact_seconds, deadline)
        if ans is None:
            return None
        self.stats_add("exact_looks", 1)
        if ans.status is Status.HOLDS:
            self.stats_add("exact_closed", 1)
            return LeafAnswer("closed")
        if ans.status is Status.VIOLATED and ans.x is not None:
            cex = confirm(self.network, self.case, ans.x, self.s.onnx_replay, deadline)
            if cex is not None:
                return LeafAnswer("witness", cex)
        return None

    def _refine(self, dom: Domains, res, x: np.ndarray | None) -> LeafAnswer:
        """A candidate that does not replay: split what explains it, or give up here."""
        if x is not None and self.sshape:
            got = self._explaining_neuron(res, np.asarray(x, float))
            if got is not None:
                layer, j, cut = got
                self.stats_add("refinements", 1)
                return LeafAnswer("split", children=split_neuron_at(
                    dom, layer, j, cut, self.net.layers[layer].in_size))
        if self.undecided_count(res)[0] > 0 or np.any(dom.hi > dom.lo):
            return LeafAnswer("split")
        return LeafAnswer("undecided", reason="candidate failed replay")

    def _explaining_neuron(self, res, x: np.ndarray):
        """``(layer, neuron, cut)``: the s-shaped neuron whose relaxation gap at the
        candidate's pre-activation, times ``|∂margin/∂h|``, is largest."""
        from nnresilience.search.bounder import _relax_batched

        x = self.case.region.clip(x)
        vals = self.net.forward_all(x[None, :])
        grads = self._entry_grads(vals)
        best = None
        for i, layer in enumerate(self.net.layers):
            if layer.kind not in S_SHAPED:
                continue
            lo, hi = res.pre_lo[i][0], res.pre_hi[i][0]
            la, lb, ua, ub = (a[0] for a in _relax_batched(layer, lo[None], hi[None]))
            z = np.clip(vals[i][0], lo, hi)
            gap = (ua - la) * z + (ub - lb)
            score = gap * np.abs(grads[i + 1])
            score[(hi - lo) <= 1e-6 * (1 + np.abs(lo) + np.abs(hi))] = -1
            j = int(np.argmax(score))
            if score[j] > 0 and (best is None or score[j] > best[0]):
                w = hi[j] - lo[j]
                cut = float(np.clip(z[j], lo[j] + 0.1 * w, hi[j] - 0.1 * w))
                if lo[j] < cut < hi[j]:
                    best = (score[j], i, j, cut)
        return None if best is None else best[1:]

    def _entry_grads(self, vals: list[np.ndarray]) -> list[np.ndarray]:
        from nnresilience.falsify import _backward

        Y = vals[-1]
        best, gy = -np.inf, np.zeros_like(Y)
        for term in self.case.unsafe.terms:
            m = term.margins(Y)[0]
            r = int(np.argmin(m))
            if m[r] > best:
                best, gy = m[r], -term.A[r][None, :]
        grads = [None] * len(vals)
        g = gy
        grads[-1] = g[0]
        for i in range(len(self.net.layers) - 1, -1, -1):
            g = _backward(self.net.layers[i], vals[i], g)
            grads[i] = g[0]
        return grads

    def branch(self, doms: Domains, bounded: Bounded, deadline: float | None):
        before = self.stats.get("uncuttable", 0)
        if self.rule == "input":
            out = input_split(self, doms, bounded, deadline,
                              lookahead_depth=self.s.lookahead_depth,
                              smear_points=self.s.smear_points, rng=self.rng)
        else:
            out = neuron_split(self, doms, bounded, deadline)
        if self.stats.get("uncuttable", 0) > before:
            # the rules count the open boxes they could not cut (every input side at
            # most one float64 step wide, no neuron to split): they have no children
            self._dropped = ("an open box too narrow to split (every side at most one "
                             "float64 step) was left undecided")
        return out

    def dropped(self) -> str | None:
        """Why the last :meth:`branch` left open domains without children (the driver
        then cannot answer ``holds``), or ``None``."""
        why, self._dropped = self._dropped, None
        return why

    def on_witness(self, witness) -> bool:
        self.witness = witness
        return True


@dataclass
class CaseAnswer:
    status: Status
    counterexample: Any = None
    message: str = ""
    stats: dict = field(default_factory=dict)


def decide_case(network, case, engine=None, settings: SearchSettings | None = None,
                deadline: float | None = None, report=None, executor=None,
                stats: dict | None = None) -> CaseAnswer:
    """Run the search on one case: ``holds`` when every domain is closed, ``violated``
    with a replayed counterexample, else ``unknown`` with the reason.

    ``executor``: an :class:`~nnresilience.parallel.Executor` with more than one worker
    shares the frontier between its workers (:mod:`.parallel`); ``engine`` must then be
    a name (workers build their own).
    """
    st = {} if stats is None else stats
    settings = _affordable(settings or SearchSettings(), deadline)
    if executor is not None and max(1, int(getattr(executor, "workers", 1))) > 1:
        from nnresilience.search.parallel import decide_shared

        return decide_shared(network, case, engine, settings, deadline, report, executor, st)
    eng = _engine(engine)
    per_term = settings.per_term and len(case.unsafe.terms) > 1 \
        and _disjunction_of_terms(case) and settings.resolved_rule(case) == "neuron"
    joint_deadline = deadline
    if per_term and deadline is not None:
        # a short joint search first: its falsifier attacks every term at once from the
        # root's bound witnesses (MNIST-FC 256x2 props 12/13 at ε = 0.05: a witness in
        # the first batch, which no single term's search had found in 60 s)
        joint_deadline = time.monotonic() + JOINT_SHARE * max(0.0, deadline - time.monotonic())
    problem, out = _search_once(network, case, eng, settings, joint_deadline, report, st)
    if per_term and out.status == "timeout" and joint_deadline != deadline:
        joint = {f"joint_{k}": v for k, v in st.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        st.clear()
        st.update(joint)
        return _decide_per_term(network, case, eng, settings, deadline, report, st)
    return _answer(problem, out, st)


#: Seconds left below which ``bounder="auto"`` does not start the optimised bounder when
#: torch is not imported yet: importing it took 1.5-2 s on a quiet 2-core machine and 6.4 s
#: under load, and nothing can interrupt an import (a 2 s query took 7 s).
TORCH_IMPORT_SECONDS = 10.0


def _affordable(settings: SearchSettings, deadline: float | None) -> SearchSettings:
    """``settings`` with the fallback bounder when the optimised one's first import could
    not finish before the deadline."""
    import sys
    from dataclasses import replace

    if settings.bounder != "auto" or deadline is None or "torch" in sys.modules:
        return settings
    if deadline - time.monotonic() >= TORCH_IMPORT_SECONDS:
        return settings
    return replace(settings, bounder="symbolic")


def _disjunction_of_terms(case) -> bool:
    """True when the unsafe set is the plain union of its terms (no top-k counting other
    than "some class beats the label", whose terms are exactly that union)."""
    topk = case.unsafe.topk
    return topk is None or int(topk[1]) == 1


def _decide_per_term(network, case, engine, settings: SearchSettings, deadline, report,
                     st: dict) -> CaseAnswer:
    """The case holds iff no term of its disjunction is reachable: one search per term.

    A joint search closes a domain only when *every* term is excluded there, so its tree
    is in effect the product of the terms' trees; per term, each search branches for its
    own row. Measured on MNIST-FC 256x2 prop 1 at ε = 0.03 (9 terms, load 3 on 2 cores):
    joint, unknown after 60 s (1,944 domains); per term, 47-1,305 domains and 3-8 s each,
    every term closed. The first term not closed ends the case (a witness: violated, it
    lies in the union; a timeout: unknown).
    """
    from nnresilience.spec.condition import OutputCondition
    from nnresilience.spec.property import Case

    n_out = case.unsafe.n_outputs
    per: list[dict] = []
    ans = CaseAnswer(Status.HOLDS, None, "", st)
    for term in _promising_first(network, case, settings.seed):
        sub = Case(case.region, OutputCondition((term,), n_out))
        s_k: dict = {}
        ans = _answer(*_search_once(network, sub, engine, settings, deadline, report, s_k),
                      s_k)
        per.append(s_k)
        if ans.status is not Status.HOLDS:
            break
    for s_k in per:                       # totals over the terms searched
        for key, val in s_k.items():
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                st.setdefault(key, val)
            elif key.startswith("max_"):
                st[key] = max(st.get(key, val), val)
            else:
                st[key] = st.get(key, 0) + val
    st["terms_searched"] = len(per)
    st["terms"] = len(case.unsafe.terms)
    return CaseAnswer(ans.status, ans.counterexample, ans.message, st)


def _search_once(network, case, engine, settings: SearchSettings, deadline, report,
                 st: dict) -> tuple[CaseProblem, SearchOutcome]:
    """One serial search of ``case`` from its root domain."""
    with blas_threads(settings.blas_threads):
        problem = CaseProblem(network, case, engine, settings, st)
        frontier = Frontier(settings.max_bytes)
        frontier.push(problem.root(), np.zeros(1))
        return problem, run(problem, frontier, deadline=deadline, stats=st, report=report)


def _promising_first(network, case, seed: int) -> list:
    """The terms, the one some sampled input comes closest to first: a violated case
    is usually violated in that term, and its search (with its falsifier) then runs
    before the others spend the time proving theirs (MNIST-FC 256x2 props 12/13 at
    ε = 0.05: in the vnnlib order, unknown at 60 s; witnesses exist in later terms)."""
    rng = np.random.default_rng(seed)
    r = case.region
    X = np.vstack([((r.lo + r.hi) / 2.0)[None, :], r.sample(255, rng)])
    Y = network.forward(r.clip(X))
    best = [float(np.max(t.margins(Y).min(axis=-1))) for t in case.unsafe.terms]
    order = np.argsort(-np.asarray(best), kind="stable")
    return [case.unsafe.terms[i] for i in order]


def blas_threads(n: int | None):
    """Context capping BLAS threads (``None``: leave them). The search's matrix products
    are small; on this 2-core machine under load, OpenBLAS with 2 threads ran a
    (16, 256) x (256, 256) product 25x slower than with 1 (busy-waiting threads)."""
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(int(n))


def _engine(engine):
    if engine is None or not isinstance(engine, str):
        return engine
    from nnresilience.engines import get_engine

    return get_engine(engine)


def _answer(problem: CaseProblem, out: SearchOutcome, st: dict) -> CaseAnswer:
    st["rule"] = problem.rule
    st["bounder"] = getattr(problem.bounder, "name", type(problem.bounder).__name__)
    if out.status == "witness":
        return CaseAnswer(Status.VIOLATED, out.witness, "counterexample found by the search",
                          st)
    if out.status == "closed":
        return CaseAnswer(Status.HOLDS, None, "", st)
    if out.status == "timeout":
        return CaseAnswer(Status.UNKNOWN, None, "timeout", st)
    return CaseAnswer(Status.UNKNOWN, None, out.message or out.status, st)


def describe(stats: dict, leaf: str | None, bab: bool) -> str:
    """The honest label of a search: only what was actually called is named.

    ``bab: 1234 domains, 3 MILP leaves`` for the ``bab`` engine (``(1 closed by
    reluplex)`` after the leaves when the exact second look decided some); for another
    engine used at the leaves of an input-splitting search, ``milp on 3 leaves, bounds (symbolic)
    over 2581 boxes`` -- or just ``bounds (symbolic) over 2581 boxes`` when every box
    closed by its bound and the engine was never called.
    """
    doms = int(stats.get("domains", 0))
    leaves = int(stats.get("leaves", 0))
    what = "boxes" if stats.get("rule") == "input" else "domains"
    bounder = stats.get("bounder", "symbolic")
    base = (leaf or "").split(":")[0]
    name = "MILP" if base == "milp" else base
    exact = int(stats.get("exact_closed", 0))
    second = f" ({exact} closed by reluplex)" if exact else ""
    if bab:
        return f"bab: {doms} {what}" + (f", {leaves} {name} leaves{second}" if leaves else "")
    spread = f"bounds ({bounder}) over {doms} {what}"
    return f"{base} on {leaves} leaves{second}, {spread}" if leaves else spread
