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

Tolerances steer the *search* only (all relative to ``1 + |value|``); SAT is replayed by
the engine and nothing that closes a branch uses them:

* :data:`FEAS_TOL` = 1e-9: a bound ``l <= x <= u`` counts as satisfied within it.
* :data:`PAIR_TOL` = 1e-7: a pair counts as satisfied when ``|x^f - f(x^b)|`` is within it.
* :data:`PIVOT_TOL` = 1e-9: a tableau coefficient below it (relative to the row) is not
  used as a pivot (the division would amplify rounding error).

What closes a branch is rigorous (the project's rule, :mod:`nnresilience.bounds.rounding`):

* every bound derived from a row (:func:`tighten_rows`, :func:`row_range`) holds for
  every *exact* solution of the original equations: the row's own rounding
  (``sum_error`` of its magnitude) and its defect as a consequence of ``A x = 0``
  (:meth:`Tableau.defect`) are added, and divisions round outward;
* bounds through a pair round ``k x`` and ``x / k`` outward;
* a bound conflict ``l > u`` (:func:`bound_conflict`) or a row-based Failure must clear
  :func:`conflict_margin` (a few ulps of the magnitudes); a smaller gap leaves the branch
  open (:func:`merge_touching_bounds` widens it), never closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnresilience.bounds.rounding import TINY, UNIT, down, up
from nnresilience.engines.reluplex.stats import ReluplexStats
from nnresilience.engines.reluplex.tableau import ONE, Tableau, sum_error_fast

FEAS_TOL = 1e-9
PAIR_TOL = 1e-7
PIVOT_TOL = 1e-9
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


def row_range(tab: Tableau, r: int) -> tuple[float, float]:
    """Rigorous range of ``basis[r]`` implied by its row and the other variables' bounds.

    Every exact solution of the original equations within the current bounds puts
    ``basis[r]`` in ``[low, high]`` (see :func:`_implied`); ``(-inf, inf)`` if the row
    involves an unbounded variable.
    """
    _, _, lo, hi = _implied(tab, np.array([r]))
    return float(down(lo[0, -1])), float(up(hi[0, -1]))


def conflict_margin(lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray | float:
    """How far ``l`` must exceed ``u`` before the gap counts as a conflict: a few units in
    the last place of the magnitudes involved (the bounds themselves are already widened
    by every rounding error they carry)."""
    mag = np.maximum(np.abs(lo), np.abs(hi))
    mag = np.where(np.isfinite(mag), mag, 0.0)
    return 4.0 * UNIT * mag + TINY


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
    low, high = row_range(tab, r)
    if increase and high + conflict_margin(high, lo_i) < lo_i:
        stats.fire("Failure")
        return "failure"
    if not increase and low - conflict_margin(low, hi_i) > hi_i:
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
def _implied(tab: Tableau, rows: np.ndarray | None = None, errors=None):
    """Rigorous bounds that each row implies for each of its variables (vectorised).

    Row ``r``: ``sum_j M[r, j] x_j = 0`` up to the defect (:meth:`Tableau.defect`): for an
    exact solution, ``(M_rj - rho_rj) x_j = -sum_{i != j} M_ri x_i + sum_{i != j} rho_ri x_i``
    with ``|rho| <= eta``. So ``x_j`` lies in ``T / kappa`` where ``T`` is the range of
    ``-sum_{i != j} M_ri x_i`` (computed from the other terms' extreme contributions,
    widened by ``sum_error`` of the row's magnitude and by the row's defect bound
    ``sum_i eta_ri |x_i|``) and ``kappa`` is the coefficient interval ``M_rj +- eta_rj``.
    Infinite contributions are counted, so a bound is derived only when every *other*
    term (values and defect) is finite; coefficients below ``PIVOT_TOL`` of the row, or
    not larger than their own defect, give no bound (they are kept in the sums).

    Works on ``[M_N | basic column]`` (``M`` is zero off the identity on basic columns).
    ``errors``: ``(eta, row error, infinite counts)`` of the whole tableau when the
    caller already has them (it derives the rows in blocks).
    Returns ``(N, rows, new_lo, new_hi)`` with ``-inf``/``+inf`` where nothing follows;
    the last column is each row's own basic variable. The quotients are *not yet* rounded
    outward: apply :func:`down` / :func:`up` to whatever is taken from them.
    """
    N = np.flatnonzero(tab.row_of < 0)
    rows = np.arange(tab.n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
    B = tab.basis[rows]
    m = rows.size
    eta, err, n_inf = (tab.defect(), *tab.row_error()) if errors is None else errors
    err, n_inf = err[rows], n_inf[rows]
    every = m == tab.n_rows
    MN = tab.M[:, N] if every else tab.M[np.ix_(rows, N)]
    EN = eta[:, N] if every else eta[np.ix_(rows, N)]
    M = np.hstack([MN, np.ones((m, 1))])
    E = np.hstack([EN, eta[rows, B][:, None]])
    lo_v, hi_v = tab.lo, tab.hi
    L = np.hstack([np.broadcast_to(lo_v[N], (m, N.size)), lo_v[B][:, None]])
    U = np.hstack([np.broadcast_to(hi_v[N], (m, N.size)), hi_v[B][:, None]])
    pos, neg = M > 0.0, M < 0.0
    all_finite = bool(np.all(np.isfinite(lo_v)) and np.all(np.isfinite(hi_v)))
    if all_finite:                               # the usual case: no infinities to count
        lof, hif = L, U
    else:
        lo_inf, hi_inf = ~np.isfinite(L), ~np.isfinite(U)
        lof, hif = np.where(lo_inf, 0.0, L), np.where(hi_inf, 0.0, U)
    Mp, Mn = np.where(pos, M, 0.0), np.where(neg, M, 0.0)
    c_lo = Mp * lof + Mn * hif
    c_hi = Mp * hif + Mn * lof
    S_lo, S_hi = c_lo.sum(1, keepdims=True), c_hi.sum(1, keepdims=True)
    absM = np.abs(M)
    mag = (absM * np.maximum(np.abs(lof), np.abs(hif))).sum(1, keepdims=True)
    # range of -sum_{i != j} M_ri x_i plus the defect; S - c and the +-pad round too, which
    # the factor 2 on the magnitude covers (|S - c|, |pad| <= mag + err)
    pad = sum_error_fast(2.0 * mag, M.shape[1] + 4) + 2.0 * err[:, None]
    t_lo = -(S_hi - c_hi) - pad
    t_hi = -(S_lo - c_lo) + pad
    rowmax = absM[:, :-1].max(1, keepdims=True) if N.size else np.ones((m, 1))
    usable = absM > PIVOT_TOL * np.maximum(rowmax, 1.0)
    usable[:, -1] = True
    usable[:, :-1] &= (N != ONE)[None, :]
    # kappa in [|M| - E, |M| + E]; scaling by (1 -+ 4u) rounds the endpoints outward
    # more cheaply than nextafter (each is one subtraction/addition of non-negatives)
    k_lo = (absM - E) * (1.0 - 4.0 * UNIT)
    k_hi = (absM + E) * (1.0 + 4.0 * UNIT)
    usable &= k_lo > 0.0
    # x_j = T / kappa; for a negative coefficient, x_j = (-T) / |kappa|. The quotients
    # are rounded outward by the caller, after reducing over rows (down/up are monotone).
    tp_lo = np.where(pos, t_lo, -t_hi)
    tp_hi = np.where(pos, t_hi, -t_lo)
    safe_lo = np.where(usable, k_lo, 1.0)
    safe_hi = np.where(usable, k_hi, 1.0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        new_lo = np.minimum(tp_lo / safe_lo, tp_lo / safe_hi)
        new_hi = np.maximum(tp_hi / safe_lo, tp_hi / safe_hi)
    ok_lo = usable.copy()
    ok_hi = usable
    if not all_finite or np.any(n_inf):
        # a bound needs every *other* term finite, values and defect alike (the own term
        # is in kappa); infinite contributions are counted per row
        lo_inf, hi_inf = ~np.isfinite(L), ~np.isfinite(U)
        i_lo = (pos & lo_inf) | (neg & hi_inf)
        i_hi = (pos & hi_inf) | (neg & lo_inf)
        rest_lo_ok = (i_lo.sum(1, keepdims=True) - i_lo) == 0
        rest_hi_ok = (i_hi.sum(1, keepdims=True) - i_hi) == 0
        own_inf = (E > 0.0) & (lo_inf | hi_inf)
        rest_err_ok = (n_inf[:, None] - own_inf) == 0
        ok_lo &= rest_err_ok & np.where(pos, rest_hi_ok, rest_lo_ok)
        ok_hi = ok_hi & rest_err_ok & np.where(pos, rest_lo_ok, rest_hi_ok)
    new_lo = np.where(ok_lo & ~np.isnan(new_lo), new_lo, -np.inf)
    new_hi = np.where(ok_hi & ~np.isnan(new_hi), new_hi, np.inf)
    return N, rows, new_lo, new_hi


#: Tableau entries of one block of rows in :func:`tighten_rows` (about 0.1-0.2 s): the
#: deadline is checked between blocks (MNIST-FC 256x6: 6e6 entries, 7 s in one piece).
ROW_BLOCK_ENTRIES = 100_000


def tighten_rows(tab: Tableau, stats: ReluplexStats, check=None) -> int:
    """Derive bounds of every variable from every tableau row (vectorised, in blocks of
    rows with ``check()`` between them, so a deadline can end a large tableau's pass).

    The bounds are those of :func:`_implied` (rigorous: they hold for every exact
    solution in the current bounds, whatever the rounding of ``M``). Returns the number
    of improved bounds.
    """
    if tab.n_rows == 0:
        return 0
    eta = tab.defect(check)
    errors = (eta, *tab.row_error(eta))
    cand_lo = np.full(tab.n_vars, -np.inf)
    cand_hi = np.full(tab.n_vars, np.inf)
    step = max(1, ROW_BLOCK_ENTRIES // max(1, tab.n_vars))
    for r0 in range(0, tab.n_rows, step):
        if check is not None:
            check()
        N, rows, w_lo, w_hi = _implied(tab, np.arange(r0, min(tab.n_rows, r0 + step)),
                                       errors)
        if N.size:
            cand_lo[N] = np.maximum(cand_lo[N], w_lo[:, :-1].max(0))
            cand_hi[N] = np.minimum(cand_hi[N], w_hi[:, :-1].min(0))
        cand_lo[tab.basis[rows]] = w_lo[:, -1]
        cand_hi[tab.basis[rows]] = w_hi[:, -1]
    with np.errstate(invalid="ignore"):
        return apply_bounds(tab, down(cand_lo), up(cand_hi), stats)


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
    leaky = k > 0.0
    # k * v and v / k round (for v < 0): every such bound is moved one float outward
    cand_lo[f] = np.where(leaky & (lb < 0.0), down(act(k, lb)), act(k, lb))
    cand_hi[f] = np.where(leaky & (ub < 0.0), up(act(k, ub)), act(k, ub))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_lf = np.where(lf >= 0.0, lf, down(lf / np.where(leaky, k, 1.0)))
        inv_uf = np.where(uf >= 0.0, uf, up(uf / np.where(leaky, k, 1.0)))
    relu_lo = np.where(lf > 0.0, lf, -np.inf)
    cand_lo[b] = np.where(leaky, inv_lf, relu_lo)
    cand_hi[b] = np.where(leaky, inv_uf, uf)      # ReLU: x^b <= x^f
    return apply_bounds(tab, cand_lo, cand_hi, stats)


def bound_conflict(tab: Tableau) -> bool:
    """Failure premise on bounds: some ``l(x) > u(x)`` by more than :func:`conflict_margin`."""
    return bool(np.any(tab.lo > tab.hi + conflict_margin(tab.lo, tab.hi)))


def merge_touching_bounds(tab: Tableau) -> None:
    """Where ``l > u`` only within :func:`conflict_margin`, widen to ``[u, l]``.

    Such a gap is not claimed as a conflict, so the branch stays open; the widened box
    contains both bounds' sides (a superset: sound), and relaxations need ``l <= u``.
    """
    bad = tab.lo > tab.hi
    if bad.any():
        lo, hi = tab.lo[bad].copy(), tab.hi[bad].copy()
        tab.lo[bad] = hi
        tab.hi[bad] = lo
