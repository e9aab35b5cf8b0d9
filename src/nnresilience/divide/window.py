"""Executor plumbing shared by the divided drivers: a bounded submission window.

The code lives in :mod:`nnresilience.search.parallel` (one executor interface for the
search and the divided optimisation); these names are kept for their importers
(:mod:`nnresilience.divide.optimise`).
"""

from __future__ import annotations

from nnresilience.search.parallel import (
    _POLL,
    TASK_MARGIN,
    _default_parts,
    _resolve_executor,
    _wait_first,
    _Window,
)

__all__ = ["TASK_MARGIN", "_POLL", "_Window", "_default_parts", "_resolve_executor",
           "_wait_first"]
