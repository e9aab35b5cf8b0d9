"""Complete decision engines. ``get_engine(name)`` is the one lookup the CLI and ``verify`` use.

Names: ``milp`` (default backend chosen by benchmark), ``milp:<backend>`` (``milp:scip``,
``milp:highs``, ``milp:gurobi``), ``reluplex`` and ``bab`` (branch and bound over domains
with batched bounds and MILP leaves, :mod:`nnresilience.engines.bab`; ``bab:<leaf>``
picks the leaf engine, e.g. ``bab:milp:scip``). Engines are imported lazily so that an
engine whose dependencies are missing does not break the others.
"""

from __future__ import annotations

from typing import Any

from nnresilience.engines.base import Engine, EngineAnswer

ENGINE_NAMES = ("milp", "reluplex", "bab")


def get_engine(name: str = "milp", **kwargs: Any) -> Engine:
    """An engine instance; ``kwargs`` go to its constructor (e.g. ``big_m``, ``arctan``)."""
    from nnresilience.errors import EngineUnsupportedError

    key = (name or "milp").lower()
    base, _, backend = key.partition(":")
    if base == "milp":
        from nnresilience.engines.milp import MilpEngine

        if backend:
            kwargs.setdefault("backend", backend)
        return MilpEngine(**kwargs)
    if base == "reluplex" and not backend:
        from nnresilience.engines.reluplex import ReluplexEngine

        return ReluplexEngine(**kwargs)
    if base == "bab":
        from nnresilience.engines.bab import BabEngine

        if backend:
            get_engine(backend)                 # an unknown leaf engine fails here
            kwargs.setdefault("leaf", backend)
        return BabEngine(**kwargs)
    raise EngineUnsupportedError(f"unknown engine {name!r}; choose from milp, milp:<backend>, "
                                 "reluplex, bab")


__all__ = ["ENGINE_NAMES", "Engine", "EngineAnswer", "get_engine"]
