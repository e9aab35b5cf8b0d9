"""The single place where backends are listed, and the choice behind ``"auto"``.

``auto`` order (see ``benchmarks/results_backends.md`` for the measurement behind it):
MILPs go to the first available of :data:`AUTO_ORDER`; models with quadratic constraints
(arctan ``miqcp``) to the first available backend that supports them.
"""

from __future__ import annotations

from nnresilience.backends.base import Backend
from nnresilience.backends.gurobi import GurobiBackend
from nnresilience.backends.highs import HighsBackend
from nnresilience.backends.scip import ScipBackend
from nnresilience.errors import BackendUnavailableError

BACKENDS: dict[str, type[Backend]] = {
    "highs": HighsBackend,
    "scip": ScipBackend,
    "gurobi": GurobiBackend,
}
# Decided by benchmarks/backends.py (results in benchmarks/results_backends.md): HiGHS
# proved more instances (holds / optimal) within the limit and builds in one call; SCIP is
# better at finding feasible points on large instances and is the only MIQCP solver here.
AUTO_ORDER: tuple[str, ...] = ("gurobi", "highs", "scip")
AUTO_ORDER_QUADRATIC: tuple[str, ...] = ("gurobi", "scip")


def available_backends() -> list[str]:
    """Names of the backends whose solver package is importable."""
    return [name for name, cls in BACKENDS.items() if cls.available()]


def get_backend(name: str = "auto", need_quadratic: bool = False) -> Backend:
    """A backend instance by name (``auto``, ``highs``, ``scip``, ``gurobi``).

    Raises :class:`BackendUnavailableError` naming the missing package (and what to
    install) when the backend cannot be used, or when ``need_quadratic`` asks for quadratic
    constraints that the named backend lacks.
    """
    key = (name or "auto").lower()
    if key == "auto":
        order = AUTO_ORDER_QUADRATIC if need_quadratic else AUTO_ORDER
        for cand in order:
            if BACKENDS[cand].available():
                return BACKENDS[cand]()
        raise BackendUnavailableError(
            "no MILP solver is installed" + (" that supports quadratic constraints"
                                             if need_quadratic else "")
            + f"; install one of: {', '.join(BACKENDS[c].module for c in order)}")
    cls = BACKENDS.get(key)
    if cls is None:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose from auto, "
                                      f"{', '.join(BACKENDS)}")
    if not cls.available():
        raise BackendUnavailableError(f"backend {key!r} needs the Python package "
                                      f"{cls.module!r}, which is not installed")
    if need_quadratic and not cls.supports_quadratic:
        # the caller says which rows are quadratic (L2 cone, arctan MIQCP): not guessed here
        raise BackendUnavailableError(f"backend {key!r} cannot solve quadratic constraints; "
                                      "use 'scip'")
    return cls()


def second_backend(primary: str, quadratic: bool, tighten: float = 1e3) -> Backend | None:
    """Another solver than ``primary`` when one is installed (else the same one), its
    tolerances divided by ``tighten``: the independent second opinion on a solver claim.
    None when no backend can take the model."""
    from nnresilience.backends.base import TOLERANCE_OPTIONS

    order = ["scip", "highs"] if primary != "scip" else ["highs", "scip"]
    for name in order:
        cls = BACKENDS[name]
        if not cls.available() or (quadratic and not cls.supports_quadratic):
            continue
        native = {k: v / tighten for group in TOLERANCE_OPTIONS[name]
                  for k, v in group.items()}
        if name == "scip":
            # SCIP's own Ctrl-C handler would swallow the user's interrupt (and stays
            # installed when a solve ends in an LP error)
            return cls(params={**native, "misc/catchctrlc": False})
        return cls(options=native)
    return None
