"""Maximum resilience of a network (seed 000): Φ_m, Ξ, α_max and per-sample minimum
perturbation, by MIP (6) on the shared encoder, with the paper's heuristics switchable.

See docs/resilience.md for the definitions, tolerances and measurements.
"""

from nnresilience.resilience.query import (
    alpha_max,
    delta_check,
    min_perturbation,
    phi,
    phi_many,
    resolve_domain,
    robustness_table,
    xi,
)
from nnresilience.resilience.settings import (
    DATAFLOW,
    DEFAULT,
    HEURISTICS_12,
    PAPER_BASELINE,
    PRESETS,
    Query,
    ResilienceSettings,
    preset,
)

__all__ = [
    "DATAFLOW", "DEFAULT", "HEURISTICS_12", "PAPER_BASELINE", "PRESETS", "Query",
    "ResilienceSettings", "alpha_max", "delta_check", "min_perturbation", "phi", "phi_many",
    "preset", "resolve_domain", "robustness_table", "xi",
]
