"""Encoding of the unsafe output condition (a disjunction of conjunctions ``A_t y <= b_t``).

Two forms share one builder:

* **set form** (:func:`encode_condition`): the outputs are constrained to the unsafe set,
  optionally shrunk by a constant ``margin`` (every row ``a y <= b - margin``);
* **margin form** (:func:`encode_margin`): a new column ``t`` with ``t <= b_r - a_r y`` for
  every row of the selected term, so maximising ``t`` gives the *unsafe margin*
  ``max_y max_term min_r (b_r - a_r y)``: the condition is reachable iff it is ``>= 0``.
  The model always has a feasible point (any output, with ``t`` low enough), which is what
  lets :mod:`nnresilience.backends.certify` treat a solver's "infeasible" as the solver
  failure it is, and decide on a dual bound with a tolerance margin instead.

Rows, with ``shift`` the constant margin and ``t`` the margin column (absent in set form):

* One term: its rows ``a_r y + t <= b_r - shift``.
* Several terms: one binary ``z_t`` per term and rows
  ``a_r y + t <= b_r - shift + M_r (1 - z_t)`` with ``M_r`` the maximum over the output box
  of ``a_r y + t_max - b_r + shift`` (rows that cannot be violated on the box get no row),
  and ``sum_t z_t >= 1``. Exact on the box: ``z_t = 1`` imposes term ``t``; ``z_t = 0``
  leaves a row that every ``y`` of the box (and every ``t <= t_max``) satisfies.
* Top-k form (seed 000, MIP (6)) when ``condition.topk = (m, k)`` and there are several
  terms: binaries ``c_i`` for ``i != m``, ``sum c_i >= k`` and
  ``y_i - y_m - t >= shift - M_i (1 - c_i)`` with ``M_i = hi_m - lo_i + t_max + shift``.
  It equals the disjunction over all k-subsets (what
  :func:`~nnresilience.spec.condition.not_in_top_k` enumerates) with ``n - 1`` binaries
  instead of ``C(n-1, k)``; the margin is then the k-th largest ``y_i - y_m``.

Every ``M`` is a maximum over the sound output box, rounded outward
(:func:`nnresilience.encode.bigm.box_max`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnresilience.encode.bigm import box_max
from nnresilience.encode.model import MilpModel
from nnresilience.encode.relu import _rows
from nnresilience.errors import EngineUnsupportedError


def _check_box(out_lo: np.ndarray, out_hi: np.ndarray, what: str) -> None:
    if not (np.all(np.isfinite(out_lo)) and np.all(np.isfinite(out_hi))):
        raise EngineUnsupportedError(f"output bounds must be finite to encode {what}")


@dataclass(frozen=True, eq=False)
class MarginEncoding:
    """The margin column ``t`` (index), its bounds and the binaries added.

    ``t_lo`` is a value every output of the box reaches (so ``t >= t_lo`` never removes a
    point), ``t_max`` the largest margin the box allows (the Ms are valid for any upper
    bound of ``t`` up to it: callers may lower ``t``'s upper bound to cap the search).
    """

    t: int
    t_lo: float
    t_max: float
    binaries: np.ndarray


def encode_condition(model: MilpModel, outputs_idx: np.ndarray, condition, out_lo: np.ndarray,
                     out_hi: np.ndarray, *, margin: float = 0.0) -> np.ndarray:
    """Constrain the outputs to the unsafe set; returns the binaries added (may be empty).

    ``margin > 0`` shrinks the unsafe set (every row ``a y <= b - margin``), ``< 0`` grows
    it. Nothing in the package proves anything from this form's infeasibility (see
    :func:`encode_margin`); it is used to test the encoding and by custom models.
    """
    return _encode(model, outputs_idx, condition, out_lo, out_hi, float(margin), None)[1]


def encode_margin(model: MilpModel, outputs_idx: np.ndarray, condition, out_lo: np.ndarray,
                  out_hi: np.ndarray, *, shift: float = 0.0) -> MarginEncoding:
    """Add the margin column ``t`` (``t <= b_r - shift - a_r y`` on the selected term) and
    return it; maximise it (minimise ``-t``) to decide the condition. Needs finite output
    bounds (they bound ``t`` and give the Ms)."""
    _check_box(np.asarray(out_lo, float), np.asarray(out_hi, float), "a margin")
    enc, bins = _encode(model, outputs_idx, condition, out_lo, out_hi, float(shift), True)
    assert enc is not None
    return MarginEncoding(enc[0], enc[1], enc[2], bins)


def _term_bounds(terms, out_lo, out_hi, shift: float) -> tuple[float, float]:
    """``(t_lo, t_max)``: the margin every output reaches / no output exceeds."""
    t_lo, t_max = -np.inf, -np.inf
    mag = np.maximum(np.abs(out_lo), np.abs(out_hi))
    for term in terms:
        A, b = term.A, term.b - shift
        worst = np.maximum(A, 0) @ out_hi + np.minimum(A, 0) @ out_lo       # max a y
        best = np.maximum(A, 0) @ out_lo + np.minimum(A, 0) @ out_hi        # min a y
        err = 4.0 * np.finfo(float).eps * (np.abs(A) @ mag + np.abs(b)) + 1e-300
        t_lo = max(t_lo, float(np.min(b - worst - err)))
        t_max = max(t_max, float(np.min(b - best + err)))
    return t_lo, t_max


def _encode(model: MilpModel, outputs_idx, condition, out_lo, out_hi, shift: float,
            with_margin: bool | None):
    y = np.asarray(outputs_idx, dtype=np.int64)
    out_lo = np.asarray(out_lo, float)
    out_hi = np.asarray(out_hi, float)
    terms = condition.terms
    if y.size != condition.n_outputs:
        raise ValueError(f"condition has {condition.n_outputs} outputs, encoding has {y.size}")
    t = None
    t_info = None
    if len(terms) == 0:
        # empty disjunction: nothing is unsafe -> an infeasible model (set form), or a
        # margin pinned far below zero (margin form: still feasible)
        if with_margin:
            t = int(model.add_vars(1, -1.0, -1.0, name="margin")[0])
            return (t, -1.0, -1.0), np.zeros(0, dtype=np.int64)
        model.add_rows(np.zeros((1, 0)), 1.0, np.inf)
        return None, np.zeros(0, dtype=np.int64)
    t_max = 0.0
    if with_margin:
        t_lo, t_max = _term_bounds(terms, out_lo, out_hi, shift)
        t_lo = min(t_lo, t_max)
        t = int(model.add_vars(1, t_lo, t_max, name="margin")[0])
        t_info = (t, t_lo, t_max)
    tcol = [] if t is None else [t]
    if len(terms) == 1:
        A, b = terms[0].A, terms[0].b - shift
        rr, cc = np.nonzero(A)
        parts = [(rr, y[cc], A[rr, cc])]
        if t is not None:
            parts.append((np.arange(A.shape[0]), np.full(A.shape[0], t), 1.0))
        _rows(model, parts, A.shape[0], -np.inf, b)
        return t_info, np.zeros(0, dtype=np.int64)
    _check_box(out_lo, out_hi, "a disjunctive condition")
    if condition.topk is not None:
        return t_info, _encode_topk(model, y, condition.topk, out_lo, out_hi, shift, t, t_max)
    z = model.add_binaries(len(terms), name="unsafe_term")
    rows, cols, vals, rhs = [], [], [], []
    nr = 0
    for ti, term in enumerate(terms):
        A, b = term.A, term.b - shift
        worst = box_max(A, b, out_lo, out_hi, t_max if t is not None else 0.0)
        keep = np.flatnonzero(worst > 0)
        for r in keep:
            nz = np.flatnonzero(A[r])
            rows.append(np.full(nz.size + 1 + len(tcol), nr))
            cols.append(np.concatenate([y[nz], [z[ti]], tcol]))
            vals.append(np.concatenate([A[r, nz], [worst[r]], [1.0] * len(tcol)]))
            rhs.append(b[r] + worst[r])
            nr += 1
    if nr:
        model.add_terms(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), nr,
                        -np.inf, np.asarray(rhs))
    _rows(model, [(np.zeros(z.size, dtype=np.int64), z, 1.0)], 1, 1.0, np.inf)
    return t_info, z


def _encode_topk(model: MilpModel, y: np.ndarray, topk: tuple[int, int], out_lo: np.ndarray,
                 out_hi: np.ndarray, shift: float, t: int | None, t_max: float) -> np.ndarray:
    m, k = int(topk[0]), int(topk[1])
    others = np.array([i for i in range(y.size) if i != m], dtype=np.int64)
    n = others.size
    c = model.add_binaries(n, name="topk_c")
    # M_i >= max over the box of (y_m - y_i) + t_max + shift, rounded outward
    A = np.zeros((n, y.size))
    A[np.arange(n), m] = 1.0
    A[np.arange(n), others] = -1.0
    M = np.maximum(box_max(A, np.zeros(n), out_lo, out_hi,
                           shift + (t_max if t is not None else 0.0)), 0.0)
    r = np.arange(n)
    # y_i - y_m - t - M_i c_i >= shift - M_i
    parts = [(r, y[others], 1.0), (r, np.full(n, y[m]), -1.0), (r, c, -M)]
    if t is not None:
        parts.append((r, np.full(n, t), -1.0))
    _rows(model, parts, n, shift - M, np.inf)
    _rows(model, [(np.zeros(n, dtype=np.int64), c, 1.0)], 1, float(k), np.inf)
    return c
