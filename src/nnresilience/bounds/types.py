"""``NetworkBounds``: per-layer boxes around every intermediate vector of a network.

Convention: ``lo[i]``/``hi[i]`` bound the vector *entering* layer ``i`` (so ``lo[0]`` is
the input box and, for an activation layer ``i``, ``lo[i]`` is its pre-activation bound);
``lo[-1]``/``hi[-1]`` bound the network output. ``len(lo) == len(network.layers) + 1``.
Every method guarantees that both the exact (real-arithmetic) and the float64 forward
value of any input in the region lie inside, at any magnitude (the rule of
:mod:`nnresilience.bounds.rounding`, applied by the producer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class NetworkBounds:
    lo: list[np.ndarray]
    hi: list[np.ndarray]
    method: str = "interval"
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi):
            raise ValueError("lo and hi must have the same number of layers")

    @property
    def output(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo[-1], self.hi[-1]

    def forward_errors(self, network) -> list[np.ndarray]:
        """``e_i`` per entry: how far the float64 forward value can be from the exact one.

        For a complete engine, which decides the *exact* network: a ``holds`` is only a
        ``holds`` of the float64 replay if the unsafe set was enlarged by
        :func:`~nnresilience.bounds.rounding.replay_slack` of ``e[-1]``.
        """
        from nnresilience.bounds.rounding import forward_errors

        return forward_errors(network.layers, list(self.lo), list(self.hi))

    def unstable_mask(self, i: int) -> np.ndarray:
        """Pre-activations of layer ``i`` whose sign is not decided (lo < 0 < hi)."""
        return (self.lo[i] < 0.0) & (self.hi[i] > 0.0)
