"""Queries and settings of the resilience computations (seed 000, §4-§5).

:class:`Query` says *what* is asked (class ``m``, confidence ratio ``alpha``, ``k``, norm,
domain box D); :class:`ResilienceSettings` says *how* it is solved (big-M source, the
paper's heuristics 1-3, backend, limits). Both are frozen so a misspelt option raises and a
configuration can be logged and rebuilt; presets name the configurations measured in
``benchmarks/paper_tables.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from nnresilience.errors import InputDataError, ShapeMismatchError

NORMS = ("l1", "linf", "l2")
BIG_M_SOURCES = ("uniform", "interval", "symbolic", "alpha")
ARCTAN_MODES = ("pwl", "miqcp")


@dataclass(frozen=True, eq=False)
class Query:
    """Φ_m query of Definition 1 / MIP (6).

    ``lo``/``hi`` are the domain box D. *Both* the unperturbed input ``a`` and the
    perturbed input ``a + ε`` are required to lie in D: a perturbation that leaves the
    domain (e.g. a pixel above 1) is not a physically possible input, and bounding copy 2
    of the network over D is what keeps its big-M values finite.
    """

    cls: int
    alpha: float
    k: int
    norm: str
    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        lo = np.asarray(self.lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(self.hi, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise ShapeMismatchError(f"domain bounds differ in size: {lo.size} vs {hi.size}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InputDataError("the domain box D must be finite (give --domain LO:HI)")
        if np.any(lo > hi):
            i = int(np.argmax(lo > hi))
            raise InputDataError(f"empty domain: lower {lo[i]} > upper {hi[i]} at X_{i}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        if not (math.isfinite(self.alpha) and self.alpha >= 1.0):
            raise InputDataError(f"alpha must be a finite number >= 1, got {self.alpha}")
        if self.norm not in NORMS:
            raise InputDataError(f"norm must be one of {NORMS}, got {self.norm!r}")

    def check_network(self, n_inputs: int, n_outputs: int) -> None:
        """Raise a clear error if the query does not fit the network's sizes."""
        if self.lo.size != n_inputs:
            raise ShapeMismatchError(f"domain has {self.lo.size} values, the network has "
                                     f"{n_inputs} inputs")
        if not 0 <= self.cls < n_outputs:
            raise InputDataError(f"class {self.cls} out of range 0..{n_outputs - 1}")
        if not 1 <= self.k <= n_outputs - 1:
            raise InputDataError(f"k must be in 1..{n_outputs - 1} (d - 1), got {self.k}")

    @property
    def log_alpha(self) -> float:
        return math.log(self.alpha)


@dataclass(frozen=True)
class ResilienceSettings:
    """How resilience MIPs are built and solved. Every field is one switch of §5."""

    # Where the big-M constants come from: "uniform" (M = big_m_value everywhere, the
    # paper's naive baseline; only sound if every |pre-activation| <= M), "interval" (the
    # paper's dataflow analysis, §3), "symbolic" (back-substitution, tighter) or "alpha"
    # (optimised slopes, bounds/crown.py: tighter still per box, a few seconds more; over
    # a whole domain like [0,1]^64 of the digits nets it left the 207 unstable neurons of
    # digits_2x50 as they were, so it is not the default).
    big_m: str = "symbolic"
    # The uniform constant used when big_m == "uniform" (paper: 10^4).
    big_m_value: float = 1e4
    # Heuristic 1: re-tighten bounds with small MIPs looking back over this many layers
    # (compute_bounds(method="milp:W")); 0 switches it off.
    lookback: int = 0
    # Heuristic 2: branching priorities by layer (earlier layers first; SCIP honours them,
    # HiGHS ignores them). Off by default: measured 10-20x slower with SCIP on Φ_m of the
    # agent-like net (docs/resilience.md, "Measurements").
    priorities: bool = False
    # Coupling cuts |v2 - v1| <= G |eps| between the two copies, layer by layer (ours, not
    # the paper's; valid for every feasible point, so the optimum is unchanged). They lift
    # the LP bound away from eps = 0, which the plain two-copy relaxation allows.
    coupling: bool = True
    # Heuristic 3: start from a confident sample a_ini, solve the per-sample problem there
    # (Φ_ini), then give the MIP that start and the row sum(eps_abs) <= Φ_ini.
    warm_start: bool = False
    # Heuristic 3: which data sample becomes a_ini: "closest" (smallest logit margin that
    # still meets alpha: usually the smallest Φ_ini) or "highest" (largest margin).
    ini_pick: str = "closest"
    # Time limit (s) of the per-sample Φ_ini solve of heuristic 3.
    ini_timeout: float = 10.0
    # Per-sample queries: after a first witness of norm u, re-solve inside the ball of
    # radius u with bounds over [x - u, x + u] (exact: the optimum lies inside).
    shrink: bool = True
    # Solver backend name for get_backend ("auto", "scip", "highs", ...).
    backend: str = "auto"
    # Relative MIP gap at which the solver stops as optimal.
    mip_gap: float = 1e-6
    # Threads per solve (measured: a second thread does not help; parallelism is by class).
    threads: int = 1
    # Answers with upper - lower <= opt_tol * max(1, upper) count as optimal (upper from a
    # witness that replays exactly, lower certified: see docs/resilience.md).
    opt_tol: float = 1e-5
    # Resilience MIPs are solved with the backend's feasibility/integrality tolerances
    # divided by this factor (1 = the solver's defaults, 1e-6 for HiGHS and SCIP). The
    # tolerance margin tau of the certified bounds shrinks by as much, so the relaxed
    # problem's lower bound and the exact witness meet within opt_tol; measured no slower
    # on the example nets (docs/resilience.md). A solve that fails numerically at the tight
    # tolerances is repeated once at the defaults.
    tolerance_factor: float = 1e3
    # Share of a query's deadline that bound computation may use.
    bounds_share: float = 0.3
    # Arctan neurons: "pwl" (sound linear relaxation, any backend) or "miqcp" (seed 000's
    # quadratic approximation widened by its error band; quadratic rows, SCIP only). The
    # name and values are the verify engine's (MilpEngine(arctan=...)); results say which
    # was used (resilience/labels.py, docs/resilience.md "Arctan").
    arctan: str = "pwl"
    # [diff] Two-copy differential analysis of Φ_m (resilience/diff_plan.py; docs/
    # resilience.md, "Differential bounds"). Seconds of the two-copy pair attack before the
    # MIP (0: off; at most 10% of the timeout): incumbent, full MIP start, radius u.
    pair_attack: float = 5.0
    # [diff] Certified lower bound of Φ_m from differential bounds (bisection on r).
    diff_lower: bool = True
    # [diff] Seconds (at most; never past the certified bound's share, 15 % of the
    # timeout) of splitting the segment points for the vertex bound, any norm
    # (resilience/lipschitz_split.py): digits 2x50 class 0 L1 0.174 -> 0.188 in 10 s,
    # L∞ 0.0041 -> 0.0049. 0: off.
    diff_split: float = 60.0
    # [diff] Difference rows in MIP (6) (need a pair): difference boxes / planes / scaled
    # rows, per-class flip rows, linking rows. They lift the root LP bound from 0 (digits
    # 2x50: 0.054) but not past the certified cut, and measured no gain at 60 s: off.
    diff_rows: bool = False
    # [diff] The certified lower bound as a cut (objective >= lower), with the radius row
    # ||ε|| <= u of the attack's pair and copy 2's bounds over the pair region.
    diff_cut: bool = True
    # [diff] Branching on a's domain after the MIP: the number of pieces (0: off).
    branching: int = 0
    # Seconds of reluplex's second look at a certified ball decision the MILP left
    # undecided (δ-check, minimum-perturbation bisection; small ReLU / LeakyReLU nets,
    # L∞ balls): a radius within the MILP's tolerance band of the flip distance is
    # otherwise unknown at any time-out. 0: off.
    exact_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.big_m not in BIG_M_SOURCES:
            raise InputDataError(f"big_m must be one of {BIG_M_SOURCES}, got {self.big_m!r}")
        if self.lookback < 0:
            raise InputDataError(f"lookback must be >= 0, got {self.lookback}")
        if not self.tolerance_factor >= 1.0:
            raise InputDataError(f"tolerance_factor must be >= 1, got {self.tolerance_factor}")
        if not 0.0 < self.bounds_share <= 1.0:
            raise InputDataError(f"bounds_share must be in (0, 1], got {self.bounds_share}")
        if self.arctan not in ARCTAN_MODES:
            raise InputDataError(f"arctan must be one of {ARCTAN_MODES}, got {self.arctan!r}")
        if self.ini_pick not in ("closest", "highest"):
            raise InputDataError(f"ini_pick must be 'closest' or 'highest', got "
                                 f"{self.ini_pick!r}")
        if self.pair_attack < 0 or self.branching < 0 or self.diff_split < 0:  # [diff]
            raise InputDataError("pair_attack, branching and diff_split must be >= 0")

    @property
    def uses_differential(self) -> bool:  # [diff]
        """True when Φ_m queries run the two-copy analysis (:mod:`.diff_plan`)."""
        return bool(self.pair_attack > 0 or self.diff_lower or self.branching)

    @property
    def bounds_method(self) -> str:
        """The compute_bounds method this configuration asks for."""
        if self.lookback > 0:
            return f"milp:{self.lookback}"
        return "interval" if self.big_m == "uniform" else self.big_m

    def with_(self, **changes: Any) -> ResilienceSettings:
        """A copy with some fields changed (unknown names raise ``TypeError``)."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(changes) - known)
        if bad:
            raise TypeError(f"unknown resilience settings: {', '.join(bad)}")
        return replace(self, **changes)


# [diff] The paper's configurations run without the two-copy analysis (ours).
_NO_DIFF = dict(pair_attack=0.0, diff_lower=False, diff_rows=False, diff_cut=False)
# The paper's naive baseline: uniform M = 10^4, no heuristics (Table 1, column 1).
PAPER_BASELINE = ResilienceSettings(big_m="uniform", priorities=False, coupling=False,
                                    **_NO_DIFF)
# The paper's dataflow analysis: interval bounds as big-M (Table 1, column 2).
DATAFLOW = ResilienceSettings(big_m="interval", priorities=False, coupling=False, **_NO_DIFF)
# Heuristics 1 + 2 of the paper (Table 1, column 3) on top of interval bounds.
HEURISTICS_12 = ResilienceSettings(big_m="interval", lookback=2, priorities=True,
                                   coupling=False, **_NO_DIFF)
# What measurements support as default (docs/resilience.md, "Measurements").
DEFAULT = ResilienceSettings()

PRESETS: dict[str, ResilienceSettings] = {
    "paper_baseline": PAPER_BASELINE,
    "dataflow": DATAFLOW,
    "heuristics12": HEURISTICS_12,
    "default": DEFAULT,
}


def preset(name: str) -> ResilienceSettings:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputDataError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") \
            from None
