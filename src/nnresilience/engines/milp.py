"""The MILP engine: decide a case by maximising its unsafe margin (seed 000 encoding).

The model is network + input region + the *margin form* of the unsafe condition
(:func:`nnresilience.encode.condition.encode_margin`): a column ``t`` no larger than the
margin of the selected term, maximised (``minimise -t``). The property is violated iff
the maximum ``t*`` is ``>= 0``. This form always has a feasible point, so nothing here
ever rests on a bare "infeasible" (issue 11: HiGHS called a model infeasible whose rows an
explicit point met to 5e-14, with the unsafe margin at +1e-5). Reading the answer, with
``τ`` the tolerance margin of the model (:mod:`nnresilience.backends.certify`):

* the solver's proven bound, less its objective tolerance, puts ``t*`` below ``-τ``
  -> ``HOLDS``. A cutoff at that level lets the solver stop as soon as it is proven;
* a solver point with ``t >= 0`` -> its input columns, clipped into the box, are replayed
  through :meth:`Network.forward`; a point that replays is ``VIOLATED``, one that does not
  is returned with ``stats['replayed'] = False`` (the caller's replay reports
  ``unknown``). ``t`` is capped at ``2 (τ + τ_obj)`` above zero, so a deep violation ends
  the solve at once (a point at the cap is optimal) and is deep enough to replay;
* the bound puts ``t*`` below zero but not below ``-τ`` (the tolerance band): ``UNKNOWN``,
  unless the *re-check* hook (``recheck``) settles it. The default re-check
  (:func:`tight_second_opinion`) re-solves the same model with a second backend at 1000×
  tighter tolerances and accepts ``holds`` only if that bound clears *its* ``τ``; the
  orchestration may pass another (a sound-bounds engine);
* a solver "infeasible", error, or a time limit without a decisive bound -> ``UNKNOWN``.

For S-shaped activations the encoding is a relaxation (a superset of the graph): ``holds``
is still a proof, a point only a candidate. ``timeout`` is a wall-clock budget for the
whole call (bounds, building, solving, re-check).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nnresilience.backends.base import SolveLimits, SolveStatus
from nnresilience.backends.certify import (
    ILL_SCALED_HEADROOM,
    confirm_cutoff,
    tolerance_headroom,
)
from nnresilience.engines.base import Engine, EngineAnswer
from nnresilience.results import Status

BOX_TOL = 1e-9
#: Inputs of the region (besides its centre) whose margins the engine evaluates first.
SAMPLES = 8
#: Factor by which the default re-check tightens the second backend's tolerances.
RECHECK_TIGHTEN = 1e3
#: Share of the time left that bound computation may take when the engine computes them.
BOUNDS_SHARE = 0.3


def _replays(network, case, x: np.ndarray) -> bool:
    if not case.region.contains(x, tol=BOX_TOL):
        return False
    y = network.forward(x)
    return bool(case.unsafe.satisfied(y))


@dataclass(frozen=True, eq=False)
class RecheckRequest:
    """What a re-check hook gets when the primary solve ends in the tolerance band.

    ``arrays`` is the margin model (minimise ``-t``; ``margin_col`` is ``t``,
    ``input_cols`` the network input), ``tau`` its tolerance margin, ``lower`` the
    primary's certified lower bound on ``-t`` (in ``(0, tau]``), ``deadline`` a
    ``time.perf_counter()`` value the hook must return by.
    """

    network: Any
    case: Any
    bounds: Any
    arrays: Any
    margin_col: int
    input_cols: np.ndarray
    backend: str
    tau: float
    lower: float
    deadline: float | None
    attained: float = math.inf      # an objective value a known point attains


Recheck = Callable[[RecheckRequest], EngineAnswer | None]


def tight_second_opinion(req: RecheckRequest) -> EngineAnswer | None:
    """Default re-check: the same margin model, another backend, tolerances 1000× tighter.

    ``holds`` only if this solve's own certified bound clears its own (1000× smaller)
    ``τ``; the primary must already have put the margin below zero (that is when the
    hook is called), so two solvers agree and the second within a much narrower band.
    A replayed point from it is a counterexample. Anything else: None (unknown).
    """
    from nnresilience.backends.certify import certify, model_tau, objective_tau, safe_solve

    t0 = time.perf_counter()
    from nnresilience.backends.registry import second_backend

    backend = second_backend(req.backend, bool(req.arrays.quad), RECHECK_TIGHTEN)
    if backend is None:
        return None
    left = None if req.deadline is None else req.deadline - t0
    if left is not None and left <= 0.05:
        return None
    tol = backend.tolerances()
    tau = model_tau(req.arrays, tol)
    need = tau + objective_tau(req.arrays, tol)
    res = safe_solve(backend, req.arrays,
                      SolveLimits(time_limit=left,
                                  cutoff=_above(need) if need < req.attained else None))
    res = confirm_cutoff(backend, req.arrays, res, req.deadline)
    cert = certify(res, req.arrays, tol, tau=tau, attained=req.attained)
    stats = {"recheck_backend": backend.name, "recheck_tau": tau,
             "recheck_lower": cert.lower, "recheck_status": res.status.value}
    if cert.clears(tau):
        return EngineAnswer(Status.HOLDS, None, time.perf_counter() - t0,
                            f"second opinion ({backend.name}, tolerances /"
                            f"{RECHECK_TIGHTEN:g}) clears its margin {tau:.3g}", stats)
    if res.x is not None:
        x = np.clip(res.x[req.input_cols], req.case.region.lo, req.case.region.hi)
        if _replays(req.network, req.case, x):
            return EngineAnswer(Status.VIOLATED, x, time.perf_counter() - t0,
                                f"second opinion ({backend.name}) found a counterexample",
                                stats)
    return EngineAnswer(Status.UNKNOWN, None, time.perf_counter() - t0, "", stats)


def _above(v: float) -> float:
    """A cutoff a hair above ``v`` (a proof needs the bound strictly above it)."""
    return float(np.nextafter(v * (1.0 + 1e-9), math.inf))


def replay_margin_slack(network, condition, bounds) -> float:
    """Largest :func:`~nnresilience.bounds.rounding.replay_slack` over the rows of
    ``condition``: if the *exact* network's unsafe margin stays below ``-slack`` on the
    region, so does every float64 replay's (the forward error ``e_out`` of the bounds'
    boxes, carried through ``A``, plus the rounding of ``A y``). Zero on small nets up to
    ~1e-12; it matters at large magnitudes (weights 1e3, biases 1e6 that cancel)."""
    from nnresilience.bounds.rounding import replay_slack

    if not condition.terms:
        return 0.0
    A = np.vstack([t.A for t in condition.terms])
    e = bounds.forward_errors(network)[-1]
    return float(np.max(replay_slack(A, e, bounds.lo[-1], bounds.hi[-1])))


class MilpEngine(Engine):
    """``backend``: ``auto``/``highs``/``scip``/``gurobi``; ``big_m``: uniform M (paper
    baseline) or ``None`` for per-side Ms from the bounds; ``arctan``: ``pwl``/``miqcp``;
    ``recheck``: what settles an answer in the tolerance band (``"auto"``:
    :func:`tight_second_opinion`; ``None``: nothing, the answer is ``unknown``; or a
    callable taking a :class:`RecheckRequest`)."""

    name = "milp"

    def __init__(self, backend: str = "auto", big_m: float | None = None,
                 arctan: str = "pwl", recheck: str | Recheck | None = "auto") -> None:
        self.backend = backend
        self.big_m = big_m
        self.arctan = arctan
        self.recheck = recheck

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
                return f"the arctan 'miqcp' encoding (quadratic rows): {exc}"
        return None

    def _bounds_for(self, network, case, bounds, deadline: float | None):
        region = case.region
        if bounds is None:
            from nnresilience.bounds import compute_bounds

            budget = None if deadline is None else \
                max(0.0, BOUNDS_SHARE * (deadline - time.perf_counter()))
            return compute_bounds(network, region, timeout=budget)
        lo0, hi0 = np.asarray(bounds.lo[0]), np.asarray(bounds.hi[0])
        if np.any(region.lo < lo0 - BOX_TOL) or np.any(region.hi > hi0 + BOX_TOL):
            raise ValueError("the bounds were computed for an input box that does not "
                             "contain the case's region; they would make the encoding unsound")
        return bounds

    def build(self, network, case, bounds, shift: float = 0.0, priorities: bool = True):
        """Margin model of one case: ``(model, encoding, margin)`` (exposed for tests and
        the benchmarks). The objective is ``minimise -t``; ``shift`` moves every row of the
        condition by a constant (``t <= b - shift - a y``)."""
        from nnresilience.encode.milp import encode_margin, encode_network, encode_region
        from nnresilience.encode.model import MilpModel

        model = MilpModel()
        enc = encode_network(model, network, bounds, big_m=self.big_m, arctan=self.arctan,
                             priorities=priorities)
        encode_region(model, enc.inputs, case.region)
        mar = encode_margin(model, enc.outputs, case.unsafe, bounds.lo[-1], bounds.hi[-1],
                            shift=shift)
        model.set_objective(np.array([mar.t]), -1.0)
        return model, enc, mar

    def check(self, network, case, bounds=None, timeout: float | None = None,
              **options: Any) -> EngineAnswer:
        """Decide ``case``; options: ``threads`` (1), ``priorities`` (True), ``verbose``,
        ``recheck`` (overrides the engine's)."""
        from nnresilience.backends.certify import certify, model_tau, objective_tau, safe_solve
        from nnresilience.backends.registry import get_backend

        t0 = time.perf_counter()
        deadline = None if timeout is None else t0 + float(timeout)

        def answer(status, x, msg, stats):
            return EngineAnswer(status, x, time.perf_counter() - t0, msg, stats)

        bounds = self._bounds_for(network, case, bounds, deadline)
        stats: dict[str, Any] = {"engine": self.name, "big_m": self.big_m,
                                 "arctan": self.arctan, "form": "margin"}
        tb = time.perf_counter()
        # the model is the exact network; the answer is judged by the float64 replay:
        # grow the unsafe set by how far the replay's A y can be from the exact one
        slack = replay_margin_slack(network, case.unsafe, bounds)
        stats["float_slack"] = slack
        model, enc, mar = self.build(network, case, bounds, shift=-slack,
                                     priorities=bool(options.get("priorities", True)))
        arrays = model.arrays()
        backend = get_backend(self.backend, need_quadratic=bool(arrays.quad))
        tol = backend.tolerances()
        tau = model_tau(arrays, tol)
        tau_obj = objective_tau(arrays, tol)
        need = tau + tau_obj
        # cap t: a point at the cap is optimal at once, and deep enough to replay
        cap = min(mar.t_max, max(2.0 * need, 1e-12))
        ub = arrays.ub.copy()
        ub[mar.t] = max(cap, arrays.lb[mar.t])
        arrays = replace(arrays, ub=ub)
        stats.update({"backend": backend.name, "n_vars": arrays.n_vars,
                      "n_rows": arrays.n_rows + len(arrays.quad),
                      "n_binaries": arrays.n_integer, "relaxed": enc.relaxed,
                      "build_seconds": time.perf_counter() - tb, "tau": tau,
                      "tau_obj": tau_obj, "tolerances": [tol.feasibility, tol.integrality],
                      "margin_cap": cap})
        # Objective values known to be attained: -t_lo (any point, t at its lower bound)
        # and -margin of a few inputs of the region (true network values satisfy every
        # row). A solver bound above them contradicts itself (certify rejects it); such an
        # input that already violates the condition is the answer.
        attained = -float(arrays.lb[mar.t])
        X = np.vstack([(case.region.lo + case.region.hi) / 2.0,
                       case.region.sample(SAMPLES, np.random.default_rng(0))])
        X = case.region.clip(X)
        margins = np.array([case.unsafe.max_margin(y) for y in network.forward(X)])
        j = int(np.argmax(margins))
        if margins[j] >= 0.0 and _replays(network, case, X[j]):
            stats.update(replayed=True, margin_found=float(margins[j]), status="sampled")
            return answer(Status.VIOLATED, X[j], "a sampled input violates (replayed)", stats)
        attained = min(attained, -min(float(margins[j]), cap))
        stats["attained"] = attained
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0:
            stats["status"] = "timeout before solve"
            return answer(Status.UNKNOWN, None, "time budget exhausted", stats)
        # a cutoff the known points beat could only be "met" by a solver failure: then
        # holds is out of reach (τ too large for this model) and the solve only looks for
        # a counterexample
        cutoff = _above(need) if need < attained else None
        stats["holds_reachable"] = cutoff is not None
        limits = SolveLimits(time_limit=remaining, threads=int(options.get("threads", 1)),
                             cutoff=cutoff, verbose=bool(options.get("verbose", False)))
        res = confirm_cutoff(backend, arrays, safe_solve(backend, arrays, limits), deadline)
        if cutoff is not None and res.status is SolveStatus.LIMIT \
                and res.dual_bound is not None and res.dual_bound >= cutoff \
                and tolerance_headroom(arrays, tol.feasibility) < ILL_SCALED_HEADROOM:
            # a cutoff stop on an ill-scaled model is not evidence: on a 2e7-weight net
            # HiGHS called an L∞ ball "nothing beats the cutoff" that holds a point 5e6
            # above it (a wrong holds), and solved right without the cutoff
            left = None if deadline is None else deadline - time.perf_counter()
            if left is None or left > 0.0:
                res = safe_solve(backend, arrays, replace(limits, time_limit=left,
                                                          cutoff=None))
                stats["cutoff_rechecked"] = res.status.value
            else:
                res = replace(res, dual_bound=-math.inf)
        cert = certify(res, arrays, tol, tau=tau, attained=attained)
        stats.update({"solve_seconds": res.seconds, "status": res.status.value,
                      "native_status": res.stats.get("native_status", ""),
                      "nodes": int(res.stats.get("nodes", 0)),
                      # proven upper bound on the maximum unsafe margin (tolerance included)
                      "margin_bound": -cert.lower, "replayed": False})
        if cert.clears(tau):
            return answer(Status.HOLDS, None,
                          f"MILP: unsafe margin <= {-cert.lower:.6g}, below -τ = {-tau:.3g}",
                          stats)
        candidate = None
        if res.x is not None:
            t_inc = float(res.x[mar.t])
            stats["margin_found"] = t_inc
            x = np.clip(res.x[enc.inputs], case.region.lo, case.region.hi)
            if _replays(network, case, x):
                stats["replayed"] = True
                return answer(Status.VIOLATED, x, "MILP found a counterexample (replayed)",
                              stats)
            if t_inc >= 0.0:
                candidate = x
        if cert.failed and res.status is SolveStatus.INFEASIBLE:
            # an "infeasible" is no proof, but a Farkas certificate we check ourselves is:
            # the region (with its phase decisions, in a search) has no input at all
            from nnresilience.backends.farkas import prove_empty

            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            if left is None or left > 0.0:
                stats["farkas"] = prove_empty(arrays, left)
                if stats["farkas"]:
                    return answer(Status.HOLDS, None, "MILP: the model is empty (checked "
                                  "Farkas certificate of its LP relaxation)", stats)
        if cert.failed:
            return answer(Status.UNKNOWN, None, f"MILP solver failure: {cert.reason}", stats)
        if cert.lower > 0.0 and candidate is None:
            hook = options.get("recheck", self.recheck)
            hook = tight_second_opinion if hook == "auto" else hook
            stats["band"] = True
            if hook is not None:
                req = RecheckRequest(network, case, bounds, arrays, mar.t, enc.inputs,
                                     backend.name, tau, cert.lower, deadline, attained)
                got = hook(req)
                if got is not None:
                    stats.update(got.stats)
                    stats["recheck"] = got.status.value
                    if got.status is Status.VIOLATED and got.x is not None:
                        stats["replayed"] = _replays(network, case, got.x)
                    if got.status is not Status.UNKNOWN:
                        return answer(got.status, got.x, got.message, stats)
            return answer(Status.UNKNOWN, None,
                          f"MILP: unsafe margin <= {-cert.lower:.3g}, within the solver "
                          f"tolerance band τ = {tau:.3g}; not decided", stats)
        if candidate is not None:
            return answer(Status.VIOLATED, candidate,
                          "MILP candidate does not replay in float64; the caller's replay "
                          "decides", stats)
        return answer(Status.UNKNOWN, None,
                      f"solver stopped without a decisive bound ({res.status.value}, "
                      f"{res.stats.get('native_status', '')})", stats)
