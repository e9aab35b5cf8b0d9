"""The engine interface: decide one case (input region + unsafe output condition).

Engines return an :class:`EngineAnswer` whose ``x`` is only a *candidate*: the caller
(:func:`nnresilience.verify.verify`) replays it through the float64 forward pass (and
onnxruntime) before anything is reported as violated. ``HOLDS`` must come from a proof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from nnresilience.results import Status


@dataclass(frozen=True, eq=False)
class EngineAnswer:
    status: Status
    x: np.ndarray | None = None        # candidate counterexample (unreplayed)
    seconds: float = 0.0
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Subclasses implement :meth:`check`; ``name`` is what ``--engine`` takes."""

    name: ClassVar[str] = "engine"

    def supports(self, network) -> str | None:
        """``None`` if the network can be handled, else the reason why not."""
        return None

    def check(self, network, case, bounds, timeout: float | None = None,
              **options: Any) -> EngineAnswer:
        raise NotImplementedError
