"""The shared frontier (processes) gives the serial verdicts; a timeout leaves no worker
behind; labels name only what was called; progress arrives at least once a second."""

from __future__ import annotations

import time

import numpy as np
import pytest

from nnresilience.parallel import InlineExecutor, ProcessExecutor
from nnresilience.results import Status
from nnresilience.search.decide import SearchSettings, decide_case
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.testing.bruteforce import random_network
from nnresilience.verify import verify

from .test_search_bruteforce import query

FAST = {"falsify_budget": 0.05}


class _TwoWorkerInline(InlineExecutor):
    """Runs each unit at submission but claims two workers: the shared path, in-process."""

    workers = 2


def _queries():
    """Decided queries (seed, kind) that branch: see test_search_bruteforce."""
    out = []
    for seed, kind in ((2, "leaky"), (10, "maxpool"), (55, "maxpool"), (5, "relu")):
        net, case, best = query(seed, kind)
        out.append((net, case, Status.VIOLATED if best > 0 else Status.HOLDS))
    return out


@pytest.mark.slow
def test_shared_frontier_gives_the_serial_verdicts():
    import nnresilience.search.parallel as P

    saved = (P.UNIT_SECONDS, P.UNIT_HUNGRY)
    P.UNIT_SECONDS = P.UNIT_HUNGRY = 0.0           # one batch per unit: maximal sharing
    try:
        settings = SearchSettings(rule="neuron", leaf_unstable=0, falsify_steps=0)
        queries = _queries()
        with ProcessExecutor(2) as pool:
            for ex in (_TwoWorkerInline(), pool):
                for net, case, expected in queries:
                    st: dict = {}
                    ans = decide_case(net, case, "milp", settings,
                                      deadline=time.monotonic() + 60, executor=ex, stats=st)
                    assert ans.status is expected
                    assert st["units"] >= 1 and st["workers"] == 2
                    if expected is Status.VIOLATED:
                        x = ans.counterexample.x_array
                        assert case.unsafe.satisfied(net.forward(x))
                    elif st["domains"] > 1:
                        assert st["units"] > 1     # the tree really was handed out
    finally:
        P.UNIT_SECONDS, P.UNIT_HUNGRY = saved


def _hard_query():
    """10-40-40-40-2 on [-1, 1]^10; unsafe ``y1 - y0`` above the sampled maximum by a
    tenth of the gap to its symbolic upper bound: neither the falsifier nor the bounds
    settle it in seconds (the query of the former shared-split tests)."""
    from nnresilience.bounds import compute_bounds
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network
    from nnresilience.spec.region import InputRegion

    rng = np.random.default_rng(11)
    net = random_network(rng, [10, 40, 40, 40, 2])
    Y = net.forward(rng.uniform(-1, 1, size=(20000, 10)))
    top = float(np.max(Y[:, 1] - Y[:, 0]))
    spec = Network(list(net.layers) + [Affine(np.array([[-1.0, 1.0]]), np.zeros(1))],
                   input_shape=(10,))
    ub = float(compute_bounds(spec, (-np.ones(10), np.ones(10)), method="symbolic").hi[-1][0])
    thr = top + 0.1 * (ub - top)
    cond = OutputCondition((Conjunction(np.array([[1.0, -1.0]]), np.array([-thr])),), 2)
    return net, Property((Case(InputRegion(-np.ones(10), np.ones(10)), cond),), name="hard")


def test_timeouts_are_kept_serial_and_shared():
    import psutil

    net, prop = _hard_query()
    for executor in (None, 2):
        t0 = time.monotonic()
        r = verify(net, prop, engine="bab", timeout=3.0, executor=executor, **FAST)
        took = time.monotonic() - t0
        assert took < 3.0 + 1.0 + (2.0 if executor else 0.0)   # workers start in ~1-2 s
        assert r.status is not Status.HOLDS or r.stats["cases"][0]["domains"] >= 1
        if r.status is Status.VIOLATED:
            x = r.counterexample.x_array
            assert prop.violated_by(x, net.forward(x))
        if r.status is Status.UNKNOWN:
            assert r.message == "timeout"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = [p for p in psutil.Process().children(recursive=True)
                if "resource_tracker" not in " ".join(p.cmdline())]
        if not kids:
            break
        time.sleep(0.2)
    assert not kids


def test_progress_arrives_every_second():
    net, prop = _hard_query()
    seen: list[tuple[float, dict]] = []
    t0 = time.monotonic()
    verify(net, prop, engine="bab", timeout=3.5, progress=lambda d: seen.append(
        (time.monotonic() - t0, d)), **FAST)
    times = [t for t, _ in seen]
    assert times and times[0] < 1.0
    assert max(np.diff(times + [time.monotonic() - t0])) <= 1.0
    phases = {d["phase"] for _, d in seen}
    assert {"bounds", "search"} <= phases
    search = [d for _, d in seen if d["phase"] == "search"]
    assert all({"open", "closed", "best_lower", "elapsed", "time_left"} <= set(d)
               for d in search)


def test_labels_name_only_what_was_called():
    # a 3-input box: input splitting; reluplex at the leaves
    checked_split = False
    for seed in range(60):
        net, case, best = query(seed, "leaky")
        if best is None or best > -0.05:
            continue
        res = verify(net, Property((case,)), engine="reluplex", **FAST)
        assert res.status is Status.HOLDS
        c = res.stats["cases"][0]
        if c["method"] == "bounds (symbolic)":
            assert "domains" not in c                   # decided before any search
        elif c["method"].startswith("bounds"):
            # closed by bounds alone: the engine was never called and is not named
            assert c["leaves"] == 0 and "reluplex" not in res.engine
            assert res.engine == f"bounds ({c['bounder']}) over {c['domains']} boxes"
            checked_split = True
        else:
            assert res.engine.startswith(f"reluplex on {c['leaves']} leaves")
            assert c["leaves"] >= 1
    assert checked_split
    # bab: domains and leaves counted in the label
    net, case, _ = query(2, "leaky")
    res = verify(net, Property((case,)), engine="bab", input_split=False, falsify_budget=0,
                 engine_options={"leaf_unstable": 0, "falsify_steps": 0,
                                 "bounder": "symbolic"})
    c = res.stats["cases"][0]
    # the fallback bounds leave work for the leaves (the optimised ones close this box
    # by bounds alone, and the label then names no leaves)
    assert c["leaves"] >= 1
    assert res.engine == f"bab: {c['domains']} domains, {c['leaves']} MILP leaves"
