"""Every bound method's boxes contain the float64 forward values on planted instances.

Points: the planted maximiser (an interior kink of the network), the box corners, random
points and points within 1e-6 of the maximiser; magnitudes up to 1e3 (weights), 1e6
(cancelling biases) and 1e4 (logits).
"""

from __future__ import annotations

import pytest

from nnresilience.testing.adversarial import BOUND_METHODS, bound_violations

from .conftest import CI_SEEDS, REGRESSION_SEEDS


@pytest.mark.parametrize("method", BOUND_METHODS)
def test_bounds_contain_forward_values(method, planted):
    # LP / MIP bounds cost more: a third of the seeds for them
    step = 1 if method in ("interval", "symbolic") else 3
    bad = []
    for seed in list(CI_SEEDS)[::step] + [s for s in REGRESSION_SEEDS if s >= len(CI_SEEDS)]:
        inst = planted(seed)
        for v in bound_violations(inst, method):
            bad.append(f"{inst.describe()}: {v}")
    assert not bad, f"{method}: {len(bad)} escapes:\n" + "\n".join(bad[:20])
