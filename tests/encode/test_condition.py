"""Tests of ``nnresilience.encode.condition``: the MILP accepts exactly the unsafe outputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.backends.base import SolveLimits, SolveStatus
from nnresilience.backends.registry import get_backend
from nnresilience.encode.condition import encode_condition
from nnresilience.encode.model import MilpModel
from nnresilience.spec.condition import (
    Conjunction,
    OutputCondition,
    misclassification,
    not_in_top_k,
)


def _accepts(condition, y: np.ndarray, margin: float = 0.0) -> bool:
    """Is the output point ``y`` feasible for the encoded condition (box [-5, 5])?"""
    n = y.size
    model = MilpModel()
    out = model.add_vars(n, y, y)
    encode_condition(model, out, condition, -5 * np.ones(n), 5 * np.ones(n), margin=margin)
    res = get_backend("highs").solve(model.arrays(), SolveLimits(time_limit=10))
    assert res.status in (SolveStatus.OPTIMAL, SolveStatus.INFEASIBLE)
    return res.status is SolveStatus.OPTIMAL


def _random_condition(rng, n: int) -> OutputCondition:
    terms = []
    for _ in range(int(rng.integers(1, 4))):
        rows = int(rng.integers(1, 3))
        terms.append(Conjunction(rng.normal(size=(rows, n)), rng.normal(size=rows)))
    return OutputCondition(tuple(terms), n)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_disjunction_accepts_exactly_the_unsafe_points(seed):
    rng = np.random.default_rng(seed)
    cond = _random_condition(rng, 3)
    y = rng.uniform(-4, 4, 3)
    if abs(float(cond.max_margin(y))) < 1e-6:
        return                                  # on the boundary: tolerance decides
    assert _accepts(cond, y) == bool(cond.satisfied(y))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000), k=st.integers(1, 3))
def test_topk_compact_form_equals_the_enumerated_disjunction(seed, k):
    rng = np.random.default_rng(seed)
    y = np.round(rng.uniform(-3, 3, 5), 1)      # coarse grid: ties happen and must count
    label = int(rng.integers(0, 5))
    cond = not_in_top_k(label, k, 5)
    assert cond.topk == (label, k)
    assert _accepts(cond, y) == bool(cond.satisfied(y))


def test_misclassification_ties_count_as_unsafe():
    cond = misclassification(0, 3)
    assert _accepts(cond, np.array([1.0, 1.0, 0.0]))
    assert not _accepts(cond, np.array([1.0, 0.5, 0.0]))


def test_margin_shrinks_the_unsafe_set():
    cond = OutputCondition((Conjunction(np.array([[1.0, -1.0]]), np.array([0.0])),), 2)
    y = np.array([1.0, 1.0 + 1e-6])
    assert _accepts(cond, y)
    assert not _accepts(cond, y, margin=1e-5)


def test_empty_disjunction_is_infeasible():
    assert not _accepts(OutputCondition((), 2), np.zeros(2))


def test_disjunction_needs_finite_output_bounds():
    from nnresilience.errors import EngineUnsupportedError

    model = MilpModel()
    out = model.add_vars(3)
    with pytest.raises(EngineUnsupportedError, match="finite"):
        encode_condition(model, out, misclassification(0, 3), np.full(3, -np.inf),
                         np.full(3, np.inf))
