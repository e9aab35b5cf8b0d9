"""The ``bab`` engine: branch and bound over domains with batched bounds and MILP leaves.

``get_engine("bab").check(network, case, bounds, timeout)`` runs the search of
:mod:`nnresilience.search` on the case: batched sound bounds close domains, a targeted
gradient attack probes the most promising ones, domains with few undecided neurons are
decided by the MILP engine (an LP once every neuron is fixed), the rest are split by
input (low-dimensional boxes) or by neuron. It is complete for piecewise-linear networks:
given time, every domain is closed by a bound or a leaf, or a counterexample is found.
On s-shaped networks a leaf candidate that does not replay refines the domain (see
:mod:`nnresilience.search.decide`).

The answer's ``x`` is already replayed in float64 (``verify`` replays it again).
``stats``: domains bounded / closed by bound / closed by leaf, leaves, falsifier hits,
batches, maximum depth and open frontier, seconds in bound / falsify / leaf / branch,
the rule and the bounder used.
"""

from __future__ import annotations

import time
from typing import Any

from nnresilience.engines.base import Engine, EngineAnswer
from nnresilience.results import Status

#: Options of ``check`` that configure the search (everything else goes to the leaves).
SEARCH_OPTIONS = ("rule", "bounder", "device", "leaf_unstable", "lookahead_depth",
                  "smear_points", "falsify_share", "falsify_domains", "falsify_steps",
                  "max_bytes", "intermediate", "leaf_seconds", "seed", "onnx_replay",
                  "branch_candidates", "early_depth", "exact_seconds")


class BabEngine(Engine):
    """``leaf``: name of the engine deciding small domains (``milp`` or
    ``milp:<backend>``, or ``reluplex``); ``rule``: ``auto``/``input``/``neuron``;
    ``bounder``: ``auto``/``symbolic``/``alpha``."""

    name = "bab"

    def __init__(self, leaf: str = "milp", **search: Any) -> None:
        self.leaf = leaf
        self.search = search

    def supports(self, network) -> str | None:
        from nnresilience.engines import get_engine

        kinds = {la.kind for la in network.layers}
        allowed = {"affine", "relu", "leaky_relu", "maxpool", "sigmoid", "tanh", "arctan"}
        if kinds - allowed:
            return f"layer kinds {sorted(kinds - allowed)} are not supported by bab"
        return get_engine(self.leaf).supports(network.merged())

    def settings(self, options: dict) -> tuple[Any, dict]:
        from nnresilience.search.decide import SearchSettings

        merged = {**self.search, **options}
        conf = {k: merged.pop(k) for k in list(merged) if k in SEARCH_OPTIONS}
        executor = merged.pop("executor", None)
        report = merged.pop("report", None)
        s = SearchSettings(**conf, engine_options=merged)
        return s, {"executor": executor, "report": report}

    def check(self, network, case, bounds=None, timeout: float | None = None,
              **options: Any) -> EngineAnswer:
        """Decide ``case``. ``bounds`` is not needed (the search bounds each domain);
        options: the search knobs of :class:`~nnresilience.search.decide.SearchSettings`,
        ``executor`` (share the frontier between workers), ``report`` (progress
        callback), and options for the leaf engine (``threads``, ...)."""
        from nnresilience.search.decide import decide_case, describe

        del bounds
        t0 = time.perf_counter()
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        settings, extra = self.settings(dict(options))
        stats: dict[str, Any] = {"engine": self.name, "leaf_engine": self.leaf}
        ans = decide_case(network, case, self.leaf, settings, deadline,
                          report=extra["report"], executor=extra["executor"], stats=stats)
        x = None if ans.counterexample is None else ans.counterexample.x_array
        stats["label"] = describe(stats, self.leaf, bab=True)
        return EngineAnswer(ans.status, x, time.perf_counter() - t0,
                            ans.message or ("search closed every domain"
                                            if ans.status is Status.HOLDS else ""), stats)
