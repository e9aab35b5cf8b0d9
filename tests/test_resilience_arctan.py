"""Arctan nets in the resilience queries: the sound PWL relaxation and the paper's MIQCP
(``ResilienceSettings(arctan=...)``), each against 1-D brute force (Φ is the distance
between the premise and flip intervals, crossings bisected to 1e-12): ``lower <= Φ <=
upper`` in both modes, the witness replays exactly, and the answer says which encoding
it rests on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnresilience.errors import BackendUnavailableError, InputDataError
from nnresilience.network.layers import Affine, Arctan
from nnresilience.network.model import Network
from nnresilience.resilience import DEFAULT, ResilienceSettings, min_perturbation, phi
from nnresilience.resilience.replay import flip_count, premise_margin
from nnresilience.testing.phi_reference import (
    intervals_1d,
)

LO, HI, ALPHA = -1.0, 1.0, 1.3


def _atan_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network([Affine(rng.normal(size=(4, 1)) * 2.0, rng.normal(size=4)), Arctan(4),
                    Affine(rng.normal(size=(3, 4)), rng.normal(size=3) * 0.3)])


def _intervals(fn, n=20001):
    return intervals_1d(fn, LO, HI, n)


def _true_phi(net, m):
    def margin(X):
        Y = net.forward(X)
        return Y[:, m] - np.delete(Y, m, axis=1).max(axis=1) - math.log(ALPHA)

    def slack(X):
        Y = net.forward(X)
        return np.delete(Y, m, axis=1).max(axis=1) - Y[:, m]

    P, F = _intervals(margin), _intervals(slack)
    if not P or not F:
        return None
    return min(max(0.0, b0 - a1, a0 - b1) for a0, a1 in P for b0, b1 in F)


@pytest.mark.parametrize("mode", ["pwl", "miqcp"])
def test_arctan_phi_brackets_brute_force(mode):
    s = DEFAULT.with_(arctan=mode)
    checked = witnessed = 0
    for seed in range(3):
        net = _atan_net(seed)
        for m in range(3):
            truth = _true_phi(net, m)
            r = phi(net, m, ALPHA, 1, "l1", (LO, HI), settings=s, timeout=30)
            if truth is None:
                continue
            checked += 1
            assert r.feasible and r.lower is not None
            assert r.lower <= truth + 1e-9                     # a lower bound in both modes
            assert r.stats["activation_encoding"] == mode
            assert ("MIQCP" if mode == "miqcp" else "pwl") in r.message
            if r.upper is not None:
                witnessed += 1
                assert r.upper >= truth - 1e-9
                a, b = np.asarray(r.a), np.asarray(r.a_perturbed)
                assert premise_margin(net.forward(a), m) >= math.log(ALPHA)
                assert flip_count(net.forward(b), m) >= 1
                assert abs(float(b[0] - a[0])) == r.upper
            if r.optimal:
                assert r.upper == pytest.approx(truth, abs=DEFAULT.opt_tol)
    assert checked >= 3
    if mode == "miqcp":
        assert witnessed >= 3          # measured: the MIQCP's points replay on these nets


def test_arctan_min_perturbation_brackets_brute_force_and_l2_combines():
    net = _atan_net(1)
    x = np.array([0.0])
    m = int(net.predict(x))
    xs = np.linspace(LO, HI, 200001)[:, None]
    Y = net.forward(xs)
    flips = xs[np.delete(Y, m, axis=1).max(axis=1) >= Y[:, m], 0]
    truth = float(np.abs(flips - x[0]).min())          # grid flips: an upper bound, 1e-5 fine
    for mode in ("pwl", "miqcp"):
        for norm in ("l1", "l2"):
            r = min_perturbation(net, x, None, norm, 1, (LO, HI),
                                 settings=DEFAULT.with_(arctan=mode), timeout=30)
            assert r.lower <= truth + 1e-9
            assert r.upper is not None and r.upper >= truth - 1e-5
            assert r.stats["activation_encoding"] == mode


def test_arctan_mode_is_validated_and_miqcp_needs_scip():
    with pytest.raises(InputDataError):
        ResilienceSettings(arctan="quadratic")
    net = _atan_net(0)
    with pytest.raises(BackendUnavailableError, match="arctan MIQCP"):
        phi(net, 1, ALPHA, 1, "l1", (LO, HI),
            settings=DEFAULT.with_(arctan="miqcp", backend="highs"))
    # the pwl relaxation is linear: HiGHS takes it
    r = phi(net, 1, ALPHA, 1, "l1", (LO, HI), settings=DEFAULT.with_(backend="highs"))
    assert r.stats["activation_encoding"] == "pwl"


def test_the_note_names_the_s_shaped_kinds_of_the_net():
    """A tanh or sigmoid net's answer said "arctan: pwl relaxation"."""
    from nnresilience.network.layers import Sigmoid, Tanh
    from nnresilience.resilience import alpha_max

    atan = _atan_net(0)
    for act, want in ((Tanh, "tanh: pwl"), (Sigmoid, "sigmoid: pwl")):
        net = Network([atan.layers[0], act(4), atan.layers[2]])
        r = alpha_max(net, 0, (np.array([LO]), np.array([HI])), timeout=2)
        assert want in r.message and "arctan" not in r.message
    r = alpha_max(atan, 0, (np.array([LO]), np.array([HI])), timeout=2,
                  settings=DEFAULT.with_(arctan="miqcp"))
    assert "arctan: MIQCP" in r.message
