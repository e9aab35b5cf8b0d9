"""The planted-instance generator and the certified enumeration behind it."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import sequential
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition, misclassification
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import brute_force_max_margin, random_network
from nnresilience.testing.certified import (
    CertificationError,
    SmallLP,
    certified_max_margin,
    dual_bound,
    sound_boxes,
)
from nnresilience.testing.planted import KINDS, planted_instance

SEEDS = range(24)


@pytest.fixture(scope="module")
def instances():
    return [planted_instance(s) for s in SEEDS]


def test_deterministic_by_seed():
    a, b = planted_instance(5), planted_instance(5)
    assert a.network.content_hash() == b.network.content_hash()
    assert a.case.region.lo.tolist() == b.case.region.lo.tolist()
    assert a.margin == b.margin and np.array_equal(a.point, b.point)
    assert planted_instance(6).network.content_hash() != a.network.content_hash()


def test_planted_answers_are_what_they_claim(instances):
    """Violated: the witness replays exactly, in the box. Holds: the certified float64
    bound is negative and no sampled point (dense, and around x*) exceeds it."""
    for inst in instances:
        case, net = inst.case, inst.network
        rng = np.random.default_rng(inst.seed)
        x = inst.point
        assert case.region.contains(x, 0.0)
        assert float(case.unsafe.max_margin(net.forward(x))) == inst.margin
        assert 0.5e-7 <= inst.delta_rel <= 1e-2, inst.describe()
        X = np.vstack([case.region.sample(4000, rng),
                       case.region.clip(x + rng.normal(0.0, 1e-6, (500, x.size))),
                       np.where(rng.integers(0, 2, (200, x.size)) == 1, case.region.hi,
                                case.region.lo)])
        sampled = case.unsafe.max_margin(net.forward(X)).max()
        assert sampled <= inst.certified_upper, inst.describe()
        assert inst.margin <= inst.certified_upper
        if inst.status is Status.VIOLATED:
            assert inst.margin > 0 and case.unsafe.satisfied(net.forward(inst.witness))
        else:
            assert inst.witness is None
            assert inst.certified_upper < 0 and inst.margin < 0


def test_mix_of_kinds_magnitudes_and_statuses(instances):
    kinds = {i.kind for i in instances}
    assert kinds == set(KINDS)
    assert {i.status for i in instances} == {Status.VIOLATED, Status.HOLDS}
    large = [i for i in instances if i.magnitude == "large"]
    assert large and max(i.info["max_abs_bias"] for i in large) > 1e4
    assert max(i.logit_scale for i in instances) > 1e2
    assert all(i.info["max_abs_weight"] <= 1e3 for i in instances)
    # the tent puts most maximisers off the corners
    assert sum(not i.at_corner for i in instances) > len(instances) // 2
    for i in instances:
        sizes = i.network.layer_sizes()
        assert 2 <= sizes[0] <= 4 and 2 <= sizes[-1] <= 4


def test_status_and_kind_can_be_forced():
    for kind in KINDS:
        inst = planted_instance(100, status="holds", kind=kind, magnitude="large")
        assert inst.status is Status.HOLDS and inst.kind == kind
        assert inst.magnitude == "large"
    with pytest.raises(ValueError):
        planted_instance(1, kind="tanh")


# ------------------------------------------------------------------ certified enumeration
@pytest.mark.parametrize("kind", ["relu", "leaky", "maxpool"])
def test_certified_matches_brute_force(kind):
    rng = np.random.default_rng(3)
    for _ in range(3):
        net = random_network(rng, [2, 4, 4, 3] if kind == "maxpool" else [3, 4, 3, 3], kind)
        n = net.n_inputs
        case = Case(InputRegion(-np.ones(n), np.ones(n)), misclassification(0, 3))
        cm = certified_max_margin(net, case)
        bf, _ = brute_force_max_margin(net, case)
        assert cm.value <= bf + 1e-12 and bf <= cm.upper
        assert cm.upper - cm.value < 1e-9
        assert cm.value == float(case.unsafe.max_margin(net.forward(cm.point)))


def test_dual_bound_is_an_upper_bound_for_any_dual():
    rng = np.random.default_rng(0)
    G, h = rng.normal(size=(8, 3)), rng.uniform(0.5, 1.0, 8)
    c, L, U = rng.normal(size=3), -np.ones(3), np.ones(3)
    status, v, z = SmallLP().solve(c, G, h, L, U)
    assert status == "optimal"
    best = dual_bound(c, G, h, L, U, z)
    assert c @ v <= best <= c @ v + 1e-9
    for _ in range(20):                       # any other z >= 0: still an upper bound
        assert dual_bound(c, G, h, L, U, rng.uniform(0, 2, 8)) >= c @ v
    assert dual_bound(c, G, h, L, np.array([1.0, np.inf, 1.0]), np.zeros(8)) == np.inf


def test_sound_boxes_contain_float_forward_at_extreme_magnitudes():
    """Issue 11 item 3: x + 1e8 -> ReLU -> -1e8, and biases of 2**52."""
    for big in (1e8, 2.0 ** 52):
        net = sequential([Affine(np.array([[1.0]]), np.array([big])), ReLU(1),
                          Affine(np.array([[1.0]]), np.array([-big]))])
        lo, hi = np.array([0.3 - 1e-3]), np.array([0.3 + 1e-3])
        boxes = sound_boxes(net, lo, hi)
        X = np.linspace(lo, hi, 2001)
        vals = net.forward_all(X)
        for i, v in enumerate(vals):
            assert np.all(v >= boxes.lo[i]) and np.all(v <= boxes.hi[i]), (big, i)


def test_certified_bound_covers_rounding_of_cancelling_biases():
    """y = (x + B) - B for B = 2**52 rounds x to an integer: the certified maximum of
    y - 0.4 over [0.3, 0.45] must cover the float64 value 0 - 0.4 ... and the exact 0.05."""
    B = 2.0 ** 52
    net = sequential([Affine(np.array([[1.0]]), np.array([B])), ReLU(1),
                      Affine(np.array([[1.0], [0.0]]), np.array([-B, 0.0]))])
    case = Case(InputRegion(np.array([0.3]), np.array([0.45])),
                OutputCondition((Conjunction(np.array([[-1.0, 0.0]]), np.array([-0.4])),), 2))
    cm = certified_max_margin(net, case)
    assert cm.upper_exact >= 0.45 - 0.4
    X = np.linspace(0.3, 0.45, 1001)[:, None]
    assert case.unsafe.max_margin(net.forward(X)).max() <= cm.upper


def test_refuses_l1_and_smooth():
    net = random_network(np.random.default_rng(0), [2, 3, 2])
    l1 = Case(InputRegion.ball(np.zeros(2), 0.5, "l1", -1, 1), misclassification(0, 2))
    with pytest.raises(CertificationError, match="box"):
        certified_max_margin(net, l1)


def test_docs_example_runs():
    """The example at the top of docs/adversarial.md runs as written."""
    import contextlib
    import io
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "adversarial.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "adversarial.md", "exec"), {"__name__": "docs"})
    assert out.getvalue().startswith("seed=3 violated relu/large/misclassification")
