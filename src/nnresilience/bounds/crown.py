"""Optimised linear bounds (the α-CROWN / β-CROWN ideas), batched over domains, in torch.

:class:`CrownBounder` bounds ``C @ y`` (``y`` the logits of a network of affine, (Leaky)ReLU,
max-pool and s-shaped layers; the branch-and-bound driver passes ``Network.merged()``, but
consecutive affine or non-linear layers are fine) from below over a batch of **domains**: an
input box plus pre-activation clamps ``z_i in [clo, chi]`` (the contract with the
branch-and-bound driver, ``tools/tasks/INTERFACE-crown-search.md``). One domain's bound is
a back-substitution (CROWN): start from ``C`` on the output, replace each layer by a
linear bound going backward (affine: exactly; activation: by a lower or upper line of
:mod:`.crown_relax`, picked by the sign of the coefficient), and minimise the resulting
linear function of the input over the box. Three things are optimised by projected Adam, per domain:

* **α**: the lower slope of each unstable (Leaky)ReLU, anywhere in ``[k, 1]`` (valid for
  every value, see :mod:`.crown_relax`), one per (domain, spec row, neuron) for the
  final bound and one per (domain, target neuron, neuron) for intermediate bounds when
  these are optimised (``intermediate="optimise"``, the default at the root);
* **β** >= 0: Lagrange multipliers of the clamps. For every ``x`` of the domain,
  ``beta_lo (z - clo) >= 0`` and ``beta_hi (chi - z) >= 0``, so subtracting them from the
  objective keeps it a lower bound; added where the backward pass reaches ``z``, they let
  a split constrain *earlier* layers, not only the box of the split neuron;
* the clamps also shrink the intermediate boxes (``box ∩ [clo, chi]``), which makes split
  neurons stable.

Whatever dtype the optimisation uses (``dtype="float32"`` by default), **no number from an
optimisation pass is ever returned as a bound**. The returned bounds come from one final
pass in float64 with the chosen parameters, following the rule of
:mod:`~nnresilience.bounds.rounding`: the real-arithmetic bound of the *exact* network is
widened by the rounding error of its own computation (from the magnitudes of every term it
summed: ``|A| (|W| m + |b|)`` per affine step, ``|A'| m + |A||intercepts|`` per relaxation
step, the β terms, the final box step), and the result is widened by the forward error
``e_i`` (entry boxes) or ``|C| e_out`` (the spec rows) plus the rounding of evaluating
``C y`` in float64. Boxes used to build relaxations contain the exact values (the clamps
are on exact values: children of a split cover their parent for either reading).

Intermediate boxes, per call: ``optimise`` (α of the intermediate targets optimised with
the final objective, recomputed every iteration), ``crown`` (one CROWN pass, then fixed),
``reuse`` (the boxes of the warm state ∩ clamps; only valid for descendants, which is
checked: the warm state records its domain, and a row whose domain is not contained in it
ignores those boxes). ``auto``: ``optimise`` without warm start (``crown`` for batches of
more than :data:`OPTIMISE_MAX_BATCH` domains), else ``reuse`` when every input box equals
the warm one, else ``crown``.

Scale: loops run over layers and iterations only; domains are processed in chunks so that
the coefficient tensors stay within ``memory_budget`` numbers. torch is imported lazily.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from nnresilience.bounds import rounding
from nnresilience.bounds.relax import PIECEWISE, S_SHAPED
from nnresilience.errors import ShapeMismatchError

#: Default options of :class:`CrownBounder` (see its docstring).
DEFAULTS: dict[str, Any] = {
    "dtype": "float32",
    "lr_alpha": 0.1,
    "lr_beta": 0.05,
    "lr_decay": 0.98,
    "intermediate": "auto",
    "objective": "spec",
    "beta": True,
    "upper": False,
    "threshold": None,
    "memory_budget": 2 ** 25,
    "threads": None,
    "dense_limit": 4_000_000,
    "all_rows": True,
    "sshape_alpha": True,
}
INTERMEDIATE_MODES = ("auto", "optimise", "crown", "reuse")
#: ``intermediate="auto"`` without a warm start optimises intermediate bounds for batches
#: up to this size (roots), and uses one CROWN pass for larger ones.
OPTIMISE_MAX_BATCH = 8
#: Before timing it, the float64 pass with s-shaped tangent points is assumed to cost at
#: most this many times the fixed-line pass (measured: 2-6 times on the digits 6x100
#: sigmoid net, batches of 1 and 8, intermediate bounds optimised).
TANGENT_PASS_GUESS = 16.0
#: Weight of the lower-line gap in the branching score (the upper-line intercept, which a
#: split removes, has weight 1). Measured on MNIST 256x2 prop_3_0.03 with a simple
#: best-first neuron-split search (batches of 128, 20 steps): weight 0 proved it in 27
#: batches, weight 1 left 1053 domains open after 25 (worst bound -0.91). A small weight
#: only breaks ties (e.g. units with positive coefficients only).
LOWER_GAP_WEIGHT = 1e-3


def _torch():
    import torch

    return torch


_IMPORTER: list = []


def _import_torch_within(seconds: float) -> bool:
    """Import torch, waiting at most ``seconds``: the import runs in a thread that is left
    to finish in the background if it takes longer (it cannot be interrupted, and a busy
    machine has been measured to take over 10 s for it), so a deadline holds."""
    if "torch" in sys.modules and not (_IMPORTER and _IMPORTER[0].is_alive()):
        return True
    if seconds <= 0:
        return False
    if not _IMPORTER:
        import threading

        th = threading.Thread(target=_torch, name="nnres-import-torch", daemon=True)
        th.start()
        _IMPORTER.append(th)
    _IMPORTER[0].join(timeout=seconds)
    return not _IMPORTER[0].is_alive()


def _set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads for a call and return the previous count.

    Default: one thread, or ``OMP_NUM_THREADS`` if that is lower (worker processes run
    with 1). Measured on the shared 2-core machine, 2 threads made a 64-domain MNIST 256x2
    batch 10x *slower* (OpenMP barriers under oversubscription); pass ``threads=2`` on an
    idle machine (``benchmarks/crown.py`` measures both)."""
    torch = _torch()
    budget = 1 if threads is None else int(threads)
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) >= 1:
        budget = min(budget, int(env))
    prev = torch.get_num_threads()
    if prev != budget:
        torch.set_num_threads(max(1, budget))
    return prev


# --------------------------------------------------------------------------- state/result
@dataclass
class CrownState:
    """Optimised parameters and the domain they belong to, one row per domain.

    ``alpha[j]``: (B, R, w_j) lower slopes of layer ``j`` for the final bound; ``beta[j]``:
    ``(beta_lo, beta_hi)`` each (B, R, w_j); ``boxes[i]``: exact (B, w_i) boxes of the
    pre-activation entries, valid for the domain ``lo, hi, clamps`` recorded here (and for
    any subset of it); ``lower``/``upper`` its sound bounds; ``coef[j]`` (B, R, w_j) the final
    coefficients on layer ``j``'s output (for the β start of new splits). Arrays are numpy:
    float16 parameters and coefficients (starting points only: halves the memory a search
    keeps), float64 boxes, bounds and domains.
    """

    alpha: dict[int, np.ndarray] = field(default_factory=dict)
    beta: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    clamps: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    coef: dict[int, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return 0 if self.lo is None else int(self.lo.shape[0])

    def select(self, idx) -> CrownState:
        """Rows ``idx`` (ints, repeats allowed, or a boolean mask) of every array."""
        idx = np.asarray(idx)
        return CrownState(
            alpha={j: a[idx] for j, a in self.alpha.items()},
            beta={j: (b[0][idx], b[1][idx]) for j, b in self.beta.items()},
            lo=None if self.lo is None else self.lo[idx],
            hi=None if self.hi is None else self.hi[idx],
            clamps={i: (c[0][idx], c[1][idx]) for i, c in self.clamps.items()},
            boxes={i: (b[0][idx], b[1][idx]) for i, b in self.boxes.items()},
            lower=None if self.lower is None else self.lower[idx],
            upper=None if self.upper is None else self.upper[idx],
            coef={j: a[idx] for j, a in self.coef.items()})

    @staticmethod
    def concat(states: list[CrownState]) -> CrownState:
        """Stack states of different calls (missing β / clamps / boxes become neutral:
        zero multipliers, infinite clamps and boxes; a missing α drops α for all)."""
        states = [s for s in states if len(s)]
        if not states:
            return CrownState()
        if len(states) == 1:
            return states[0]
        sizes = [len(s) for s in states]

        def fill(arrs, value, dtype):
            ref = next(a for a in arrs if a is not None)
            return np.concatenate([a if a is not None else
                                   np.full((n,) + ref.shape[1:], value, dtype=dtype)
                                   for a, n in zip(arrs, sizes, strict=True)])

        alpha = {}
        common = set.intersection(*[set(s.alpha) for s in states])
        for j in common:
            alpha[j] = np.concatenate([s.alpha[j] for s in states])
        coef = {j: np.concatenate([s.coef[j] for s in states])
                for j in set.intersection(*[set(s.coef) for s in states])}
        beta = {}
        for j in set().union(*[set(s.beta) for s in states]):
            lo_ = fill([s.beta.get(j, (None, None))[0] for s in states], 0.0, np.float16)
            hi_ = fill([s.beta.get(j, (None, None))[1] for s in states], 0.0, np.float16)
            beta[j] = (lo_, hi_)
        clamps = {}
        for i in set().union(*[set(s.clamps) for s in states]):
            clamps[i] = (fill([s.clamps.get(i, (None, None))[0] for s in states],
                              -np.inf, np.float64),
                         fill([s.clamps.get(i, (None, None))[1] for s in states],
                              np.inf, np.float64))
        boxes = {}
        for i in set().union(*[set(s.boxes) for s in states]):
            boxes[i] = (fill([s.boxes.get(i, (None, None))[0] for s in states],
                             -np.inf, np.float64),
                        fill([s.boxes.get(i, (None, None))[1] for s in states],
                             np.inf, np.float64))
        def rows(name, value):
            arrs = [getattr(s, name) for s in states]
            if all(a is None for a in arrs):
                return None
            width = next(a for a in arrs if a is not None).shape[1]
            return np.concatenate([a if a is not None else np.full((n, width), value)
                                   for a, n in zip(arrs, sizes, strict=True)])

        return CrownState(alpha=alpha, beta=beta,
                          lo=np.concatenate([s.lo for s in states]),
                          hi=np.concatenate([s.hi for s in states]),
                          clamps=clamps, boxes=boxes, lower=rows("lower", -np.inf),
                          upper=rows("upper", np.inf), coef=coef)


@dataclass
class CrownResult:
    """Sound float64 bounds of ``C @ y`` per domain, and what the search needs next.

    ``lower``/``upper`` (B, R) (``+inf``/``-inf`` for a domain whose clamps are
    infeasible); ``pre_lo``/``pre_hi``: per entry of ``network.layers`` (+ the output),
    (B, width) boxes containing the float64 forward values (clamps intersected; entry 0 is
    the input box); ``x_best`` (B, R, n_inputs): the box vertex minimising each row's
    linear lower bound; ``scores[j]`` (B, w_j) >= 0 for each elementwise non-linear layer
    ``j``: estimated gain of splitting that neuron; ``state``: see :class:`CrownState`.
    ``stats``: iterations run, seconds, mode.
    """

    lower: np.ndarray
    upper: np.ndarray | None
    pre_lo: list[np.ndarray]
    pre_hi: list[np.ndarray]
    x_best: np.ndarray
    scores: dict[int, np.ndarray]
    state: CrownState
    stats: dict[str, Any] = field(default_factory=dict)

    def select(self, idx) -> CrownResult:
        idx = np.asarray(idx)
        return CrownResult(
            lower=self.lower[idx], upper=None if self.upper is None else self.upper[idx],
            pre_lo=[a[idx] for a in self.pre_lo], pre_hi=[a[idx] for a in self.pre_hi],
            x_best=self.x_best[idx], scores={j: s[idx] for j, s in self.scores.items()},
            state=self.state.select(idx), stats=dict(self.stats))

    @staticmethod
    def concat(results: list[CrownResult]) -> CrownResult:
        r0 = results[0]
        if len(results) == 1:
            return r0
        cat = np.concatenate
        return CrownResult(
            lower=cat([r.lower for r in results]),
            upper=None if r0.upper is None else cat([r.upper for r in results]),
            pre_lo=[cat(a) for a in zip(*[r.pre_lo for r in results], strict=True)],
            pre_hi=[cat(a) for a in zip(*[r.pre_hi for r in results], strict=True)],
            x_best=cat([r.x_best for r in results]),
            scores={j: cat([r.scores[j] for r in results]) for j in r0.scores},
            state=CrownState.concat([r.state for r in results]),
            stats=_merge_stats([r.stats for r in results]))


def _merge_stats(stats: list[dict]) -> dict:
    out = dict(stats[0])
    out["iterations"] = max(s.get("iterations", 0) for s in stats)
    out["seconds"] = sum(s.get("seconds", 0.0) for s in stats)
    out["chunks"] = sum(s.get("chunks", 1) for s in stats)
    out["modes"] = sorted({m for s in stats for m in s.get("modes", [s.get("mode")])})
    return out


# --------------------------------------------------------------------------- torch layers
class _Mat:
    """A weight matrix as torch data: ``right(A) = A @ W`` for (B, R, out) coefficients and
    ``apply(x) = x @ W.T`` for (B, in) vectors; dense, or sparse (COO) when large."""

    def __init__(self, W, dtype, device, dense_limit: int) -> None:
        torch = _torch()
        self.sparse = sp.issparse(W) and W.shape[0] * W.shape[1] > dense_limit
        if self.sparse:
            W = sp.coo_matrix(W)
            WT = W.T.tocoo()
            self.W = torch.sparse_coo_tensor(np.vstack([W.row, W.col]), W.data, W.shape,
                                             dtype=dtype, device=device,
                                             check_invariants=True).coalesce()
            self.WT = torch.sparse_coo_tensor(np.vstack([WT.row, WT.col]), WT.data, WT.shape,
                                              dtype=dtype, device=device,
                                              check_invariants=True).coalesce()
        else:
            dense = W.toarray() if sp.issparse(W) else np.asarray(W)
            self.W = torch.as_tensor(np.ascontiguousarray(dense), dtype=dtype, device=device)
        self.shape = tuple(W.shape)

    def right(self, A):
        if not self.sparse:
            return A @ self.W
        torch = _torch()
        B, R, o = A.shape
        out = torch.sparse.mm(self.WT, A.reshape(B * R, o).T).T
        return out.reshape(B, R, self.shape[1])

    def apply(self, x):
        if not self.sparse:
            return x @ self.W.T
        torch = _torch()
        return torch.sparse.mm(self.W, x.T).T


class _TLayers:
    """Torch copies of the affine layers of a network for one dtype (built on demand)."""

    def __init__(self, layers, dtype, device, dense_limit: int, sound: bool) -> None:
        torch = _torch()
        self.mats: dict[int, dict[str, Any]] = {}
        for j, layer in enumerate(layers):
            if layer.kind == "affine":
                W = layer.W
                d: dict[str, Any] = {
                    "W": _Mat(W, dtype, device, dense_limit),
                    "absW": _Mat(abs(W) if sp.issparse(W) else np.abs(W), dtype, device,
                                 dense_limit),
                    "b": torch.as_tensor(layer.b, dtype=dtype, device=device),
                }
                if sound:
                    Wp = W.maximum(0) if sp.issparse(W) else np.maximum(W, 0.0)
                    Wn = W.minimum(0) if sp.issparse(W) else np.minimum(W, 0.0)
                    d["Wpos"] = _Mat(Wp, dtype, device, dense_limit)
                    d["Wneg"] = _Mat(Wn, dtype, device, dense_limit)
                    d["absb"] = d["b"].abs()
                self.mats[j] = d
            elif layer.kind == "maxpool":
                self.mats[j] = {"groups": torch.as_tensor(layer.groups, device=device)}


def _row_terms(W) -> int:
    if sp.issparse(W):
        return int(np.diff(sp.csr_matrix(W).indptr).max(initial=0))
    return int(W.shape[1])


# --------------------------------------------------------------------------- the bounder
class CrownBounder:
    """Batched optimised linear bounds of ``C @ y`` over domains (see the module doc).

    Options (keyword, defaults in :data:`DEFAULTS`): ``dtype`` of the optimisation passes
    (``float32`` or ``float64``; the returned bounds are always from a float64 pass);
    ``lr_alpha``, ``lr_beta``, ``lr_decay`` (Adam step sizes, multiplied by ``lr_decay``
    each iteration); ``intermediate`` (``auto``, ``optimise``, ``crown``, ``reuse``);
    ``objective`` (``spec``: maximise the spec rows; ``boxes``: also every intermediate
    bound, for per-neuron boxes); ``beta`` (optimise clamp multipliers); ``upper`` (also
    bound ``C y`` from above); ``threshold`` (scalar or (R,): stop optimising once every
    row of every domain is above it, and weight the branching scores to rows still below);
    ``memory_budget`` (numbers per coefficient-tensor chunk); ``threads`` (torch threads,
    default 1, see :func:`_set_threads`); ``dense_limit`` (sparse weight matrices with
    more entries stay sparse in torch); ``all_rows`` (the float64 pass back-substitutes
    every neuron of an intermediate layer, not only the unstable ones: a little slower,
    and never looser than ``symbolic``).
    """

    def __init__(self, network, C: np.ndarray, *, device: str = "cpu", **options) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown CrownBounder options: {sorted(unknown)}")
        self.opts = {**DEFAULTS, **options}
        if self.opts["intermediate"] not in INTERMEDIATE_MODES:
            raise ValueError(f"intermediate must be one of {INTERMEDIATE_MODES}")
        if self.opts["dtype"] not in ("float32", "float64"):
            raise ValueError("dtype must be float32 or float64")
        self.network = network
        self.layers = list(network.layers)
        self.n = len(self.layers)
        for layer in self.layers:
            if layer.kind != "affine" and layer.kind not in PIECEWISE + S_SHAPED + ("maxpool",):
                raise NotImplementedError(f"CROWN has no relaxation for {layer.kind!r}")
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        if C.shape[1] != network.n_outputs:
            raise ShapeMismatchError(f"spec matrix has {C.shape[1]} columns, the network has "
                                     f"{network.n_outputs} outputs")
        self.C = C
        self.R = C.shape[0]
        self.C_all = np.vstack([C, -C]) if self.opts["upper"] else C
        self.device = device
        thr = self.opts["threshold"]
        self.threshold = None if thr is None else np.broadcast_to(
            np.asarray(thr, dtype=np.float64), (self.R,)).copy()
        #: entries bounded by back-substitution: inputs of non-linear layers produced by an
        #: affine layer (entry 1 is exact by interval; others are monotone images)
        self.targets = [i for i in range(2, self.n) if self.layers[i].kind != "affine"
                        and self.layers[i - 1].kind == "affine"]
        self.nonlinear = [i for i in range(self.n) if self.layers[i].kind != "affine"]
        self.piecewise = [i for i in self.nonlinear if self.layers[i].kind in PIECEWISE]
        #: s-shaped layers whose tangent points are optimised (``sshape_alpha``)
        self.sshaped = ([i for i in self.nonlinear if self.layers[i].kind in S_SHAPED]
                        if self.opts["sshape_alpha"] else [])
        self.terms = {j: _row_terms(layer.W) for j, layer in enumerate(self.layers)
                      if layer.kind == "affine"}
        self._tl: dict[tuple[str, bool], _TLayers] = {}

    # ------------------------------------------------------------------ helpers
    def _dtype(self, name: str):
        torch = _torch()
        return torch.float32 if name == "float32" else torch.float64

    def _t(self, dtype_name: str, sound: bool) -> _TLayers:
        key = (dtype_name, sound)
        if key not in self._tl:
            self._tl[key] = _TLayers(self.layers, self._dtype(dtype_name), self.device,
                                     self.opts["dense_limit"], sound)
        return self._tl[key]

    def _per_domain_cost(self, mode: str) -> int:
        """Numbers held per domain by the largest pass (coefficient tensors; autograd keeps
        every step of an optimisation pass)."""
        widths = [self.layers[0].in_size] + [lay.out_size for lay in self.layers]
        R = self.C_all.shape[0]
        final = R * sum(widths) * 4
        if mode == "reuse":
            return final
        # the float64 pass back-substitutes every row of the widest target at once
        one = max([2 * widths[t] * max(widths[:t]) for t in self.targets] + [0])
        if mode == "crown":
            return final + 2 * one
        inter = sum(2 * widths[t] * sum(widths[:t]) for t in self.targets)
        return final + 3 * inter

    # ------------------------------------------------------------------ public API
    def bound(self, lo, hi, clamps=None, *, iters: int = 20, warm: CrownState | None = None,
              deadline: float | None = None) -> CrownResult:
        """Sound bounds of ``C @ y`` over each domain (see :class:`CrownResult`).

        ``lo, hi`` (B, n_inputs); ``clamps`` {non-linear layer index: (clo, chi)} each
        (B, width); ``iters`` optimisation steps (0: plain CROWN / warm parameters);
        ``warm`` a state of these domains or of their ancestors; ``deadline`` a
        ``time.perf_counter()`` value after which optimisation stops (the float64 pass
        still runs).
        """
        t0 = time.perf_counter()
        prev_threads = _set_threads(self.opts["threads"])
        try:
            return self._bound(lo, hi, clamps, iters, warm, deadline, t0)
        finally:
            # a lower count is restored, a higher one is not: going back to 2 threads
            # between calls made the next root calls of a search 4-6x slower on the
            # 2-core machine (tanh 6x100 digits, 8-10 s instead of 1.6-2 s; the second
            # OpenMP thread kept a core busy)
            if prev_threads < _torch().get_num_threads():
                _torch().set_num_threads(prev_threads)

    def _bound(self, lo, hi, clamps, iters, warm, deadline, t0) -> CrownResult:
        lo = np.atleast_2d(np.asarray(lo, dtype=np.float64))
        hi = np.atleast_2d(np.asarray(hi, dtype=np.float64))
        if lo.shape != hi.shape or lo.shape[1] != self.network.n_inputs:
            raise ShapeMismatchError(f"domain boxes have shape {lo.shape}/{hi.shape}, "
                                     f"expected (B, {self.network.n_inputs})")
        B = lo.shape[0]
        if B == 0:
            raise ShapeMismatchError("no domains to bound (empty batch)")
        clamps = self._check_clamps(clamps or {}, B)
        if warm is not None and len(warm) != B:
            raise ShapeMismatchError(f"warm state has {len(warm)} rows for {B} domains")
        mode = self._mode(lo, hi, clamps, warm)
        step = max(1, self.opts["memory_budget"] // max(1, self._per_domain_cost(mode)))
        results = []
        for s in range(0, B, step):
            e = min(B, s + step)
            rows = np.arange(s, e)
            dl = deadline
            if deadline is not None:
                left = max(0.0, deadline - time.perf_counter())
                dl = time.perf_counter() + left * (e - s) / (B - s)
            results.append(self._bound_chunk(
                lo[rows], hi[rows], {i: (c[0][rows], c[1][rows]) for i, c in clamps.items()},
                iters, None if warm is None else warm.select(rows), dl, mode))
        res = CrownResult.concat(results)
        res.stats["seconds"] = time.perf_counter() - t0
        return res

    def _check_clamps(self, clamps, B):
        out = {}
        for i, (clo, chi) in clamps.items():
            i = int(i)
            if i not in self.nonlinear:
                raise ValueError(f"clamps on layer {i}, which is not a non-linear layer of "
                                 "the network")
            w = self.layers[i].in_size
            clo = np.broadcast_to(np.asarray(clo, dtype=np.float64), (B, w))
            chi = np.broadcast_to(np.asarray(chi, dtype=np.float64), (B, w))
            out[i] = (clo, chi)
        return out

    def _mode(self, lo, hi, clamps, warm) -> str:
        mode = self.opts["intermediate"]
        if mode != "auto":
            return mode
        if warm is None or warm.lo is None or not warm.boxes:
            # optimising every intermediate bound costs ~(layers / 2) times the final
            # one per step: worth it for a root, not for a large cold batch
            return "optimise" if lo.shape[0] <= OPTIMISE_MAX_BATCH else "crown"
        same = np.array_equal(warm.lo, lo) and np.array_equal(warm.hi, hi)
        return "reuse" if same and bool(self._descends(lo, hi, clamps, warm).all()) else "crown"

    @staticmethod
    def _descends(lo, hi, clamps, warm) -> np.ndarray:
        """Rows whose domain lies inside the warm state's domain (so its boxes apply)."""
        ok = np.all(lo >= warm.lo, axis=1) & np.all(hi <= warm.hi, axis=1)
        for i, (pclo, pchi) in warm.clamps.items():
            clo, chi = clamps.get(i, (None, None))
            if clo is None:
                ok &= np.all(np.isneginf(pclo), axis=1) & np.all(np.isposinf(pchi), axis=1)
            else:
                ok &= np.all(clo >= pclo, axis=1) & np.all(chi <= pchi, axis=1)
        return ok

    # ------------------------------------------------------------------ one chunk
    def _bound_chunk(self, lo, hi, clamps, iters, warm, deadline, mode) -> CrownResult:
        torch = _torch()
        t0 = time.perf_counter()
        B = lo.shape[0]
        dev = self.device
        f64 = torch.float64
        prior: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ok = None
        if warm is not None and warm.lo is not None:
            ok = self._descends(lo, hi, clamps, warm)
            for i, (blo, bhi) in warm.boxes.items():
                prior[i] = (np.where(ok[:, None], blo, -np.inf),
                            np.where(ok[:, None], bhi, np.inf))
        ctx64 = self._ctx(lo, hi, clamps, prior, f64)
        opt_name = self.opts["dtype"]
        odt = self._dtype(opt_name)
        Ca = torch.as_tensor(self.C_all, dtype=f64, device=dev)

        fixed = mode in ("crown", "reuse")
        T64 = self._t("float64", True)
        with torch.no_grad():
            # The float64 pass of the initial parameters doubles as the setup: its boxes are
            # the fixed ones (crown / reuse) or the start of the optimisation (optimise).
            t_setup = time.perf_counter()
            boxes64, relax64, infeas, rows = self._propagate(
                T64, ctx64, "crown" if mode == "optimise" else mode, {}, sound=True)
            boxes_o = [(a.to(odt), b.to(odt)) for a, b in boxes64]
            relax_o = {j: _cast_relax(r, odt) for j, r in relax64.items()}
            t_setup = time.perf_counter() - t_setup

        # parameters: final-bound alphas (B, R, w), betas, intermediate alphas
        R2 = Ca.shape[0]
        alpha = {}
        warm_alpha = False
        for j in self.piecewise:
            rel = relax_o[j]
            init = rel.la.expand(B, R2, -1).clone()
            if warm is not None and j in warm.alpha and warm.alpha[j].shape[1:] == init.shape[1:]:
                w_a = torch.as_tensor(warm.alpha[j], dtype=odt, device=dev)
                init = torch.where(rel.unstable, w_a, init)
                warm_alpha = True
            alpha[j] = init.clamp(rel.slope, 1.0)
        warm_tangents = False
        for j in self.sshaped:
            # tangent points: the middle of each valid range (the midpoint tangent of the
            # fixed relaxation on a convex / concave piece)
            init = torch.full((B, R2, self.layers[j].in_size), 0.5, dtype=odt, device=dev)
            if warm is not None and j in warm.alpha and warm.alpha[j].shape[1:] == init.shape[1:]:
                init = torch.as_tensor(warm.alpha[j], dtype=odt, device=dev).clamp(0.0, 1.0)
                warm_alpha = warm_tangents = True
            alpha[j] = init
        beta = {}
        beta_zero = {}              # the same without the parent-matching start of new splits
        hinted = False
        if self.opts["beta"]:
            for i, (clo, _chi) in clamps.items():
                w = clo.shape[1]
                blo = torch.zeros((B, R2, w), dtype=odt, device=dev)
                bhi = torch.zeros((B, R2, w), dtype=odt, device=dev)
                if warm is not None and i in warm.beta and warm.beta[i][0].shape[1:] == (R2, w):
                    blo = torch.as_tensor(warm.beta[i][0], dtype=odt, device=dev).clone()
                    bhi = torch.as_tensor(warm.beta[i][1], dtype=odt, device=dev).clone()
                beta_zero[i] = [blo.clone(), bhi.clone()]
                if warm is not None and i in warm.coef and i in warm.alpha:
                    hinted |= self._beta_from_parent(i, clo, _chi, warm, blo, bhi)
                beta[i] = [blo, bhi]
        alpha_int: dict[int, dict[int, Any]] = {}
        if not fixed:
            for t in self.targets:
                r = rows.get(t)
                if r is None or r.numel() == 0:
                    continue
                alpha_int[t] = {}
                for j in self.piecewise:
                    if j < t:
                        alpha_int[t][j] = relax_o[j].la.expand(B, 2 * r.numel(), -1).clone()
                for j in self.sshaped:
                    if j < t:
                        alpha_int[t][j] = torch.full((B, 2 * r.numel(), self.layers[j].in_size),
                                                     0.5, dtype=odt, device=dev)

        done_iters = 0
        best = None
        # initial parameters: the warm ones, else CROWN's (the float64 pass's own choice)
        init = ({j: a.detach().clone() for j, a in alpha.items()} if warm_alpha else {},
                {i: [b[0].detach().clone(), b[1].detach().clone()] for i, b in beta.items()},
                {})
        inits = [init]
        if hinted:
            # both starts are evaluated; neither dominates (see _beta_from_parent)
            inits.append((init[0], beta_zero, {}))
        masks64 = self._clamp_masks(ctx64, f64)

        skip = None
        if (self.threshold is not None and ok is not None and warm.lower is not None
                and warm.lower.shape[1] == self.R):
            # rows an ancestor already proved stay proved (its bound is inherited): they
            # are neither optimised nor evaluated again when no domain of the chunk needs
            # them
            skip = np.zeros((B, R2), dtype=bool)
            skip[:, : self.R] = ok[:, None] & (warm.lower > self.threshold[None, :])
        need = np.arange(R2) if skip is None else np.nonzero(~skip.all(axis=0))[0]
        need_t = torch.as_tensor(need, device=dev)

        def evaluate(params, boxes, relax, infeas):
            """The sound float64 bound of the spec rows ``need`` for one parameter set
            (-inf in the other rows, whose bound is inherited)."""
            a_fin, b_fin, _ = params
            a_fin = {**{j: a_fin[j] if j in a_fin else relax[j].la.expand(B, R2, -1)
                        for j in self.piecewise},
                     **{j: a_fin[j] for j in self.sshaped if j in a_fin}}
            a64 = {j: _sound_alpha(a, self.layers[j]) for j, a in a_fin.items()}
            low = torch.full((B, R2), -math.inf, dtype=f64, device=dev)
            A0 = torch.zeros((B, R2, self.network.n_inputs), dtype=f64, device=dev)
            rec = {j: torch.zeros((B, R2, self.layers[j].in_size), dtype=f64, device=dev)
                   for j in self.nonlinear if self.layers[j].kind != "maxpool"}
            if need.size:
                b64 = self._beta_terms({i: [b[0][:, need_t], b[1][:, need_t]]
                                        for i, b in b_fin.items()}, masks64, f64)
                A = Ca[need_t][None].expand(B, need.size, -1)
                c = torch.zeros((B, need.size), dtype=f64, device=dev)
                lw, a0, _, _, rc = self._backward(
                    T64, A, c, self.n - 1, relax, boxes,
                    {j: a[:, need_t] for j, a in a64.items()}, b64, sound=True, record=True,
                    stops=True)
                low[:, need_t] = lw
                A0[:, need_t] = a0
                for j, v in rc.items():
                    rec[j][:, need_t] = v
            # the fixed s-shaped lines (no parameter) are stored as the middle tangents
            a_out = {**a_fin, **{j: torch.full((B, R2, self.layers[j].in_size), 0.5,
                                               dtype=f64, device=dev)
                                 for j in self.sshaped if j not in a_fin}}
            return {"boxes": boxes, "relax": relax, "infeas": infeas, "low": low, "A0": A0,
                    "rec": rec, "a64": a64, "alpha": a_out, "beta": b_fin}

        with torch.no_grad():
            t_final = time.perf_counter()
            evals = [evaluate(p, boxes64, relax64, infeas) for p in inits]
            t_final = (time.perf_counter() - t_final) / len(inits)
        # what the float64 pass of the optimised parameters will cost (deadline)
        t_last = 1.25 * (t_final + (0.0 if fixed else t_setup))
        t_fixed = t_last
        if iters > 0 and self.sshaped and not (fixed and warm_tangents):
            # That pass with tangent points (float64 lines per spec row and unit, and per
            # target row of every optimised intermediate bound) costs several times the
            # fixed-line pass just timed: it is timed on the starting tangents, a
            # candidate bound too, when there is time for it; else no optimisation (the
            # bound is the fixed-line one).
            if deadline is not None and \
                    time.perf_counter() + TANGENT_PASS_GUESS * t_last > deadline:
                iters = 0
            else:
                with torch.no_grad():
                    t_tan = time.perf_counter()
                    start = ({j: a.detach().clone() for j, a in alpha.items()},
                             {i: [b[0].detach().clone(), b[1].detach().clone()]
                              for i, b in beta.items()}, {})
                    bx, rl, inf_ = boxes64, relax64, infeas
                    if not fixed:
                        a_int64 = {t: {j: _sound_alpha(a, self.layers[j]) for j, a in d.items()}
                                   for t, d in alpha_int.items()}
                        bx, rl, inf_, _ = self._propagate(T64, ctx64, "optimise", a_int64,
                                                          sound=True, rows=rows)
                    evals.append(evaluate(start, bx, rl, inf_))
                    t_last = max(t_last, 1.25 * (time.perf_counter() - t_tan))
        if iters > 0 and fixed and (alpha or beta):
            best, done_iters = self._optimise_pairs(
                lo, hi, clamps, boxes_o, relax_o, alpha, beta, Ca, iters, deadline, t_last,
                beta_zero if hinted else None, skip)
        elif iters > 0 and (alpha or beta or alpha_int):
            best, done_iters = self._optimise(
                lo, hi, clamps, prior, boxes_o, relax_o, rows, alpha, beta, alpha_int, Ca,
                iters, deadline, fixed, t_last)
        if best is not None:
            # The optimised parameters in float64 too; per row the better sound bound of
            # all sets is kept, so optimising never loosens.
            with torch.no_grad():
                bx, rl, inf_ = boxes64, relax64, infeas
                if not fixed:
                    a_int64 = {t: {j: _sound_alpha(a, self.layers[j]) for j, a in d.items()}
                               for t, d in best[2].items()}
                    bx, rl, inf_, _ = self._propagate(T64, ctx64, "optimise", a_int64,
                                                      sound=True, rows=rows)
                evals.insert(0, evaluate(best, bx, rl, inf_))
        inherited = None
        if ok is not None and warm.lower is not None and warm.lower.shape[1] == self.R:
            # a bound of an ancestor domain holds on this one too (CROWN without the β
            # terms is not monotone in the boxes: a split can lose on points outside it)
            inherited = (np.where(ok[:, None], warm.lower, -np.inf),
                         None if warm.upper is None else np.where(ok[:, None], warm.upper,
                                                                  np.inf))
        out = self._finish(lo, hi, clamps, evals, inherited)
        out.stats.update({"iterations": done_iters, "mode": mode, "modes": [mode],
                          "last_pass_estimate": t_last, "fixed_pass_estimate": t_fixed,
                          "seconds": time.perf_counter() - t0, "chunks": 1})
        return out

    def _beta_from_parent(self, i, clo, chi, warm, blo, bhi) -> bool:
        """Initial β of a newly split (Leaky)ReLU unit that reproduces the parent's bound.

        With ``a`` the parent's final coefficient on the unit's output and ``alpha`` its
        lower slope: the inactive child (``z <= 0``, line ``k z``) with
        ``beta_hi = max(a, 0) (alpha - k)`` and the active child (``z >= 0``, line ``z``)
        with ``beta_lo = max(a, 0) (1 - alpha)`` give the unit the coefficient
        ``a alpha`` again, so the back-substitution below it is the parent's. Starting
        from β = 0 instead, a child can start far below its parent and Adam, whose steps
        are of the order of the learning rate, may take hundreds of steps to catch up."""
        if self.layers[i].kind not in PIECEWISE:
            return False
        torch = _torch()
        dev, dt = blo.device, blo.dtype
        k = float(getattr(self.layers[i], "slope", 0.0))
        pclo, pchi = warm.clamps.get(i, (np.full_like(clo, -np.inf), np.full_like(chi, np.inf)))
        # a split is new where the parent still allowed the other sign (its clamp may be
        # a finite box, e.g. a tightened bound, rather than no clamp at all)
        new_hi = (chi <= 0.0) & (pchi > 0.0)
        new_lo = (clo >= 0.0) & (pclo < 0.0)
        if not (new_hi.any() or new_lo.any()) or warm.coef[i].shape != tuple(blo.shape) \
                or warm.alpha[i].shape != tuple(blo.shape):
            return False
        a = torch.as_tensor(warm.coef[i], dtype=dt, device=dev).clamp(min=0.0)
        al = torch.as_tensor(warm.alpha[i], dtype=dt, device=dev)
        nh = torch.as_tensor(new_hi, device=dev)[:, None, :]
        nl = torch.as_tensor(new_lo, device=dev)[:, None, :]
        bhi.copy_(torch.where(nh, a * (al - k).clamp(min=0.0), bhi))
        blo.copy_(torch.where(nl, a * (1.0 - al).clamp(min=0.0), blo))
        return True

    def _ctx(self, lo, hi, clamps, prior, dtype) -> dict:
        torch = _torch()

        def t(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

        return {"lo0": t(lo), "hi0": t(hi),
                "clamps": {i: (t(c[0]), t(c[1])) for i, c in clamps.items()},
                "prior": {i: (t(p[0]), t(p[1])) for i, p in prior.items()}}

    # ------------------------------------------------------------------ optimisation
    def _optimise(self, lo, hi, clamps, prior, boxes_o, relax_o, rows, alpha, beta, alpha_int,
                  Ca, iters, deadline, fixed, t_last):
        torch = _torch()
        odt = self._dtype(self.opts["dtype"])
        B = lo.shape[0]
        R2 = Ca.shape[0]
        Co = Ca.to(odt)
        params_a = list(alpha.values()) + [a for d in alpha_int.values() for a in d.values()]
        params_b = [b for pair in beta.values() for b in pair]
        for p in params_a + params_b:
            p.requires_grad_(True)
        opt = _Adam([(params_a, self.opts["lr_alpha"]), (params_b, self.opts["lr_beta"])],
                    self.opts["lr_decay"])
        ctx_o = self._ctx(lo, hi, clamps, prior, odt)
        masks = self._clamp_masks(ctx_o, odt)
        T = self._t(self.opts["dtype"], False)
        thr = None if self.threshold is None else torch.as_tensor(
            np.concatenate([self.threshold, np.full(R2 - self.R, -np.inf)]), dtype=odt,
            device=self.device)
        best_low = torch.full((B, R2), -float("inf"), dtype=odt, device=self.device)
        best_dom = torch.full((B,), -float("inf"), dtype=odt, device=self.device)
        best_a = {j: a.detach().clone() for j, a in alpha.items()}
        best_b = {i: [b[0].detach().clone(), b[1].detach().clone()] for i, b in beta.items()}
        best_ai = {t: {j: a.detach().clone() for j, a in d.items()}
                   for t, d in alpha_int.items()}
        t_iter = None
        done = 0
        for _ in range(iters):
            now = time.perf_counter()
            if deadline is not None:
                # one more step, then the float64 pass of the optimised parameters (its
                # cost ``t_last`` is measured on the initial ones)
                need = (t_iter or t_last) + t_last
                if now + need > deadline:
                    break
            opt.zero_grad()
            extra = 0.0
            if fixed:
                boxes, relax = boxes_o, relax_o
            else:
                boxes, relax, _, _, tgt = self._propagate(
                    T, ctx_o, "optimise", alpha_int, sound=False, rows=rows, collect=True)
                if self.opts["objective"] == "boxes" and tgt:
                    extra = sum(x.clamp(min=-1e30).sum() for x in tgt)
            b_terms = self._beta_terms(beta, masks, odt)
            A = Co[None].expand(B, R2, -1)
            c = torch.zeros((B, R2), dtype=odt, device=self.device)
            low, *_ = self._backward(T, A, c, self.n - 1, relax, boxes, alpha, b_terms,
                                     sound=False)
            lowd = low.detach()
            finite = torch.isfinite(lowd)
            with torch.no_grad():
                better = finite & (lowd > best_low)
                best_low = torch.where(better, lowd, best_low)
                for j, a in alpha.items():
                    best_a[j] = torch.where(better[..., None], a.detach(), best_a[j])
                for i, b in beta.items():
                    for k in (0, 1):
                        best_b[i][k] = torch.where(better[..., None], b[k].detach(),
                                                   best_b[i][k])
                dom = torch.where(finite, lowd, torch.zeros_like(lowd)).sum(1)
                dbetter = dom > best_dom
                best_dom = torch.where(dbetter, dom, best_dom)
                for t, d in alpha_int.items():
                    for j, a in d.items():
                        best_ai[t][j] = torch.where(dbetter[:, None, None], a.detach(),
                                                    best_ai[t][j])
            done += 1
            if thr is not None and bool((lowd > thr).all()):
                break
            loss = -(torch.where(finite, low, torch.zeros_like(low)).sum() + extra)
            if not loss.requires_grad:          # nothing optimisable reaches the bound
                break
            loss.backward()
            opt.step()
            with torch.no_grad():
                for j, a in alpha.items():
                    a.clamp_(self.layers[j].slope if self.layers[j].kind == "leaky_relu"
                             else 0.0, 1.0)
                for d in alpha_int.values():
                    for j, a in d.items():
                        a.clamp_(self.layers[j].slope if self.layers[j].kind == "leaky_relu"
                                 else 0.0, 1.0)
                for b in params_b:
                    b.clamp_(min=0.0)
            t_iter = time.perf_counter() - now
        return (best_a, best_b, best_ai), done

    def _optimise_pairs(self, lo, hi, clamps, boxes_o, relax_o, alpha, beta, Ca, iters,
                        deadline, t_last, beta_alt=None, skip=None):
        """Optimise the final bound with fixed intermediate boxes.

        Every (domain, spec row) pair is then an independent problem (its own α and β), so
        the pairs are flattened into one batch with one row each, and a pair leaves the
        batch as soon as its bound clears ``threshold`` (the branch-and-bound case: most
        rows of a child domain are already proven). Pairs in ``skip`` (B, R) (proven by an
        ancestor's bound) are not optimised at all."""
        torch = _torch()
        odt = self._dtype(self.opts["dtype"])
        dev = self.device
        B = lo.shape[0]
        R2 = Ca.shape[0]
        P = B * R2
        bi = torch.arange(B, device=dev).repeat_interleave(R2)
        ri = torch.arange(R2, device=dev).repeat(B)
        thr = torch.full((R2,), float("inf"), dtype=odt, device=dev)
        if self.threshold is not None:
            thr[: self.R] = torch.as_tensor(self.threshold, dtype=odt, device=dev)
        ctx = self._ctx(lo, hi, clamps, {}, odt)

        def flat(x):
            return x.detach().reshape(P, 1, x.shape[-1]).clone()

        best_a = {j: flat(a) for j, a in alpha.items()}
        best_b = {i: [flat(b[0]), flat(b[1])] for i, b in beta.items()}
        best_low = torch.full((P,), -float("inf"), dtype=odt, device=dev)

        def unflat(x):
            return x.reshape(B, R2, x.shape[-1])

        act = torch.arange(P, device=dev)            # original pair ids of the current batch
        if skip is not None:
            act = torch.nonzero(~torch.as_tensor(skip, device=dev).reshape(-1)).reshape(-1)
        if act.numel() == 0:
            return ({j: unflat(a) for j, a in best_a.items()},
                    {i: [unflat(b[0]), unflat(b[1])] for i, b in best_b.items()}, {}), 0
        a_cur = {j: a[act].clone() for j, a in best_a.items()}
        b_cur = {i: [b[0][act].clone(), b[1][act].clone()] for i, b in best_b.items()}

        def gather(idx_b):
            # the optimisation passes read only the input box (magnitudes are for the
            # sound pass)
            bx = [(boxes_o[0][0][idx_b], boxes_o[0][1][idx_b])] + [None] * (len(boxes_o) - 1)
            rl = {j: _index_relax(r, idx_b) for j, r in relax_o.items()}
            cl = {i: tuple(x[idx_b] for x in m) for i, m in masks.items()}
            return bx, rl, cl

        masks = self._clamp_masks(ctx, odt)
        boxes, relax, cmask = gather(bi[act])
        Cp = Ca.to(odt)[ri[act]][:, None, :]
        thr_p = thr[ri[act]]
        T = self._t(self.opts["dtype"], False)
        if beta_alt is not None:
            # two candidate starts for β: keep, per pair, the one with the better bound
            with torch.no_grad():
                b_alt = {i: [flat(b[0])[act], flat(b[1])[act]] for i, b in beta_alt.items()}
                c0 = torch.zeros((act.numel(), 1), dtype=odt, device=dev)
                l1 = self._backward(T, Cp, c0, self.n - 1, relax, boxes, a_cur,
                                    self._beta_terms(b_cur, cmask, odt), sound=False)[0][:, 0]
                l2 = self._backward(T, Cp, c0, self.n - 1, relax, boxes, a_cur,
                                    self._beta_terms(b_alt, cmask, odt), sound=False)[0][:, 0]
                use = (l2 > l1)[:, None, None]
                for i in b_cur:
                    for k in (0, 1):
                        b_cur[i][k] = torch.where(use, b_alt[i][k], b_cur[i][k])
                        best_b[i][k][act] = b_cur[i][k]
        params = list(a_cur.values()) + [b for pair in b_cur.values() for b in pair]
        for p in params:
            p.requires_grad_(True)
        opt = _Adam([(list(a_cur.values()), self.opts["lr_alpha"]),
                     ([b for pair in b_cur.values() for b in pair], self.opts["lr_beta"])],
                    self.opts["lr_decay"])
        t_iter = None
        done = 0
        for _ in range(iters):
            now = time.perf_counter()
            if deadline is not None and now + (t_iter or t_last) + t_last > deadline:
                break
            opt.zero_grad()
            n = act.numel()
            b_terms = self._beta_terms(b_cur, cmask, odt)
            c = torch.zeros((n, 1), dtype=odt, device=dev)
            low, *_ = self._backward(T, Cp, c, self.n - 1, relax, boxes, a_cur, b_terms,
                                     sound=False)
            low = low[:, 0]
            lowd = low.detach()
            with torch.no_grad():
                better = torch.isfinite(lowd) & (lowd > best_low[act])
                ids = act[better]
                best_low[ids] = lowd[better]
                for j, a in a_cur.items():
                    best_a[j][ids] = a.detach()[better]
                for i, b in b_cur.items():
                    for k in (0, 1):
                        best_b[i][k][ids] = b[k].detach()[better]
            done += 1
            keep = ~(lowd > thr_p)
            if not bool(keep.any()):
                break
            loss = -torch.where(torch.isfinite(lowd), low, torch.zeros_like(low)).sum()
            if not loss.requires_grad:
                break
            loss.backward()
            opt.step()
            with torch.no_grad():
                for j, a in a_cur.items():
                    lay = self.layers[j]
                    a.clamp_(lay.slope if lay.kind == "leaky_relu" else 0.0, 1.0)
                for pair in b_cur.values():
                    for b in pair:
                        b.clamp_(min=0.0)
            if int(keep.sum()) * 8 < 7 * keep.numel():
                # drop the pairs already above the threshold: smaller matmuls from now on
                act = act[keep]
                opt.keep(keep)
                a_cur = {j: opt.current(a) for j, a in a_cur.items()}
                b_cur = {i: [opt.current(b[0]), opt.current(b[1])] for i, b in b_cur.items()}
                sel = bi[act]
                boxes, relax, cmask = gather(sel)
                Cp = Ca.to(odt)[ri[act]][:, None, :]
                thr_p = thr[ri[act]]
            t_iter = time.perf_counter() - now

        return ({j: unflat(a) for j, a in best_a.items()},
                {i: [unflat(b[0]), unflat(b[1])] for i, b in best_b.items()}, {}), done

    def _clamp_masks(self, ctx, dtype) -> dict:
        """Per clamped layer: float masks of the finite clamp sides and the clamps with
        their infinite sides replaced by 0 (so that 0 * inf never appears)."""
        torch = _torch()
        out = {}
        for i, (clo, chi) in ctx["clamps"].items():
            flo, fhi = torch.isfinite(clo), torch.isfinite(chi)
            zero = torch.zeros((), dtype=dtype, device=self.device)
            out[i] = (flo[:, None, :].to(dtype), fhi[:, None, :].to(dtype),
                      torch.where(flo, clo, zero).to(dtype), torch.where(fhi, chi, zero).to(dtype))
        return out

    def _beta_terms(self, beta, masks, dtype) -> dict:
        """Per clamped layer: (beta_lo, beta_hi, clo or 0, chi or 0) with the multipliers
        zeroed where the clamp side is infinite (and projected to >= 0 in float64)."""
        torch = _torch()
        out = {}
        for i, (blo, bhi) in beta.items():
            mlo, mhi, clo, chi = masks[i]
            blo = blo.to(dtype)
            bhi = bhi.to(dtype)
            if dtype == torch.float64:
                blo, bhi = blo.clamp(min=0.0), bhi.clamp(min=0.0)
            blo, bhi = blo * mlo, bhi * mhi
            # all zero (e.g. the initial β): the step is exact and is skipped in float64
            zero = dtype == torch.float64 and not bool((blo != 0).any() or (bhi != 0).any())
            out[i] = (blo, bhi, clo, chi, zero)
        return out

    # ------------------------------------------------------------------ passes
    def _propagate(self, T: _TLayers, ctx: dict, mode: str, alpha_int: dict, *, sound: bool,
                   rows: dict | None = None, collect: bool = False):
        """Boxes of every entry (exact values; clamps and priors intersected) and the
        relaxation of every non-linear layer; ``mode`` ``reuse`` skips back-substitution."""
        torch = _torch()
        from nnresilience.bounds.crown_relax import fast_relaxation, sound_relaxation

        build = sound_relaxation if sound else fast_relaxation
        lo, hi = ctx["lo0"], ctx["hi0"]
        B = lo.shape[0]
        boxes = [(lo, hi)]
        relax: dict[int, Any] = {}
        infeas = torch.zeros(B, dtype=torch.bool, device=self.device)
        if self.layers[0].kind != "affine":
            relax[0] = build(self.layers[0], lo, hi, T.mats[0].get("groups")
                             if self.layers[0].kind == "maxpool" else None)
        used_rows: dict[int, Any] = {}
        tgt: list = []
        for i in range(1, self.n + 1):
            layer = self.layers[i - 1]
            plo, phi = boxes[i - 1]
            if layer.kind == "affine":
                lo, hi = self._interval_affine(T.mats[i - 1], i - 1, plo, phi, sound)
            else:
                lo, hi = self._interval_act(layer, T.mats.get(i - 1), plo, phi, sound)
            if i in ctx["prior"]:
                lo = torch.maximum(lo, ctx["prior"][i][0])
                hi = torch.minimum(hi, ctx["prior"][i][1])
            if i in ctx["clamps"]:
                lo = torch.maximum(lo, ctx["clamps"][i][0])
                hi = torch.minimum(hi, ctx["clamps"][i][1])
            if mode != "reuse" and i in self.targets:
                r = rows.get(i) if rows is not None else None
                if r is None and rows is None:
                    r = self._select_rows(i, lo, hi)
                if r is not None and r.numel():
                    L, U = self._target_bounds(T, i, r, relax, boxes, alpha_int.get(i, {}),
                                               sound)
                    if collect:
                        tgt.append(L - U)
                    lo = lo.clone()
                    hi = hi.clone()
                    lo[:, r] = torch.maximum(lo[:, r], L)
                    hi[:, r] = torch.minimum(hi[:, r], U)
                if r is not None:
                    used_rows[i] = r
                if sound and self.opts["all_rows"]:
                    # the other rows too (plain CROWN): their boxes feed later interval
                    # steps and stops, which keeps every result inside ``symbolic``'s
                    rest = torch.ones(lo.shape[1], dtype=torch.bool, device=self.device)
                    if r is not None:
                        rest[r] = False
                    rest = torch.nonzero(rest).reshape(-1)
                    if rest.numel():
                        L, U = self._target_bounds(T, i, rest, relax, boxes, {}, sound)
                        lo, hi = lo.clone(), hi.clone()
                        lo[:, rest] = torch.maximum(lo[:, rest], L)
                        hi[:, rest] = torch.minimum(hi[:, rest], U)
            empty = lo > hi
            infeas = infeas | empty.any(dim=1)
            hi = torch.where(empty, lo, hi)
            boxes.append((lo, hi))
            if i < self.n and self.layers[i].kind != "affine":
                groups = T.mats[i]["groups"] if self.layers[i].kind == "maxpool" else None
                relax[i] = build(self.layers[i], lo, hi, groups)
        if collect:
            return boxes, relax, infeas, used_rows, tgt
        return boxes, relax, infeas, used_rows

    def _select_rows(self, i, lo, hi):
        """Neurons of entry ``i`` worth a back-substitution in some domain of the chunk."""
        torch = _torch()
        if self.layers[i].kind in PIECEWISE:
            return torch.nonzero(((lo < 0.0) & (hi > 0.0)).any(dim=0)).reshape(-1)
        return torch.arange(lo.shape[1], device=self.device)

    def _target_bounds(self, T, t, r, relax, boxes, alphas, sound):
        """Lower and upper bounds of entry ``t``'s neurons ``r`` (B, len(r)) by CROWN."""
        torch = _torch()
        layer = self.layers[t - 1]
        W = layer.W
        ridx = r.cpu().numpy()
        Wr = W[ridx].toarray() if sp.issparse(W) else W[ridx]
        dtype = boxes[0][0].dtype
        Wr = torch.as_tensor(np.ascontiguousarray(Wr), dtype=dtype, device=self.device)
        br = T.mats[t - 1]["b"][r]
        B = boxes[0][0].shape[0]
        A = torch.cat([Wr, -Wr])[None].expand(B, -1, -1)
        c = torch.cat([br, -br])[None].expand(B, -1)
        low, _, mag, nterms, _ = self._backward(T, A, c, t - 2, relax, boxes, alphas, {},
                                                sound=sound)
        k = r.numel()
        return low[:, :k], -low[:, k:]          # sound pass: already rounded outward

    def _interval_affine(self, d, j, lo, hi, sound):
        if not sound:
            mid = (lo + hi) / 2.0
            rad = (hi - lo) / 2.0
            c = d["W"].apply(mid) + d["b"]
            r = d["absW"].apply(rad)
            return c - r, c + r
        torch = _torch()
        nlo = d["Wpos"].apply(lo) + d["Wneg"].apply(hi) + d["b"]
        nhi = d["Wpos"].apply(hi) + d["Wneg"].apply(lo) + d["b"]
        m = torch.maximum(lo.abs(), hi.abs())
        mag = d["absW"].apply(m) + d["absb"]
        err = torch.as_tensor(rounding.sum_error(mag.cpu().numpy(), self.terms[j] + 3),
                              device=self.device)
        return _down(nlo - err), _up(nhi + err)

    def _interval_act(self, layer, d, lo, hi, sound):
        """Monotone image of the box; in the sound pass enclosing the exact image."""
        torch = _torch()
        kind = layer.kind
        if kind == "maxpool":
            g = d["groups"]
            return lo[:, g].amax(dim=-1), hi[:, g].amax(dim=-1)
        if kind == "relu":
            return lo.clamp(min=0.0), hi.clamp(min=0.0)
        if kind == "leaky_relu":
            k = layer.slope
            nlo = torch.where(lo >= 0, lo, k * lo)
            nhi = torch.where(hi >= 0, hi, k * hi)
            if sound:     # k * z rounds: one step outward covers it
                nlo = torch.where(lo >= 0, lo, _down(nlo))
                nhi = torch.where(hi >= 0, hi, _up(nhi))
            return nlo, nhi
        if not sound:
            fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "arctan": torch.atan}[kind]
            return fn(lo), fn(hi)
        lo_n, hi_n = lo.cpu().numpy(), hi.cpu().numpy()
        m = rounding.maxabs(lo_n, hi_n)
        pad = rounding.activation_rounding(layer, m)
        a, b = rounding.enclose(layer.fn(lo_n), layer.fn(hi_n), pad)
        return (torch.as_tensor(a, device=self.device), torch.as_tensor(b, device=self.device))

    def _backward(self, T, A, c, j0, relax, boxes, alphas, betas, *, sound: bool,
                  record: bool = False, stops: bool = False):
        """Back-substitute ``A h_{j0+1} + c`` to the input; returns the lower bound over
        the input box, the input coefficients, two unused slots and, if ``record``, the
        coefficient on the output of every elementwise layer (branching scores).

        ``sound``: float64, and the bound returned is already sound for the exact network:
        the rounding error of every step is bounded from the magnitudes of the terms it
        summed (``mag``, ``nterms``: rule of :mod:`~nnresilience.bounds.rounding`). With
        ``stops``, the best of concretising at every entry reached (over that entry's box)
        is kept: used for the spec rows only, since tighter intermediate boxes can make a
        later CROWN bound *looser* (it is not monotone in the boxes), while a maximum of
        valid bounds of the same quantity never is."""
        torch = _torch()
        B, R = A.shape[0], A.shape[1]
        mag = torch.zeros((B, R), dtype=A.dtype, device=self.device) if sound else None
        nterms = 0
        rec: dict[int, Any] = {}

        def bmv(X, v):
            # (B, R, w) . (B, w) -> (B, R); a batched GEMV is slow for R = 1 (pairs)
            if X.shape[1] <= 8:
                return (X * v[:, None, :]).sum(-1)
            return (X @ v.unsqueeze(-1)).squeeze(-1)

        best = None

        def stop(A, c, mag, nterms, lo, hi):
            # sound lower bound from concretising here, over the exact box of this entry
            m = torch.maximum(lo.abs(), hi.abs())
            val = bmv(A.clamp(min=0.0), lo) + bmv(A.clamp(max=0.0), hi) + c
            mg = mag + bmv(A.abs(), m) + c.abs()
            err = torch.as_tensor(rounding.sum_error(mg.cpu().numpy(), nterms + lo.shape[1] + 3),
                                  device=self.device)
            return _down(val - err)

        if sound and stops:
            # every entry reached is a place to stop: interval-like bounds of later layers
            # can beat the full back-substitution (deep nets); the best is kept
            blo, bhi = boxes[j0 + 1]
            best = stop(A, c, mag, nterms, blo, bhi)
        for j in range(j0, -1, -1):
            layer = self.layers[j]
            lo, hi = boxes[j] if sound else (None, None)
            if layer.kind == "affine":
                d = T.mats[j]
                if sound:
                    m = torch.maximum(lo.abs(), hi.abs())
                    v = d["absW"].apply(m) + d["absb"]
                    mag = mag + bmv(A.abs(), v) + c.abs()
                    nterms += layer.out_size + 2
                c = c + A @ d["b"]
                A = d["W"].right(A)
            elif layer.kind == "maxpool":
                rel = relax[j]
                pos, neg = A.clamp(min=0.0), A.clamp(max=0.0)
                dec = rel.decided[:, None, :]
                coef = pos + torch.where(dec, neg, torch.zeros_like(neg))
                const = torch.where(rel.decided, torch.zeros_like(rel.upper), rel.upper)
                idx = rel.idx[:, None, :].expand(B, R, -1)
                if sound:
                    m = torch.maximum(lo.abs(), hi.abs())
                    mg = torch.gather(m, 1, rel.idx)
                    mag = mag + bmv(coef.abs(), mg) + bmv(neg.abs(), const.abs()) + c.abs()
                    nterms += layer.out_size + 2
                c = c + bmv(neg, const)
                A = torch.zeros((B, R, layer.in_size), dtype=A.dtype,
                                device=self.device).scatter_add(2, idx, coef)
            else:
                rel = relax[j]
                if record:
                    rec[j] = A
                if layer.kind in S_SHAPED and j in alphas and rel.tl0 is not None:
                    A, c, mag, nterms = self._s_shaped_step(layer, rel, alphas[j], A, c, mag,
                                                            nterms, lo, hi, sound)
                else:
                    la = rel.la
                    if rel.unstable is not None and j in alphas:
                        la = torch.where(rel.unstable, alphas[j], la)
                    up = A >= 0.0                      # lower line where A >= 0, upper elsewhere
                    neg = torch.where(up, torch.zeros_like(A), A)
                    cinc = bmv(neg, rel.ub[:, 0])
                    if layer.kind in S_SHAPED:
                        cinc = cinc + bmv(A - neg, rel.lb[:, 0])
                    An = A * torch.where(up, la, rel.ua)
                    if sound:
                        m = torch.maximum(lo.abs(), hi.abs())
                        mag = (mag + bmv(An.abs(), m) + bmv(A - neg, rel.lb[:, 0].abs())
                               - bmv(neg, rel.ub[:, 0].abs()) + c.abs())
                        nterms += layer.out_size + 2
                    c = c + cinc
                    A = An
            if j in betas and not (sound and betas[j][4]):
                # clamp multipliers on entry j: - beta_lo (z - clo) - beta_hi (chi - z)
                blo, bhi, clo, chi, _ = betas[j]
                An = A + (bhi - blo)
                if sound:
                    m = torch.maximum(lo.abs(), hi.abs())
                    mag = (mag + bmv(A.abs() + blo + bhi, m) + bmv(blo, clo.abs())
                           + bmv(bhi, chi.abs()) + c.abs())
                    nterms += layer.in_size + 4
                c = c + bmv(blo, clo) - bmv(bhi, chi)
                A = An
            if sound and stops and j > 0:
                best = torch.maximum(best, stop(A, c, mag, nterms, lo, hi))
        lo0, hi0 = boxes[0]
        if not sound:
            if A.shape[1] <= 8:
                x = torch.where(A >= 0.0, lo0[:, None, :], hi0[:, None, :])
                low = (A * x).sum(-1) + c
            else:
                low = bmv(A.clamp(min=0.0), lo0) + bmv(A.clamp(max=0.0), hi0) + c
            return low, A, None, 0, rec
        full = stop(A, c, mag, nterms, lo0, hi0)
        return full if best is None else torch.maximum(best, full), A, None, 0, rec

    def _s_shaped_step(self, layer, rel, t, A, c, mag, nterms, lo, hi, sound):
        """One back-substitution step through an s-shaped layer with optimised tangent
        lines (per row: :func:`~nnresilience.bounds.crown_relax.s_shaped_lines`)."""
        torch = _torch()
        from nnresilience.bounds.crown_relax import fast_s_shaped_step, sound_s_shaped_side

        if not sound:
            An, cinc = fast_s_shaped_step(layer.kind, rel, t, A)
            return An, c + cinc, mag, nterms
        pos_side = A >= 0.0
        # each entry's line on the side it uses (lower where A >= 0), float64, re-checked
        slope, icpt = sound_s_shaped_side(layer, rel, t, pos_side)
        neg = torch.where(pos_side, torch.zeros_like(A), A)
        pos = A - neg
        An = A * slope
        cinc = (pos * icpt).sum(-1) + (neg * icpt).sum(-1)
        m = torch.maximum(lo.abs(), hi.abs())
        mag = (mag + (An.abs() * m[:, None, :]).sum(-1) + (pos * icpt.abs()).sum(-1)
               - (neg * icpt.abs()).sum(-1) + c.abs())
        nterms += layer.out_size + 2
        return An, c + cinc, mag, nterms

    # ------------------------------------------------------------------ branching
    def split_estimates(self, state: CrownState, pre_lo: list, pre_hi: list,
                        parent: np.ndarray, layer: np.ndarray, neuron: np.ndarray
                        ) -> np.ndarray:
        """Cheap estimates of the spec-row bounds of the two children of candidate splits
        (filtered smart branching): ``(K, 2, R)`` for the ``K`` candidates ``(parent
        domain, layer, neuron)``, child 0 with the neuron's pre-activation ``<= 0``, child 1
        ``>= 0``.

        One batched backward pass in the optimisation dtype, no gradients: the parent's
        boxes ``pre_lo/pre_hi`` (rows = domains) with the candidate neuron's box cut at 0
        (so its relaxation is exact in each child), the parent's α and β (``state``), and
        no multiplier on the new split. **Never a bound**: these numbers only rank
        candidate splits; the children are bounded soundly like any other domain.
        """
        torch = _torch()
        from nnresilience.bounds.crown_relax import fast_relaxation

        odt = self._dtype(self.opts["dtype"])
        dev = self.device
        T = self._t(self.opts["dtype"], False)
        K = int(parent.size)
        if K == 0:
            return np.zeros((0, 2, self.R))
        par = np.repeat(np.asarray(parent, dtype=np.int64), 2)
        lay = np.repeat(np.asarray(layer, dtype=np.int64), 2)
        neu = np.repeat(np.asarray(neuron, dtype=np.int64), 2)
        side = np.tile([0, 1], K)
        R2 = self.C_all.shape[0]
        Co = torch.as_tensor(self.C_all, dtype=odt, device=dev)
        widths = [self.network.n_inputs] + [la.out_size for la in self.layers]
        step = max(1, self.opts["memory_budget"] // max(1, 4 * R2 * sum(widths)))
        out = np.empty((2 * K, self.R))

        def t(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=odt, device=dev)

        prev = _set_threads(self.opts["threads"])
        try:
            with torch.no_grad():
                # everything at the parents' level once, then rows gathered per child
                relax_p = {j: fast_relaxation(
                    self.layers[j], t(pre_lo[j]), t(pre_hi[j]),
                    T.mats[j]["groups"] if self.layers[j].kind == "maxpool" else None)
                    for j in self.nonlinear}
                alpha_p = {j: t(a).clamp(self.layers[j].slope if self.layers[j].kind
                                         == "leaky_relu" else 0.0, 1.0)
                           for j, a in state.alpha.items()
                           if j in relax_p and a.shape[1] == R2}
                beta_p = {}
                if state.beta:
                    cl = {i: state.clamps[i] for i in state.beta if i in state.clamps
                          and state.beta[i][0].shape[1] == R2}
                    masks = self._clamp_masks(self._ctx(pre_lo[0], pre_hi[0], cl, {}, odt),
                                              odt)
                    beta_p = self._beta_terms({i: [t(state.beta[i][0]), t(state.beta[i][1])]
                                               for i in cl}, masks, odt)
                lo0, hi0 = t(pre_lo[0]), t(pre_hi[0])
                for s in range(0, 2 * K, step):
                    rows = slice(s, min(2 * K, s + step))
                    idx = torch.as_tensor(par[rows], device=dev)
                    n = idx.numel()
                    relax = {j: _index_relax(r, idx) for j, r in relax_p.items()}
                    for j in np.unique(lay[rows]):
                        j = int(j)
                        rel = relax[j]
                        k = float(getattr(self.layers[j], "slope", 0.0))
                        sel = np.flatnonzero(lay[rows] == j)
                        r_t = torch.as_tensor(sel, device=dev)
                        n_t = torch.as_tensor(neu[rows][sel], device=dev)
                        # the split neuron is exact in each child: k z (z <= 0) or z (z >= 0)
                        slope = torch.as_tensor(np.where(side[rows][sel] == 0, k, 1.0),
                                                dtype=odt, device=dev)
                        rel.la[r_t, 0, n_t] = slope
                        rel.ua[r_t, 0, n_t] = slope
                        rel.lb[r_t, 0, n_t] = 0.0
                        rel.ub[r_t, 0, n_t] = 0.0
                        rel.unstable[r_t, 0, n_t] = False
                    alphas = {j: a[idx] for j, a in alpha_p.items()}
                    b_terms = {i: tuple(x[idx] for x in bt[:4]) + (False,)
                               for i, bt in beta_p.items()}
                    boxes = [(lo0[idx], hi0[idx])] + [None] * self.n
                    A = Co[None].expand(n, R2, -1)
                    c = torch.zeros((n, R2), dtype=odt, device=dev)
                    low = self._backward(T, A, c, self.n - 1, relax, boxes, alphas, b_terms,
                                         sound=False)[0]
                    out[rows] = low[:, : self.R].to(torch.float64).cpu().numpy()
        finally:
            if prev < torch.get_num_threads():        # as in :meth:`bound`
                torch.set_num_threads(prev)
        return np.nan_to_num(out, nan=-np.inf).reshape(K, 2, self.R)

    # ------------------------------------------------------------------ results
    def _finish(self, lo, hi, clamps, evals, inherited=None) -> CrownResult:
        """Sound results from the float64 passes ``evals`` (boxes intersected, the better
        spec bound per row kept), then the forward error and the float evaluation of
        ``C y`` (rule of :mod:`~nnresilience.bounds.rounding`)."""
        torch = _torch()
        R = self.R
        exact = [(a.cpu().numpy(), b.cpu().numpy()) for a, b in evals[0]["boxes"]]
        bad = evals[0]["infeas"].cpu().numpy().copy()
        for ev in evals[1:]:
            bad |= ev["infeas"].cpu().numpy()
            exact = [(np.maximum(a, b2.cpu().numpy()), np.minimum(b, h2.cpu().numpy()))
                     for (a, b), (b2, h2) in zip(exact, ev["boxes"], strict=True)]
        for a, b in exact:
            bad |= np.any(a > b, axis=1)
        # reported boxes: exact boxes widened by the forward error e_i
        fe = rounding.ForwardError(self.network.n_inputs)
        pre_lo, pre_hi = [], []
        for i, layer in enumerate(self.layers):
            rlo, rhi = rounding.enclose(exact[i][0], exact[i][1], fe.e[i])
            pre_lo.append(rlo)
            pre_hi.append(rhi)
            m = rounding.maxabs(rlo, np.maximum(rlo, rhi)).max(axis=0)
            fe.step(layer, -m, m)
        rlo, rhi = rounding.enclose(exact[-1][0], exact[-1][1], fe.e[-1])
        pre_lo.append(rlo)
        pre_hi.append(rhi)
        e_out = fe.e[-1]

        Ca = self.C_all
        absC = np.abs(Ca)
        n_out = Ca.shape[1]
        m_out = rounding.maxabs(rlo, np.maximum(rlo, rhi))                  # (B, n_out)
        g = rounding.gamma(n_out + 2)
        # from the exact C y to the float64 evaluation of C y^f
        fwd = rounding.up((absC @ e_out) * (1.0 + 2.0 * g))[None, :]
        evalerr = rounding.sum_error(m_out @ absC.T, n_out + 2)
        bound = np.full((lo.shape[0], Ca.shape[0]), -np.inf)
        win = np.zeros(bound.shape, dtype=np.int64)
        for k, ev in enumerate(evals):
            crown = rounding.down(ev["low"].cpu().numpy() - rounding.up(fwd + evalerr))
            if k > 0:
                win = np.where(crown > bound, k, win)
            bound = np.maximum(bound, crown)
        bound[bad] = np.inf
        lower = bound[:, :R]
        upper = None
        if Ca.shape[0] > R:
            upper = -bound[:, R:]
            upper[bad] = -np.inf
        if inherited is not None:
            lower = np.maximum(lower, inherited[0])
            if upper is not None and inherited[1] is not None:
                upper = np.minimum(upper, inherited[1])
        ev = evals[0]
        lo0, hi0 = ev["boxes"][0]
        A0r = ev["A0"][:, :R]
        x_best = torch.where(A0r >= 0, lo0[:, None, :], hi0[:, None, :]).cpu().numpy()
        scores = self._scores(ev["rec"], ev["relax"], ev["boxes"], ev["a64"], lower)

        def pick(name, j, k=None):
            # per (domain, row): the parameters of the pass that gave the kept bound
            vals = [e[name][j] if k is None else e[name][j][k] for e in evals]
            out = vals[0].detach().to(torch.float32).cpu().numpy()
            for q in range(1, len(vals)):
                out = np.where((win == q)[..., None], vals[q].detach().to(torch.float32)
                               .cpu().numpy(), out)
            # float16: these are only starting points (any α in range and any β >= 0 is
            # valid; the range is enforced again on use), and a search keeps many states
            return np.clip(out, -6e4, 6e4).astype(np.float16)

        state = CrownState(
            alpha={j: pick("alpha", j) for j in ev["alpha"]},
            beta={i: (pick("beta", i, 0), pick("beta", i, 1)) for i in ev["beta"]},
            lo=lo.copy(), hi=hi.copy(),
            clamps={i: (np.array(c[0]), np.array(c[1])) for i, c in clamps.items()},
            boxes={i: exact[i] for i in self.nonlinear if i >= 1},
            lower=lower.copy(), upper=None if upper is None else upper.copy(),
            coef={j: pick("rec", j) for j in ev["rec"] if j in self.piecewise})
        return CrownResult(lower=lower, upper=upper, pre_lo=pre_lo, pre_hi=pre_hi,
                           x_best=x_best, scores=scores, state=state)

    def _scores(self, rec, relax, boxes, a64, lower) -> dict[int, np.ndarray]:
        """BaBSR-like estimate per unstable neuron: the relaxation gap a split removes,
        weighted by the final coefficient on the neuron's output (rows still to prove)."""
        torch = _torch()
        R = self.R
        wrow = np.ones(lower.shape, dtype=np.float64)
        if self.threshold is not None:
            wrow = (lower <= self.threshold[None, :]).astype(np.float64)
        out = {}
        for j, A in rec.items():
            rel = relax[j]
            a = A[:, :R]
            lo, hi = boxes[j]
            wr = torch.as_tensor(wrow, dtype=a.dtype, device=self.device)[..., None]
            if rel.unstable is not None:
                k = rel.slope
                al = a64.get(j)
                al = rel.la.expand_as(a) if al is None else al[:, :R]
                gap_up = rel.ub                                           # chord at z = 0
                gap_lo = torch.maximum((1.0 - al) * hi[:, None, :], (al - k) * (-lo[:, None, :]))
                s = (wr * (a.clamp(max=0.0).abs() * gap_up
                           + LOWER_GAP_WEIGHT * a.clamp(min=0.0) * gap_lo)).sum(1)
                # every unstable unit scores > 0, so a split never lands on a decided one
                s = torch.where(rel.unstable[:, 0], s + 1e-12 * (hi - lo), torch.zeros_like(s))
            elif self.layers[j].kind in S_SHAPED:
                dl = (rel.ua - rel.la)[:, 0]
                di = (rel.ub - rel.lb)[:, 0]
                gap = torch.maximum(dl * lo + di, dl * hi + di).clamp(min=0.0)
                s = (wr * a.abs()).sum(1) * gap
            else:
                continue
            out[j] = np.nan_to_num(s.cpu().numpy(), nan=0.0, posinf=0.0).clip(min=0.0)
        return out


class _Adam:
    """Adam on groups of tensors with their own step size, decayed each step.

    Written out (a dozen lines) rather than ``torch.optim.Adam``, whose first use imports
    ``torch._dynamo`` (seconds of start-up for nothing we need). The second moment is
    kept above 1e-30: squared small gradients are subnormal in float32, which made each
    ``sqrt`` 20x slower (measured)."""

    def __init__(self, groups, decay: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups = [(list(ps), float(lr)) for ps, lr in groups if ps]
        self.decay, self.b1, self.b2, self.eps = float(decay), betas[0], betas[1], eps
        self.m = {id(p): None for ps, _ in self.groups for p in ps}
        self.v = dict(self.m)
        self.t = 0

    def keep(self, mask) -> None:
        """Keep rows ``mask`` (dim 0) of every parameter and its moments (new leaves)."""
        self._new = {}
        groups = []
        for ps, lr in self.groups:
            nps = []
            for p in ps:
                q = p.detach()[mask].clone().requires_grad_(True)
                k = id(p)
                m, v = self.m.pop(k), self.v.pop(k)
                self.m[id(q)] = None if m is None else m[mask]
                self.v[id(q)] = None if v is None else v[mask]
                self._new[k] = q
                nps.append(q)
            groups.append((nps, lr))
        self.groups = groups

    def current(self, p):
        """The tensor that replaced ``p`` at the last :meth:`keep`."""
        return self._new[id(p)]

    def zero_grad(self) -> None:
        for ps, _ in self.groups:
            for p in ps:
                p.grad = None

    def step(self) -> None:
        torch = _torch()
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        scale = self.decay ** (self.t - 1)
        with torch.no_grad():
            for ps, lr in self.groups:
                for p in ps:
                    g = p.grad
                    if g is None:
                        continue
                    k = id(p)
                    if self.m[k] is None:
                        self.m[k] = torch.zeros_like(p)
                        self.v[k] = torch.zeros_like(p)
                    m, v = self.m[k], self.v[k]
                    m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
                    v.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2).clamp_(min=1e-30)
                    denom = v.sqrt().add_(self.eps * math.sqrt(c2))
                    p.addcdiv_(m, denom, value=-lr * scale * math.sqrt(c2) / c1)


def _down(x):
    torch = _torch()
    return torch.nextafter(x, torch.full_like(x, -math.inf))


def _up(x):
    torch = _torch()
    return torch.nextafter(x, torch.full_like(x, math.inf))


def _index_relax(rel, idx):
    """Rows ``idx`` (dim 0) of every tensor of a relaxation."""
    from nnresilience.bounds.crown_relax import TENSOR_FIELDS, Relaxation

    out = Relaxation(rel.kind, slope=rel.slope)
    for name in TENSOR_FIELDS:
        v = getattr(rel, name)
        setattr(out, name, None if v is None else v[idx])
    return out


def _cast_relax(rel, dtype):
    from nnresilience.bounds.crown_relax import Relaxation

    out = Relaxation(rel.kind, slope=rel.slope, unstable=rel.unstable, idx=rel.idx,
                     decided=rel.decided, lpar=rel.lpar, upar=rel.upar)
    for name in ("la", "lb", "ua", "ub", "upper", "l", "u", "tl0", "tl1", "tu0", "tu1"):
        v = getattr(rel, name)
        setattr(out, name, None if v is None else v.to(dtype))
    return out


def _sound_alpha(a, layer):
    """Parameters to float64, projected into the valid range *in float64* (a float32
    ``k`` may round below the true slope)."""
    torch = _torch()
    k = float(getattr(layer, "slope", 0.0))
    return a.detach().to(torch.float64).clamp(k, 1.0)


# --------------------------------------------------------------------------- per-neuron boxes
#: Optimisation steps of ``compute_bounds(method="alpha")``.
ALPHA_ITERS = 20


@dataclass
class AlphaBoxes:
    """Boxes for :func:`~nnresilience.bounds.compute_bounds` (entries of the given network)."""

    los: list[np.ndarray]
    his: list[np.ndarray]
    methods: list[str]
    seconds: list[float]
    extra: dict[str, Any]


def alpha_boxes(network, lo: np.ndarray, hi: np.ndarray, prior_lo: list, prior_hi: list, *,
                deadline: float | None = None, iters: int | None = None,
                reference_seconds: float = 0.0, **options) -> AlphaBoxes:
    """Per-entry boxes by α-CROWN over one input box, never looser than the ``prior``
    boxes (e.g. ``symbolic``), which are intersected in. Every unstable neuron's own bound
    is optimised (``objective="boxes"``), together with the output box (``C = I``, both
    sides). The network is used as given (not merged: multiplying consecutive affine
    layers rounds, and the bounds are for *this* network's forward pass). With a
    ``deadline`` too close for the float64 pass, the prior boxes are returned as they are
    (``extra["alpha_skipped"]``)."""
    t0 = time.perf_counter()
    iters = ALPHA_ITERS if iters is None else int(iters)
    n = len(network.layers)
    if deadline is not None:
        # The float64 pass cannot be interrupted: start only with time for it (about three
        # times a symbolic pass, ``reference_seconds``), after torch's import.
        need = max(3.0 * reference_seconds, 0.2)
        ready = _import_torch_within(deadline - need - time.perf_counter())
        if not ready or time.perf_counter() + need > deadline:
            return AlphaBoxes([np.asarray(a, float) for a in prior_lo],
                              [np.asarray(b, float) for b in prior_hi],
                              ["input"] + ["symbolic"] * n, [0.0] * (n + 1),
                              {"alpha_iterations": 0, "alpha_skipped": True})
    lo2, hi2 = lo[None].astype(float), hi[None].astype(float)
    boxes = {i: (np.asarray(prior_lo[i], float)[None], np.asarray(prior_hi[i], float)[None])
             for i in range(1, n + 1)}
    opts = {"upper": True, "objective": "boxes", "intermediate": "optimise", **options}
    bounder = CrownBounder(network, np.eye(network.n_outputs), **opts)
    warm = CrownState(lo=lo2, hi=hi2, boxes=boxes)
    res = bounder.bound(lo2, hi2, iters=iters, warm=warm, deadline=deadline)
    los, his = [], []
    for k in range(n + 1):
        a = np.maximum(np.asarray(prior_lo[k], float), res.pre_lo[k][0])
        b = np.minimum(np.asarray(prior_hi[k], float), res.pre_hi[k][0])
        if k == n:
            a, b = np.maximum(a, res.lower[0]), np.minimum(b, res.upper[0])
        los.append(a)
        his.append(b)
    total = time.perf_counter() - t0
    return AlphaBoxes(los, his, ["input"] + ["alpha"] * n, [0.0] + [total / n] * n,
                      {"alpha_iterations": res.stats.get("iterations", 0)})
