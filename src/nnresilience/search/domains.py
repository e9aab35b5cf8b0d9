"""Domains (input box + pre-activation clamps), batched, and the frontier of open ones.

A domain's input set is ``{x in [lo, hi] : z_i(x) in [clo_i, chi_i] for every clamped
neuron}`` (``z_i`` the vector entering non-linear layer ``i`` of the *merged* network).
A ReLU/LeakyReLU phase split is ``chi = 0`` (inactive) or ``clo = 0`` (active); an
s-shaped neuron or an input dimension is split by cutting its interval at one float
``c``: the children get ``[lo, c]`` and ``[c, hi]`` -- the same float on both sides, so
the children cover the parent exactly (points on the cut belong to both, harmlessly).

A batch is a :class:`Domains`: arrays whose first axis is the domain. Clamps are dense per
layer (``(B, width)`` with ``-inf``/``+inf`` where a neuron is free) and present only for
layers where some domain of the batch has a clamp. ``warm`` is whatever the bounder
returned as ``state`` for the parent (children start from it); ``cached`` holds bounds
already computed for the domain (look-ahead children), so the search need not bound it
again.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.search.bounder import BoundResult, concat_results, concat_rows, take_rows


@dataclass(eq=False)
class Domains:
    lo: np.ndarray
    hi: np.ndarray
    clamps: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    depth: np.ndarray | None = None
    warm: Any = None
    cached: BoundResult | None = None

    def __post_init__(self) -> None:
        self.lo = np.atleast_2d(np.asarray(self.lo, dtype=np.float64))
        self.hi = np.atleast_2d(np.asarray(self.hi, dtype=np.float64))
        if self.depth is None:
            self.depth = np.zeros(self.lo.shape[0], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.lo.shape[0])

    @staticmethod
    def root(lo: np.ndarray, hi: np.ndarray) -> Domains:
        return Domains(np.asarray(lo, float)[None, :].copy(), np.asarray(hi, float)[None, :].copy())

    def take(self, idx) -> Domains:
        idx = np.asarray(idx)
        return Domains(self.lo[idx], self.hi[idx],
                       {k: (a[idx], b[idx]) for k, (a, b) in self.clamps.items()},
                       self.depth[idx], take_rows(self.warm, idx),
                       None if self.cached is None else self.cached.select(idx))

    @staticmethod
    def concat(parts: list[Domains]) -> Domains:
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        layers = sorted(set().union(*[p.clamps.keys() for p in parts]))
        clamps = {}
        for k in layers:
            los, his = [], []
            for p in parts:
                if k in p.clamps:
                    los.append(p.clamps[k][0])
                    his.append(p.clamps[k][1])
                else:
                    w = next(q.clamps[k][0].shape[1] for q in parts if k in q.clamps)
                    los.append(np.full((len(p), w), -np.inf))
                    his.append(np.full((len(p), w), np.inf))
            clamps[k] = (np.concatenate(los), np.concatenate(his))
        warm = None if any(p.warm is None for p in parts) else concat_rows(
            [p.warm for p in parts])
        cached = None if any(p.cached is None for p in parts) else concat_results(
            [p.cached for p in parts])
        return Domains(np.concatenate([p.lo for p in parts]),
                       np.concatenate([p.hi for p in parts]), clamps,
                       np.concatenate([p.depth for p in parts]), warm, cached)

    def nbytes(self) -> int:
        n = self.lo.nbytes + self.hi.nbytes + self.depth.nbytes
        n += sum(a.nbytes + b.nbytes for a, b in self.clamps.values())
        return n + _nbytes(self.warm) + (0 if self.cached is None else _nbytes(
            (self.cached.pre_lo, self.cached.pre_hi, self.cached.x_best)))

    def clamp_arrays(self, layer: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Writable copies of the clamps of ``layer`` (free where none is set)."""
        if layer in self.clamps:
            a, b = self.clamps[layer]
            return a.copy(), b.copy()
        B = len(self)
        return np.full((B, width), -np.inf), np.full((B, width), np.inf)


def _nbytes(obj: Any) -> int:
    if obj is None:
        return 0
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    return 0


class Frontier:
    """Open domains, popped best-first (lowest key), depth-first once memory is tight.

    Domains are kept in the batches they were pushed in (no per-domain Python objects
    beyond a heap entry); :meth:`pop` gathers the chosen rows from their batches.
    ``max_bytes``: past it the order becomes deepest-first (closing whole sub-trees frees
    memory), and back to best-first below half of it.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self._chunks: dict[int, Domains] = {}
        self._live: dict[int, int] = {}
        self._heap: list = []
        self._keys: dict[tuple[int, int], float] = {}
        self._ids = itertools.count()
        self._seq = itertools.count()
        self.bytes = 0
        self.depth_first = False
        self.max_size = 0

    def __len__(self) -> int:
        return len(self._keys)

    def push(self, domains: Domains, keys: np.ndarray) -> None:
        if not len(domains):
            return
        cid = next(self._ids)
        self._chunks[cid] = domains
        self._live[cid] = len(domains)
        self.bytes += domains.nbytes()
        keys = np.asarray(keys, dtype=np.float64)
        for r in range(len(domains)):
            k = float(keys[r])
            self._keys[(cid, r)] = k
            heapq.heappush(self._heap, (self._order(k, int(domains.depth[r])),
                                        next(self._seq), cid, r))
        self.max_size = max(self.max_size, len(self))
        self._maybe_switch()

    def _order(self, key: float, depth: int) -> tuple:
        return (-depth, key) if self.depth_first else (key, -depth)

    def _maybe_switch(self) -> None:
        want = self.depth_first
        if self.bytes > self.max_bytes:
            want = True
        elif self.bytes < self.max_bytes // 2:
            want = False
        if want != self.depth_first:
            self.depth_first = want
            self._heap = [(self._order(k, int(self._chunks[c].depth[r])), next(self._seq), c, r)
                          for (c, r), k in self._keys.items()]
            heapq.heapify(self._heap)

    def min_key(self) -> float:
        return min(self._keys.values(), default=np.inf)

    def pop(self, k: int) -> tuple[Domains, np.ndarray]:
        """Up to ``k`` domains and their keys."""
        picked: list[tuple[int, int]] = []
        while self._heap and len(picked) < k:
            _, _, cid, r = heapq.heappop(self._heap)
            if (cid, r) in self._keys:
                picked.append((cid, r))
        if not picked:
            return Domains(np.zeros((0, 1)), np.zeros((0, 1))), np.zeros(0)
        keys = np.array([self._keys.pop(p) for p in picked])
        parts, order = [], []
        by_chunk: dict[int, list[int]] = {}
        for n, (cid, r) in enumerate(picked):
            by_chunk.setdefault(cid, []).append(r)
            order.append(n)
        pos = []
        for cid, rows in by_chunk.items():
            parts.append(self._chunks[cid].take(rows))
            pos.extend(n for n, p in enumerate(picked) if p[0] == cid)
            self._live[cid] -= len(rows)
            if self._live[cid] == 0:
                self.bytes -= self._chunks[cid].nbytes()
                del self._chunks[cid], self._live[cid]
        out = Domains.concat(parts)
        inv = np.argsort(np.asarray(pos))
        self._maybe_switch()
        return out.take(inv), keys

    def drain(self) -> tuple[Domains | None, np.ndarray]:
        """Every open domain (the frontier is left empty)."""
        if not len(self):
            return None, np.zeros(0)
        return self.pop(len(self))
