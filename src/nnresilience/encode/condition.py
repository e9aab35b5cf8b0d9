"""Encoding of the unsafe output condition (a disjunction of conjunctions ``A_t y <= b_t``).

* One term: its rows are added directly.
* Several terms: one binary ``z_t`` per term and rows ``A_t y <= b_t + M_r (1 - z_t)`` with
  ``M_r = max over the output box of (a_r y - b_r)`` (rows that cannot be violated on the
  box get no row at all), and ``sum_t z_t >= 1``. Exact on the box: ``z_t = 1`` imposes
  term ``t``; ``z_t = 0`` leaves a row that every ``y`` of the box satisfies.
* Top-k form (seed 000, MIP (6)) when ``condition.topk = (m, k)`` and there are several
  terms: binaries ``c_i`` for ``i != m``, ``sum c_i >= k`` and ``y_i >= y_m - M_i (1 - c_i)``
  with ``M_i = hi_m - lo_i``. It equals the disjunction over all k-subsets (which is what
  :func:`~nnresilience.spec.condition.not_in_top_k` enumerates) with ``n - 1`` binaries
  instead of ``C(n-1, k)``.
"""

from __future__ import annotations

import numpy as np

from nnresilience.encode.model import MilpModel
from nnresilience.encode.relu import _rows
from nnresilience.errors import EngineUnsupportedError


def _check_box(out_lo: np.ndarray, out_hi: np.ndarray) -> None:
    if not (np.all(np.isfinite(out_lo)) and np.all(np.isfinite(out_hi))):
        raise EngineUnsupportedError("output bounds must be finite to encode a disjunctive "
                                     "condition")


def encode_condition(model: MilpModel, outputs_idx: np.ndarray, condition, out_lo: np.ndarray,
                     out_hi: np.ndarray, *, margin: float = 0.0) -> np.ndarray:
    """Constrain the outputs to the unsafe set; returns the binaries added (may be empty).

    ``margin > 0`` shrinks the unsafe set (every row ``a y <= b - margin``): used only to
    re-solve for a counterexample that survives float64 replay, never to prove anything.
    """
    y = np.asarray(outputs_idx, dtype=np.int64)
    out_lo = np.asarray(out_lo, float)
    out_hi = np.asarray(out_hi, float)
    terms = condition.terms
    if y.size != condition.n_outputs:
        raise ValueError(f"condition has {condition.n_outputs} outputs, encoding has {y.size}")
    if len(terms) == 0:
        # empty disjunction: nothing is unsafe -> an infeasible model
        model.add_rows(np.zeros((1, 0)), 1.0, np.inf)
        return np.zeros(0, dtype=np.int64)
    if len(terms) == 1:
        A, b = terms[0].A, terms[0].b - margin
        rr, cc = np.nonzero(A)
        _rows(model, [(rr, y[cc], A[rr, cc])], A.shape[0], -np.inf, b)
        return np.zeros(0, dtype=np.int64)
    _check_box(out_lo, out_hi)
    if condition.topk is not None:
        return _encode_topk(model, y, condition.topk, out_lo, out_hi, margin)
    z = model.add_binaries(len(terms), name="unsafe_term")
    rows, cols, vals, rhs = [], [], [], []
    nr = 0
    for t, term in enumerate(terms):
        A, b = term.A, term.b - margin
        worst = np.maximum(A, 0) @ out_hi + np.minimum(A, 0) @ out_lo - b
        keep = np.flatnonzero(worst > 0)
        for r in keep:
            nz = np.flatnonzero(A[r])
            rows.append(np.full(nz.size + 1, nr))
            cols.append(np.concatenate([y[nz], [z[t]]]))
            vals.append(np.concatenate([A[r, nz], [worst[r]]]))
            rhs.append(b[r] + worst[r])
            nr += 1
    if nr:
        model.add_terms(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), nr,
                        -np.inf, np.asarray(rhs))
    _rows(model, [(np.zeros(z.size, dtype=np.int64), z, 1.0)], 1, 1.0, np.inf)
    return z


def _encode_topk(model: MilpModel, y: np.ndarray, topk: tuple[int, int], out_lo: np.ndarray,
                 out_hi: np.ndarray, margin: float) -> np.ndarray:
    m, k = int(topk[0]), int(topk[1])
    others = np.array([i for i in range(y.size) if i != m], dtype=np.int64)
    c = model.add_binaries(others.size, name="topk_c")
    M = np.maximum(out_hi[m] - out_lo[others] + margin, 0.0)
    r = np.arange(others.size)
    # y_i - y_m - M_i c_i >= margin - M_i
    _rows(model, [(r, y[others], 1.0), (r, np.full(others.size, y[m]), -1.0), (r, c, -M)],
          others.size, margin - M, np.inf)
    _rows(model, [(np.zeros(others.size, dtype=np.int64), c, 1.0)], 1, float(k), np.inf)
    return c
