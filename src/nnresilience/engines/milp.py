"""The MILP engine: decide a case by one feasibility MILP (seed 000 encoding).

The model is network + input region + unsafe output condition with objective 0, solved
with "stop at the first feasible point". Reading the answer:

* INFEASIBLE -> ``HOLDS``. Sound for every encoding mode: the encoding of a
  piecewise-linear network is exact, and the S-shaped encodings are relaxations
  (supersets of the true graph), so no unsafe input exists if the model has no point.
* a feasible point -> ``VIOLATED`` *candidate*: the input columns, clipped into the box.
  The engine replays it through :meth:`Network.forward`; if solver tolerances (1e-6) or an
  arctan relaxation make the replay fail, it re-solves once with the unsafe set shrunk by
  :data:`REPLAY_MARGIN` (a feasible point there is deeper inside). If that also fails the
  candidate is still returned with ``stats['replayed'] = False``: the caller's replay
  decides, and reports ``unknown``.
* time/solution limit without a point, or solver trouble -> ``UNKNOWN`` with statistics.

``timeout`` is a wall-clock budget for the whole call: the solver gets what is left after
building.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from nnresilience.backends.base import SolveLimits, SolveStatus
from nnresilience.engines.base import Engine, EngineAnswer
from nnresilience.results import Status

REPLAY_MARGIN = 1e-5
BOX_TOL = 1e-9


def _replays(network, case, x: np.ndarray) -> bool:
    if not case.region.contains(x, tol=BOX_TOL):
        return False
    y = network.forward(x)
    return bool(case.unsafe.satisfied(y))


class MilpEngine(Engine):
    """``backend``: ``auto``/``highs``/``scip``/``gurobi``; ``big_m``: uniform M (paper
    baseline) or ``None`` for per-side Ms from the bounds; ``arctan``: ``pwl``/``miqcp``."""

    name = "milp"

    def __init__(self, backend: str = "auto", big_m: float | None = None,
                 arctan: str = "pwl") -> None:
        self.backend = backend
        self.big_m = big_m
        self.arctan = arctan

    def supports(self, network) -> str | None:
        from nnresilience.encode.milp import ENCODERS

        for i, layer in enumerate(network.layers):
            if layer.kind not in ENCODERS:
                return f"layer {i} has kind {layer.kind!r}, not supported by the MILP encoder"
        if self.arctan == "miqcp" and any(la.kind == "arctan" for la in network.layers):
            from nnresilience.backends.registry import get_backend
            from nnresilience.errors import BackendUnavailableError

            try:
                get_backend(self.backend, need_quadratic=True)
            except BackendUnavailableError as exc:
                return str(exc)
        return None

    def _bounds_for(self, network, case, bounds):
        region = case.region
        if bounds is None:
            try:
                from nnresilience.bounds import compute_bounds  # type: ignore[attr-defined]

                return compute_bounds(network, region)
            except (ImportError, AttributeError, TypeError):
                from nnresilience.bounds.interval import interval_bounds

                return interval_bounds(network, region.lo, region.hi)
        lo0, hi0 = np.asarray(bounds.lo[0]), np.asarray(bounds.hi[0])
        if np.any(region.lo < lo0 - BOX_TOL) or np.any(region.hi > hi0 + BOX_TOL):
            raise ValueError("the bounds were computed for an input box that does not "
                             "contain the case's region; they would make the encoding unsound")
        return bounds

    def build(self, network, case, bounds, margin: float = 0.0, priorities: bool = True):
        """Model and encoding of one case (exposed for tests and the benchmarks)."""
        from nnresilience.encode.milp import encode_condition, encode_network, encode_region
        from nnresilience.encode.model import MilpModel

        model = MilpModel()
        enc = encode_network(model, network, bounds, big_m=self.big_m, arctan=self.arctan,
                             priorities=priorities)
        encode_region(model, enc.inputs, case.region)
        encode_condition(model, enc.outputs, case.unsafe, bounds.lo[-1], bounds.hi[-1],
                         margin=margin)
        return model, enc

    def check(self, network, case, bounds=None, timeout: float | None = None,
              **options: Any) -> EngineAnswer:
        """Decide ``case``; options: ``threads`` (1), ``priorities`` (True), ``verbose``."""
        from nnresilience.backends.registry import get_backend

        t0 = time.perf_counter()
        deadline = None if timeout is None else t0 + float(timeout)
        bounds = self._bounds_for(network, case, bounds)
        stats: dict[str, Any] = {"engine": self.name, "big_m": self.big_m,
                                 "arctan": self.arctan}
        candidate = None
        for attempt, margin in enumerate((0.0, REPLAY_MARGIN)):
            tb = time.perf_counter()
            model, enc = self.build(network, case, bounds, margin=margin,
                                    priorities=bool(options.get("priorities", True)))
            arrays = model.arrays()
            backend = get_backend(self.backend, need_quadratic=bool(arrays.quad))
            build_s = time.perf_counter() - tb
            stats.update({"backend": backend.name, "n_vars": arrays.n_vars,
                          "n_rows": arrays.n_rows + len(arrays.quad),
                          "n_binaries": arrays.n_integer, "relaxed": enc.relaxed,
                          "build_seconds": stats.get("build_seconds", 0.0) + build_s})
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                stats["status"] = "timeout before solve"
                break
            limits = SolveLimits(time_limit=remaining, threads=int(options.get("threads", 1)),
                                 stop_at_first_solution=True,
                                 verbose=bool(options.get("verbose", False)))
            res = backend.solve(arrays, limits)
            stats["solve_seconds"] = stats.get("solve_seconds", 0.0) + res.seconds
            stats["status"] = res.status.value
            stats["nodes"] = stats.get("nodes", 0) + int(res.stats.get("nodes", 0))
            stats["attempts"] = attempt + 1
            if res.status is SolveStatus.INFEASIBLE:
                if attempt == 0:
                    return EngineAnswer(Status.HOLDS, None, time.perf_counter() - t0,
                                        "MILP infeasible: no input of the region reaches the "
                                        "unsafe set", stats)
                break                      # shrunk set empty: keep the first candidate
            if res.x is None:
                if attempt == 0:
                    return EngineAnswer(Status.UNKNOWN, None, time.perf_counter() - t0,
                                        f"solver stopped without an answer ({res.status.value},"
                                        f" {res.stats.get('native_status', '')})", stats)
                break
            x = np.clip(res.x[enc.inputs], case.region.lo, case.region.hi)
            if _replays(network, case, x):
                stats["replayed"] = True
                return EngineAnswer(Status.VIOLATED, x, time.perf_counter() - t0,
                                    "MILP found a counterexample (replayed)", stats)
            if candidate is None:
                candidate = x
        stats["replayed"] = False
        if candidate is not None:
            return EngineAnswer(Status.VIOLATED, candidate, time.perf_counter() - t0,
                                "MILP candidate does not replay in float64; the caller's "
                                "replay decides", stats)
        return EngineAnswer(Status.UNKNOWN, None, time.perf_counter() - t0,
                            "time budget exhausted", stats)
