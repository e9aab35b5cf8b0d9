"""Backend conformance suite: every available backend solves the same small models with
known answers (feasible, infeasible, time-limited with a valid dual bound, cut off, stopped at
the first solution, quadratic where supported)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnresilience.backends.base import SolveLimits, SolveStatus
from nnresilience.backends.registry import BACKENDS, available_backends, get_backend
from nnresilience.bounds.interval import interval_bounds
from nnresilience.encode.milp import encode_network, encode_region
from nnresilience.encode.model import MilpModel, QuadConstraint
from nnresilience.errors import BackendUnavailableError
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import random_network

BACKEND_NAMES = available_backends()


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    return get_backend(request.param)


def _feasible(model, x: np.ndarray, tol: float = 1e-6) -> bool:
    a = model.arrays()
    act = a.A @ x
    ok = np.all(act >= a.row_lo - tol) and np.all(act <= a.row_hi + tol)
    ok &= np.all(x >= a.lb - tol) and np.all(x <= a.ub + tol)
    xi = x[a.integer]
    return bool(ok and np.all(np.abs(xi - np.round(xi)) <= tol))


def lp_0() -> tuple[MilpModel, float]:
    """min -x - 2y s.t. x + y <= 4, x - y >= -2, 0 <= x, y <= 3  ->  x = 1, y = 3: -7."""
    m = MilpModel()
    v = m.add_vars(2, 0.0, 3.0, obj=[-1.0, -2.0])
    m.add_terms(np.array([0, 0, 1, 1]), np.r_[v, v], np.array([1.0, 1.0, 1.0, -1.0]), 2,
                [-np.inf, -2.0], [4.0, np.inf])
    return m, -7.0


def milp_0() -> tuple[MilpModel, float]:
    """Knapsack: max 5a + 4b + 3c s.t. 2a + 3b + c <= 5 (binaries), offset 1: a = b = 1."""
    m = MilpModel()
    b = m.add_binaries(3)
    m.add_terms(np.zeros(3, int), b, np.array([2.0, 3.0, 1.0]), 1, -np.inf, 5.0)
    m.set_objective(b, [-5.0, -4.0, -3.0], offset=1.0)
    return m, -(5.0 + 4.0) + 1.0          # a, b (weight 5, value 9) beat a, c (value 8)


def milp_infeasible() -> MilpModel:
    m = MilpModel()
    b = m.add_binaries(2)
    m.add_terms(np.zeros(2, int), b, np.ones(2), 1, 1.5, 1.5)       # b0 + b1 = 1.5
    return m


def hard_relu_milp(seed: int = 0, sizes=(10, 40, 40, 40, 2)
                   ) -> tuple[MilpModel, np.ndarray, float]:
    """min of one output of a random ReLU net (default: not solvable in 0.05 s); returns the
    value at a sampled input (an upper bound on the optimum)."""
    rng = np.random.default_rng(seed)
    net = random_network(rng, list(sizes))
    lo, hi = -np.ones(sizes[0]), np.ones(sizes[0])
    m = MilpModel()
    enc = encode_network(m, net, interval_bounds(net, lo, hi))
    m.set_objective(enc.outputs[:1], [1.0])
    X = rng.uniform(lo, hi, (2000, sizes[0]))
    return m, enc.inputs, float(net.forward(X)[:, 0].min())


def test_some_backend_is_available():
    assert "highs" in BACKEND_NAMES and "scip" in BACKEND_NAMES


def test_lp_optimal(backend):
    m, opt = lp_0()
    res = backend.solve(m.arrays(), SolveLimits())
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective == pytest.approx(opt, abs=1e-7)
    assert res.dual_bound == pytest.approx(opt, abs=1e-6)
    np.testing.assert_allclose(res.x, [1.0, 3.0], atol=1e-7)


def test_milp_optimal_with_offset(backend):
    m, opt = milp_0()
    res = backend.solve(m.arrays(), SolveLimits())
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective == pytest.approx(opt, abs=1e-7)
    assert res.dual_bound <= res.objective + 1e-7
    assert _feasible(m, res.x)


def test_milp_infeasible(backend):
    res = backend.solve(milp_infeasible().arrays(), SolveLimits())
    assert res.status is SolveStatus.INFEASIBLE
    assert res.x is None and res.dual_bound == math.inf


def test_lp_infeasible_and_unbounded(backend):
    m = MilpModel()
    v = m.add_vars(2, -np.inf, np.inf, obj=[-1.0, 0.0])
    # x + y <= 1 and x + y >= 3
    m.add_terms(np.array([0, 0, 1, 1]), np.r_[v, v], np.ones(4), 2, [-np.inf, 3.0],
                [1.0, np.inf])
    assert backend.solve(m.arrays(), SolveLimits()).status is SolveStatus.INFEASIBLE
    free = MilpModel()
    free.add_vars(2, -np.inf, np.inf, obj=[-1.0, 0.0])
    res = backend.solve(free.arrays(), SolveLimits())
    assert res.status in (SolveStatus.UNBOUNDED, SolveStatus.ERROR)   # never "optimal"


def test_empty_infeasible_row(backend):
    m = MilpModel()
    m.add_vars(1, 0, 1)
    m.add_rows(np.zeros((1, 0)), 1.0, np.inf)
    assert backend.solve(m.arrays(), SolveLimits()).status is SolveStatus.INFEASIBLE


def test_time_limit_gives_a_valid_dual_bound(backend):
    m, _, sampled = hard_relu_milp()
    res = backend.solve(m.arrays(), SolveLimits(time_limit=0.05))
    assert res.status in (SolveStatus.LIMIT, SolveStatus.OPTIMAL)
    assert res.dual_bound is not None and res.dual_bound <= sampled + 1e-7
    if res.x is not None:
        assert _feasible(m, res.x)
        assert res.dual_bound <= res.objective + 1e-6


def test_full_solve_matches_between_backends():
    m, inputs, sampled = hard_relu_milp(1, (4, 10, 10, 2))
    objs = []
    for name in BACKEND_NAMES:
        res = get_backend(name).solve(m.arrays(), SolveLimits(time_limit=60))
        assert res.status is SolveStatus.OPTIMAL
        assert res.objective <= sampled + 1e-7
        objs.append(res.objective)
    assert max(objs) - min(objs) <= 1e-4 * max(1.0, abs(objs[0]))


def test_stop_at_first_solution_returns_a_feasible_point(backend):
    m, _, _ = hard_relu_milp(2, (5, 16, 16, 2))
    res = backend.solve(m.arrays(), SolveLimits(time_limit=30, stop_at_first_solution=True))
    assert res.status in (SolveStatus.LIMIT, SolveStatus.OPTIMAL)
    assert res.x is not None and _feasible(m, res.x)


def test_cutoff_below_optimum_is_not_infeasible(backend):
    m, opt = milp_0()
    res = backend.solve(m.arrays(), SolveLimits(cutoff=opt - 1.0))
    assert res.status is SolveStatus.LIMIT          # feasible, just nothing below the cutoff
    assert res.dual_bound == pytest.approx(opt - 1.0)
    res2 = backend.solve(m.arrays(), SolveLimits(cutoff=opt + 0.5))
    assert res2.status is SolveStatus.OPTIMAL and res2.objective == pytest.approx(opt)


def test_mip_start_and_priorities_are_accepted(backend):
    m, opt = milp_0()
    m.set_start(np.arange(3), [1.0, 1.0, 0.0])
    m.set_priority(np.arange(3), 5)
    res = backend.solve(m.arrays(), SolveLimits())
    assert res.status is SolveStatus.OPTIMAL and res.objective == pytest.approx(opt)


def test_pinned_relu_network_lp_is_exact(backend):
    rng = np.random.default_rng(4)
    net = random_network(rng, [3, 6, 2], kind="leaky")
    x0 = rng.uniform(-1, 1, 3)
    m = MilpModel()
    enc = encode_network(m, net, interval_bounds(net, -np.ones(3), np.ones(3)))
    encode_region(m, enc.inputs, InputRegion(x0, x0))
    res = backend.solve(m.arrays(), SolveLimits())
    np.testing.assert_allclose(res.x[enc.outputs], net.forward(x0), atol=1e-6)


def _quad_model() -> MilpModel:
    """min x + 4y s.t. x y = 1, x, y in [0.25, 4]  ->  x = 2, y = 0.5: 4."""
    m = MilpModel()
    v = m.add_vars(2, 0.25, 4.0, obj=[1.0, 4.0])
    m.quad.append(QuadConstraint((), (), ((int(v[0]), int(v[1]), 1.0),), 1.0, 1.0))
    return m


def test_quadratic_constraints(backend):
    m = _quad_model()
    if not backend.supports_quadratic:
        with pytest.raises(BackendUnavailableError):
            backend.solve(m.arrays(), SolveLimits())
        return
    res = backend.solve(m.arrays(), SolveLimits(time_limit=20))
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective == pytest.approx(4.0, abs=1e-5)
    np.testing.assert_allclose(res.x, [2.0, 0.5], atol=1e-3)


def test_registry_errors():
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        get_backend("cplexx")
    if not BACKENDS["gurobi"].available():
        with pytest.raises(BackendUnavailableError, match="gurobipy"):
            get_backend("gurobi")
    assert get_backend("auto", need_quadratic=True).supports_quadratic
    assert get_backend("auto").name in BACKEND_NAMES


def test_solver_packages_are_not_imported_by_the_package():
    import subprocess
    import sys

    code = ("import sys, nnresilience.backends.registry, nnresilience.engines.milp, "
            "nnresilience.encode.milp; "
            "print(any(m in sys.modules for m in ('highspy', 'pyscipopt', 'gurobipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
