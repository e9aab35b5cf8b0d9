"""Complete decision engines. ``get_engine(name)`` is the one lookup the CLI and ``verify`` use.

Names: ``milp`` (default backend chosen by benchmark), ``milp:<backend>`` (``milp:scip``,
``milp:highs``, ``milp:gurobi``) and ``reluplex``. Engines are imported lazily so that an
engine whose dependencies are missing does not break the others.
"""

from __future__ import annotations

from typing import Any

from nnresilience.engines.base import Engine, EngineAnswer

ENGINE_NAMES = ("milp", "reluplex")


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
    raise EngineUnsupportedError(f"unknown engine {name!r}; choose from milp, milp:<backend>, "
                                 "reluplex")


__all__ = ["ENGINE_NAMES", "Engine", "EngineAnswer", "get_engine"]
