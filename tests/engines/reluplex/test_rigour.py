"""Reluplex conclusions survive rounding: checked against exact (rational) arithmetic.

Every branch the search closes rests on bounds derived from tableau rows and pairs, on
bound conflicts and on contradicting equations. Here the *exact* solutions of a query
(network values computed with :class:`fractions.Fraction` from the float64 weights) must
stay inside every derived bound, after pivots have made ``M`` inexact, at the magnitudes
of the planted instances (weights up to 1e3, biases up to 1e6).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nnresilience.engines.reluplex import ReluplexEngine, rules
from nnresilience.engines.reluplex.search import build_query, float_slack_pad
from nnresilience.engines.reluplex.stats import ReluplexStats
from nnresilience.engines.reluplex.tableau import ONE
from nnresilience.network.layers import Affine, LeakyReLU, ReLU
from nnresilience.network.model import sequential
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.planted import planted_instance


def _exact_values(net, x: np.ndarray) -> list[list[Fraction]]:
    """Exact value of every entry (input, each layer output) for the float64 input ``x``."""
    h = [Fraction(float(v)) for v in x]
    out = [h]
    for layer in net.layers:
        if isinstance(layer, Affine):
            W = layer.dense_W()
            h = [sum((Fraction(float(W[i, j])) * h[j] for j in range(W.shape[1])),
                     Fraction(float(layer.b[i]))) for i in range(W.shape[0])]
        elif isinstance(layer, LeakyReLU):
            k = Fraction(layer.slope)
            h = [v if v >= 0 else k * v for v in h]
        elif isinstance(layer, ReLU):
            h = [v if v >= 0 else Fraction(0) for v in h]
        else:
            raise AssertionError(layer.kind)
        out.append(h)
    return out


def _solution(q, net, A, x) -> list[Fraction]:
    """The exact assignment of every query variable for input ``x``."""
    vals = _exact_values(net, x)
    sol = [Fraction(0)] * q.tab.n_vars
    sol[ONE] = Fraction(1)
    for v, layer_vals in zip(q.layer_vars, vals, strict=True):
        for idx, val in zip(v, layer_vals, strict=True):
            sol[int(idx)] = val
    y = vals[-1]
    for r, s in enumerate(q.slacks):
        sol[int(s)] = sum((Fraction(float(A[r, j])) * y[j] for j in range(len(y))),
                          Fraction(0))
    return sol


def _inside(tab, sol) -> list[int]:
    """Variables whose exact value is outside the tableau's bounds (exact comparison)."""
    bad = []
    for j, v in enumerate(sol):
        lo, hi = tab.lo[j], tab.hi[j]
        if (np.isfinite(lo) and v < Fraction(float(lo))) or (
                np.isfinite(hi) and v > Fraction(float(hi))):
            bad.append(j)
    return bad


@pytest.mark.parametrize("seed", range(6))
def test_derived_bounds_contain_exact_solutions(seed):
    inst = planted_instance(200 + seed, kind=("relu", "leaky")[seed % 2], magnitude="large")
    net, case = inst.network, inst.case
    rng = np.random.default_rng(seed)
    term = case.unsafe.terms[0]
    q = build_query(net, case.region.lo, case.region.hi, term.A, term.b)
    tab = q.tab
    # exact solutions: the box corners (where interval-style derivations are attained
    # exactly, so an inward rounding shows), the planted maximiser and random points
    n = inst.point.size
    lo, hi = case.region.lo, case.region.hi
    corners = np.array([[hi[i] if (k >> i) & 1 else lo[i] for i in range(n)]
                        for k in range(2 ** n)])
    X = np.vstack([corners, inst.point, case.region.sample(4, rng)])
    sols = [_solution(q, net, term.A, x) for x in X]
    # inputs keep the box; every other variable starts loose (hull widened), so the rows
    # and pairs have work to do and their results land on the exact extremes
    for j in range(tab.n_vars):
        if j == ONE or j in set(q.inputs.tolist()):
            continue
        vals = [s[j] for s in sols]
        a, b = float(min(vals)), float(max(vals))
        w = 1.0 + abs(a) + abs(b)
        tab.lo[j], tab.hi[j] = a - w, b + w
    st = ReluplexStats()
    for _ in range(3):                      # pivots make M inexact, then derive everything
        nb = np.flatnonzero(tab.row_of < 0)
        nb = nb[nb != ONE]
        for _ in range(5):
            r = int(rng.integers(tab.n_rows))
            cand = nb[np.abs(tab.M[r, nb]) > 1e-3]
            cand = cand[tab.row_of[cand] < 0]
            if cand.size:
                tab.pivot(r, int(rng.choice(cand)))
        for _ in range(4):
            rules.tighten_rows(tab, st)
            rules.propagate_pair_bounds(tab, q.pairs, st)
            for s in sols:
                assert _inside(tab, s) == [], inst.describe()
        assert not rules.bound_conflict(tab)
        lo, hi = rules.row_range(tab, 0)
        v = sols[0][int(tab.basis[0])]
        assert Fraction(lo) <= v <= Fraction(hi)
    assert st.bound_tightenings > 0


def test_reluplex_never_holds_when_float64_violates():
    """``x + B -> ReLU -> -B`` with ``B = 2**45``: exactly ``y = x >= 0.3``, but in float64
    ``y(0.3) = 0.296875``. ``y <= 0.3 - 1e-5`` holds exactly and is violated in float64:
    the engine (judged by the float64 replay) must not answer holds."""
    B = 2.0 ** 45
    net = sequential([Affine(np.array([[1.0]]), np.array([B])), ReLU(1),
                      Affine(np.array([[1.0]]), np.array([-B]))])
    case = Case(InputRegion(np.array([0.3]), np.array([0.31])),
                OutputCondition((Conjunction(np.array([[1.0]]), np.array([0.3 - 1e-5])),), 1))
    assert case.unsafe.satisfied(net.forward(np.array([0.3])))        # the float64 witness
    for pre in (True, False):
        ans = ReluplexEngine().check(net, case, None, timeout=10, preprocess=pre)
        assert ans.status is not Status.HOLDS, (pre, ans.message)
        if ans.status is Status.VIOLATED:
            assert case.unsafe.satisfied(net.forward(ans.x))


def test_float_slack_pad_covers_replay_error():
    inst = planted_instance(7, kind="relu", magnitude="large")
    net, case = inst.network, inst.case
    from nnresilience.bounds.interval import interval_bounds

    nb = interval_bounds(net, case.region.lo, case.region.hi)
    term = case.unsafe.terms[0]
    pad = float_slack_pad(net, term.A, term.b, nb.lo, nb.hi)
    rng = np.random.default_rng(0)
    for x in np.vstack([inst.point, case.region.sample(20, rng)]):
        y_exact = _exact_values(net, x)[-1]
        fl = term.margins(net.forward(x))
        for r in range(term.A.shape[0]):
            exact = Fraction(float(term.b[r])) - sum(
                (Fraction(float(term.A[r, j])) * y_exact[j] for j in range(len(y_exact))),
                Fraction(0))
            assert abs(Fraction(float(fl[r])) - exact) <= Fraction(float(pad[r]))


def test_conflicts_need_to_clear_rounding():
    tab = build_query(sequential([Affine(np.eye(2), np.zeros(2)), ReLU(2)]), -np.ones(2),
                      np.ones(2), np.array([[1.0, -1.0]]), np.zeros(1)).tab
    j = 1
    tab.lo[j], tab.hi[j] = 0.5 + 2e-16, 0.5          # l > u by one ulp: not a proof
    assert not rules.bound_conflict(tab)
    rules.merge_touching_bounds(tab)
    assert tab.lo[j] == 0.5 and tab.hi[j] == 0.5 + 2e-16     # widened, never narrowed
    tab.lo[j], tab.hi[j] = 0.5 + 1e-9, 0.5
    assert rules.bound_conflict(tab)


def test_contradiction_only_when_it_clears_the_defect():
    q = build_query(sequential([Affine(np.array([[1e6, 1.0], [1.0, 1e-3]]),
                                       np.array([1e6, -3.0])), ReLU(2)]),
                    -np.ones(2), np.ones(2), np.array([[1.0, -1.0]]), np.zeros(1))
    tab = q.tab
    b = int(q.layer_vars[1][0])                 # x^b of the first unit (basic)
    a = tab.A[0].copy()                         # an equation T already has ...
    assert tab.add_equation(a) == 0
    a_tiny = a.copy()
    a_tiny[ONE] += 1e-12                        # ... shifted far below its rounding (1e6)
    assert tab.add_equation(a_tiny) == 0        # not a contradiction: treated as implied
    a_big = a.copy()
    a_big[ONE] += 1.0
    assert tab.add_equation(a_big) == -1        # a real contradiction is still found
    assert b in tab.basis
