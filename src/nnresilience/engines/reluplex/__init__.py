"""The ``reluplex`` engine: Reluplex (Katz et al. 2017) with the Leaky-ReLU rules of seed 004.

A case ``(box region, unsafe = OR_t (A_t y <= b_t))`` is decided term by term: each
conjunction becomes one Reluplex query (slack variables ``s = A_t y`` with ``u(s) = b_t``);
the case is violated if any query is SAT, holds if every query is UNSAT, and is unknown
otherwise. A SAT assignment's input part is clipped into the box and replayed through
:meth:`Network.forward`; a witness that sits on the boundary ``A y = b`` and does not
replay exactly is searched again with the right-hand side lowered by
:data:`BOUNDARY_MARGIN` (a replayed witness of that query is a real violation; if that
query is UNSAT, the answer is unknown rather than a guess).

Only box regions (L-infinity balls intersected with the domain) and networks made of
affine, ReLU and LeakyReLU layers are supported; anything else raises
:class:`~nnresilience.errors.EngineUnsupportedError`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from nnresilience.bounds.interval import interval_bounds
from nnresilience.bounds.types import NetworkBounds
from nnresilience.engines.base import Engine, EngineAnswer
from nnresilience.engines.reluplex.search import (
    ReluplexSearch,
    SearchOptions,
    SearchResult,
    build_query,
    float_slack_pad,
)
from nnresilience.engines.reluplex.stats import ReluplexStats
from nnresilience.errors import EngineUnsupportedError, NNResError, ShapeMismatchError
from nnresilience.results import Status

SUPPORTED_KINDS = ("affine", "relu", "leaky_relu")
BOUNDARY_MARGIN = 1e-6
#: Seconds per dense tableau entry of setting a query up (the dense ``M = A_B^{-1} A``
#: and its first restoration, which cannot be interrupted): MNIST-FC 256x6, 6e6 entries,
#: 1.5 s under load, with a margin. A query whose estimate exceeds the time left is not
#: started (``unknown``, timeout) rather than overrun its deadline.
SETUP_SECONDS_PER_ENTRY = 3e-7

__all__ = ["ReluplexEngine", "SearchOptions", "ReluplexStats", "BOUNDARY_MARGIN"]


def _single_blas_thread():
    """Context limiting BLAS to one thread (if threadpoolctl is installed).

    The tableau is small (a few hundred columns): a multi-threaded BLAS spends far more
    time synchronising than computing, and on a shared machine a 150 x 150 solve went from
    3 ms to 70 ms with two threads. Parallelism belongs to the process level.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _monotonic(deadline: float) -> float:
    """The ``time.monotonic()`` moment of a ``time.perf_counter()`` deadline."""
    return time.monotonic() + (deadline - time.perf_counter())


def _unsupported_reason(network) -> str | None:
    for i, layer in enumerate(network.layers):
        if layer.kind not in SUPPORTED_KINDS:
            return ("reluplex engine supports affine, ReLU and LeakyReLU layers; "
                    f"got {layer.kind} at layer {i}")
    return None


def _bounds_for(net, lo: np.ndarray, hi: np.ndarray, given) -> tuple[NetworkBounds, str]:
    """Per-layer bounds of the network: the caller's if they fit, else symbolic."""
    if isinstance(given, NetworkBounds) and len(given.lo) == len(net.layers) + 1 and all(
            np.shape(given.lo[i]) == (n,) for i, n in enumerate(net.layer_sizes())):
        return given, given.method
    from nnresilience.bounds import compute_bounds

    return compute_bounds(net, (lo, hi), method="symbolic"), "symbolic"


class ReluplexEngine(Engine):
    """Complete engine for piecewise-linear (ReLU / LeakyReLU) networks on box regions.

    ``check(network, case, bounds=None, timeout=None, split_threshold=5, preprocess=True,
    restore_every=50, max_depth=None, tighten_rounds=4)``; see :class:`SearchOptions`.
    ``bounds`` (a NetworkBounds of ``network``) is used when ``preprocess`` is on and its
    layer count fits; otherwise the engine computes symbolic bounds itself.

    The network is *not* merged: multiplying consecutive affine layers in float64 would
    change the exact function the search reasons about. Every slack's upper bound is
    raised by :func:`~.search.float_slack_pad`, so ``holds`` covers the float64 forward
    pass that the answer is judged by, not only the exact network.
    """

    name = "reluplex"

    def supports(self, network) -> str | None:
        return _unsupported_reason(network)

    def check(self, network, case, bounds=None, timeout: float | None = None,
              **options: Any) -> EngineAnswer:
        with _single_blas_thread():
            return self._check(network, case, bounds, timeout, **options)

    def _check(self, network, case, bounds, timeout: float | None, **options: Any
               ) -> EngineAnswer:
        t0 = time.perf_counter()
        known = {f.name for f in dataclasses.fields(SearchOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown reluplex option(s) {unknown}; known: {sorted(known)}")
        opt = SearchOptions(**options)
        reason = _unsupported_reason(network)
        if reason:
            raise EngineUnsupportedError(reason)
        region = case.region
        if region.norm in ("l1", "l2"):
            raise EngineUnsupportedError(
                "reluplex engine supports box / L-infinity regions only; got an "
                f"{region.norm.upper()} ball of radius {region.radius:g}")
        if region.dim != network.n_inputs or case.unsafe.n_outputs != network.n_outputs:
            raise ShapeMismatchError(
                f"case has {region.dim} inputs / {case.unsafe.n_outputs} outputs, network "
                f"{network.name!r} has {network.n_inputs} / {network.n_outputs}")
        deadline = None if timeout is None else t0 + float(timeout)
        net = network
        stats = ReluplexStats()
        extra: dict[str, Any] = {"preprocess": opt.preprocess, "terms": []}
        layer_bounds = None
        if opt.preprocess:
            layer_bounds, method = _bounds_for(net, region.lo, region.hi, bounds)
            extra["bounds_method"] = method
        boxes = layer_bounds if layer_bounds is not None else interval_bounds(
            net, region.lo, region.hi)
        extra["seconds_preprocess"] = time.perf_counter() - t0

        unknown_msg = ""
        for t, term in enumerate(case.unsafe.terms):
            pad = float_slack_pad(net, term.A, term.b, boxes.lo, boxes.hi)
            status, x, msg = self._term(net, network, case, term.A, term.b, layer_bounds,
                                        opt, deadline, stats, pad)
            extra["terms"].append(status)
            if status == "sat":
                return self._answer(Status.VIOLATED, x, t0, f"term {t} satisfiable",
                                    stats, extra)
            if status == "unknown":
                unknown_msg = unknown_msg or f"term {t}: {msg}"
                if msg == "timeout":
                    break
        if unknown_msg:
            return self._answer(Status.UNKNOWN, None, t0, unknown_msg, stats, extra)
        return self._answer(Status.HOLDS, None, t0,
                            "every term refuted (all branches closed by Failure)", stats, extra)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _answer(status: Status, x, t0: float, message: str, stats: ReluplexStats,
                extra: dict[str, Any]) -> EngineAnswer:
        d = stats.as_dict()
        d.update(extra)
        return EngineAnswer(status=status, x=x, seconds=time.perf_counter() - t0,
                            message=message, stats=d)

    def _term(self, net, network, case, A: np.ndarray, b: np.ndarray, layer_bounds,
              opt: SearchOptions, deadline: float | None, stats: ReluplexStats,
              pad: np.ndarray | None = None) -> tuple[str, np.ndarray | None, str]:
        """Decide one conjunction; a SAT result comes with a replayed input.

        The first query allows ``A y <= b + pad`` (``pad``: float64 replay error), so its
        UNSAT is a proof for the float64 forward pass. A SAT witness that does not replay
        (it may use the pad, or sit on the boundary that rounding pushes outside) gets a
        few small ascent steps (:func:`nnresilience.falsify.repair`), then is searched
        again without the pad, then strictly inside (``b`` lowered by
        :data:`BOUNDARY_MARGIN`); if none gives a replaying witness the answer is
        unknown, never a guess.
        """
        res, x = self._query(net, case, A, b, layer_bounds, opt, deadline, stats, pad)
        if res.status != "sat":
            return res.status, None, res.message
        if x is not None and self._replays(network, case, x):
            return "sat", x, ""
        if x is not None:
            # usually the witness sits on A y = b (+ pad): a few small ascent steps move
            # it strictly inside, far cheaper than another search
            from nnresilience.falsify import repair

            x_rep = repair(network, case, x, steps=10,
                           deadline=None if deadline is None else _monotonic(deadline))
            if x_rep is not None and self._replays(network, case, x_rep):
                return "sat", x_rep, ""
        retries = [b] if pad is not None and np.any(pad > 0) else []
        retries.append(b - BOUNDARY_MARGIN * (1.0 + np.abs(b)))
        for rhs in retries:
            res2, x2 = self._query(net, case, A, rhs, layer_bounds, opt, deadline, stats)
            if res2.status == "sat" and x2 is not None and self._replays(network, case, x2):
                return "sat", x2, ""
            if res2.status == "unknown":
                return "unknown", None, res2.message
        return ("unknown", None,
                f"only boundary witnesses (within {BOUNDARY_MARGIN:g}) that do not replay")

    @staticmethod
    def _query(net, case, A, b, layer_bounds, opt, deadline, stats, pad=None):
        if deadline is not None:
            entries = tableau_entries(net, A.shape[0])
            if entries * SETUP_SECONDS_PER_ENTRY > deadline - time.perf_counter():
                return SearchResult("unknown", None, "timeout"), None
        q = build_query(net, case.region.lo, case.region.hi, A, b, layer_bounds, pad)
        res = ReluplexSearch(q, opt, deadline, stats).run()
        x = None
        if res.status == "sat" and res.x is not None:
            x = case.region.clip(res.x[q.inputs])
        return res, x

    @staticmethod
    def _replays(network, case, x: np.ndarray) -> bool:
        y = network.forward(x)
        return bool(case.region.contains(x, 0.0)) and bool(case.unsafe.satisfied(y))


def tableau_entries(network, spec_rows: int = 1) -> int:
    """About how many entries the dense tableau of a query on ``network`` has (rows x
    variables: a row and two variables per ReLU, the inputs, the outputs and the spec
    rows): what set-up and one round of bound derivation cost."""
    n = network.n_neurons()
    rows = n + network.n_outputs + spec_rows
    return rows * (network.n_inputs + 2 * n + network.n_outputs + spec_rows)


#: Largest dense tableau (see :func:`tableau_entries`) given a second look: a round of
#: bound derivation costs about 1-2 µs per entry between deadline checks (ACAS Xu,
#: 1.8e5 entries: a 1 s look ends within 0.2 s of its cap; MNIST-FC 256x6, 6e6 entries).
SECOND_LOOK_MAX_ENTRIES = 400_000


def second_look(network, case, bounds, seconds: float, deadline: float | None
                ) -> EngineAnswer | None:
    """Reluplex on a case a MILP left undecided, for at most ``seconds``; None when it
    does not apply (another layer kind, an L1 / L2 ball, a large net, no time) or errs.

    Why: a MILP proves ``holds`` only with a margin beyond its tolerance band τ, and its
    points near a tie need not replay, so a property that holds (or fails) by less than τ
    stays undecided however long it runs. Reluplex's conclusions are rigorous for the
    float64 forward pass at any margin. ``deadline`` is a ``time.monotonic()`` value.
    The caller replays a ``VIOLATED`` answer's point as for any engine.
    """
    if seconds <= 0 or case.region.norm in ("l1", "l2") \
            or tableau_entries(network) > SECOND_LOOK_MAX_ENTRIES \
            or _unsupported_reason(network):
        return None
    cap = seconds if deadline is None else min(seconds, deadline - time.monotonic())
    if cap <= 0.05:
        return None
    try:
        return ReluplexEngine().check(network, case, bounds, timeout=cap)
    except NNResError:
        return None

