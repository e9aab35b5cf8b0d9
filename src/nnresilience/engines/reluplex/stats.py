"""Counters of the Reluplex search: every rule fired, pivots, splits, depth, restorations.

The names of the rule counters are the names of the calculus (Katz et al., CAV 2017, and
seed 004 §III) so that a run can be read against the paper: ``Update``, ``Pivot1``,
``Pivot2``, ``PivotForRelu``, ``Update_b``, ``Update_f`` (ReLU pairs, slope 0),
``L-Update_b1``, ``L-Update_b2``, ``L-Update_f`` (Leaky-ReLU pairs), ``ReluSplit``,
``Failure``, ``ReluSuccess`` / ``L-ReluSuccess``. The remaining counters describe the
machinery around the rules (bound tightening, phase fixing, tableau restoration).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

RULES = ("Update", "Pivot1", "Pivot2", "PivotForRelu", "Update_b", "Update_f",
         "L-Update_b1", "L-Update_b2", "L-Update_f", "ReluSplit", "Failure",
         "ReluSuccess", "L-ReluSuccess")


@dataclass
class ReluplexStats:
    """Mutable counters of one query (or the sum over the disjuncts of a case).

    ``rules`` maps each rule name of :data:`RULES` to how often it fired. ``pivots`` counts
    every basis exchange (Pivot1, Pivot2, PivotForRelu and the pivots that bring an
    elimination equation into the basis). ``bound_tightenings`` counts individual bound
    improvements (one per variable side), derived from tableau rows or from pair
    semantics. ``phase_fixes`` counts pairs whose phase was decided by bounds (not by a
    split); ``eliminations`` counts the equations ``x^f = x^b`` / ``x^f = k x^b`` added to
    the tableau (one per fixed pair, whether fixed by bounds or by a split).
    """

    rules: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    pivots: int = 0
    splits: int = 0
    max_depth: int = 0
    restorations: int = 0
    bound_tightenings: int = 0
    phase_fixes: int = 0
    eliminations: int = 0
    nodes: int = 0
    simplex_steps: int = 0
    stuck_branches: int = 0
    node_bound_passes: int = 0
    queries: int = 0
    unstable_at_root: int = 0
    pairs: int = 0

    def fire(self, rule: str, n: int = 1) -> None:
        self.rules[rule] = self.rules.get(rule, 0) + n

    def merge(self, other: ReluplexStats) -> None:
        """Add ``other`` into ``self`` (max for ``max_depth``)."""
        for name, v in other.rules.items():
            self.rules[name] = self.rules.get(name, 0) + v
        for f in fields(self):
            if f.name == "rules":
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("max_depth", "pairs"):
                setattr(self, f.name, max(a, b))
            else:
                setattr(self, f.name, a + b)

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-friendly dict: rule counters first, then the other counters."""
        out: dict[str, Any] = dict(self.rules)
        out["Pivot"] = self.rules.get("Pivot1", 0) + self.rules.get("Pivot2", 0)
        for f in fields(self):
            if f.name != "rules":
                out[f.name] = getattr(self, f.name)
        return out
