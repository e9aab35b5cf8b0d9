"""Result dataclasses shared by every engine, the store and the CLI.

Decision answers use the three words of :class:`Status` (VNN-COMP: ``unsat``/``sat``/
``timeout``). Optimisation answers carry an interval ``[lower, upper]``: ``lower`` is a
*proven* bound (the solver's dual bound when stopped early), ``upper`` the best value a
replayed witness attains; a single number is reported only when ``optimal`` is true.
All results round-trip through JSON (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


class Status(str, enum.Enum):
    """Verdict of a decision query. ``HOLDS``: proven; ``VIOLATED``: replayed counterexample."""

    HOLDS = "holds"
    VIOLATED = "violated"
    UNKNOWN = "unknown"

    @property
    def vnncomp(self) -> str:
        """The word VNN-COMP result files use for this verdict."""
        return {"holds": "unsat", "violated": "sat", "unknown": "timeout"}[self.value]


def _tolist(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return a.tolist()
    if isinstance(a, (np.floating, np.integer)):
        return a.item()
    return a


def _finite_or_none(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class Counterexample:
    """An input ``x`` (flat, float64) and the output ``y`` the float64 forward pass gives
    (for a model ending in a softmax, the probabilities, as the model file computes them).

    ``x``/``y`` are stored as tuples so the dataclass stays hashable and JSON-friendly.
    ``replayed_onnxruntime`` records whether onnxruntime confirmed it as well.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    replayed_onnxruntime: bool | None = None

    @staticmethod
    def from_arrays(x: np.ndarray, y: np.ndarray, replayed_onnxruntime: bool | None = None
                    ) -> Counterexample:
        return Counterexample(tuple(np.asarray(x, float).ravel().tolist()),
                              tuple(np.asarray(y, float).ravel().tolist()),
                              replayed_onnxruntime)

    @property
    def x_array(self) -> np.ndarray:
        return np.asarray(self.x, dtype=np.float64)

    @property
    def y_array(self) -> np.ndarray:
        return np.asarray(self.y, dtype=np.float64)

    def to_vnncomp(self) -> str:
        """The ``((X_0 v) ... (Y_0 v))`` block of a VNN-COMP ``sat`` result file."""
        parts = [f"(X_{i} {v!r})" for i, v in enumerate(self.x)]
        parts += [f"(Y_{j} {v!r})" for j, v in enumerate(self.y)]
        return "(" + "\n ".join(parts) + ")"


@dataclass(frozen=True)
class VerificationResult:
    """Answer to a decision query.

    ``stats`` holds engine statistics (nodes, LPs, rule counts, bound method, ...), always
    JSON-serialisable. ``message`` explains an ``unknown`` (timeout, unsupported, ...).
    """

    status: Status
    counterexample: Counterexample | None = None
    engine: str = ""
    seconds: float = 0.0
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status is Status.VIOLATED and self.counterexample is None:
            raise ValueError("a 'violated' result needs its counterexample")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        d["stats"] = {k: _tolist(v) for k, v in self.stats.items()}
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> VerificationResult:
        ce = d.get("counterexample")
        return VerificationResult(
            status=Status(d["status"]),
            counterexample=None if ce is None else Counterexample(
                tuple(ce["x"]), tuple(ce["y"]), ce.get("replayed_onnxruntime")),
            engine=d.get("engine", ""), seconds=float(d.get("seconds", 0.0)),
            message=d.get("message", ""), stats=dict(d.get("stats", {})))

    def to_vnncomp(self) -> str:
        """Text of a VNN-COMP result file: the verdict word, then the witness if ``sat``."""
        word = self.status.vnncomp
        if self.status is Status.VIOLATED and self.counterexample is not None:
            return word + "\n" + self.counterexample.to_vnncomp() + "\n"
        return word + "\n"


@dataclass(frozen=True)
class ResilienceResult:
    """Answer to an optimisation query (Phi_m, alpha_max, minimum perturbation).

    ``lower`` is proven (dual bound), ``upper`` is attained by the replayed witness pair
    ``(a, a_perturbed)``; ``optimal`` means ``upper - lower`` is within the solver gap.
    ``feasible`` is False when no input satisfies the premise (e.g. alpha > alpha_max).
    """

    quantity: str                      # "phi", "alpha_max", "min_perturbation"
    lower: float | None
    upper: float | None
    optimal: bool
    feasible: bool = True
    cls: int | None = None
    alpha: float | None = None
    k: int | None = None
    norm: str | None = None
    a: tuple[float, ...] | None = None
    a_perturbed: tuple[float, ...] | None = None
    seconds: float = 0.0
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        """The single number, only when proven optimal."""
        return self.upper if self.optimal else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lower"] = _finite_or_none(self.lower)
        d["upper"] = _finite_or_none(self.upper)
        d["stats"] = {k: _tolist(v) for k, v in self.stats.items()}
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ResilienceResult:
        d = dict(d)
        for key in ("a", "a_perturbed"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return ResilienceResult(**d)
