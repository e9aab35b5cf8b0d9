"""The hard time limit of solver calls (``backends/guard.py``)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import scipy.sparse as sp

from nnresilience.backends.base import Backend, SolveLimits, SolveResult, SolveStatus
from nnresilience.backends.guard import can_fork, should_isolate
from nnresilience.backends.registry import get_backend
from nnresilience.encode.model import MilpModel

pytestmark = pytest.mark.skipif(not can_fork(), reason="the guard needs fork (POSIX)")


class _Stalling(Backend):
    """A backend whose solver ignores its time limit, as HiGHS's MIP presolve does."""

    name = "stalling"

    def _solve(self, model, limits):
        time.sleep(30.0)
        return SolveResult(SolveStatus.OPTIMAL, np.zeros(model.n_vars), 0.0, 0.0)


class _Crashing(Backend):
    name = "crashing"

    def _solve(self, model, limits):
        os._exit(7)


def _knapsack(n: int = 30, seed: int = 0):
    """A small MIP with a known structure: maximise value under a weight budget."""
    rng = np.random.default_rng(seed)
    m = MilpModel()
    x = m.add_binaries(n)
    m.add_rows(sp.csr_matrix((rng.uniform(1, 10, n), (np.zeros(n, int), x)), shape=(1, n)),
               -np.inf, 40.0)
    m.set_objective(x, -rng.uniform(1, 10, n))
    return m.arrays()


def test_overrunning_solver_is_killed_at_its_limit():
    model = _knapsack()
    t0 = time.monotonic()
    res = _Stalling().solve(model, SolveLimits(time_limit=0.5, isolate=True))
    wall = time.monotonic() - t0
    assert wall < 0.5 + 1.0, wall
    assert res.status is SolveStatus.LIMIT
    assert res.x is None and res.dual_bound == -np.inf
    assert res.stats["killed"] is True


def test_dead_solver_process_is_an_error_not_a_proof():
    res = _Crashing().solve(_knapsack(), SolveLimits(time_limit=5.0, isolate=True))
    assert res.status is SolveStatus.ERROR
    assert res.x is None and res.dual_bound == -np.inf


@pytest.mark.parametrize("backend", ["highs", "scip"])
def test_guarded_and_inline_solves_agree(backend):
    model = _knapsack(seed=3)
    inline = get_backend(backend).solve(model, SolveLimits(time_limit=30, isolate=False))
    guarded = get_backend(backend).solve(model, SolveLimits(time_limit=30, isolate=True))
    assert guarded.stats.get("guarded") is True
    assert inline.status is guarded.status is SolveStatus.OPTIMAL
    assert guarded.objective == pytest.approx(inline.objective, abs=1e-6)
    np.testing.assert_allclose(guarded.x, inline.x, atol=1e-6)


def test_isolation_policy_follows_size_and_limit():
    small = _knapsack(n=4)
    big = _knapsack(n=40)
    assert not should_isolate(big, SolveLimits(time_limit=None))
    assert should_isolate(big, SolveLimits(time_limit=1.0))
    assert not should_isolate(small, SolveLimits(time_limit=1.0))
    assert should_isolate(small, SolveLimits(time_limit=None, isolate=True))
    assert not should_isolate(big, SolveLimits(time_limit=1.0, isolate=False))


def test_ctrl_c_during_a_guarded_solve_kills_the_child():
    import signal
    import threading

    import psutil

    before = {p.pid for p in psutil.Process().children()}
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        _Stalling().solve(_knapsack(), SolveLimits(time_limit=20.0, isolate=True))
    assert time.monotonic() - t0 < 2.0
    left = [p for p in psutil.Process().children() if p.pid not in before]
    assert not left, left                    # killed and reaped: no new child is left
