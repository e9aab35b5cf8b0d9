"""Divide and conquer: sub-boxes cover the box; verdicts match brute force on every executor;
the first counterexample cancels the rest; a timeout leaves no worker process behind."""

from __future__ import annotations

import math
import time

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
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
from nnresilience.spec.property import Case, robustness
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
@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_verify_divided_is_verify_with_the_executor(seed):
    (net, prop, expected), = _queries(seed, 1)
    r = verify_divided(net, prop, InlineExecutor(), parts=4, **FAST)
    assert r.status is expected
    assert r.status is verify(net, prop, **FAST).status
    if r.status is Status.VIOLATED:
        x = r.counterexample.x_array
        assert prop.violated_by(x, net.forward(x))


def test_process_pool_gives_the_serial_verdicts_and_no_worker_survives():
    queries = _queries(3, 4)
    assert {q[2] for q in queries} == {Status.HOLDS, Status.VIOLATED}
    serial = [verify(n, p, **FAST).status for n, p, _ in queries]
    with ProcessExecutor(2) as ex:
        pooled = [verify_divided(n, p, ex, **FAST).status for n, p, _ in queries]
    spec = [verify_divided(n, p, 2, **FAST).status for n, p, _ in queries[:2]]
    assert serial == pooled == [q[2] for q in queries]
    assert spec == serial[:2]
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
