"""The per-sample relaxed MIP contains ``b = x`` when x's flip slack is within τ: its
optimum is then 0, whatever the solver says (found by the resilience sweep: HiGHS's
presolve reported an optimum of 0.0743 on an arctan net with logits of 1.2e8, τ = 868,
for a sample 0.22 short of flipping; a replayed flip lies 1.1e-9 away)."""

from __future__ import annotations

import numpy as np

from nnresilience.resilience import DEFAULT, min_perturbation
from nnresilience.resilience.replay import flip_count, norm_of
from nnresilience.testing import resilience_instances as ri

X = np.array([0.20346742273839313, -0.15429489203526303])


def _flip_near(net, x, label):
    """A replayed flipped point near ``x`` (bisection towards a flipped grid point)."""
    inst = ri.res_instance("smooth", 706)
    G = ri.dense_grid(inst)
    Y = net.forward(G)
    B = G[(np.delete(Y, label, axis=1) >= Y[:, [label]]).any(axis=1)]
    b = B[np.argmin(np.abs(B - x).sum(axis=1))]
    a = x.copy()
    for _ in range(80):
        mid = 0.5 * (a + b)
        if flip_count(net.forward(mid), label) >= 1:
            b = mid
        else:
            a = mid
    return b


def test_no_shrink_lower_bound_is_not_above_a_replayed_flip():
    inst = ri.res_instance("smooth", 706)
    net = inst.network
    assert inst.info["act"] == "arctan" and inst.info["last_layer"] > 1e7
    b = _flip_near(net, X, 2)
    assert flip_count(net.forward(b), 2) >= 1
    near = norm_of(b - X, "l1")
    assert near < 1e-6
    for norm in ("l1", "linf"):
        r = min_perturbation(net, X, 2, norm, 1, (inst.lo, inst.hi),
                             settings=DEFAULT.with_(shrink=False), timeout=2)
        assert r.lower is not None and r.lower <= norm_of(b - X, norm)
        if r.upper is not None:
            assert r.lower <= r.upper


def test_highs_bound_on_an_ill_scaled_model_is_confirmed_without_presolve(monkeypatch):
    """The same model with the origin rule off: HiGHS's presolved bound (0.0743) is wrong
    for every b near x; the presolve-free solve that confirms it on ill-scaled models is
    what keeps the lower bound sound."""
    from dataclasses import replace

    import nnresilience.resilience.local as local

    build = local.build_local_mip
    monkeypatch.setattr(local, "build_local_mip",
                        lambda *a, **k: replace(build(*a, **k), origin_slack=None))
    inst = ri.res_instance("smooth", 706)
    b = _flip_near(inst.network, X, 2)
    r = min_perturbation(inst.network, X, 2, "l1", 1, (inst.lo, inst.hi),
                         settings=DEFAULT.with_(shrink=False), timeout=2)
    assert r.lower is not None and r.lower <= norm_of(b - X, "l1")
