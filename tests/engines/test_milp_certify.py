"""A MILP ``holds`` survives solver tolerances (issue 11, item 2).

Three angles on the same class of bug — a solver's "infeasible" or dual bound turned into
``holds`` without a check:

* a solver that *lies* the way HiGHS did in issue 11 (reports a model infeasible although a
  real point meets its rows): wrapped real backends that answer "infeasible", or a dual bound
  inside the tolerance band, must never give ``holds``;
* planted near-ties with real solvers: the unsafe margin's maximiser (found by enumerating
  activation patterns) set to +1e-7 … +3e-5, weights up to 40, logits in the hundreds:
  ``violated`` (replayed) or ``unknown``, never ``holds``;
* the pieces: ``certify`` and ``model_tau`` on hand-checked models, backend tolerances.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest

from nnresilience.backends.base import (
    Backend,
    SolveLimits,
    SolveResult,
    SolveStatus,
    Tolerances,
)
from nnresilience.backends.certify import (
    ILL_SCALED_HEADROOM,
    certify,
    model_tau,
    objective_tau,
    tolerance_headroom,
)
from nnresilience.backends.highs import HighsBackend
from nnresilience.backends.registry import get_backend
from nnresilience.backends.scip import ScipBackend
from nnresilience.encode.model import MilpModel
from nnresilience.engines.milp import MilpEngine, RecheckRequest
from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition, misclassification
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import BruteForceTooLarge, brute_force_max_margin


# ------------------------------------------------------------------ planted near-ties
def planted_near_tie(seed: int, margin: float, sizes=(2, 4, 4, 2), wmax: float = 40.0):
    """A net with weights up to ``wmax`` (logits in the hundreds) and one unsafe row whose
    exact maximum margin over the box is ``+margin``, attained at the returned point (not a
    corner in general)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        W = rng.uniform(-wmax, wmax, (sizes[i + 1], sizes[i])) / (1 if i == 0 else
                                                                   np.sqrt(sizes[i]))
        layers.append(Affine(W, rng.uniform(-wmax, wmax, sizes[i + 1])))
        if i < len(sizes) - 2:
            layers.append(ReLU(sizes[i + 1]))
    net = Network(layers)
    c = rng.uniform(-0.5, 0.5, sizes[0])
    region = InputRegion(c - 0.5, c + 0.5)
    A = rng.normal(size=(1, sizes[-1]))
    # brute force caps the slack it maximises at 1e3: keep |A y| well below that
    from nnresilience.bounds import compute_bounds

    ob = compute_bounds(net, region, method="interval").output
    A *= 500.0 / float((np.abs(A) @ np.maximum(np.abs(ob[0]), np.abs(ob[1])))[0])
    probe = Case(region, OutputCondition((Conjunction(A, np.zeros(1)),), sizes[-1]))
    _, x = brute_force_max_margin(net, probe)          # the maximiser of -A y
    if x is None:
        return None
    b = float(A[0] @ net.forward(x)) + margin           # margin of x is now +margin
    case = Case(region, OutputCondition((Conjunction(A, np.array([b])),), sizes[-1]))
    return net, case, x


@functools.cache
def _planted(n: int, start: int = 0) -> tuple:
    out, seed = [], start
    while len(out) < n:
        margin = float(10 ** np.random.default_rng(seed).uniform(-7, np.log10(3e-5)))
        try:
            got = planted_near_tie(seed, margin)
        except BruteForceTooLarge:
            got = None
        if got is not None and got[1].unsafe.satisfied(got[0].forward(got[2])):
            out.append(got)                            # the plant really violates
        seed += 1
    return tuple(out)


@pytest.mark.parametrize("backend", ["highs", "scip"])
def test_planted_near_ties_are_never_holds(backend):
    for net, case, _ in _planted(12):
        ans = MilpEngine(backend=backend).check(net, case, None, timeout=30)
        assert ans.status is not Status.HOLDS, ans.stats
        if ans.status is Status.VIOLATED and ans.stats["replayed"]:
            assert case.region.contains(ans.x) and case.unsafe.satisfied(net.forward(ans.x))


# Two planted instances on which SCIP 10.0 answered the plain feasibility MILP (what the
# engine used to solve) with "infeasible", i.e. the old engine said ``holds`` for a real
# counterexample (found by benchmarks/milp_certify.py, 2 in 200). The margin form finds the
# planted point; whatever a solver version does, ``holds`` would be wrong.
SCIP_WRONG_INFEASIBLE = (10009, 10067)


@pytest.mark.parametrize("seed", SCIP_WRONG_INFEASIBLE)
@pytest.mark.parametrize("backend", ["scip", "highs"])
def test_issue11_wrong_infeasible_instances(seed, backend):
    margin = float(10 ** np.random.default_rng(seed).uniform(-7, np.log10(3e-5)))
    net, case, x = planted_near_tie(seed, margin)
    assert case.unsafe.satisfied(net.forward(x))           # the plant is a counterexample
    ans = MilpEngine(backend=backend).check(net, case, None, timeout=30)
    assert ans.status is not Status.HOLDS, ans.stats
    if ans.status is Status.VIOLATED and ans.stats["replayed"]:
        assert case.region.contains(ans.x) and case.unsafe.satisfied(net.forward(ans.x))


# ------------------------------------------------------------------ lying solvers
class _Liar(Backend):
    """A real backend whose answers are doctored the way issue 11 saw them."""

    name = "liar"
    module = "numpy"
    mode = "infeasible"

    def solve(self, model, limits: SolveLimits) -> SolveResult:
        res = HighsBackend().solve(model, limits)
        if self.mode == "infeasible":               # what HiGHS said on the planted net
            return SolveResult(SolveStatus.INFEASIBLE, None, None, math.inf, res.seconds,
                               {"native_status": "Infeasible"})
        # "band": a dual bound that puts the margin just below zero, no point
        tau = model_tau(model, self.tolerances())
        d = objective_tau(model, self.tolerances()) + 0.5 * tau
        return SolveResult(SolveStatus.LIMIT, None, None, d, res.seconds, {})


@pytest.fixture
def liar(monkeypatch):
    from nnresilience.backends import registry

    monkeypatch.setitem(registry.BACKENDS, "liar", _Liar)
    return _Liar


def test_solver_infeasible_is_never_holds(liar, monkeypatch):
    monkeypatch.setattr(liar, "mode", "infeasible")
    for net, case, _ in _planted(3, start=100):
        ans = MilpEngine(backend="liar").check(net, case, None, timeout=30)
        assert ans.status is Status.UNKNOWN
        assert "failure" in ans.message
    # also on a property that truly holds: "infeasible" alone proves nothing
    net, case, _ = _planted(1, start=200)[0]
    far = Case(case.region, OutputCondition((Conjunction(case.unsafe.terms[0].A,
                                                          case.unsafe.terms[0].b - 1e6),), 2))
    assert MilpEngine(backend="liar").check(net, far, None, timeout=30).status is Status.UNKNOWN


def test_band_goes_to_the_recheck_hook(liar, monkeypatch):
    monkeypatch.setattr(liar, "mode", "band")
    net, case, _ = _planted(1, start=300)[0]
    seen: list[RecheckRequest] = []

    def hook(req):
        seen.append(req)
        return None

    ans = MilpEngine(backend="liar", recheck=hook).check(net, case, None, timeout=30)
    assert ans.status is Status.UNKNOWN and ans.stats["band"] and len(seen) == 1
    assert 0.0 < seen[0].lower <= seen[0].tau
    assert MilpEngine(backend="liar", recheck=None).check(net, case, None, timeout=30).status \
        is Status.UNKNOWN
    # the default second opinion (another solver, tolerances 1000x tighter) sees the plant
    ans = MilpEngine(backend="liar").check(net, case, None, timeout=30)
    assert ans.status is not Status.HOLDS
    assert ans.stats["recheck_backend"] == "scip"


def test_band_recheck_can_prove_a_true_holds(liar, monkeypatch):
    monkeypatch.setattr(liar, "mode", "band")
    net, case, x = _planted(1, start=400)[0]
    A, b = case.unsafe.terms[0].A, case.unsafe.terms[0].b
    safe = Case(case.region, OutputCondition((Conjunction(A, b - 1.0),), 2))  # margin -1
    ans = MilpEngine(backend="liar").check(net, safe, None, timeout=30)
    assert ans.status is Status.HOLDS and ans.stats["recheck"] == "holds"
    assert ans.stats["recheck_tau"] < ans.stats["tau"] / 100


# ------------------------------------------------------------------ the pieces
def _two_row_model():
    """min -t  s.t.  2x + t <= 3,  -40 y + t <= 500,  x in [0, 4], y in [-10, 10], t <= 50."""
    m = MilpModel()
    x = m.add_vars(1, 0.0, 4.0)
    y = m.add_vars(1, -10.0, 10.0)
    t = m.add_vars(1, -50.0, 50.0)
    m.add_terms(np.array([0, 0, 1, 1]), np.r_[x, t, y, t], np.array([2.0, 1.0, -40.0, 1.0]), 2,
                -np.inf, np.array([3.0, 500.0]))
    m.set_objective(t, -1.0)
    return m.arrays()


def test_model_tau_is_row_norm_times_magnitudes():
    arr = _two_row_model()
    tol = Tolerances(1e-6, 1e-5)
    # row 2: 1 + 40 * 10 + 1 * 50 + 500 = 951 (row 1: 1 + 2*4 + 50 + 3 = 62); no binaries
    assert model_tau(arr, tol) == pytest.approx(1e-6 * 951)
    assert objective_tau(arr, tol) == pytest.approx(1e-6 * (1 + 50))


def test_tolerance_headroom_is_the_tolerance_over_the_largest_row_rounding():
    """The one ill-scaling rule shared by the engine's cutoff re-solve and the resilience
    tolerance cap: feasibility / (eps * largest row scale), ``inf`` without rows."""
    arr = _two_row_model()
    eps = np.finfo(float).eps
    assert tolerance_headroom(arr, 1e-6) == pytest.approx(1e-6 / (eps * 951))
    assert tolerance_headroom(arr, 1e-6) > ILL_SCALED_HEADROOM       # ordinary magnitudes
    # the same rows at 1e9 times the coefficients: rounding within 1000x of the tolerance
    huge = replace(arr, A=arr.A * 1e9)
    assert tolerance_headroom(huge, 1e-6) < ILL_SCALED_HEADROOM
    empty = replace(arr, A=arr.A[:0], row_lo=arr.row_lo[:0], row_hi=arr.row_hi[:0])
    assert tolerance_headroom(empty, 1e-6) == math.inf


def test_certify_never_trusts_infeasible_and_subtracts_the_objective_tolerance():
    arr = _two_row_model()
    tol = Tolerances(1e-6, 1e-6)
    inf = SolveResult(SolveStatus.INFEASIBLE, None, None, math.inf)
    c = certify(inf, arr, tol)
    assert c.failed and c.lower == -math.inf and not c.clears(-1e9)
    cut = SolveResult(SolveStatus.LIMIT, None, None, 0.25)        # "nothing beats 0.25"
    c = certify(cut, arr, tol)
    assert c.lower == pytest.approx(0.25 - objective_tau(arr, tol)) and not c.failed
    none = SolveResult(SolveStatus.LIMIT, None, None, -math.inf)
    assert certify(none, arr, tol).lower == -math.inf
    res = get_backend("highs").solve(arr, SolveLimits(time_limit=10))
    c = certify(res, arr, tol)
    assert res.status is SolveStatus.OPTIMAL and c.lower <= res.objective      # -t* = -50


def test_backend_tolerances_follow_native_options():
    assert HighsBackend().tolerances() == Tolerances(1e-6, 1e-6)
    assert ScipBackend().tolerances() == Tolerances(1e-6, 1e-6)
    tight = HighsBackend(options={"mip_feasibility_tolerance": 1e-9,
                                  "primal_feasibility_tolerance": 1e-9}).tolerances()
    assert tight == Tolerances(1e-9, 1e-9)
    # loosening one option is what the solver accepts: the larger value counts
    loose = HighsBackend(options={"primal_feasibility_tolerance": 1e-4}).tolerances()
    assert loose.feasibility == 1e-4 and loose.integrality == 1e-6
    assert ScipBackend(params={"numerics/feastol": 1e-7}).tolerances() == Tolerances(1e-7, 1e-7)


def test_holds_carries_its_margin_and_misclassification_still_decides():
    net = Network([Affine(np.array([[1.0], [-1.0]]), np.zeros(2)), ReLU(2),
                   Affine(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, -0.5]))])
    # y0 = relu(x), y1 = relu(-x) - 0.5 on [0.1, 1]: y0 > y1 everywhere, margin -0.6
    case = Case(InputRegion(np.array([0.1]), np.array([1.0])), misclassification(0, 2))
    ans = MilpEngine().check(net, case, None, timeout=30)
    assert ans.status is Status.HOLDS
    assert -0.6 - 1e-5 <= ans.stats["margin_bound"] < -ans.stats["tau"]
    wide = Case(InputRegion(np.array([-1.0]), np.array([1.0])), misclassification(0, 2))
    ans = MilpEngine().check(net, wide, None, timeout=30)
    assert ans.status is Status.VIOLATED and ans.stats["replayed"]
    assert net.forward(ans.x)[1] >= net.forward(ans.x)[0]


def test_a_cutoff_bounds_what_a_solve_proves():
    """Under an objective cutoff only "nothing below the cutoff" is proven: a dual bound
    above it is capped, an "optimal" point that does not beat it is only a point.
    Regression: HiGHS called a 3-5-4-3 ReLU misclassification model with cutoff ~1.3e-5
    "optimal" at -t = 0.166 (dual bound 0.166) while a sampled input reaches 0.110 and
    the true maximum margin is -0.070; the engine answered unknown instead of holds."""
    from nnresilience.backends.base import _within_cutoff

    lim = SolveLimits(time_limit=1.0, cutoff=0.01)
    lying = SolveResult(SolveStatus.OPTIMAL, np.zeros(2), 0.166, 0.166)
    got = _within_cutoff(lying, lim)
    assert got.status is SolveStatus.LIMIT and got.dual_bound == 0.01
    honest = SolveResult(SolveStatus.OPTIMAL, np.zeros(2), 0.005, 0.004)
    assert _within_cutoff(honest, lim) is honest
    assert _within_cutoff(lying, SolveLimits(time_limit=1.0)) is lying

    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_milp import _random_case

    from nnresilience.bounds.interval import interval_bounds
    from nnresilience.testing.bruteforce import random_network
    rng = np.random.default_rng(732)
    net = random_network(rng, [3, 5, 4, 3], kind="relu")
    case = _random_case(rng, net)
    val, _ = brute_force_max_margin(net, case)
    assert val < -0.05
    ans = MilpEngine(backend="highs").check(net, case, interval_bounds(
        net, case.region.lo, case.region.hi), timeout=30)
    assert ans.status is Status.HOLDS, ans.message


def test_holds_covers_the_float64_replay_not_only_the_exact_network():
    """``(x + 2^53) -> ReLU -> -2^53``: exactly ``y = x`` (safe: ``y > 0.1`` on [0.2, 0.4]),
    in float64 ``y = 0`` for every such x (unsafe). The exact model alone would prove
    ``holds``; the engine widens the unsafe set by the replay slack and must not."""
    from nnresilience.bounds import compute_bounds

    big = 2.0 ** 53
    net = Network([Affine(np.array([[1.0]]), np.array([big])), ReLU(1),
                   Affine(np.array([[1.0]]), np.array([-big]))])
    case = Case(InputRegion(np.array([0.2]), np.array([0.4])),
                OutputCondition((Conjunction(np.array([[1.0]]), np.array([0.1])),), 1))
    assert case.unsafe.satisfied(net.forward(np.array([0.3])))        # float64: violated
    nb = compute_bounds(net, case.region, method="symbolic")
    for backend in ("highs", "scip"):
        ans = MilpEngine(backend=backend).check(net, case, nb, timeout=20)
        assert ans.status is Status.VIOLATED, (backend, ans.message)
        assert case.unsafe.satisfied(net.forward(ans.x))
        assert ans.stats["float_slack"] >= 0.3
    # on a unit-scale net the widening is negligible (it costs no proof there)
    from nnresilience.engines.milp import replay_margin_slack

    small = Network([Affine(np.array([[1.0]]), np.array([1.0])), ReLU(1),
                     Affine(np.array([[1.0]]), np.array([-1.0]))])
    nb1 = compute_bounds(small, case.region, method="symbolic")
    assert 0.0 < replay_margin_slack(small, case.unsafe, nb1) < 1e-12
    assert MilpEngine(backend="highs").check(small, case, nb1, timeout=20).status \
        is Status.HOLDS
