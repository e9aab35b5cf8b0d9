"""The search on a shipped 64-input net (digits 4x50, 10 classes): per-term and joint
searches, and the MILP engine, never contradict each other, and every violation replays.

Larger than the toy nets of the other search tests: 200 ReLUs, a 9-term disjunction, the
neuron rule with the optimised bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnresilience.loaders import load_network
from nnresilience.results import Status
from nnresilience.spec.property import Property, robustness
from nnresilience.verify import verify

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.mark.slow
# 0.024: holds after a few domains of search; 0.025: violated (measured on sample 0)
@pytest.mark.parametrize("eps", [0.024, 0.025])
def test_digits_verdicts_agree_and_witnesses_replay(eps):
    net = load_network(DIGITS / "digits_4x50.onnx")
    x = np.load(DIGITS / "digits_test.npz")["X"][0].reshape(-1).astype(np.float64)
    label = int(net.predict(x))
    lo, hi = np.zeros(x.size), np.ones(x.size)
    prop = Property(robustness(x, label, eps, net.n_outputs, "linf", lo, hi, 1).cases)
    answers = {}
    for name, engine, opts in (("per-term", "bab", {}), ("joint", "bab", {"per_term": False}),
                               ("milp", "milp", {})):
        res = verify(net, prop, engine=engine, timeout=20, engine_options=opts,
                     falsify_budget=0.0)
        answers[name] = res.status
        if res.status is Status.VIOLATED:
            xc = np.asarray(res.counterexample.x_array, float)
            assert prop.cases[0].region.contains(xc, tol=0.0)
            assert np.all(np.abs(xc - x) <= eps * (1 + 1e-12))
            y = net.forward(xc)
            assert np.argmax(y) != label or np.sum(y >= y[label]) >= 2
    decided = {s for s in answers.values() if s is not Status.UNKNOWN}
    assert len(decided) <= 1, answers
