"""The derivation rules of Reluplex (Katz et al., CAV 2017) and Leaky-Reluplex (seed 004).

Each rule is a function that checks its premise on the current configuration
``<B, T, l, u, alpha, R>`` (a :class:`Tableau` and the :class:`Pairs`), applies its
conclusion and returns whether it fired. The search (:mod:`.search`) decides which rule
to try next; nothing here decides a verdict on its own except :func:`simplex_step`, whose
``"failure"`` outcome is the Failure rule with a checked certificate.

Pairs ``<x^b, x^f>`` mean ``x^f = max(k x^b, x^b)`` with slope ``0 <= k < 1``; ``k = 0`` is
a ReLU pair and uses the ReLU rules (Update_b, Update_f, ReluSuccess), ``k > 0`` uses the
Leaky rules of seed 004 §III.B:

* L-Update_b1: ``x^b`` non-basic, pair broken, ``alpha(x^f) >= 0``  ->  ``x^b := alpha(x^f)``.
* L-Update_b2: ``x^b`` non-basic, pair broken, ``alpha(x^f) < 0``   ->  ``x^b := alpha(x^f)/k``.
* L-Update_f: ``x^f`` non-basic, pair broken  ->  ``x^f := max(k alpha(x^b), alpha(x^b))``.
  (The paper's statement writes ``update(alpha, x_i, ...)``; the text and the rule's name
  make clear the variable updated is ``x_j = x^f``, which is what we implement.)
* L-ReluSuccess: all bounds and all pairs hold  ->  SAT.

Tolerances (all relative to ``1 + |value|``):

* :data:`FEAS_TOL` = 1e-9: a bound ``l <= x <= u`` counts as satisfied within it.
* :data:`PAIR_TOL` = 1e-7: a pair counts as satisfied when ``|x^f - f(x^b)|`` is within it.
* :data:`PIVOT_TOL` = 1e-9: a tableau coefficient below it (relative to the row) is not
  used as a pivot (the division would amplify rounding error).
* Failure is claimed only when the row's bound, computed on a freshly restored row over
  *all* its coefficients, misses the violated bound by more than :data:`FEAS_TOL` plus an
  estimate of the rounding error of the row (:data:`ROW_REL_ERR` times the row's
  magnitude). Between "violated by more than FEAS_TOL" and "provably infeasible" the
  branch is reported as stuck (undecided), never as infeasible: the safe direction.
* Bounds derived from rows are moved outward by the same rounding estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnresilience.engines.reluplex.stats import ReluplexStats
from nnresilience.engines.reluplex.tableau import ONE, Tableau

FEAS_TOL = 1e-9
PAIR_TOL = 1e-7
PIVOT_TOL = 1e-9
ROW_REL_ERR = 1e-10
TIGHTEN_MIN_GAIN = 1e-7
"""A derived bound replaces the current one only if it is tighter by this (relative)
amount: tiny improvements would make the fixpoint loop crawl."""


def tol(v: np.ndarray | float) -> np.ndarray | float:
    """Feasibility tolerance at value ``v`` (relative + absolute)."""
    return FEAS_TOL * (1.0 + np.abs(v))


@dataclass(eq=False)
class Pairs:
    """The set R of pairs: ``b[p]``, ``f[p]`` variable indices and slope ``k[p]``.

    ``phase[p]`` is 0 (free), +1 (fixed active, equation ``x^f = x^b`` in the tableau) or
    -1 (fixed inactive, equation ``x^f = k x^b``). It is per search node.
    """

    b: np.ndarray
    f: np.ndarray
    k: np.ndarray

    @property
    def n(self) -> int:
        return int(self.b.size)

    @property
    def leaky(self) -> np.ndarray:
        return self.k > 0.0


def act(k: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """``max(k v, v)`` elementwise, with ``k = 0`` giving ReLU (and ``inf`` kept exact)."""
    v = np.asarray(v, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        neg = np.where(k > 0.0, k * v, 0.0)
    return np.where(v >= 0.0, v, neg)


def pair_broken(tab: Tableau, pairs: Pairs, idx: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask (over ``idx`` or all pairs) of pairs not satisfied within PAIR_TOL."""
    sel = np.arange(pairs.n) if idx is None else idx
    xb, xf = tab.x[pairs.b[sel]], tab.x[pairs.f[sel]]
    return np.abs(xf - act(pairs.k[sel], xb)) > PAIR_TOL * (1.0 + np.abs(xb))


# ------------------------------------------------------------------ simplex rules
def update_to(tab: Tableau, j: int, value: float, stats: ReluplexStats,
              rule: str = "Update") -> None:
    """Update rule: set non-basic ``x_j`` to ``value`` (delta = value - alpha(x_j))."""
    tab.update(j, value - tab.x[j])
    stats.fire(rule)


def clamp_nonbasic(tab: Tableau, stats: ReluplexStats) -> int:
    """Update rule on every non-basic variable outside its bounds (moved to the bound).

    Vectorised form of repeated Update: the basic variables move by ``-M[:, J] delta``.
    """
    nb = tab.row_of < 0
    x = tab.x
    target = np.clip(x, tab.lo, tab.hi)
    move = nb & (target != x)
    if not move.any():
        return 0
    J = np.flatnonzero(move)
    delta = target[J] - x[J]
    x[J] = target[J]
    x[tab.basis] -= tab.M[:, J] @ delta
    stats.fire("Update", int(J.size))
    return int(J.size)


def _entering(tab: Tableau, r: int, increase: bool, ptol: float, bland: bool = True) -> int:
    """Non-basic variable able to move ``basis[r]`` the right way, or -1.

    ``dx_basic/dx_j = -M[r, j]``; a candidate has a coefficient above ``ptol`` (relative to
    the row) in the useful sign and room to move in the needed direction. Bland's rule
    takes the smallest index; otherwise the largest coefficient (numerically safest pivot,
    usually fewer steps).
    """
    coef = -tab.M[r]
    big = ptol * max(1.0, float(np.max(np.abs(coef))))
    nb = tab.row_of < 0
    nb[ONE] = False
    up = tab.x < tab.hi
    down = tab.x > tab.lo
    if increase:
        cand = nb & (((coef > big) & up) | ((coef < -big) & down))
    else:
        cand = nb & (((coef < -big) & up) | ((coef > big) & down))
    idx = np.flatnonzero(cand)
    if not idx.size:
        return -1
    return int(idx[0]) if bland else int(idx[np.argmax(np.abs(coef[idx]))])


def row_range(tab: Tableau, r: int) -> tuple[float, float, float]:
    """Range of ``basis[r]`` implied by its row and the non-basic bounds, with an error pad.

    Returns ``(low, high, pad)``: every assignment satisfying the row and the non-basic
    bounds puts ``basis[r]`` in ``[low, high]`` up to the rounding pad.
    """
    coef = -tab.M[r].copy()
    coef[tab.basis] = 0.0
    nz = coef != 0.0
    c, lo, hi = coef[nz], tab.lo[nz], tab.hi[nz]
    with np.errstate(invalid="ignore"):
        top = np.where(c > 0, c * hi, c * lo)
        bot = np.where(c > 0, c * lo, c * hi)
    high = float(np.sum(top)) if top.size else 0.0
    low = float(np.sum(bot)) if bot.size else 0.0
    mag = np.abs(c) * np.maximum(np.abs(lo), np.abs(hi))
    pad = ROW_REL_ERR * float(np.sum(mag[np.isfinite(mag)]))
    return low, high, pad


def simplex_step(tab: Tableau, stats: ReluplexStats, bland: bool = True) -> str:
    """One step of the simplex part: Pivot1/Pivot2 + Update, or Failure.

    Assumes every non-basic variable is within bounds (call :func:`clamp_nonbasic` first).
    Returns ``"done"`` (all basic variables within bounds), ``"pivoted"``, ``"failure"``
    (a row proves the current bounds infeasible) or ``"stuck"`` (no usable pivot but no
    proof either; numerical corner, the branch is undecided).

    With ``bland`` (Bland's rule on both choices: smallest violated basic variable,
    smallest entering variable) termination is guaranteed in exact arithmetic. Without it,
    the most violated basic variable leaves and the largest coefficient enters: faster in
    practice; the search switches to Bland after a bounded number of such steps.
    """
    xb = tab.x[tab.basis]
    lb, ub = tab.lo[tab.basis], tab.hi[tab.basis]
    below = xb < lb - tol(lb)
    above = xb > ub + tol(ub)
    viol = below | above
    if not viol.any():
        return "done"
    rows = np.flatnonzero(viol)
    if bland:
        r = int(rows[np.argmin(tab.basis[rows])])
    else:
        amount = np.where(below, lb - xb, xb - ub)[rows] / (1.0 + np.abs(xb[rows]))
        r = int(rows[np.argmax(amount)])
    increase = bool(below[r])
    j = _entering(tab, r, increase, PIVOT_TOL, bland)
    if j < 0:
        # Failure premise: no non-basic variable can help. Re-derive the row from the
        # original equations before trusting it, then check the row's bound.
        tab.restore()
        stats.restorations += 1
        clamp_nonbasic(tab, stats)
        return _failure_or_retry(tab, int(tab.basis[r]), stats)
    i = int(tab.basis[r])
    target = lb[r] if increase else ub[r]
    coef = -tab.M[r, j]
    tab.update(j, (target - tab.x[i]) / coef)
    tab.x[i] = target          # exactly at its bound: a leaving variable has no room left
    stats.fire("Update")
    tab.pivot(r, j)
    stats.pivots += 1
    stats.simplex_steps += 1
    stats.fire("Pivot1" if increase else "Pivot2")
    return "pivoted"


def _failure_or_retry(tab: Tableau, i: int, stats: ReluplexStats) -> str:
    """After restoration: prove Failure from the row of ``x_i``, or pivot on a small coefficient."""
    r = int(tab.row_of[i])
    x, lo_i, hi_i = tab.x[i], tab.lo[i], tab.hi[i]
    if lo_i - tol(lo_i) <= x <= hi_i + tol(hi_i):
        return "pivoted"                     # restoration removed the violation
    increase = x < lo_i
    low, high, pad = row_range(tab, r)
    if increase and high + pad + tol(lo_i) < lo_i:
        stats.fire("Failure")
        return "failure"
    if not increase and low - pad - tol(hi_i) > hi_i:
        stats.fire("Failure")
        return "failure"
    j = _entering(tab, r, increase, 1e-3 * PIVOT_TOL)
    if j < 0:
        return "stuck"
    target = lo_i if increase else hi_i
    coef = -tab.M[r, j]
    tab.update(j, (target - x) / coef)
    tab.x[i] = target
    stats.fire("Update")
    tab.pivot(r, j)
    stats.pivots += 1
    stats.fire("Pivot1" if increase else "Pivot2")
    tab.restore()
    stats.restorations += 1
    return "pivoted"


# ------------------------------------------------------------- pair repair rules
def _pair(pairs: Pairs, p: int) -> tuple[int, int, float]:
    return int(pairs.b[p]), int(pairs.f[p]), float(pairs.k[p])


def _is_broken(tab: Tableau, b: int, f: int, k: float) -> bool:
    xb, xf = tab.x[b], tab.x[f]
    return abs(xf - float(act(k, xb))) > PAIR_TOL * (1.0 + abs(xb))


def update_b(tab: Tableau, pairs: Pairs, p: int, stats: ReluplexStats) -> bool:
    """Update_b (ReLU, k = 0): ``x^b`` non-basic, broken, ``alpha(x^f) >= 0`` -> ``x^b := x^f``."""
    b, f, k = _pair(pairs, p)
    if tab.is_basic(b) or not _is_broken(tab, b, f, k) or tab.x[f] < 0.0:
        return False
    update_to(tab, b, tab.x[f], stats, "Update_b")
    return True


def update_f(tab: Tableau, pairs: Pairs, p: int, stats: ReluplexStats) -> bool:
    """Update_f (ReLU, k = 0): ``x^f`` non-basic, broken -> ``x^f := max(0, alpha(x^b))``."""
    b, f, k = _pair(pairs, p)
    if tab.is_basic(f) or not _is_broken(tab, b, f, k):
        return False
    update_to(tab, f, max(0.0, tab.x[b]), stats, "Update_f")
    return True


def l_update_b1(tab: Tableau, pairs: Pairs, p: int, stats: ReluplexStats) -> bool:
    """L-Update_b1: ``x^b`` non-basic, broken, ``alpha(x^f) >= 0`` -> ``x^b := alpha(x^f)``."""
    b, f, k = _pair(pairs, p)
    if tab.is_basic(b) or not _is_broken(tab, b, f, k) or tab.x[f] < 0.0:
        return False
    update_to(tab, b, tab.x[f], stats, "L-Update_b1")
    return True


def l_update_b2(tab: Tableau, pairs: Pairs, p: int, stats: ReluplexStats) -> bool:
    """L-Update_b2: ``x^b`` non-basic, broken, ``alpha(x^f) < 0`` -> ``x^b := (1/k) alpha(x^f)``.

    Only meaningful for ``k > 0`` (for ReLU no ``x^b`` gives ``x^f < 0``).
    """
    b, f, k = _pair(pairs, p)
    if k <= 0.0 or tab.is_basic(b) or not _is_broken(tab, b, f, k) or tab.x[f] >= 0.0:
        return False
    update_to(tab, b, tab.x[f] / k, stats, "L-Update_b2")
    return True


def l_update_f(tab: Tableau, pairs: Pairs, p: int, stats: ReluplexStats) -> bool:
    """L-Update_f: ``x^f`` non-basic, broken -> ``x^f := max(k alpha(x^b), alpha(x^b))``."""
    b, f, k = _pair(pairs, p)
    if tab.is_basic(f) or not _is_broken(tab, b, f, k):
        return False
    update_to(tab, f, float(act(k, tab.x[b])), stats, "L-Update_f")
    return True


def relu_success(tab: Tableau, pairs: Pairs) -> bool:
    """(L-)ReluSuccess premise: every variable within bounds and every pair satisfied."""
    x = tab.x
    if np.any(x < tab.lo - tol(tab.lo)) or np.any(x > tab.hi + tol(tab.hi)):
        return False
    return not bool(np.any(pair_broken(tab, pairs)))


def pivot_for_relu(tab: Tableau, var: int, stats: ReluplexStats) -> bool:
    """PivotForRelu: make basic pair variable ``var`` non-basic (largest usable coefficient).

    The entering variable is the non-basic one (not the constant) with the largest
    coefficient in ``var``'s row, for numerical stability. False if the row has none
    (``var`` is then a constant of the tableau).
    """
    r = int(tab.row_of[var])
    if r < 0:
        return False
    c = np.abs(tab.M[r]).copy()
    c[tab.basis] = 0.0
    c[ONE] = 0.0
    j = int(np.argmax(c))
    if c[j] <= PIVOT_TOL * max(1.0, float(c.max())) or c[j] == 0.0:
        return False
    tab.pivot(r, j)
    stats.pivots += 1
    stats.fire("PivotForRelu")
    return True


def _within(tab: Tableau, j: int, v: float) -> bool:
    return tab.lo[j] - tol(tab.lo[j]) <= v <= tab.hi[j] + tol(tab.hi[j])


def repair_pair(tab: Tableau, pairs: Pairs, p: int, stats: ReluplexStats) -> bool:
    """Fix broken pair ``p`` with one of the update rules (PivotForRelu first if needed).

    Preference: an update that keeps the updated variable within its bounds (x^f first,
    then x^b), else any applicable update. Returns False if no rule applies even after
    PivotForRelu (the pair is then left to the split).
    """
    b, f, k = _pair(pairs, p)
    for _ in range(2):
        fb = tab.is_basic(f)
        bb = tab.is_basic(b)
        f_target = float(act(k, tab.x[b]))
        if tab.x[f] >= 0.0:
            b_target: float | None = tab.x[f]
        elif k > 0.0:
            b_target = tab.x[f] / k
        else:
            b_target = None
        f_ok = not fb
        b_ok = (not bb) and b_target is not None
        if f_ok and _within(tab, f, f_target):
            return (update_f if k == 0.0 else l_update_f)(tab, pairs, p, stats)
        if b_ok and _within(tab, b, b_target):
            return _update_b_any(tab, pairs, p, stats)
        if f_ok:
            return (update_f if k == 0.0 else l_update_f)(tab, pairs, p, stats)
        if b_ok:
            return _update_b_any(tab, pairs, p, stats)
        # Both basic (or only x^b non-basic for a ReLU pair with x^f < 0): pivot x^f out.
        moved = pivot_for_relu(tab, f, stats) if fb else pivot_for_relu(tab, b, stats)
        if not moved and not (bb and pivot_for_relu(tab, b, stats)):
            return False
    return False


def _update_b_any(tab: Tableau, pairs: Pairs, p: int, stats: ReluplexStats) -> bool:
    k = float(pairs.k[p])
    if k == 0.0:
        return update_b(tab, pairs, p, stats)
    return l_update_b1(tab, pairs, p, stats) or l_update_b2(tab, pairs, p, stats)


# ------------------------------------------------------------------ bound derivation
def tighten_rows(tab: Tableau, stats: ReluplexStats) -> int:
    """Derive bounds of every variable from every tableau row, all at once (vectorised).

    Row ``r``: ``sum_j M[r, j] x_j = 0``, so ``M[r, j] x_j = -sum_{i != j} M[r, i] x_i``
    lies in ``[-(S_hi - c_hi[r, j]), -(S_lo - c_lo[r, j])]`` where ``c_lo/c_hi`` are the
    extreme contributions of each term and ``S`` their row sums; infinite contributions are
    counted so that a bound is derived only when all the *other* terms are finite.
    Coefficients below PIVOT_TOL do not receive bounds (division would amplify error),
    but are included in the sums. Each derived bound is moved outward by the row's
    rounding estimate. Returns the number of improved bounds.
    """
    if tab.n_rows == 0:
        return 0
    # Only non-basic columns are non-zero off the identity: work on [M_N | basic column],
    # an (m x (|N| + 1)) array whose last column is each row's own basic variable
    # (coefficient 1, its own bounds per row). Same arithmetic, far fewer entries.
    N = np.flatnonzero(tab.row_of < 0)
    B = tab.basis
    m = tab.n_rows
    M = np.hstack([tab.M[:, N], np.ones((m, 1))])
    L = np.hstack([np.broadcast_to(tab.lo[N], (m, N.size)), tab.lo[B][:, None]])
    U = np.hstack([np.broadcast_to(tab.hi[N], (m, N.size)), tab.hi[B][:, None]])
    lo_inf, hi_inf = ~np.isfinite(L), ~np.isfinite(U)
    lof, hif = np.where(lo_inf, 0.0, L), np.where(hi_inf, 0.0, U)
    pos, neg = M > 0.0, M < 0.0
    Mp, Mn = np.where(pos, M, 0.0), np.where(neg, M, 0.0)
    c_lo = Mp * lof + Mn * hif
    c_hi = Mp * hif + Mn * lof
    i_lo = (pos & lo_inf) | (neg & hi_inf)
    i_hi = (pos & hi_inf) | (neg & lo_inf)
    S_lo, S_hi = c_lo.sum(1, keepdims=True), c_hi.sum(1, keepdims=True)
    N_lo, N_hi = i_lo.sum(1, keepdims=True), i_hi.sum(1, keepdims=True)
    rest_lo_ok = (N_lo - i_lo) == 0
    rest_hi_ok = (N_hi - i_hi) == 0
    t_lo = -(S_hi - c_hi)           # lower bound of M[r, j] x_j, valid where rest_hi_ok
    t_hi = -(S_lo - c_lo)           # upper bound, valid where rest_lo_ok
    absM = np.abs(M)
    mag = (absM * np.maximum(np.abs(lof), np.abs(hif))).sum(1, keepdims=True)
    rowmax = absM[:, :-1].max(1, keepdims=True) if N.size else np.ones((m, 1))
    usable = absM > PIVOT_TOL * np.maximum(rowmax, 1.0)
    usable[:, -1] = True
    usable[:, :-1] &= (N != ONE)[None, :]
    safe = np.where(usable, M, 1.0)
    pad = (ROW_REL_ERR * mag + FEAS_TOL) / np.where(usable, absM, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        v_lo, v_hi = t_lo / safe, t_hi / safe
        new_lo = np.where(pos, v_lo, v_hi) - pad
        new_hi = np.where(pos, v_hi, v_lo) + pad
    ok_lo = usable & np.where(pos, rest_hi_ok, rest_lo_ok)
    ok_hi = usable & np.where(pos, rest_lo_ok, rest_hi_ok)
    w_lo = np.where(ok_lo, new_lo, -np.inf)
    w_hi = np.where(ok_hi, new_hi, np.inf)
    cand_lo = np.full(tab.n_vars, -np.inf)
    cand_hi = np.full(tab.n_vars, np.inf)
    if N.size:
        cand_lo[N] = w_lo[:, :-1].max(0)
        cand_hi[N] = w_hi[:, :-1].min(0)
    cand_lo[B] = w_lo[:, -1]
    cand_hi[B] = w_hi[:, -1]
    return apply_bounds(tab, cand_lo, cand_hi, stats)


def apply_bounds(tab: Tableau, cand_lo: np.ndarray, cand_hi: np.ndarray,
                 stats: ReluplexStats) -> int:
    """Replace bounds by sound candidates where they are tighter by TIGHTEN_MIN_GAIN."""
    gain_lo = TIGHTEN_MIN_GAIN * (1.0 + np.abs(np.where(np.isfinite(tab.lo), tab.lo, 0.0)))
    gain_hi = TIGHTEN_MIN_GAIN * (1.0 + np.abs(np.where(np.isfinite(tab.hi), tab.hi, 0.0)))
    up = np.isfinite(cand_lo) & (cand_lo > tab.lo + gain_lo)
    dn = np.isfinite(cand_hi) & (cand_hi < tab.hi - gain_hi)
    tab.lo[up] = cand_lo[up]
    tab.hi[dn] = cand_hi[dn]
    n = int(up.sum() + dn.sum())
    stats.bound_tightenings += n
    return n


def propagate_pair_bounds(tab: Tableau, pairs: Pairs, stats: ReluplexStats) -> int:
    """Bounds through the pair semantics ``x^f = max(k x^b, x^b)`` (both directions).

    Forward: ``x^f in [f(l_b), f(u_b)]`` (f monotone). Backward, ``k > 0``: f is a bijection,
    ``x^b in [f^-1(l_f), f^-1(u_f)]`` with ``f^-1(y) = y`` for ``y >= 0`` and ``y / k`` below;
    this is the §III.C rule ``u(x^f) = beta < 0 => u(x^b) = beta / k``. Backward, ReLU:
    ``x^b <= x^f`` always, so ``u_b <= u_f``, and ``l_f > 0`` forces ``x^b = x^f >= l_f``.
    """
    b, f, k = pairs.b, pairs.f, pairs.k
    lb, ub, lf, uf = tab.lo[b], tab.hi[b], tab.lo[f], tab.hi[f]
    cand_lo = np.full(tab.n_vars, -np.inf)
    cand_hi = np.full(tab.n_vars, np.inf)
    cand_lo[f] = act(k, lb)
    cand_hi[f] = act(k, ub)
    leaky = k > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_lf = np.where(lf >= 0.0, lf, lf / np.where(leaky, k, 1.0))
        inv_uf = np.where(uf >= 0.0, uf, uf / np.where(leaky, k, 1.0))
    relu_lo = np.where(lf > 0.0, lf, -np.inf)
    cand_lo[b] = np.where(leaky, inv_lf, relu_lo)
    cand_hi[b] = np.where(leaky, inv_uf, uf)      # ReLU: x^b <= x^f
    return apply_bounds(tab, cand_lo, cand_hi, stats)


def bound_conflict(tab: Tableau) -> bool:
    """Failure premise on bounds: some ``l(x) > u(x)`` beyond tolerance."""
    return bool(np.any(tab.lo > tab.hi + tol(tab.hi) + tol(tab.lo)))


def merge_touching_bounds(tab: Tableau) -> None:
    """Where ``l > u`` only within tolerance (rounding), collapse both to their midpoint."""
    bad = tab.lo > tab.hi
    if bad.any():
        mid = 0.5 * (tab.lo[bad] + tab.hi[bad])
        tab.lo[bad] = mid
        tab.hi[bad] = mid
