"""Unit tests of the individual Reluplex / Leaky-Reluplex rules on hand-made tableaux."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.engines.reluplex import rules
from nnresilience.engines.reluplex.rules import Pairs
from nnresilience.engines.reluplex.stats import ReluplexStats
from nnresilience.engines.reluplex.tableau import Tableau

INF = np.inf


def _tab(k: float = 0.1, xb: float = 0.0, xf: float = 0.0, lo=None, hi=None):
    """Variables [one, b, f, z] with the single equation z = b + f (z basic)."""
    A = np.array([[0.0, -1.0, -1.0, 1.0]])
    lo = np.array([1.0, -INF, -INF, -INF]) if lo is None else np.asarray(lo, float)
    hi = np.array([1.0, INF, INF, INF]) if hi is None else np.asarray(hi, float)
    x = np.array([1.0, xb, xf, 0.0])
    tab = Tableau.from_equations(A, np.array([3]), lo, hi, x)
    pairs = Pairs(np.array([1]), np.array([2]), np.array([k]))
    return tab, pairs, ReluplexStats()


def _consistent(tab: Tableau) -> bool:
    return tab.residual() < 1e-12


def test_l_update_b2_sets_xb_to_xf_over_k():
    tab, pairs, st = _tab(k=0.1, xb=1.0, xf=-0.3)
    assert rules.l_update_b2(tab, pairs, 0, st)
    assert tab.x[1] == pytest.approx(-3.0)
    assert tab.x[2] == pytest.approx(-0.3)
    assert tab.x[3] == pytest.approx(-3.3)          # the basic variable followed
    assert _consistent(tab)
    assert st.rules["L-Update_b2"] == 1
    assert not rules.pair_broken(tab, pairs).any()


def test_l_update_b2_needs_negative_xf_and_positive_slope():
    tab, pairs, st = _tab(k=0.1, xb=1.0, xf=0.3)
    assert not rules.l_update_b2(tab, pairs, 0, st)          # alpha(x^f) >= 0: b1's case
    tab, pairs, st = _tab(k=0.0, xb=1.0, xf=-0.3)
    assert not rules.l_update_b2(tab, pairs, 0, st)          # ReLU: no 1/k
    assert tab.x[1] == 1.0


def test_l_update_b1_sets_xb_to_xf():
    tab, pairs, st = _tab(k=0.2, xb=-1.0, xf=0.5)
    assert rules.l_update_b1(tab, pairs, 0, st)
    assert tab.x[1] == pytest.approx(0.5)
    assert _consistent(tab)
    tab, pairs, st = _tab(k=0.2, xb=-1.0, xf=-0.5)
    assert not rules.l_update_b1(tab, pairs, 0, st)          # alpha(x^f) < 0


def test_l_update_f_uses_leaky_value():
    tab, pairs, st = _tab(k=0.1, xb=-2.0, xf=1.0)
    assert rules.l_update_f(tab, pairs, 0, st)
    assert tab.x[2] == pytest.approx(-0.2)
    assert tab.x[3] == pytest.approx(-2.2)
    tab, pairs, st = _tab(k=0.1, xb=2.0, xf=1.0)
    assert rules.l_update_f(tab, pairs, 0, st)
    assert tab.x[2] == pytest.approx(2.0)


def test_rules_do_not_fire_on_satisfied_pairs_or_basic_variables():
    tab, pairs, st = _tab(k=0.1, xb=-2.0, xf=-0.2)
    assert not rules.l_update_f(tab, pairs, 0, st)
    assert not rules.l_update_b2(tab, pairs, 0, st)
    # Make x^f basic: its update rules must not fire.
    tab, pairs, st = _tab(k=0.1, xb=-2.0, xf=1.0)
    tab.pivot(0, 2)
    assert tab.is_basic(2)
    assert not rules.l_update_f(tab, pairs, 0, st)
    assert sum(st.rules.values()) == 0


def test_relu_update_rules():
    tab, pairs, st = _tab(k=0.0, xb=-1.0, xf=0.7)
    assert rules.update_b(tab, pairs, 0, st)
    assert tab.x[1] == pytest.approx(0.7)
    tab, pairs, st = _tab(k=0.0, xb=-1.0, xf=0.7)
    assert rules.update_f(tab, pairs, 0, st)
    assert tab.x[2] == 0.0
    tab, pairs, st = _tab(k=0.0, xb=1.0, xf=-0.5)
    assert not rules.update_b(tab, pairs, 0, st)             # no x^b gives x^f < 0


def test_pivot_for_relu_then_repair():
    # Variables [one, b, f, w]; equations b = w, f = 2 w: both pair variables basic.
    A = np.array([[0.0, 1.0, 0.0, -1.0], [0.0, 0.0, 1.0, -2.0]])
    lo, hi = np.array([1.0, -INF, -INF, -INF]), np.array([1.0, INF, INF, INF])
    tab = Tableau.from_equations(A, np.array([1, 2]), lo, hi, np.array([1.0, 0, 0, -1.0]))
    pairs, st = Pairs(np.array([1]), np.array([2]), np.array([0.1])), ReluplexStats()
    assert rules.pair_broken(tab, pairs).all()       # b = -1, f = -2 != -0.1
    assert rules.repair_pair(tab, pairs, 0, st)
    assert st.rules["PivotForRelu"] == 1
    assert not tab.is_basic(2)                        # x^f left the basis ...
    assert st.rules["L-Update_f"] == 1                # ... and was then updated
    assert _consistent(tab)


def test_relu_success_checks_bounds_and_pairs():
    tab, pairs, _ = _tab(k=0.1, xb=-2.0, xf=-0.2)
    assert rules.relu_success(tab, pairs)
    tab.hi[3] = -3.0           # z = -2.2 above its upper bound
    assert not rules.relu_success(tab, pairs)


def test_simplex_failure_has_certificate():
    # z = b + f with b, f in [0, 1] but z >= 3: infeasible, Failure must fire.
    tab, pairs, st = _tab(lo=[1, 0, 0, 3], hi=[1, 1, 1, 4], xb=0.0, xf=0.0)
    out = ""
    for _ in range(10):
        rules.clamp_nonbasic(tab, st)
        out = rules.simplex_step(tab, st)
        if out in ("failure", "done", "stuck"):
            break
    assert out == "failure"
    assert st.rules["Failure"] == 1


def test_simplex_reaches_feasibility():
    tab, pairs, st = _tab(lo=[1, 0, 0, 1.5], hi=[1, 1, 1, 4], xb=0.0, xf=0.0)
    out = ""
    for _ in range(10):
        rules.clamp_nonbasic(tab, st)
        out = rules.simplex_step(tab, st)
        if out != "pivoted":
            break
    assert out == "done"
    assert 1.5 - 1e-9 <= tab.x[3] <= 4 and _consistent(tab)
    assert st.pivots >= 1 and st.rules["Pivot1"] >= 1


def test_tighten_rows_and_pair_bounds():
    tab, pairs, st = _tab(k=0.1, lo=[1, -1, -INF, -INF], hi=[1, 2, INF, INF])
    rules.propagate_pair_bounds(tab, pairs, st)       # f in [-0.1, 2]
    assert tab.lo[2] == pytest.approx(-0.1) and tab.hi[2] == pytest.approx(2.0)
    rules.tighten_rows(tab, st)                       # z = b + f in [-1.1, 4]
    assert tab.lo[3] == pytest.approx(-1.1, abs=1e-6) and tab.hi[3] == pytest.approx(4, abs=1e-6)
    assert tab.lo[3] <= -1.1 and tab.hi[3] >= 4.0      # outward, never inward
    assert st.bound_tightenings >= 4


def test_inactive_upper_bound_of_xf_gives_xb_bound():
    # seed 004 §III.C: u(x^f) = beta < 0  =>  u(x^b) = beta / k.
    tab, pairs, st = _tab(k=0.1, lo=[1, -10, -INF, -INF], hi=[1, INF, -0.05, INF])
    rules.propagate_pair_bounds(tab, pairs, st)
    assert tab.hi[1] == pytest.approx(-0.5)
