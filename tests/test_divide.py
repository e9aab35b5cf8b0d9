"""Divide and conquer: sub-boxes cover the box; verdicts match brute force on every executor;
the first counterexample cancels the rest; a timeout leaves no worker process behind."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import psutil
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nnresilience.divide import (
    influence,
    min_perturbation_divided,
    phi_divided,
    split_box,
    split_case,
    verify_divided,
)
from nnresilience.errors import EngineUnsupportedError
from nnresilience.parallel import InlineExecutor, ProcessExecutor
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property, robustness
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import brute_force_case, random_network
from nnresilience.verify import verify

FAST = {"falsify_budget": 0.05}


def _no_children(grace: float = 10.0, ignore: frozenset = frozenset()) -> list:
    """Child processes of this test process still alive after ``grace`` seconds.

    The stdlib's ``multiprocessing.resource_tracker`` (one per interpreter, started with
    the first spawned process and living as long as its parent) is not a worker.
    """
    end = time.monotonic() + grace
    while True:
        kids = []
        for p in psutil.Process().children(recursive=True):
            try:
                if p.pid in ignore or p.status() == psutil.STATUS_ZOMBIE or \
                        "resource_tracker" in " ".join(p.cmdline()):
                    continue
            except psutil.NoSuchProcess:
                continue
            kids.append(p)
        if not kids or time.monotonic() > end:
            return kids
        time.sleep(0.2)


def _queries(seed: int, n: int) -> list:
    """Small robustness queries on random 3-6-6-3 nets, with the brute-force verdict."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        net = random_network(rng, [3, 6, 6, 3])
        c = rng.uniform(-0.5, 0.5, 3)
        prop = robustness(c, int(np.argmax(net.forward(c))), float(rng.uniform(0.05, 0.8)), 3)
        status, _ = brute_force_case(net, prop.cases[0])
        out.append((net, prop, status))
    return out


# ------------------------------------------------------------------------ splitting
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 17), st.integers(0, 2**31 - 1))
def test_split_box_covers_the_box_exactly(dim, parts, seed):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-2, 1, dim)
    hi = lo + rng.uniform(0.0, 3.0, dim) * (rng.uniform(size=dim) > 0.2)  # some flat dims
    boxes = split_box(lo, hi, parts, lambda a, b: rng.uniform(size=dim) * (b - a))
    cuttable = np.any(hi > lo)
    assert len(boxes) >= (parts if cuttable else 1)
    for a, b in boxes:
        assert np.all(a >= lo) and np.all(b <= hi) and np.all(a <= b)
    # volumes over the non-flat dims add up: no gap and no overlap of positive volume
    live = hi > lo
    if live.any():
        vol = float(np.prod((hi - lo)[live]))
        total = sum(float(np.prod((b - a)[live])) for a, b in boxes)
        assert math.isclose(total, vol, rel_tol=1e-9)
    # and every sampled point (including the corners) lies in some box
    pts = np.vstack([rng.uniform(lo, hi, size=(50, dim)), lo, hi])
    inside = np.zeros(len(pts), bool)
    for a, b in boxes:
        inside |= np.all((pts >= a) & (pts <= b), axis=1)
    assert inside.all()


def test_influence_bounds_the_gradient_and_prefers_the_live_input():
    # y = relu(3 x0) + relu(-x1 - 10): x1 never matters on [-1, 1]^2 (dead neuron)
    from nnresilience.network.layers import Affine, ReLU
    from nnresilience.network.model import sequential

    net = sequential([Affine(np.array([[3.0, 0.0], [0.0, -1.0]]), np.array([0.0, -10.0])),
                      ReLU(2), Affine(np.array([[1.0, 1.0]]), np.zeros(1))])
    s = influence(net, -np.ones(2), np.ones(2))
    assert s[0] == pytest.approx(6.0) and s[1] == 0.0
    case = Case(InputRegion(-np.ones(2), np.ones(2)),
                OutputCondition((Conjunction(np.array([[-1.0]]), np.array([-100.0])),), 1))
    subs = split_case(net, case, 2)
    assert len(subs) == 2
    assert {float(s.region.hi[0]) for s in subs} == {0.0, 1.0}  # cut along x0
    assert all(s.region.lo[1] == -1.0 and s.region.hi[1] == 1.0 for s in subs)


@pytest.mark.parametrize("score", ["influence", "gradient", "width"])
def test_every_score_gives_a_cover(score):
    net = random_network(np.random.default_rng(4), [3, 5, 2])
    prop = robustness(np.zeros(3), 0, 0.5, 2)
    subs = split_case(net, prop.cases[0], 8, score=score)
    assert len(subs) == 8
    vol = sum(float(np.prod(s.region.hi - s.region.lo)) for s in subs)
    assert vol == pytest.approx(1.0)
    with pytest.raises(ValueError, match="score"):
        split_case(net, prop.cases[0], 2, score="nope")


def test_neuron_splitting_is_refused_clearly():
    net = random_network(np.random.default_rng(0), [2, 3, 2])
    prop = robustness(np.zeros(2), 0, 0.1, 2)
    with pytest.raises(EngineUnsupportedError, match="neuron splitting"):
        split_case(net, prop.cases[0], 4, strategy="neurons")


def test_l1_sub_regions_keep_the_ball():
    net = random_network(np.random.default_rng(1), [3, 4, 2])
    prop = robustness(np.zeros(3), 0, 0.5, 2, norm="l1")
    for s in split_case(net, prop.cases[0], 4):
        assert s.region.norm == "l1" and s.region.radius == 0.5
        assert not s.region.contains(s.region.hi) or np.abs(s.region.hi).sum() <= 0.5


# ---------------------------------------------------------------------- verdicts
@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 2, 4, 8]), st.booleans())
def test_inline_verdict_matches_brute_force(seed, parts, prune):
    (net, prop, expected), = _queries(seed, 1)
    r = verify_divided(net, prop, InlineExecutor(), parts=parts, prune=prune, **FAST)
    assert r.status is expected
    if r.status is Status.VIOLATED:
        x = r.counterexample.x_array
        assert prop.violated_by(x, net.forward(x))


def test_process_pool_and_dask_give_the_serial_verdicts():
    queries = _queries(7, 5)
    assert {q[2] for q in queries} == {Status.HOLDS, Status.VIOLATED}
    # prune=False: every sub-box goes to the workers (the parent proves none itself)
    serial = [verify_divided(n, p, InlineExecutor(), parts=4, prune=False, **FAST).status
              for n, p, _ in queries]
    with ProcessExecutor(2) as ex:
        runs = [verify_divided(n, p, ex, parts=4, prune=False, **FAST) for n, p, _ in queries]
    pooled = [r.status for r in runs]
    assert all(r.stats["submitted"] >= 1 for r in runs)
    assert serial == pooled == [q[2] for q in queries]
    pytest.importorskip("distributed")
    from nnresilience.parallel import DaskExecutor

    with DaskExecutor(workers=2) as dex:
        dasked = [verify_divided(n, p, dex, parts=4, prune=False, **FAST).status
                  for n, p, _ in queries]
    assert dasked == serial
    assert not _no_children()


def test_first_counterexample_cancels_the_rest():
    # every sub-box is unsafe somewhere, the most suspicious one is tried first
    (net, prop, expected), = [q for q in _queries(3, 6) if q[2] is Status.VIOLATED][:1]
    r = verify_divided(net, prop, InlineExecutor(), parts=16, prune=False, **FAST)
    assert r.status is Status.VIOLATED
    assert r.stats["sub_cases"] == 16
    assert r.stats["completed"] < r.stats["sub_cases"]
    assert r.stats["submitted"] < r.stats["sub_cases"]
    with ProcessExecutor(2) as ex:
        r2 = verify_divided(net, prop, ex, parts=16, prune=False, **FAST)
    assert r2.status is Status.VIOLATED
    assert r2.stats["completed"] < r2.stats["sub_cases"]


def _hard_query():
    """A random 10-40-40-40-2 net on [-1, 1]^10; unsafe: ``y1 - y0`` above the sampled
    maximum by a tenth of the gap to its symbolic upper bound (neither the falsifier nor
    the bounds settle it quickly)."""
    from nnresilience.bounds import compute_bounds
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network

    rng = np.random.default_rng(11)
    net = random_network(rng, [10, 40, 40, 40, 2])
    X = rng.uniform(-1, 1, size=(20000, 10))
    Y = net.forward(X)
    top = float(np.max(Y[:, 1] - Y[:, 0]))
    spec = Network(list(net.layers) + [Affine(np.array([[-1.0, 1.0]]), np.zeros(1))],
                   input_shape=(10,))
    ub = float(compute_bounds(spec, (-np.ones(10), np.ones(10)), method="symbolic").hi[-1][0])
    thr = top + 0.1 * (ub - top)
    cond = OutputCondition((Conjunction(np.array([[1.0, -1.0]]), np.array([-thr])),), 2)
    return net, Property((Case(InputRegion(-np.ones(10), np.ones(10)), cond),), name="hard")


def test_timeout_leaves_no_worker_behind():
    net, prop = _hard_query()
    t0 = time.monotonic()
    with ProcessExecutor(2) as ex:
        r = verify_divided(net, prop, ex, timeout=2.0, prune=False, **FAST)
    assert time.monotonic() - t0 < 2.0 + 10.0
    assert r.stats["submitted"] >= 2
    assert r.status in (Status.UNKNOWN, Status.HOLDS, Status.VIOLATED)
    if r.status is Status.VIOLATED:
        x = r.counterexample.x_array
        assert prop.violated_by(x, net.forward(x))
    assert not _no_children()
    # an executor built from a spec is ours: its workers are killed on the way out
    t0 = time.monotonic()
    r = verify_divided(net, prop, 2, timeout=2.0, prune=False, **FAST)
    assert time.monotonic() - t0 < 2.0 + 10.0
    assert not _no_children()


# ------------------------------------------------------------------ optimisation
def _close(a, b, tol=1e-5):
    if a is None or b is None:
        return a is b
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_min_perturbation_divided_matches_serial(norm):
    from nnresilience.resilience import min_perturbation
    from nnresilience.resilience.replay import flip_ok, norm_of

    rng = np.random.default_rng(5)
    for _ in range(2):  # the second draw of seed 5: a quick MIP with a finite answer
        net = random_network(rng, [3, 8, 8, 3])
        x = rng.uniform(-0.5, 0.5, 3)
    ref = min_perturbation(net, x, norm=norm, domain=(-1, 1))
    got = min_perturbation_divided(net, x, norm=norm, domain=(-1, 1), parts=4)
    assert ref.optimal and got.optimal and ref.upper is not None
    assert _close(got.upper, ref.upper) and _close(got.lower, ref.lower)
    b = np.asarray(got.a_perturbed)
    assert flip_ok(net, b, got.cls, 1)
    assert norm_of(b - x, norm) == pytest.approx(got.upper)
    assert got.stats["parts"] == 4
    assert got.stats["submitted"] + got.stats["pruned_without_solve"] == 4
    # the attack's point bounds the answer and confines the split to x +- its norm
    assert got.stats["attack_upper"] >= got.upper - 1e-9
    if norm == "linf":  # no attack: the whole domain is split and, inline, the boxes
        # farther from x than the first witness are never solved
        nat = min_perturbation_divided(net, x, norm=norm, domain=(-1, 1), parts=4, attack=0)
        assert _close(nat.upper, ref.upper) and nat.optimal
        assert nat.stats["pruned_without_solve"] >= 1


def test_phi_divided_matches_serial():
    from nnresilience.resilience import phi
    from nnresilience.resilience.replay import flip_ok, premise_ok

    # seed 2 gives a 3-6-6-2 net where both classes have a finite Φ at alpha = 1.2
    net = random_network(np.random.default_rng(2), [3, 6, 6, 2])
    for cls in range(2):
        ref = phi(net, cls, alpha=1.2, norm="linf", domain=(-1, 1))
        got = phi_divided(net, cls, alpha=1.2, norm="linf", domain=(-1, 1), parts=4)
        assert ref.optimal and math.isfinite(ref.upper)
        assert got.feasible and got.optimal
        assert _close(got.upper, ref.upper, 1e-4)
        a, b = np.asarray(got.a), np.asarray(got.a_perturbed)
        assert premise_ok(net, a, cls, math.log(1.2)) and flip_ok(net, b, cls, 1)   # exact
        assert float(np.abs(b - a).max()) == pytest.approx(got.upper)
        assert got.lower <= got.upper


# ------------------------------------------------- shared split tree (verify executor=)
@pytest.fixture(scope="module")
def pool():
    with ProcessExecutor(2) as ex:
        yield ex
    assert not _no_children()


class _TwoWorkerInline(InlineExecutor):
    """Runs each unit at submission but claims two workers, so ``verify`` takes the
    parallel path deterministically in-process."""

    workers = 2


def _tiny_units():
    """Make every work unit process a single box (maximal sharing of the tree): the unit
    budget is an argument sent from this process, so patching here reaches the workers."""
    import nnresilience.verify as V

    saved = (V.SPLIT_UNIT_SECONDS, V.SPLIT_UNIT_HUNGRY)
    V.SPLIT_UNIT_SECONDS = V.SPLIT_UNIT_HUNGRY = 0.0
    return saved


def _restore_units(saved) -> None:
    import nnresilience.verify as V

    V.SPLIT_UNIT_SECONDS, V.SPLIT_UNIT_HUNGRY = saved


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
@example(6).via("11 boxes")
@example(20).via("15 boxes")
@example(31).via("19 boxes, 4 engine leaves")
@example(2).via("violated")
def test_shared_split_tree_matches_serial_and_brute_force(pool, seed):
    from nnresilience.verify import _resolve_engine, _split_search, _split_search_parallel

    (net, prop, expected), = _queries(seed, 1)
    case = prop.cases[0]
    serial_stats: dict = {}
    serial, _, _ = _split_search(net, case, _resolve_engine("milp"), None, "symbolic", True,
                                 np.random.default_rng(0), {}, serial_stats)
    saved = _tiny_units()
    try:
        stats: dict = {}
        status, cex, _ = _split_search_parallel(net, case, "milp", None, "symbolic", True, 0,
                                                {}, stats, pool)
    finally:
        _restore_units(saved)
    assert status is serial is expected
    assert stats["split_units"] >= 1 and stats["split_boxes"] >= 1
    if serial_stats["split_boxes"] > 1 and expected is Status.HOLDS:
        assert stats["split_units"] > 1  # the tree really was handed out box by box
    if status is Status.VIOLATED:
        assert prop.violated_by(cex.x_array, net.forward(cex.x_array))


def test_verify_with_executor_gives_the_serial_verdicts(pool):
    queries = [_queries(s, 1)[0] for s in (6, 31, 2)]
    for net, prop, expected in queries:
        r1 = verify(net, prop, **FAST)
        r2 = verify(net, prop, executor=pool, **FAST)
        assert r1.status is r2.status is expected
    # a query the split search decides, run through the parallel path, reports its units
    net, prop, _ = queries[0]
    r = verify(net, prop, executor=pool, falsify_budget=0.0)
    split = [c for c in r.stats["cases"] if "split_units" in c]
    assert r.status is Status.HOLDS and split and split[0]["split_workers"] == 2
    # verify_divided(strategy="adaptive") is the same search
    r3 = verify_divided(net, prop, pool, strategy="adaptive", **FAST)
    assert r3.status is Status.HOLDS and r3.stats["strategy"] == "adaptive"


def _deep_violation():
    """3-12-12-2 net; unsafe ``y1 - y0 >= thr`` just below the sampled maximum, so a
    counterexample exists but the serial search needs ~47 boxes to reach it."""
    rng = np.random.default_rng(6)
    net = random_network(rng, [3, 12, 12, 2])
    y = net.forward(rng.uniform(-1, 1, size=(20000, 3)))
    d = y[:, 1] - y[:, 0]
    thr = float(d.max()) - 1e-3 * (float(d.max()) - float(np.median(d)))
    cond = OutputCondition((Conjunction(np.array([[1.0, -1.0]]), np.array([-thr])),), 2)
    return net, Case(InputRegion(-np.ones(3), np.ones(3)), cond)


def test_first_counterexample_stops_the_shared_search(pool):
    from nnresilience.verify import _resolve_engine, _split_search, _split_search_parallel

    net, case = _deep_violation()
    serial_stats: dict = {}
    serial, _, _ = _split_search(net, case, _resolve_engine("milp"), None, "symbolic", True,
                                 np.random.default_rng(0), {}, serial_stats)
    assert serial is Status.VIOLATED and serial_stats["split_boxes"] > 5
    saved = _tiny_units()
    try:
        for ex in (_TwoWorkerInline(), pool):
            stats: dict = {}
            status, cex, _ = _split_search_parallel(net, case, "milp", None, "symbolic",
                                                    True, 0, {}, stats, ex)
            assert status is Status.VIOLATED
            x = cex.x_array
            assert case.region.contains(x) and case.unsafe.satisfied(net.forward(x))
            # open boxes were left unexplored: the search stopped at the counterexample
            assert stats["split_abandoned"] >= 1
    finally:
        _restore_units(saved)


def _pool_pids(ex) -> frozenset:
    """The worker processes of ``ex`` (and their children): not the ones under test."""
    procs = (getattr(ex._pool, "_processes", None) or {}).values()
    out = set()
    for p in procs:
        out.add(p.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            out.update(c.pid for c in psutil.Process(p.pid).children(recursive=True))
    return frozenset(out)


def test_shared_search_timeout_leaves_no_worker_behind(pool):
    keep = _pool_pids(pool)  # the module's shared pool stays up; any other child must go
    net, prop = _hard_query()
    t0 = time.monotonic()
    r = verify(net, prop, timeout=2.0, executor=2, **FAST)   # pool built and killed here
    assert time.monotonic() - t0 < 2.0 + 10.0
    assert r.status in (Status.UNKNOWN, Status.HOLDS, Status.VIOLATED)
    if r.status is Status.VIOLATED:
        x = r.counterexample.x_array
        assert prop.violated_by(x, net.forward(x))
    else:
        assert r.status is Status.UNKNOWN and r.message == "timeout"
    assert not _no_children(ignore=keep)
    with ProcessExecutor(2) as ex:                            # caller's pool: reusable after
        r = verify(net, prop, timeout=1.5, executor=ex, **FAST)
        assert r.status is not Status.HOLDS or r.stats["cases"][0].get("split_units")
        assert ex.submit(int, "7").result() == 7
    assert not _no_children(ignore=keep)
