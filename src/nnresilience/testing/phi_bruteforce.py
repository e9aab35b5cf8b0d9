"""Exact Φ_m of tiny piecewise-linear networks by enumerating pairs of activation patterns.

Why this is exact: on the polyhedron ``P`` of inputs that produce one activation pattern
(:func:`nnresilience.testing.bruteforce._patterns`), the network is affine,
``y = M x + c``. A pair ``(a, b)`` of MIP (6) has ``a`` in some pattern polyhedron
``P_a`` and ``b`` in some ``P_b``, so

    Φ_m = min over (P_a, P_b, flip set J, |J| = k) of the LP
          min ||b - a||  s.t.  a ∈ P_a ∩ D,  b ∈ P_b ∩ D,
                               (M_a a + c_a)_m - (M_a a + c_a)_i >= ln α   (i != m),
                               (M_b b + c_b)_j >= (M_b b + c_b)_m          (j ∈ J),

with the norm linearised (L1: ``t_i >= |b_i - a_i|``, ``Σ t``; L∞: one ``t``). Every
pattern polyhedron is closed and the network is continuous, so nothing is lost on the
boundaries. The cost is (number of patterns)^2 x C(d - 1, k) LPs: meant for networks
with a handful of unstable neurons (the tests use 1-2 inputs and 4-6 neurons).

Returns ``inf`` when no pair exists (premise infeasible or no flip anywhere) together
with a flag saying which. The same enumeration gives the per-sample minimum perturbation
(``a`` fixed: one LP per pattern of ``b``) and ``ln α_max`` (one LP per pattern). An LP
that ends neither optimal nor infeasible (numerical trouble with huge weights) raises
:class:`BruteForceLPError`: no ground truth rather than a wrong one.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import linprog

from nnresilience.network.model import Network
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import _bounds, _patterns, _Region


class BruteForceLPError(RuntimeError):
    """An LP of the enumeration ended neither optimal nor infeasible (numerical trouble on
    nets with huge weights): no ground truth for this query."""


def _check(res) -> None:
    if res.status not in (0, 2):
        raise BruteForceLPError(res.message)


def _pattern_list(network: Network, lo: np.ndarray, hi: np.ndarray) -> list:
    region = InputRegion.box(lo, hi)
    nb = _bounds(network, region)
    return list(_patterns(network, _Region.of(region), nb.lo, nb.hi))


def brute_force_phi(network: Network, m: int, alpha: float, k: int, norm: str,
                    lo, hi) -> tuple[float, bool]:
    """``(Φ_m, premise_feasible)`` by pattern-pair LPs (module docstring); ``norm`` is
    ``l1`` or ``linf``."""
    value, _, _, feasible = brute_force_phi_pair(network, m, alpha, k, norm, lo, hi)
    return value, feasible


def brute_force_phi_pair(network: Network, m: int, alpha: float, k: int, norm: str, lo, hi
                         ) -> tuple[float, np.ndarray | None, np.ndarray | None, bool]:
    """``(Φ_m, a, b, premise_feasible)``: :func:`brute_force_phi` with the LP optimum's
    pair (``None`` when no pair exists). The pair satisfies the rows only up to the LP's
    tolerance, so a caller that needs a float64 witness replays it."""
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    d = lo.size
    la = math.log(alpha)
    pats = _pattern_list(network, lo, hi)
    n_out = network.n_outputs
    others = [i for i in range(n_out) if i != m]
    # premise rows on a:  -(M_m - M_i) a <= (c_m - c_i) - ln α
    prem = []
    for M, c, G, h in pats:
        A = -(M[m][None, :] - M[others])
        b = (c[m] - c[others]) - la
        prem.append((np.vstack([G, A]), np.concatenate([h, b])))
    feasible_premise = False
    best, best_a, best_b = math.inf, None, None
    n_t = d if norm == "l1" else 1
    for Ga, ha in prem:
        # skip pattern regions without a confident input
        r = linprog(np.zeros(d), A_ub=Ga, b_ub=ha, bounds=list(zip(lo, hi, strict=True)),
                    method="highs")
        _check(r)
        if r.status != 0:
            continue
        feasible_premise = True
        for M, c, G, h in pats:
            for J in itertools.combinations(others, k):
                # flip rows on b: -(M_j - M_m) b <= c_j - c_m
                F = -(M[list(J)] - M[m][None, :])
                f = c[list(J)] - c[m]
                rows, rhs = [], []
                z = np.zeros((Ga.shape[0], d + n_t))
                rows.append(np.hstack([Ga, z]))
                rhs.append(ha)
                zb = np.zeros((G.shape[0] + F.shape[0], d))
                rows.append(np.hstack([zb, np.vstack([G, F]), np.zeros((zb.shape[0], n_t))]))
                rhs.append(np.concatenate([h, f]))
                eye = np.eye(d)
                tcol = eye if norm == "l1" else np.ones((d, 1))
                # b - a - t <= 0 ; a - b - t <= 0
                rows.append(np.hstack([-eye, eye, -tcol]))
                rows.append(np.hstack([eye, -eye, -tcol]))
                rhs += [np.zeros(d), np.zeros(d)]
                cost = np.concatenate([np.zeros(2 * d), np.ones(n_t)])
                bnds = list(zip(lo, hi, strict=True)) * 2 + [(0.0, None)] * n_t
                res = linprog(cost, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs),
                              bounds=bnds, method="highs")
                _check(res)
                if res.status == 0 and float(res.fun) < best:
                    best = float(res.fun)
                    best_a, best_b = np.asarray(res.x[:d]), np.asarray(res.x[d:2 * d])
    return best, best_a, best_b, feasible_premise


def pattern_count(network: Network, lo, hi, limit: int | None = None) -> int:
    """Number of activation patterns brute force enumerates over the box (the cost of
    :func:`brute_force_phi` grows with its square); with ``limit``, counting stops at
    ``limit + 1`` (deep nets have too many to list just to learn that)."""
    region = InputRegion.box(np.asarray(lo, float), np.asarray(hi, float))
    nb = _bounds(network, region)
    gen = _patterns(network, _Region.of(region), nb.lo, nb.hi)
    return sum(1 for _ in (gen if limit is None else itertools.islice(gen, limit + 1)))


def brute_force_min_perturbation(network: Network, x, m: int, k: int, norm: str, lo, hi
                                 ) -> tuple[float, np.ndarray | None]:
    """Exact minimum perturbation of the sample ``x`` (label ``m`` out of the top-``k`` at
    ``x + ε ∈ D``), ``l1`` or ``linf``: MIP (6) with ``a = x`` fixed, one LP per pattern
    and flip set. ``(inf, None)`` when no point of D flips."""
    x = np.asarray(x, float)
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    d = lo.size
    others = [i for i in range(network.n_outputs) if i != m]
    n_t = d if norm == "l1" else 1
    eye = np.eye(d)
    tcol = eye if norm == "l1" else np.ones((d, 1))
    best, best_b = math.inf, None
    for M, c, G, h in _pattern_list(network, lo, hi):
        for J in itertools.combinations(others, k):
            F = -(M[list(J)] - M[m][None, :])
            f = c[list(J)] - c[m]
            GF = np.vstack([G, F])
            A = np.vstack([np.hstack([GF, np.zeros((GF.shape[0], n_t))]),
                           np.hstack([eye, -tcol]), np.hstack([-eye, -tcol])])
            rhs = np.concatenate([h, f, x, -x])
            cost = np.concatenate([np.zeros(d), np.ones(n_t)])
            res = linprog(cost, A_ub=A, b_ub=rhs,
                          bounds=list(zip(lo, hi, strict=True)) + [(0.0, None)] * n_t,
                          method="highs")
            _check(res)
            if res.status == 0 and float(res.fun) < best:
                best, best_b = float(res.fun), np.asarray(res.x[:d])
    return best, best_b


def brute_force_alpha_max(network: Network, m: int, lo, hi) -> tuple[float, np.ndarray]:
    """``(max_x min_{j != m} (y_m - y_j), maximiser)`` over the box: ``ln α_max(m)``, one
    LP per pattern (maximise ``t`` with ``t <= y_m - y_j`` for every ``j``)."""
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    d = lo.size
    others = [i for i in range(network.n_outputs) if i != m]
    best, best_x = -math.inf, None
    for M, c, G, h in _pattern_list(network, lo, hi):
        # t - (M_m - M_j) x <= c_m - c_j
        A = np.vstack([np.hstack([G, np.zeros((G.shape[0], 1))]),
                       np.hstack([-(M[m][None, :] - M[others]), np.ones((len(others), 1))])])
        rhs = np.concatenate([h, c[m] - c[others]])
        cost = np.zeros(d + 1)
        cost[-1] = -1.0
        res = linprog(cost, A_ub=A, b_ub=rhs,
                      bounds=list(zip(lo, hi, strict=True)) + [(None, None)], method="highs")
        _check(res)
        if res.status == 0 and -float(res.fun) > best:
            best, best_x = -float(res.fun), np.asarray(res.x[:d])
    return best, best_x
