"""The simplex tableau: pivots, updates, restoration and added equations keep A x = 0."""

from __future__ import annotations

import numpy as np

from nnresilience.engines.reluplex.search import build_query
from nnresilience.engines.reluplex.tableau import ONE, Tableau
from nnresilience.testing.bruteforce import random_network


def _random_tableau(rng: np.random.Generator) -> Tableau:
    net = random_network(rng, [3, 5, 4, 2], kind="leaky").merged()
    A = np.array([[1.0, -1.0]])
    q = build_query(net, -np.ones(3), np.ones(3), A, np.zeros(1))
    return q.tab


def test_initial_assignment_is_the_forward_pass(rng):
    net = random_network(rng, [3, 5, 4, 2], kind="leaky").merged()
    q = build_query(net, -np.ones(3), np.ones(3), np.array([[1.0, -1.0]]), np.zeros(1))
    x0 = q.tab.x[q.inputs]
    assert np.allclose(x0, 0.0)
    assert np.allclose(q.tab.x[q.outputs], net.forward(x0), atol=1e-12)
    assert q.tab.residual() < 1e-14
    assert q.pairs.n == 9 and q.slacks.size == 1


def test_pivots_and_updates_keep_equations(rng):
    tab = _random_tableau(rng)
    for _ in range(40):
        nb = np.flatnonzero(tab.row_of < 0)
        nb = nb[nb != 0]
        j = int(rng.choice(nb))
        tab.update(j, float(rng.normal()))
        r = int(rng.integers(tab.n_rows))
        if abs(tab.M[r, j]) > 1e-3:
            tab.pivot(r, j)
            assert tab.row_of[j] == r and tab.basis[r] == j
        assert tab.residual() < 1e-9
    M_before = tab.M.copy()
    x_before = tab.x.copy()
    assert tab.restore()
    assert np.allclose(tab.M, M_before, atol=1e-8)
    assert np.allclose(tab.x, x_before, atol=1e-8)
    assert np.allclose(tab.M[:, tab.basis], np.eye(tab.n_rows))


def test_add_equation_substitutes_and_keeps_consistency(rng):
    tab = _random_tableau(rng)
    # f = 0.1 b for the first pair-like pair of variables (non-basic f at index 4 + ...).
    nb = np.flatnonzero(tab.row_of < 0)
    f = int(nb[-1])                      # some non-basic variable
    b = int(tab.basis[0])                # some basic variable
    a = np.zeros(tab.n_vars)
    a[f], a[b] = 1.0, -0.1
    m = tab.n_rows
    assert tab.add_equation(a, prefer=(f,)) == 1
    assert tab.n_rows == m + 1 and tab.is_basic(f)
    assert abs(tab.x[f] - 0.1 * tab.x[b]) < 1e-12
    assert tab.residual() < 1e-12
    # The same equation again is implied: nothing is added.
    assert tab.add_equation(a) == 0
    assert tab.n_rows == m + 1
    # ... and the same left-hand side with a non-zero constant contradicts it.
    a_bad = a.copy()
    a_bad[ONE] = 0.5
    assert tab.add_equation(a_bad) == -1
    assert tab.n_rows == m + 1
