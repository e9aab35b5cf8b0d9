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
with a flag saying which.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import linprog

from nnresilience.network.model import Network
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import _bounds, _patterns, _Region


def _pattern_list(network: Network, lo: np.ndarray, hi: np.ndarray) -> list:
    region = InputRegion.box(lo, hi)
    nb = _bounds(network, region)
    return list(_patterns(network, _Region.of(region), nb.lo, nb.hi))


def brute_force_phi(network: Network, m: int, alpha: float, k: int, norm: str,
                    lo, hi) -> tuple[float, bool]:
    """``(Φ_m, premise_feasible)`` by pattern-pair LPs (module docstring); ``norm`` is
    ``l1`` or ``linf``."""
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
    best = math.inf
    n_t = d if norm == "l1" else 1
    nv = 2 * d + n_t
    for Ga, ha in prem:
        # skip pattern regions without a confident input
        r = linprog(np.zeros(d), A_ub=Ga, b_ub=ha, bounds=list(zip(lo, hi, strict=True)),
                    method="highs")
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
                if res.status == 0:
                    best = min(best, float(res.fun))
                assert res.status in (0, 2), res.message
    assert nv > 0
    return best, feasible_premise
