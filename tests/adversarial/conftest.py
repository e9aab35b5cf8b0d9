"""Planted instances shared by the adversarial tests (generated once per session)."""

from __future__ import annotations

from functools import cache

import pytest

from nnresilience.testing.planted import planted_instance

#: CI seeds: every configuration sees a quarter of them (see ``seeds_for``).
CI_SEEDS = range(120)
ROTATION = 4
#: Seeds that gave wrong answers in ``benchmarks/adversarial.py`` (Nov 2026, all at the
#: "extreme" magnitude): every configuration runs them. 36: milp:1 bounds prove a planted
#: violation safe; 129, 411: the MILP engine answers holds (HiGHS infeasible); 301: a
#: milp:1 lower bound 4.8e-7 above a float64 forward value (the objective row's tolerance).
REGRESSION_SEEDS = (36, 129, 301, 411)


@cache
def instance(seed: int):
    return planted_instance(seed)


def seeds_for(index: int) -> list[int]:
    """The CI seeds configuration ``index`` runs on: a rotation, so each seed is asked
    a few ways and each way sees every kind, magnitude and status; plus the regression
    seeds."""
    rotated = [s for s in CI_SEEDS if (s + index) % ROTATION == 0]
    return rotated + [s for s in REGRESSION_SEEDS if s not in rotated]


@pytest.fixture(scope="session")
def planted():
    return instance
