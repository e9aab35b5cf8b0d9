"""Certified lower bound, difference rows, pair attack and branching against brute force.

The reference is :func:`nnresilience.testing.phi_bruteforce.brute_force_phi` (exact Φ_m
by LPs over pairs of activation patterns) on tiny 1- and 2-input networks.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnresilience.resilience import DEFAULT, phi
from nnresilience.resilience.branch import PhiTask, branch_min, branch_phi
from nnresilience.resilience.certify_diff import certified_lower_bound
from nnresilience.resilience.common import solve_certified
from nnresilience.resilience.difference_rows import DifferencePlan, full_start, plan_ladder
from nnresilience.resilience.encode import build_phi_mip, network_bounds
from nnresilience.resilience.pair_attack import attack_pair, focused_starts
from nnresilience.resilience.replay import flip_count, norm_of, premise_margin
from nnresilience.testing.bruteforce import random_network
from nnresilience.testing.phi_bruteforce import brute_force_phi

LO, HI = -1.0, 1.0
PLAIN = DEFAULT.with_(pair_attack=0.0, diff_lower=False, diff_rows=False, diff_cut=False)


def _net(seed: int, sizes=(2, 4, 3), kind="relu"):
    return random_network(np.random.default_rng(seed), list(sizes), kind=kind,
                          scale=2.0).merged()


def _box(d):
    return LO * np.ones(d), HI * np.ones(d)


# ------------------------------------------------------------ certified lower bound
@pytest.mark.parametrize("seed,kind,sizes", [(0, "relu", (2, 4, 3)), (1, "leaky", (2, 4, 3)),
                                             (8, "relu", (1, 5, 3)), (11, "relu", (2, 3, 3))])
@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_certified_bound_never_exceeds_brute_force(seed, kind, sizes, norm):
    net = _net(seed, sizes, kind)
    lo, hi = _box(sizes[0])
    informative = 0
    for m in range(3):
        for k, alpha in ((1, 1.1), (2, 1.05)):
            ref, feasible = brute_force_phi(net, m, alpha, k, norm, lo, hi)
            c = certified_lower_bound(net, m, math.log(alpha), k, norm, lo, hi)
            if c.vacuous:
                assert not feasible          # vacuous is a proof: no confident input
                continue
            if math.isfinite(ref):
                assert c.lower <= ref + 1e-12, (m, k, c.lower, ref)
                informative += c.lower > 0.0        # α > 1: Φ > 0, and the bound says so
            elif c.unreachable:
                assert math.isinf(ref)
    assert informative >= 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), alpha=st.floats(1.0, 1.5),
       norm=st.sampled_from(["l1", "linf"]), kind=st.sampled_from(["relu", "leaky"]))
def test_certified_bound_random_tiny_nets(seed, alpha, norm, kind):
    net = _net(seed, (2, 3, 3), kind)
    lo, hi = _box(2)
    m = int(net.predict(np.zeros(2)))
    ref, feasible = brute_force_phi(net, m, alpha, 1, norm, lo, hi)
    c = certified_lower_bound(net, m, math.log(alpha), 1, norm, lo, hi)
    if c.vacuous:
        assert not feasible
    elif math.isfinite(ref):
        assert c.lower <= ref + 1e-12


def test_vacuous_premise_and_upper_cap():
    net = _net(0)
    lo, hi = _box(2)
    c = certified_lower_bound(net, 0, 50.0, 1, "l1", lo, hi)
    assert c.vacuous and math.isinf(c.lower)
    ref, _ = brute_force_phi(net, 0, 1.1, 1, "l1", lo, hi)
    capped = certified_lower_bound(net, 0, math.log(1.1), 1, "l1", lo, hi, upper=0.5 * ref)
    # nothing flips within half the optimum, and the bound may not pass the cap
    assert capped.lower == pytest.approx(0.5 * ref, rel=1e-9)


@pytest.mark.slow
def test_optimised_probes_never_lose_and_stay_sound():
    pytest.importorskip("torch")
    net = _net(1, kind="leaky")
    lo, hi = _box(2)
    ref, _ = brute_force_phi(net, 0, 1.1, 1, "linf", lo, hi)
    plain = certified_lower_bound(net, 0, math.log(1.1), 1, "linf", lo, hi)
    opt = certified_lower_bound(net, 0, math.log(1.1), 1, "linf", lo, hi, optimise=5)
    assert plain.lower <= opt.lower <= ref + 1e-12
    assert opt.stats["plain_lower"] == pytest.approx(plain.lower / (1 - 2e-16), rel=1e-9)


# ------------------------------------------------------------------- pair attack
@pytest.mark.parametrize("seed,norm", [(0, "l1"), (1, "linf"), (3, "l1")])
def test_pair_attack_replays_and_never_beats_phi(seed, norm):
    kind = ["relu", "leaky"][seed % 2]
    net = _net(seed, kind=kind)
    lo, hi = _box(2)
    for m in range(3):
        ref, _ = brute_force_phi(net, m, 1.1, 1, norm, lo, hi)
        got = attack_pair(net, m, math.log(1.1), 1, norm, lo, hi, budget=0.5)
        if got is None:
            continue
        a, b, u = got
        assert premise_margin(net.forward(a), m) >= math.log(1.1)     # exactly
        assert flip_count(net.forward(b), m) >= 1
        assert u == norm_of(b - a, norm)
        assert u >= ref - 1e-6


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_focused_restarts_stay_confident_and_reach_brute_force(norm):
    """The restarts around the best pair are confident points of D (float64, exactly);
    the two-phase attack never returns a longer pair than its first phase alone, never
    one below the brute-force Φ_m, and reaches it on a tiny net."""
    net = _net(5)
    lo, hi = _box(2)
    la = math.log(1.1)
    ref, _ = brute_force_phi(net, 0, 1.1, 1, norm, lo, hi)
    poor = attack_pair(net, 0, la, 1, norm, lo, hi, n_starts=2, rounds=1, stale_batches=1,
                       budget=0.2)
    assert poor is not None and poor[2] >= ref - 1e-9
    A = focused_starts(net, 0, la, lo, hi, 32, np.random.default_rng(1), poor, norm)
    assert len(A) >= 16
    assert A.min() >= LO and A.max() <= HI
    assert all(premise_margin(net.forward(a), 0) >= la for a in A)
    # the second phase starts from the first phase's pair (same random stream): never longer
    first = attack_pair(net, 0, la, 1, norm, lo, hi, n_starts=4, budget=1.0, stale_batches=0)
    both = attack_pair(net, 0, la, 1, norm, lo, hi, n_starts=4, budget=1.0)
    assert ref - 1e-9 <= both[2] <= first[2]
    got = attack_pair(net, 0, la, 1, norm, lo, hi, budget=0.5)
    assert ref - 1e-9 <= got[2] <= ref * (1 + 1e-6)


# -------------------------------------------------------------- difference rows
def _plan(net, m, la, norm, lo, hi, u, lower=None):
    ladder, out_up = plan_ladder(net, lo, hi, norm, u, m=m)
    return DifferencePlan(ladder[-1], u, lower, ladder=ladder, out_up=out_up)


@pytest.mark.parametrize("seed,kind,norm", [(0, "relu", "l1"), (1, "leaky", "linf"),
                                            (5, "maxpool", "l1"), (6, "relu", "linf")])
def test_mip_with_difference_rows_has_the_same_optimum(seed, kind, norm):
    net = _net(seed, kind=kind)
    lo, hi = _box(2)
    la = math.log(1.1)
    bounds = network_bounds(net, lo, hi, PLAIN)
    checked = 0
    for m in range(3):
        ref, _ = brute_force_phi(net, m, 1.1, 1, norm, lo, hi)
        if not math.isfinite(ref):
            continue
        plain = build_phi_mip(net, m, la, 1, norm, lo, hi, bounds, PLAIN)
        r0 = solve_certified(plain, PLAIN, 30.0, relax=False).res
        cert = certified_lower_bound(net, m, la, 1, norm, lo, hi)
        u = 1.5 * ref + 1e-3                       # any radius >= the optimum is valid
        rows = build_phi_mip(net, m, la, 1, norm, lo, hi, bounds, PLAIN,
                             diff=_plan(net, m, la, norm, lo, hi, u, cert.lower))
        r1 = solve_certified(rows, PLAIN, 30.0, relax=False).res
        assert r0.status.value == r1.status.value == "optimal"
        assert r1.objective == pytest.approx(r0.objective, abs=1e-6)
        assert r1.objective == pytest.approx(ref, abs=1e-6)
        assert rows.stats["diff_box_rows"] > 0 and rows.stats["scaled_rows"] > 0
        assert rows.stats["flip_rows"] > 0
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_difference_rows_hold_at_sampled_pairs(norm):
    """Every difference row is satisfied by the exact encoding of every sampled pair
    within the radius (binaries and neuron columns from the forward pass)."""
    net = _net(1, (2, 5, 3), "leaky")
    lo, hi = _box(2)
    la, m, u = math.log(1.1), 0, 0.4
    bounds = network_bounds(net, lo, hi, PLAIN)
    mip = build_phi_mip(net, m, la, 1, norm, lo, hi, bounds, PLAIN,
                        diff=_plan(net, m, la, norm, lo, hi, u, None))
    r0, r1 = mip.stats["diff_row_range"]
    assert r1 - r0 > 20
    arr0 = mip.model.arrays()
    A = arr0.A[r0:r1]
    rng = np.random.default_rng(0)
    n_checked = 0
    for _ in range(100):
        a = rng.uniform(lo, hi)
        e = rng.normal(size=2)
        e *= u * rng.uniform(0, 1) / (np.abs(e).sum() if norm == "l1" else np.abs(e).max())
        b = np.clip(a + e, lo, hi)
        mip.model.start.clear()
        full_start(mip, net, a, b, m, norm)
        # c_j = 1 claims a flip of a confident pair: keep it only when that is true
        if premise_margin(net.forward(a), m) < la:
            mip.model.set_start(mip.c, np.zeros(mip.c.size))
        x = np.zeros(arr0.n_vars)
        idx = np.fromiter(mip.model.start.keys(), np.int64)
        x[idx] = np.fromiter(mip.model.start.values(), float)
        act = A @ x
        tol = 1e-9 * (1 + np.abs(act))
        assert np.all(act >= arr0.row_lo[r0:r1] - tol)
        assert np.all(act <= arr0.row_hi[r0:r1] + tol)
        n_checked += 1
    assert n_checked == 100


# ---------------------------------------------------------------------- branching
def test_branching_closes_a_tiny_net():
    net = _net(0)
    lo, hi = _box(2)
    la = math.log(1.1)
    ref, _ = brute_force_phi(net, 1, 1.1, 1, "linf", lo, hi)
    pair = attack_pair(net, 1, la, 1, "linf", lo, hi, budget=0.5)
    # a deliberately poor incumbent: the pieces must find the better pair themselves
    a, b, _ = pair
    far = np.clip(a + 3.0 * (b - a), lo, hi)
    poor = (a, far, norm_of(far - a, "linf"))
    if flip_count(net.forward(far), 1) < 1:
        poor = pair
    out = branch_phi(PhiTask(net, 1, 1.1, 1, "linf", lo, hi, PLAIN), pair=poor, lower=0.0,
                     max_pieces=8, timeout=60)
    assert out.pair is not None and out.pair[2] == pytest.approx(ref, abs=1e-6)
    assert out.lower <= out.pair[2] and out.lower == pytest.approx(ref, abs=2e-5)
    assert out.stats["open"] == 0 and out.stats["bounded"] >= 1


def test_joint_branching_for_xi_uses_one_cutoff():
    """Ξ's queue over (class, piece): the result is min over classes of the brute-force
    Φ_m, even when each class starts from a poor incumbent, and a class whose pieces
    cannot beat the best pair of another class is closed by the shared cutoff."""
    net = _net(1, kind="leaky")
    lo, hi = _box(2)
    la = math.log(1.1)
    refs = [brute_force_phi(net, m, 1.1, 1, "linf", lo, hi)[0] for m in range(3)]
    tasks, pairs = [], []
    for m in range(3):
        if not math.isfinite(refs[m]):
            continue
        got = attack_pair(net, m, la, 1, "linf", lo, hi, budget=0.3)
        a, b, u = got
        tasks.append(PhiTask(net, m, 1.1, 1, "linf", lo, hi, PLAIN))
        pairs.append((a, b, u * 1.0))
    out = branch_min(tasks, pairs, [0.0] * len(tasks), max_pieces=6, timeout=60)
    xi_ref = min(r for r in refs if math.isfinite(r))
    assert out.pair[2] == pytest.approx(xi_ref, abs=1e-6)
    assert out.lower <= out.pair[2] and out.lower == pytest.approx(xi_ref, abs=2e-5)
    assert tasks[out.task].m in [m for m, r in enumerate(refs) if abs(r - xi_ref) < 1e-6]
    assert out.stats["tasks"] == len(tasks) >= 2


# ------------------------------------------------------------------ phi wiring
@pytest.mark.parametrize("seed,norm", [(0, "l1"), (1, "linf")])
def test_phi_default_equals_plain_and_brute_force(seed, norm):
    net = _net(seed, kind=["relu", "leaky"][seed % 2])
    lo, hi = _box(2)
    for m in range(3):
        ref, feasible = brute_force_phi(net, m, 1.1, 1, norm, lo, hi)
        r = phi(net, m, 1.1, 1, norm, (LO, HI))
        p = phi(net, m, 1.1, 1, norm, (LO, HI), settings=PLAIN)
        assert r.feasible == p.feasible == feasible
        if not feasible or not math.isfinite(ref):
            continue
        assert r.optimal and r.upper == pytest.approx(ref, abs=1e-5)
        assert p.upper == pytest.approx(r.upper, abs=1e-5)
        assert r.stats["cert_lower"] <= r.upper
        assert "attack_upper" in r.stats and "cert_seconds" in r.stats


def test_phi_with_branching_setting():
    net = _net(1, kind="leaky")
    lo, hi = _box(2)
    ref, _ = brute_force_phi(net, 0, 1.1, 1, "l1", lo, hi)
    s = DEFAULT.with_(branching=4)
    r = phi(net, 0, 1.1, 1, "l1", (LO, HI), settings=s, timeout=60)
    assert r.optimal and r.upper == pytest.approx(ref, abs=1e-5)


@pytest.mark.slow
def test_phi_keeps_its_deadline_on_digits():
    from pathlib import Path

    from nnresilience.loaders import load_network

    path = Path(__file__).resolve().parents[2] / "examples" / "digits" / "digits_2x50.onnx"
    net = load_network(str(path))
    t0 = time.perf_counter()
    r = phi(net, 0, 20.0, 1, "l1", (0.0, 1.0), timeout=8.0)
    elapsed = time.perf_counter() - t0
    assert elapsed <= 8.0 + 1.0
    assert r.lower > 0.0 and r.upper is not None and r.lower < r.upper
    assert r.stats["cert_lower"] > 0.0


# ------------------------------------------- fit into the certified staged solve
def test_relaxed_certifier_is_weaker_and_still_below_brute_force():
    """``relax`` widens the premise and flip sets: the bound can only drop, and stays a
    lower bound of Φ_m (the cut of the relaxed MIP (6) uses it)."""
    checked = 0
    for seed, norm in ((0, "l1"), (1, "linf")):
        net = _net(seed, kind=["relu", "leaky"][seed % 2])
        lo, hi = _box(2)
        for m in range(3):
            ref, _ = brute_force_phi(net, m, 1.1, 1, norm, lo, hi)
            exact = certified_lower_bound(net, m, math.log(1.1), 1, norm, lo, hi)
            wide = certified_lower_bound(net, m, math.log(1.1), 1, norm, lo, hi, relax=1e-2,
                                         upper=None if exact.vacuous else exact.lower)
            if exact.vacuous or not math.isfinite(ref):
                continue
            assert wide.lower <= exact.lower <= ref + 1e-12
            checked += exact.lower > 0
    assert checked >= 2


def test_rows_valid_only_up_to_the_plans_relaxation():
    from nnresilience.resilience.diff_plan import DiffPrep

    net = _net(0)
    lo, hi = _box(2)
    with_cut = DiffPrep(plan=_plan(net, 0, math.log(1.1), "l1", lo, hi, 0.5, lower=0.1))
    with_cut.plan.relax = 1e-4
    st: dict = {}
    assert with_cut.rows_valid(1e-5, st) and not st
    assert not with_cut.rows_valid(1e-3, st) and st["diff_rows_invalid_tau"] == 1e-3
    # radius row and copy bounds only: valid for any relaxation of premise and flip
    plain = DiffPrep(plan=DifferencePlan(with_cut.plan.diff, 0.5, None, kinds=()))
    assert plain.rows_valid(10.0, {})


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_phi_drops_the_cut_when_tau_exceeds_its_relaxation(monkeypatch, norm):
    """With ROWS_RELAX below every τ the cut is not valid for the relaxed problem: it is
    dropped before the solve, and the answer still contains the brute-force Φ_m."""
    from nnresilience.resilience import diff_plan

    monkeypatch.setattr(diff_plan, "ROWS_RELAX", 0.0)
    net = _net(0)
    lo, hi = _box(2)
    seen = 0
    for m in range(3):
        ref, feasible = brute_force_phi(net, m, 1.1, 1, norm, lo, hi)
        r = phi(net, m, 1.1, 1, norm, (LO, HI))
        if not feasible or not math.isfinite(ref):
            continue
        assert r.lower <= ref + 1e-9 <= r.upper + 2e-9
        if r.stats.get("cut_lower"):
            assert r.stats["diff_cut_dropped_tau"] > 0.0
            assert r.stats["cut_rows"] == 0 and r.stats["radius_rows"] == 1
            assert "diff_rows_invalid_tau" not in r.stats        # the bound is usable
            seen += 1
    assert seen >= 1


def test_differential_bounds_settle_vacuous_and_unreachable():
    from nnresilience.network.layers import Affine, ReLU
    from nnresilience.network.model import Network

    net = _net(0)
    r = phi(net, 0, math.exp(50.0), 1, "l1", (LO, HI))
    assert not r.feasible and r.stats["settled_by"] == "differential_bounds"
    assert "alpha_max <=" in r.message and r.stats["alpha_max_upper"] < math.exp(50.0)
    # y_1 - y_0 = 0.1 |x| - 3: no flip anywhere, and over all of D the margin moves by at
    # most 0.1 < ln 1.5 (what the difference argument sees): Φ_0 = +inf, no MIP
    W1 = np.array([[1.0], [-1.0]])
    sure = Network([Affine(W1, np.zeros(2)), ReLU(2),
                    Affine(np.array([[0.0, 0.0], [0.1, 0.1]]), np.array([3.0, 0.0]))])
    r = phi(sure, 0, 1.5, 1, "l1", (-1.0, 1.0))
    assert r.feasible and r.lower == r.upper == math.inf and r.optimal
    assert r.stats["settled_by"] == "differential_bounds"


def test_xi_with_branching_keeps_the_whole_call_deadline():
    from nnresilience.resilience import xi

    net = _net(1, kind="leaky")
    lo, hi = _box(2)
    refs = [brute_force_phi(net, m, 1.1, 1, "linf", lo, hi)[0] for m in range(3)]
    t0 = time.perf_counter()
    r = xi(net, 1.1, 1, "linf", (LO, HI), settings=DEFAULT.with_(branching=4), timeout=4.0)
    assert time.perf_counter() - t0 <= 4.0 + 1.0
    xi_ref = min(x for x in refs if math.isfinite(x))
    assert r.lower <= xi_ref + 1e-9 and r.upper >= xi_ref - 1e-9
    a, b = np.asarray(r.a), np.asarray(r.a_perturbed)
    assert premise_margin(net.forward(a), r.cls) >= math.log(1.1)
    assert flip_count(net.forward(b), r.cls) >= 1


def test_short_timeouts_skip_the_analysis():
    from nnresilience.resilience.query import DIFF_MIN_TIMEOUT

    net = _net(0)
    short = phi(net, 1, 1.1, 1, "l1", (LO, HI), timeout=0.9 * DIFF_MIN_TIMEOUT)
    assert "attack_seconds" not in short.stats and "cert_lower" not in short.stats
    full = phi(net, 1, 1.1, 1, "l1", (LO, HI), timeout=10.0)
    assert "attack_seconds" in full.stats and "cert_lower" in full.stats


# ------------------------------------------------------- L1 vertex bound (phi3)
@pytest.mark.parametrize("scale,alpha", [(2.0, 1.2), (40.0, 1e30)])
def test_vertex_bound_raises_l1_certificate_below_brute_force(monkeypatch, scale, alpha):
    """The L1 vertex bound (bounds/vertex_difference) may only raise the certified radius,
    never above the exact Φ_m; with it off the certifier is the one before. Large weights
    (outputs ~1e4) come with a large ln α, so the brute force's LPs stay exact enough."""
    from nnresilience.bounds import vertex_difference

    lo, hi = _box(2)
    raised = 0
    for seed in (2,):                       # finite Φ_m, and the vertex bound decides
        net = random_network(np.random.default_rng(seed), [2, 3, 3, 3], kind="relu",
                             scale=scale).merged()
        for m in range(3):
            ref, feasible = brute_force_phi(net, m, alpha, 1, "l1", lo, hi)
            if not feasible or not math.isfinite(ref):
                continue
            with monkeypatch.context() as mp:
                mp.setattr(vertex_difference, "supported", lambda _net: False)
                before = certified_lower_bound(net, m, math.log(alpha), 1, "l1", lo, hi)
            after = certified_lower_bound(net, m, math.log(alpha), 1, "l1", lo, hi)
            assert after.lower <= ref * (1 + 1e-12), (seed, m, after.lower, ref)
            assert after.lower >= before.lower * (1 - 1e-3)   # bisection tolerance only
            raised += after.lower > 1.01 * before.lower
    assert raised >= 1
