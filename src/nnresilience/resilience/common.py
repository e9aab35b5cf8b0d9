"""Helpers shared by the resilience queries: domain resolution, solving, intervals."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from nnresilience.errors import InputDataError, ShapeMismatchError
from nnresilience.resilience.encode import ResilienceMip
from nnresilience.resilience.settings import ResilienceSettings


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


def solve(mip: ResilienceMip, settings: ResilienceSettings, timeout: float | None,
           stop_first: bool = False):
    from nnresilience.backends.base import SolveLimits
    from nnresilience.backends.registry import get_backend

    backend = get_backend(settings.backend)
    limits = SolveLimits(time_limit=timeout, threads=settings.threads, mip_gap=settings.mip_gap,
                         stop_at_first_solution=stop_first, use_priorities=settings.priorities,
                         use_start=True)
    res = backend.solve(mip.model.arrays(), limits)
    return res, getattr(backend, "name", type(backend).__name__)


def remaining(t0: float, timeout: float | None, floor: float = 0.5) -> float | None:
    if timeout is None:
        return None
    return max(floor, timeout - (time.perf_counter() - t0))


def tup(x: np.ndarray | None) -> tuple[float, ...] | None:
    return None if x is None else tuple(float(v) for v in np.asarray(x).ravel())


def solver_stats(res, backend: str, mip: ResilienceMip) -> dict[str, Any]:
    st = {"solver_status": res.status.value, "backend": backend,
          "solver_objective": res.objective, "dual_bound": res.dual_bound,
          "solve_seconds": res.seconds, "build_seconds": mip.seconds,
          "n_binaries": mip.n_binaries, "n_vars": mip.model.n_vars, "n_rows": mip.model.n_rows,
          **mip.stats}
    for key, val in (res.stats or {}).items():
        if isinstance(val, (int, float, str, bool)) or val is None:
            st[f"solver_{key}"] = val
    return st


def interval(upper: float | None, dual: float | None, status_optimal: bool,
              settings: ResilienceSettings) -> tuple[float, float | None, bool]:
    """``(lower, upper, optimal)`` of a norm (>= 0) from a witness norm and a dual bound."""
    lower = 0.0 if dual is None or not math.isfinite(dual) else max(0.0, float(dual))
    if upper is not None:
        lower = min(lower, upper)
    optimal = (upper is not None and status_optimal
               and upper - lower <= settings.opt_tol * max(1.0, upper))
    return lower, upper, optimal


