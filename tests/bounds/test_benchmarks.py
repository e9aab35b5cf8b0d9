"""Soundness and ordering on the shared benchmark networks (ACAS Xu 1_1, MNIST 256x2).

10^4 points per case (all 32 corners of the 5-D ACAS boxes included, random vertices and
uniform points otherwise) never leave the bounds of any layer. LP and MIP run with a time
budget here (still sound: what they have not tightened keeps the cheaper bounds), so a
few hundred of their solves are checked per case while the suite stays fast.
"""

from __future__ import annotations

import pytest

from nnresilience.bounds import compute_bounds

from .helpers import assert_contains, assert_nested, sample_box

PARENT = {"symbolic": "interval", "lp": "symbolic", "milp:1": "lp", "milp:2": "lp"}


def _load(path):
    from nnresilience.loaders import load_network

    return load_network(path)


def _box(path, n):
    from nnresilience.cli.bounds import vnnlib_input_box

    return vnnlib_input_box(path, n)


def _total_width(b) -> float:
    return sum(float((h - lo).sum()) for lo, h in zip(b.lo, b.hi, strict=True))


def _check(net, lo, hi, methods, rng, timeouts=None):
    X = sample_box(lo, hi, 10_000, rng)
    vals = net.forward_all(X)
    got = {}
    for m in methods:
        t = (timeouts or {}).get(m)
        prior = got.get("lp") if m.startswith("milp") else None   # skip redoing the LP
        b = got[m] = compute_bounds(net, (lo, hi), method=m, timeout=t, prior=prior)
        assert_contains(net, b, X, vals)
        if m in PARENT and PARENT[m] in got:
            assert_nested(b, got[PARENT[m]])
    return got


@pytest.mark.parametrize("prop", ["prop_1", "prop_2", "prop_3", "prop_4"])
def test_acas_1_1(shared_benchmarks, prop, rng):
    net = _load(shared_benchmarks / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx")
    lo, hi = _box(shared_benchmarks / "acasxu" / f"{prop}.vnnlib", 5)
    methods = ["interval", "symbolic", "lp"]
    timeouts = {"lp": 4.0}           # the wide props 1/2 have ~240 undecided units
    if prop == "prop_4":
        methods.append("milp:1")
        timeouts["milp:1"] = 5.0
    got = _check(net, lo, hi, methods, rng, timeouts)
    # symbolic must actually help on these boxes
    assert got["symbolic"].stats["unstable"] <= got["interval"].stats["unstable"]
    assert _total_width(got["lp"]) < _total_width(got["interval"])


def test_mnist_256x2(shared_benchmarks, rng):
    net = _load(shared_benchmarks / "mnistfc" / "mnist-net_256x2.onnx")
    lo, hi = _box(shared_benchmarks / "mnistfc" / "prop_0_0.03.vnnlib", 784)
    got = _check(net, lo, hi, ["interval", "symbolic", "lp", "milp:1"], rng,
                 {"lp": 6.0, "milp:1": 3.0})
    assert got["lp"].stats["unstable"] <= got["symbolic"].stats["unstable"]
