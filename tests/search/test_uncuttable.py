"""A box the search cannot cut (every side at most one float64 step) is not a proof.

Found by the unseen-shape sweep (helper ``sweep8``): input splitting returned no children
for such a box and the driver read the empty frontier as ``holds``, while one of the
box's two float64 points violates the property. Engines ``none`` and ``reluplex`` (whose
leaf hands an inconclusive box back to branching) said ``holds`` with the falsifier off.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion
from nnresilience.verify import replay, verify

K = 2.0 ** 52


def _one_ulp_instance():
    """x in [1, 1 + 2^-52] (two floats); z = 2^52 (x - 1) - 1/2 is exactly -1/2 or 1/2;
    y = relu(z) + 2 relu(-z) is 1 at x = 1 and 1/2 at the upper end. Unsafe:
    1/2 <= y <= 3/4, met only at the upper end (the box centre rounds to the lower one,
    and the bound's corner for the first row is the lower one too)."""
    net = Network([Affine(np.array([[K]]), np.array([-K])),
                   Affine(np.array([[1.0], [-1.0]]), np.array([-0.5, 0.5])), ReLU(2),
                   Affine(np.array([[1.0, 2.0]]), np.array([0.0]))])
    lo, hi = np.array([1.0]), np.array([np.nextafter(1.0, 2.0)])
    cond = OutputCondition((Conjunction(np.array([[-1.0], [1.0]]), np.array([-0.5, 0.75])),),
                           1)
    return net, Property((Case(InputRegion(lo, hi), cond),)), hi


def test_the_instance_is_violated_at_the_upper_float():
    net, prop, witness = _one_ulp_instance()
    assert net.forward(np.array([1.0]))[0] == 1.0 and net.forward(witness)[0] == 0.5
    assert replay(net, prop, witness)
    assert not replay(net, prop, np.array([1.0]))


@pytest.mark.parametrize("engine", ["none", "reluplex", "bab", "milp", "auto"])
def test_an_uncuttable_box_is_never_holds(engine):
    net, prop, _ = _one_ulp_instance()
    r = verify(net, prop, engine=engine, timeout=5.0, falsify_budget=0.0)
    assert r.status.value != "holds", (engine, r.engine, r.message)
    if r.status.value == "violated":
        assert replay(net, prop, r.counterexample.x_array)
    else:
        assert "too narrow to split" in r.message or "reluplex" in r.engine


def test_a_point_box_with_an_open_bound_is_unknown_not_holds():
    """A zero-width box: the search has nothing to cut either; a bound that stays open
    (the threshold one float step above the value) must not become ``holds``."""
    net, _, _ = _one_ulp_instance()
    x = np.array([1.0])
    y = float(net.forward(x)[0])
    cond = OutputCondition((Conjunction(np.array([[-1.0]]), np.array([-np.nextafter(y, 2.0)])),),
                           1)
    prop = Property((Case(InputRegion(x, x.copy()), cond),))
    r = verify(net, prop, engine="none", timeout=5.0, falsify_budget=0.0)
    assert r.status.value == "unknown", (r.engine, r.message)
