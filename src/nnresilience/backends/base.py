"""The one small interface every solver backend implements.

A backend takes :class:`~nnresilience.encode.model.MilpArrays` in one call and returns a
:class:`SolveResult` whose status is one of the shared words below (each backend maps its
native statuses through its own table). ``dual_bound`` is the solver's *proven* bound on
the optimum (for a minimisation, a value no feasible point beats); callers use it, never
the incumbent, when a solve stops early.

A solver's "infeasible" or dual bound is only true up to its feasibility and integrality
tolerances; :meth:`Backend.tolerances` says what they are, so that
:mod:`nnresilience.backends.certify` can turn a result into a bound that survives them.
"""

from __future__ import annotations

import enum
import importlib.util
import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from nnresilience.encode.model import MilpArrays


class SolveStatus(str, enum.Enum):
    OPTIMAL = "optimal"            # proven optimal within gap (feasible, x is set)
    INFEASIBLE = "infeasible"      # proven infeasible
    UNBOUNDED = "unbounded"
    LIMIT = "limit"                # time/node limit or cutoff reached; x may be set
    ERROR = "error"                # numerical trouble or solver failure


@dataclass(frozen=True)
class SolveLimits:
    time_limit: float | None = None   # seconds of wall time for this solve
    threads: int = 1
    mip_gap: float = 1e-6             # relative gap at which a MIP counts as optimal
    cutoff: float | None = None       # prune nodes whose bound is >= cutoff (minimisation)
    stop_at_first_solution: bool = False  # decision queries: any feasible point ends it
    use_priorities: bool = True
    use_start: bool = True
    verbose: bool = False
    # Run the solve in a killable child process (see :mod:`nnresilience.backends.guard`):
    # None = decide by model size when a time limit is given; True/False force it.
    isolate: bool | None = None


@dataclass(frozen=True)
class Tolerances:
    """What a backend's answer is only true up to.

    ``feasibility``: the violation a solver accepts on a row or a variable bound, *relative*
    to the row's scale (absolute for rows of magnitude <= 1; solvers scale rows and columns
    internally, so for large rows the accepted violation grows with the row).
    ``integrality``: how far an integer column may be from an integer.
    """

    feasibility: float
    integrality: float

    def tightened(self, factor: float) -> Tolerances:
        return Tolerances(self.feasibility / factor, self.integrality / factor)


#: Native options behind each tolerance and their documented defaults, per backend:
#: ``(feasibility options, integrality options)``. HiGHS checks MIP rows and integrality
#: with ``mip_feasibility_tolerance`` and LP rows with ``primal_feasibility_tolerance``;
#: SCIP uses ``numerics/feastol`` for rows, bounds and integrality; Gurobi has
#: ``FeasibilityTol`` and ``IntFeasTol``. The largest value of each kind counts.
TOLERANCE_OPTIONS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "highs": ({"mip_feasibility_tolerance": 1e-6, "primal_feasibility_tolerance": 1e-7},
              {"mip_feasibility_tolerance": 1e-6}),
    "scip": ({"numerics/feastol": 1e-6}, {"numerics/feastol": 1e-6}),
    "gurobi": ({"FeasibilityTol": 1e-6}, {"IntFeasTol": 1e-5}),
}
#: For a backend we know nothing about: an order of magnitude looser than the above.
FALLBACK_TOLERANCES = Tolerances(1e-5, 1e-5)


@dataclass(frozen=True, eq=False)
class SolveResult:
    status: SolveStatus
    x: np.ndarray | None          # primal values of the best solution found, if any
    objective: float | None       # objective of x (minimised)
    dual_bound: float | None      # proven lower bound on the optimum (-inf if none)
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        return self.x is not None


class Backend:
    """Base class: subclasses set the class attributes and implement :meth:`_solve`.

    Callers use :meth:`solve`, which keeps the time limit as a promise: a large call runs
    in a killable child process (:mod:`nnresilience.backends.guard`), so a solver that
    overruns its own limit (HiGHS's MIP presolve does not look at the clock) cannot take
    the caller past its deadline.
    """

    name: ClassVar[str] = "base"
    module: ClassVar[str] = ""            # import name of the solver package
    supports_mip: ClassVar[bool] = True
    supports_quadratic: ClassVar[bool] = False
    supports_priorities: ClassVar[bool] = False
    supports_cutoff: ClassVar[bool] = False
    supports_start: ClassVar[bool] = False

    @classmethod
    def available(cls) -> bool:
        """True if the solver package can be imported (checked without importing it)."""
        return bool(cls.module) and importlib.util.find_spec(cls.module) is not None

    def tolerances(self) -> Tolerances:
        """The feasibility and integrality tolerances this instance solves with.

        Each is the largest of the solver's options of that kind (:data:`TOLERANCE_OPTIONS`),
        taking a value set through the native options a backend keeps in ``options`` /
        ``params`` over the documented default. Unknown backends get
        :data:`FALLBACK_TOLERANCES`.
        """
        known = TOLERANCE_OPTIONS.get(self.name)
        if known is None:
            return FALLBACK_TOLERANCES
        native = {**(getattr(self, "options", None) or {}),
                  **(getattr(self, "params", None) or {})}

        def pick(defaults: dict[str, float]) -> float:
            return max(float(native.get(key, val)) for key, val in defaults.items())

        return Tolerances(pick(known[0]), pick(known[1]))

    def solve(self, model: MilpArrays, limits: SolveLimits) -> SolveResult:
        """Solve ``model`` within ``limits`` (returns by ``time_limit`` + a small grace)."""
        from nnresilience.backends.guard import run_guarded, should_isolate

        if should_isolate(model, limits):
            res = run_guarded(self._solve, model, limits)
        else:
            res = self._solve(model, limits)
        return _within_cutoff(res, limits)

    def _solve(self, model: MilpArrays, limits: SolveLimits) -> SolveResult:
        raise NotImplementedError


def _within_cutoff(res: SolveResult, limits: SolveLimits) -> SolveResult:
    """Read a solve under an objective cutoff for what it proves, whatever the solver says.

    A cutoff lets the solver prune every node whose bound does not beat it, so the only
    bound it can prove above the cutoff is the cutoff itself ("nothing below it"). HiGHS
    1.x has been seen to report ``Optimal`` with a point and a dual bound *above* the
    cutoff that were not the optimum (a 3-5-4-3 ReLU net: "optimal" -t = 0.166, while
    a sampled input reached 0.110 and the true optimum is 0.070). So: a dual bound is
    capped at the cutoff, and an "optimal" point that does not beat the cutoff is only a
    point (status ``LIMIT``).
    """
    cut = limits.cutoff
    if cut is None or res.status is SolveStatus.INFEASIBLE:
        return res
    dual = res.dual_bound
    status = res.status
    if dual is not None and not math.isnan(dual) and dual > cut:
        dual = float(cut)
    if status is SolveStatus.OPTIMAL and res.objective is not None and res.objective >= cut:
        status = SolveStatus.LIMIT
    if dual is res.dual_bound and status is res.status:
        return res
    return replace(res, status=status, dual_bound=dual)
