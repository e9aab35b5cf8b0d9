"""The branch-and-bound loop, written once for every search over domains.

A *problem* supplies five pieces (:class:`Problem`); the loop only orders and counts::

    frontier = {root}
    while frontier:
        batch   = the lowest-keyed open domains (best-first; deepest-first when memory is tight)
        bounded = problem.bound(batch)            -> key per domain, closed-by-bound mask
        problem.pending()                         -> a witness its concrete check met
        problem.falsify(open part)                -> a witness ends (or improves) the search
        leaves  = problem.leaf_mask(...)          -> decided one by one by problem.leaf
        children = problem.branch(the rest)       -> back on the frontier, keyed by the parent

The search is *complete* when every domain it drops was closed by a bound or a leaf and
the frontier runs empty: then the domains closed cover the root (each branch covers its
parent) and the problem's claim holds on all of it.

``pending`` (optional): a problem may evaluate candidate points while it bounds (the
decision problem's *concrete check*, see :mod:`.decide`), also inside ``branch`` when a
rule bounds children ahead; the driver asks for such a witness after every ``bound`` and
``branch`` call, so one met anywhere ends the search at once.

``dropped`` (optional): a rule that cannot split an open domain (the input splitting of a
box whose every side is at most one float64 step wide) returns no children for it, so the
children do not cover the parent; ``dropped() -> reason | None`` after every ``branch``
call says so, and the search ends ``undecided`` instead of reading the loss as proved.

Extension point (optimisation, e.g. Φ_m branching): a problem whose ``bound`` closes a
domain when its lower bound reaches the best value found so far (the cutoff), whose
``falsify``/``leaf`` return witnesses with their value, and whose ``on_witness`` lowers
the cutoff and answers ``False`` (keep searching) gets ``[min open key, best witness]``
from :func:`run` at any time: ``SearchOutcome.lower`` is the smallest key still open (or
the cutoff once nothing is open). The decision problem of :mod:`.decide` answers ``True``
on its first witness (stop: violated).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from nnresilience.search.domains import Domains, Frontier

#: Batches double while a bound call takes less than this and halve when a call takes
#: more than twice as long. Bounders with a fixed cost per call need large batches: the
#: optimised bounder took 0.55 s for 1 MNIST 256x4 domain and 8.1 s for 128 (16x the
#: throughput); a batch is also cut to fit the time left, and progress is reported by a
#: helper thread meanwhile, so long calls cost no responsiveness.
CALL_SECONDS = 3.0
FIRST_BATCH = 4
MAX_BATCH = 1024


@dataclass
class Bounded:
    """What :meth:`Problem.bound` says about a batch (one entry per domain)."""

    keys: np.ndarray            # priority: lower = more promising / less proven
    closed: np.ndarray          # bool: closed by the bound (or empty)
    result: Any = None          # the bounder's result (rows = domains)

    def select(self, idx) -> Bounded:
        idx = np.asarray(idx)
        return Bounded(self.keys[idx], self.closed[idx],
                       None if self.result is None else self.result.select(idx))


@dataclass
class LeafAnswer:
    """Outcome of one leaf: ``closed``, or ``witness`` (stops or improves), or ``split``
    (the domain goes back to branching, ``children`` if the leaf chose them), or
    ``undecided`` (dropped, the search cannot be complete), with a reason."""

    kind: str
    witness: Any = None
    children: Domains | None = None
    reason: str = ""


@dataclass
class SearchOutcome:
    status: str                 # "closed" | "witness" | "timeout" | "budget" | "undecided"
    witness: Any = None
    message: str = ""
    lower: float = -np.inf      # smallest key still open (+inf when all closed)
    open: Domains | None = None
    open_keys: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class Problem(Protocol):
    def bound(self, doms: Domains, deadline: float | None) -> Bounded: ...
    def falsify(self, doms: Domains, bounded: Bounded, deadline: float | None) -> Any: ...
    def leaf_mask(self, doms: Domains, bounded: Bounded) -> np.ndarray: ...
    def leaf(self, dom: Domains, bounded: Bounded, deadline: float | None) -> LeafAnswer: ...
    def branch(self, doms: Domains, bounded: Bounded, deadline: float | None
               ) -> tuple[Domains, np.ndarray]: ...
    def on_witness(self, witness: Any) -> bool: ...
    # optional: ``pending() -> witness | None`` and ``dropped() -> reason | None``, see
    # the module docstring


def new_stats() -> dict[str, Any]:
    return {"domains": 0, "batches": 0, "closed_bound": 0, "closed_leaf": 0, "leaves": 0,
            "falsified": 0, "concrete_hits": 0, "branched": 0, "undecided": 0, "max_depth": 0,
            "max_open": 0, "seconds_bound": 0.0, "seconds_falsify": 0.0,
            "seconds_leaf": 0.0, "seconds_branch": 0.0}


def run(problem: Problem, frontier: Frontier, *, deadline: float | None = None,
        budget_end: float | None = None, stats: dict | None = None,
        report: Callable[[dict], None] | None = None) -> SearchOutcome:
    """Search until the frontier is empty, a witness stops it, or time runs out.

    ``deadline`` (``time.monotonic()``): the whole search. ``budget_end``: stop *between*
    batches once at least one batch was processed, returning the open domains
    (``status='budget'``) so another worker can go on -- the domains closed so far and the
    ones returned cover what was pushed. ``report(snapshot)`` is called after each batch.
    """
    st = new_stats() if stats is None else stats
    for k, v in new_stats().items():
        st.setdefault(k, v)
    t_start = time.monotonic()
    batch = FIRST_BATCH
    per_domain = 0.0            # running estimate of the seconds a domain costs in a batch
    undecided: list[str] = []
    done_batches = 0
    pending = getattr(problem, "pending", None) or (lambda: None)
    dropped = getattr(problem, "dropped", None) or (lambda: None)

    def concrete_witness():
        """A witness the problem met while bounding, if it ends the search (else None)."""
        witness = pending()
        if witness is None:
            return None
        st["concrete_hits"] += 1
        return witness if problem.on_witness(witness) else None

    def finish(status: str, witness=None, message: str = "") -> SearchOutcome:
        st["max_open"] = max(st["max_open"], frontier.max_size)
        for k in ("seconds_bound", "seconds_falsify", "seconds_leaf", "seconds_branch"):
            st[k] = round(st[k], 4)
        lower = frontier.min_key() if len(frontier) else np.inf
        if status == "budget" or (status == "timeout" and budget_end is not None):
            doms, keys = frontier.drain()
            return SearchOutcome(status, witness, message or status, lower, doms, keys, st)
        return SearchOutcome(status, witness, message, lower, stats=st)

    while len(frontier):
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return finish("timeout")
        if budget_end is not None and done_batches and now >= budget_end:
            return finish("budget")
        take = batch
        if deadline is not None and per_domain > 0:
            # a batch must fit in the time left (the deadline is checked between batches)
            take = int(max(1, min(batch, 0.8 * (deadline - now) / per_domain)))
        t_batch = time.monotonic()
        doms, _keys = frontier.pop(take)
        n = len(doms)
        st["batches"] += 1
        st["domains"] += n
        st["max_depth"] = max(st["max_depth"], int(doms.depth.max(initial=0)))
        t = time.monotonic()
        bounded = problem.bound(doms, deadline)
        dt = time.monotonic() - t
        st["seconds_bound"] += dt
        if (witness := concrete_witness()) is not None:
            return finish("witness", witness)
        if n >= batch and dt < CALL_SECONDS:
            batch = min(2 * batch, MAX_BATCH)
        elif dt > 2 * CALL_SECONDS:
            batch = max(1, batch // 2)
        closed = np.asarray(bounded.closed, dtype=bool)
        st["closed_bound"] += int(closed.sum())
        open_idx = np.flatnonzero(~closed)
        if open_idx.size == 0:
            done_batches += 1
            per_domain = _per_domain(per_domain, (time.monotonic() - t_batch) / n)
            _report(report, st, frontier, t_start, deadline)
            continue
        odoms = doms.take(open_idx)
        obound = bounded.select(open_idx)
        # falsify the most promising open domains
        t = time.monotonic()
        witness = problem.falsify(odoms, obound, deadline)
        st["seconds_falsify"] += time.monotonic() - t
        if witness is not None:
            st["falsified"] += 1
            if problem.on_witness(witness):
                return finish("witness", witness)
        # leaves
        leaf = np.asarray(problem.leaf_mask(odoms, obound), dtype=bool)
        to_branch = list(np.flatnonzero(~leaf))
        extra_children: list[tuple[Domains, np.ndarray]] = []
        for j in np.flatnonzero(leaf):
            if deadline is not None and time.monotonic() >= deadline:
                frontier.push(odoms.take([j]), obound.keys[[j]])
                continue
            t = time.monotonic()
            ans = problem.leaf(odoms.take([j]), obound.select([j]), deadline)
            st["seconds_leaf"] += time.monotonic() - t
            st["leaves"] += 1
            if ans.kind == "closed":
                st["closed_leaf"] += 1
            elif ans.kind == "witness":
                if problem.on_witness(ans.witness):
                    return finish("witness", ans.witness)
                st["closed_leaf"] += 1
            elif ans.kind == "split":
                if ans.children is not None:
                    extra_children.append((ans.children,
                                           np.full(len(ans.children), obound.keys[j])))
                else:
                    to_branch.append(j)
            elif ans.kind == "timeout":
                frontier.push(odoms.take([j]), obound.keys[[j]])
            else:
                st["undecided"] += 1
                undecided.append(ans.reason or "undecided")
        # branch the rest
        if to_branch:
            idx = np.asarray(sorted(to_branch))
            t = time.monotonic()
            kids, kid_keys = problem.branch(odoms.take(idx), obound.select(idx), deadline)
            st["seconds_branch"] += time.monotonic() - t
            st["branched"] += len(idx)
            frontier.push(kids, kid_keys)
            why = dropped()
            if why:                 # open domains without children: not covered
                st["undecided"] += 1
                undecided.append(why)
            if (witness := concrete_witness()) is not None:
                return finish("witness", witness)
        for kids, kid_keys in extra_children:
            frontier.push(kids, kid_keys)
        done_batches += 1
        per_domain = _per_domain(per_domain, (time.monotonic() - t_batch) / n)
        _report(report, st, frontier, t_start, deadline)
    if undecided:
        return finish("undecided", message=undecided[0])
    return finish("closed")


def _per_domain(old: float, new: float) -> float:
    return new if old <= 0 else 0.7 * old + 0.3 * new


def _report(report, st: dict, frontier: Frontier, t_start: float, deadline) -> None:
    if report is None:
        return
    now = time.monotonic()
    report({"phase": "search", "open": len(frontier),
            "closed": st["closed_bound"] + st["closed_leaf"],
            "best_lower": float(frontier.min_key()) if len(frontier) else None,
            "domains": st["domains"], "leaves": st["leaves"],
            "elapsed": round(now - t_start, 3),
            "time_left": None if deadline is None else round(max(0.0, deadline - now), 3)})
