"""Helpers shared by the resilience queries: domain, deadline, certified solving, intervals.

Every solve of a resilience query goes through :func:`solve_certified`, which hands the
model to a backend with the time left and returns, next to the raw result, the
tolerance margin ``τ`` and the :class:`~nnresilience.backends.certify.Certificate` of
the answer. The *relaxed* problem (premise and flip rows loosened by ``τ``) is made
here from a built model by shifting those rows' bounds, so solver tolerances cannot cut
off the true optimum and its certified dual bound is a lower bound of the true one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nnresilience.errors import InputDataError, ShapeMismatchError
from nnresilience.resilience.encode import ResilienceMip
from nnresilience.resilience.settings import ResilienceSettings

Progress = Callable[[dict], None]

#: A solver call is not started with less time than this left (seconds).
MIN_SOLVE = 0.05


def resolve_domain(network, domain) -> tuple[np.ndarray, np.ndarray]:
    """``domain`` as ``(lo, hi)`` float arrays of the input size; scalars broadcast.

    ``None`` falls back to the network's own input domain (NNet files carry one).
    """
    n = network.n_inputs
    if domain is None:
        if network.input_lo is None or network.input_hi is None:
            raise InputDataError("no input domain: give domain=(lo, hi) / --domain LO:HI")
        return network.input_lo.copy(), network.input_hi.copy()
    if hasattr(domain, "lo") and hasattr(domain, "hi"):
        domain = (domain.lo, domain.hi)
    lo, hi = domain
    try:
        lo = np.broadcast_to(np.asarray(lo, float).reshape(-1) if np.ndim(lo) else
                             np.asarray(lo, float), (n,)).copy()
        hi = np.broadcast_to(np.asarray(hi, float).reshape(-1) if np.ndim(hi) else
                             np.asarray(hi, float), (n,)).copy()
    except ValueError:
        raise ShapeMismatchError(f"domain bounds do not match the {n} network inputs") \
            from None
    return lo, hi


class Clock:
    """The deadline of one call: ``timeout`` seconds from construction (None: no limit).

    Stages ask :meth:`left` for the time that remains and pass it on whole (or a share
    of it); nothing adds a floor, so the stages cannot add up past the deadline.
    """

    def __init__(self, timeout: float | None, progress: Progress | None = None,
                 cls: int | None = None) -> None:
        self.t0 = time.perf_counter()
        self.deadline = None if timeout is None else self.t0 + max(0.0, float(timeout))
        self.progress = progress
        self.cls = cls
        self._last = -math.inf

    def left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.perf_counter())

    def share(self, fraction: float) -> float | None:
        left = self.left()
        return None if left is None else fraction * left

    def can_solve(self) -> bool:
        left = self.left()
        return left is None or left > MIN_SOLVE

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def report(self, phase: str, lower: float | None = None, upper: float | None = None,
               force: bool = True, **extra: Any) -> None:
        """Call the progress hook with ``{"phase", "cls", "lower", "upper", "elapsed",
        "time_left", ...}`` (JSON-ready: infinities become strings)."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < 2.0:
            return
        self._last = now

        def js(v):
            if v is None or isinstance(v, (str, bool, int)):
                return v
            v = float(v)
            return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")

        event = {"phase": phase, "cls": self.cls, "lower": js(lower), "upper": js(upper),
                 "elapsed": round(self.elapsed(), 3), "time_left": js(self.left()),
                 **{k: js(v) for k, v in extra.items()}}
        self.progress(event)


    def beat(self, phase: str, lower=None, upper=None) -> Callable[[], None] | None:
        """A heartbeat for a long solver call (None without a progress hook): reports
        ``phase`` with ``solving: True`` each time it is called."""
        if self.progress is None:
            return None
        return lambda: self.report(phase, lower, upper, solving=True)


HEARTBEAT = 2.0      # seconds between progress reports while a solver runs


def _solve_with_heartbeat(backend, arrays, limits, heartbeat):
    """``backend.solve`` in a helper thread while this one reports every
    :data:`HEARTBEAT` seconds. HiGHS releases the GIL while it solves, so the reports come
    on time; a solver that holds it (SCIP) only delays them."""
    import threading

    box: dict = {}

    def work() -> None:
        from nnresilience.backends.certify import safe_solve

        try:
            box["res"] = safe_solve(backend, arrays, limits)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["exc"] = exc

    th = threading.Thread(target=work, name="nnres-solve", daemon=True)
    th.start()
    while True:
        th.join(HEARTBEAT)
        if not th.is_alive():
            break
        heartbeat()
    if "exc" in box:
        raise box["exc"]
    return box["res"]


def quadratic_need(norm: str | None, settings: ResilienceSettings, network=None) -> str | None:
    """Why a query's MIPs have quadratic rows (None if they have none): the L2 norm's cone
    row, or arctan neurons encoded by the paper's MIQCP."""
    if norm == "l2":
        return "the L2 norm (a quadratic cone row)"
    if network is not None and getattr(settings, "arctan", "pwl") == "miqcp" and \
            any(la.kind == "arctan" for la in network.layers):
        return "the arctan MIQCP encoding (quadratic rows)"
    return None


def check_backend(norm: str | None, settings: ResilienceSettings, network=None) -> None:
    """Fail before any work when the query needs quadratic rows and the configured backend
    cannot take them (HiGHS: no quadratic constraints with integers)."""
    from nnresilience.backends.registry import get_backend
    from nnresilience.errors import BackendUnavailableError

    why = quadratic_need(norm, settings, network)
    if why is None:
        return
    try:
        get_backend(settings.backend, need_quadratic=True)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"{why} needs a solver with quadratic constraints (SCIP); backend "
            f"{settings.backend!r} cannot be used: {exc}") from None


def make_backend(settings: ResilienceSettings, quadratic: bool = False,
                 tighten: float = 1.0):
    """The configured backend; ``tighten > 1`` divides its tolerances by that factor
    (through its native options, so :meth:`Backend.tolerances` reports them)."""
    from nnresilience.backends.base import TOLERANCE_OPTIONS
    from nnresilience.backends.registry import get_backend

    backend = get_backend(settings.backend, need_quadratic=quadratic)
    if tighten > 1.0 and backend.name in TOLERANCE_OPTIONS:
        native = {k: v / tighten for group in TOLERANCE_OPTIONS[backend.name]
                  for k, v in group.items()}
        backend = type(backend)(**({"params": native} if backend.name == "scip"
                                   else {"options": native}))
    return backend


def usable_factor(arrays, settings: ResilienceSettings, requested: float) -> float:
    """The tolerance factor a model can take: ``requested``, lowered (not below 1) until
    the tightened feasibility tolerance is at least the float64 rounding unit times the
    model's largest row scale (``backends.certify.row_scales``).

    Why: a tolerance below the rounding error of a row's own terms cannot be met, and the
    solver does not say so. Measured (``benchmarks/resilience_sweep.py``, huge family:
    first layers of 1e5..1e8, row scales 1e7..4e9): at factor 1000 HiGHS returned wrong
    "optimal" answers, α_max's certified upper bound e^6.4 for a true e^7.9e6, a minimum
    perturbation of 65.6 for a true 1.3e-7, Φ_m's lower bound 2.7e-5 for a true 3.3e-6;
    at the capped factor (1..60 there) every bound contained the brute-force value. Nets of
    ordinary magnitude (row scales up to ~1e5) keep the requested factor."""
    if requested <= 1.0:
        return requested
    from nnresilience.backends.certify import tolerance_headroom

    feas = make_backend(settings, bool(arrays.quad), 1.0).tolerances().feasibility
    return float(min(requested, max(1.0, tolerance_headroom(arrays, feas))))


@dataclass(eq=False)
class Solved:
    """A certified solve: the result, the arrays solved, ``τ`` and the certificate."""

    res: Any
    arrays: Any
    backend: str
    tau: float
    cert: Any
    seconds: float
    factor: float = 1.0             # the tolerance factor solved with

    @property
    def status(self) -> str:
        return self.res.status.value

    @property
    def x(self) -> np.ndarray | None:
        return self.res.x


def relax_rows(arrays, mip: ResilienceMip, amount: float, feasibility: float = 0.0):
    """The arrays with the premise and flip rows of ``mip`` loosened by ``amount``, and
    an L2 cone row (``Σ ε² - s² <= 0``) by its own tolerance ``ε_f · s_q``
    (``feasibility`` = ε_f; see :mod:`nnresilience.encode.l2`)."""
    from nnresilience.encode.l2 import NormCone, row_tau

    row_lo = arrays.row_lo.copy()
    for rows in (mip.premise_rows, mip.flip_rows):
        if rows is not None and np.size(rows):
            row_lo[rows] -= amount
    quad = tuple(replace(q, hi=q.hi + row_tau(arrays, q, feasibility))
                 if isinstance(q, NormCone) else q for q in arrays.quad)
    return replace(arrays, row_lo=row_lo, quad=quad)


def solve_certified(mip: ResilienceMip, settings: ResilienceSettings, time_left: float | None,
                    *, relax: bool, stop_first: bool = False,
                    cutoff: float | None = None, tighten: float | None = None,
                    arrays=None, heartbeat: Callable[[], None] | None = None,
                    attained: float | None = None) -> Solved:
    """Solve ``mip`` with the time left; ``relax`` loosens its premise/flip rows by ``τ``
    plus ``mip.float_slack``.

    ``τ`` is computed from the model and the backend's tolerances
    (:func:`nnresilience.backends.certify.model_tau`); the certificate's ``lower`` is the
    solver's dual bound less the objective's tolerance. ``tighten`` divides the backend's
    tolerances (default ``settings.tolerance_factor``); ``τ`` follows them. ``attained``:
    an objective value a known feasible point reaches (a bound above it is rejected). A
    solver that raises is reported as an ``ERROR`` result (no bound, no point).
    """
    from nnresilience.backends.base import SolveLimits
    from nnresilience.backends.certify import (
        ILL_SCALED_HEADROOM,
        certify,
        confirm_cutoff,
        model_tau,
        safe_solve,
    )

    t0 = time.perf_counter()
    base = mip.model.arrays() if arrays is None else arrays
    factor = usable_factor(base, settings,
                           settings.tolerance_factor if tighten is None else float(tighten))
    backend = make_backend(settings, bool(base.quad), factor)
    tol = backend.tolerances()
    tau = model_tau(base, tol)
    # relaxed by the solver's τ and by the float64 replay's distance from the exact
    # network: every pair that replays stays feasible
    arr = relax_rows(base, mip, tau + mip.float_slack, tol.feasibility) if relax else base
    if relax and mip.origin_slack is not None and mip.origin_slack >= -tau:
        # b = x (ε = 0) is a point of the relaxed problem: exact y_j - y_m >= float64 one
        # - float_slack >= -(τ + float_slack). Its objective (0) caps any true bound
        zero = float(base.offset or 0.0)
        attained = zero if attained is None else min(attained, zero)
    limits = SolveLimits(time_limit=time_left, threads=settings.threads,
                         mip_gap=settings.mip_gap, stop_at_first_solution=stop_first,
                         use_priorities=settings.priorities, use_start=True, cutoff=cutoff)
    if heartbeat is None:
        res = safe_solve(backend, arr, limits)
    else:
        res = _solve_with_heartbeat(backend, arr, limits, heartbeat)
    if cutoff is not None:
        # "nothing beats the cutoff" without a point: confirmed by a point of the uncut
        # piece, a checked Farkas proof that it is empty, or a second solver finding no
        # point either; else no bound
        res = confirm_cutoff(backend, arr, res,
                             None if time_left is None else t0 + time_left, may_be_empty=True)
    cert = certify(res, arr, tol, tau=tau, attained=attained)
    # SCIP's dual bound on an ill-scaled model (rows of 1e7..4e9, first layers of 1e5..1e8)
    # was above the true optimum at every feasibility tolerance tried (1e-7..1e-4;
    # benchmarks/results_resilience.md, the resilience sweep): its points still count
    # (they are replayed), its bound does not.
    if backend.name == "scip" and math.isfinite(cert.lower) \
            and usable_factor(base, settings, ILL_SCALED_HEADROOM) < ILL_SCALED_HEADROOM:
        cert = replace(cert, lower=-math.inf,
                       reason="SCIP's dual bound on rows scaled beyond its tolerances "
                              "(not trusted)")
    elif backend.name == "highs" and relax and cutoff is None and math.isfinite(cert.lower) \
            and usable_factor(base, settings, ILL_SCALED_HEADROOM) < ILL_SCALED_HEADROOM:
        cert = _confirm_without_presolve(settings, base, arr, limits, tol, tau, cert,
                                         attained, factor, t0, time_left)
    return Solved(res, arr, backend.name, tau, cert, time.perf_counter() - t0, factor)


def _confirm_without_presolve(settings, base, arr, limits, tol, tau, cert, attained,
                              factor, t0, time_left):
    """HiGHS's bound on an ill-scaled model, confirmed by a solve without presolve: the
    smaller of the two certified bounds, none if the second solve gives none.

    Why: on an arctan net with logits of 1.2e8 (rows of 1e8 next to O(1) rows, τ = 868)
    HiGHS with presolve reported the per-sample relaxed optimum as 0.0743 for every b
    fixed within 0.04 of x (L1), where the true optimum is |b - x| (0.002 at 1e-3);
    without presolve it returned the right values (benchmarks/resilience_sweep.py,
    ``--families smooth``, seed 706). Costs a second solve on ill-scaled models only.
    """
    from nnresilience.backends.certify import certify, safe_solve

    left = None if time_left is None else time_left - (time.perf_counter() - t0)
    if left is not None and left <= 0.0:
        return replace(cert, lower=-math.inf, failed=True,
                       reason="HiGHS bound on an ill-scaled model, no time to confirm it")
    second = make_backend(settings, bool(base.quad), factor)
    second.options["presolve"] = "off"
    res2 = safe_solve(second, arr, replace(limits, time_limit=left, use_start=False))
    cert2 = certify(res2, arr, tol, tau=tau, attained=attained)
    if cert2.failed or not math.isfinite(cert2.lower):
        return replace(cert, lower=-math.inf, failed=True,
                       reason="HiGHS bound on an ill-scaled model not confirmed without "
                              f"presolve ({cert2.reason})")
    return cert if cert.lower <= cert2.lower else cert2


def solve_relaxed(mip: ResilienceMip, settings: ResilienceSettings, clock: Clock, *,
                  stop_first: bool = False, cutoff: float | None = None,
                  heartbeat: Callable[[], None] | None = None,
                  attained: float | None = None) -> Solved | None:
    """The relaxed problem at ``settings.tolerance_factor``; if that fails numerically
    (error, a distrusted "infeasible") and time is left, once more at the solver's default
    tolerances. None when there was no time to solve at all."""
    if not clock.can_solve():
        return None
    sol = solve_certified(mip, settings, clock.left(), relax=True, stop_first=stop_first,
                          cutoff=cutoff, heartbeat=heartbeat, attained=attained)
    if sol.cert.failed and sol.factor > 1.0 and clock.can_solve():
        again = solve_certified(mip, settings, clock.left(), relax=True,
                                stop_first=stop_first, cutoff=cutoff, tighten=1.0,
                                heartbeat=heartbeat, attained=attained)
        if not again.cert.failed or again.x is not None:
            return again
    return sol


def decide(network, case, bounds, settings: ResilienceSettings, time_left: float | None):
    """Decide ``case`` with the MILP engine's certified margin form (same backend, big-M
    source and priorities as ``settings``). ``HOLDS`` means: no input of the region reaches
    the unsafe set, with the solver-tolerance margin of :mod:`nnresilience.backends.certify`;
    a ``VIOLATED`` answer carries a candidate point (the caller replays it).

    A case the MILP leaves undecided (``unknown``, or a candidate that does not replay)
    gets reluplex's second look on small ReLU /
    LeakyReLU nets over boxes (``settings.exact_seconds``,
    :func:`nnresilience.engines.reluplex.second_look`): a ball whose radius sits within
    the MILP's tolerance band of the flip distance is otherwise ``unknown`` at any time-out.
    """
    from nnresilience.engines.milp import MilpEngine
    from nnresilience.results import Status

    t0 = time.monotonic()
    big_m = settings.big_m_value if settings.big_m == "uniform" else None
    eng = MilpEngine(backend=settings.backend, big_m=big_m, arctan=settings.arctan)
    ans = eng.check(network, case, bounds, timeout=time_left, priorities=settings.priorities,
                    threads=settings.threads)
    undecided = ans.status is Status.UNKNOWN or (
        ans.status is Status.VIOLATED and not _replays(network, case, ans.x))
    if undecided and settings.exact_seconds > 0:
        from nnresilience.engines.reluplex import second_look

        deadline = None if time_left is None else t0 + time_left
        second = second_look(network, case, bounds, settings.exact_seconds, deadline)
        if second is not None and second.status is not Status.UNKNOWN:
            return replace(second, stats={**ans.stats, "second_look": second.status.value,
                                          **{f"second_look_{k}": v
                                             for k, v in second.stats.items()}})
    return ans


def _replays(network, case, x) -> bool:
    """``x`` lies in the case's region and its float64 forward pass is unsafe."""
    if x is None:
        return False
    x = np.asarray(x, float)
    return bool(case.region.contains(x, tol=0.0)) and bool(
        case.unsafe.satisfied(network.forward(x)))


def polish(mip: ResilienceMip, sol: Solved, settings: ResilienceSettings, clock: Clock
           ) -> Solved | None:
    """The *exact* problem (no relaxation) with every binary fixed at ``sol``'s values.

    With the activation pattern fixed the MIP is an LP over one linear region, and its
    optimum lies on the exact premise/flip boundary of that region (to the solver's
    tolerance), so its point replays after at most a tiny repair: a witness that is
    optimal for the pattern, where repairing the relaxed point can overshoot. None when
    there is no point or no time; an infeasible pattern (the relaxed optimum used a near
    miss) simply gives no point.
    """
    if sol.x is None or not clock.can_solve():
        return None
    base = mip.model.arrays()
    ints = np.flatnonzero(base.integer)
    if ints.size == 0:
        return None
    lb, ub = base.lb.copy(), base.ub.copy()
    lb[ints] = ub[ints] = np.clip(np.round(sol.x[ints]), base.lb[ints], base.ub[ints])
    return solve_certified(mip, settings, clock.left(), relax=False, tighten=sol.factor,
                           arrays=replace(base, lb=lb, ub=ub))


def tup(x: np.ndarray | None) -> tuple[float, ...] | None:
    return None if x is None else tuple(float(v) for v in np.asarray(x).ravel())


def solver_stats(sol: Solved, mip: ResilienceMip, prefix: str = "") -> dict[str, Any]:
    res = sol.res
    st = {"solver_status": res.status.value, "backend": sol.backend,
          "solver_objective": res.objective, "dual_bound": res.dual_bound,
          "certified_lower": sol.cert.lower, "tau": sol.tau, "tau_obj": sol.cert.tau_obj,
          "solve_seconds": res.seconds, "build_seconds": mip.seconds,
          "n_binaries": mip.n_binaries, "n_vars": mip.model.n_vars, "n_rows": mip.model.n_rows,
          **mip.stats}
    for key, val in (res.stats or {}).items():
        if isinstance(val, (int, float, str, bool)) or val is None:
            st[f"solver_{key}"] = val
    return {f"{prefix}{k}": v for k, v in st.items()} if prefix else st


#: ``log`` of the largest finite float64 (``math.exp`` overflows above it)
_LOG_MAX = math.log(np.finfo(np.float64).max)
_TINY = float(np.nextafter(0.0, 1.0))


def ratio_lower(log_ratio: float) -> float:
    """``exp(log_ratio)`` as a *lower* bound of a confidence ratio, capped at ``e^700``
    (and 0 when it underflows): a smaller lower bound stays a lower bound."""
    return math.exp(min(log_ratio, 700.0))


def ratio_upper(log_ratio: float) -> float:
    """``exp(log_ratio)`` as an *upper* bound: ``inf`` when it does not fit a float64.
    Clamping it to ``exp(700)`` (as once done for both sides) made a 1e12-weight net's
    α_max "optimal" at 1.01e304 while inputs reach ratios of e^(1e9). A ratio is never 0,
    so an upper bound that underflows is the smallest positive float64 instead."""
    if log_ratio > _LOG_MAX:
        return math.inf
    return max(math.exp(log_ratio), _TINY)


def is_optimal(lower: float | None, upper: float | None, settings: ResilienceSettings) -> bool:
    """The documented optimality test: ``upper - lower <= opt_tol * max(1, upper)``."""
    if lower is None or upper is None or not math.isfinite(upper):
        return False
    return upper - lower <= settings.opt_tol * max(1.0, upper)


def norm_lower(cert, upper: float | None = None) -> float:
    """A proven lower bound of a norm (>= 0) from a certificate, clipped to ``upper``."""
    lower = max(0.0, float(cert.lower))
    if upper is not None:
        lower = min(lower, upper)
    return lower
