"""Results round-trip through JSON and keep their invariants."""

import json

import numpy as np
import pytest

from nnresilience.results import Counterexample, ResilienceResult, Status, VerificationResult


def test_verification_result_json_round_trip():
    ce = Counterexample.from_arrays(np.array([0.5, -1.0]), np.array([1.0, 2.0]), True)
    r = VerificationResult(Status.VIOLATED, ce, engine="milp", seconds=1.5,
                           stats={"nodes": np.int64(3), "lo": np.array([1.0, 2.0])})
    d = json.loads(json.dumps(r.to_dict()))
    back = VerificationResult.from_dict(d)
    assert back.status is Status.VIOLATED
    assert back.counterexample.x == (0.5, -1.0)
    assert back.stats["nodes"] == 3
    assert back.stats["lo"] == [1.0, 2.0]


def test_violated_needs_counterexample():
    with pytest.raises(ValueError):
        VerificationResult(Status.VIOLATED)


def test_vnncomp_words_and_block():
    assert Status.HOLDS.vnncomp == "unsat"
    assert Status.UNKNOWN.vnncomp == "timeout"
    ce = Counterexample.from_arrays(np.array([0.25]), np.array([3.0, 4.0]))
    text = VerificationResult(Status.VIOLATED, ce).to_vnncomp()
    assert text.splitlines()[0] == "sat"
    assert "(X_0 0.25)" in text and "(Y_1 4.0)" in text


def test_resilience_result_round_trip_and_value():
    r = ResilienceResult("phi", lower=0.1, upper=0.2, optimal=False, cls=1, alpha=1.5, k=1,
                         norm="l1", a=(0.0, 1.0), a_perturbed=(0.1, 1.0))
    assert r.value is None
    back = ResilienceResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    inf = ResilienceResult("phi", lower=float("-inf"), upper=None, optimal=False)
    assert inf.to_dict()["lower"] is None
