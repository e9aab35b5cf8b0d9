"""LP bounds: one LP per undecided neuron over the convex relaxation of all earlier layers.

For the vector entering layer ``i`` (produced by the affine layer ``i-1``) the LP has a
variable block per earlier entry vector ``z_0 .. z_{i-1}`` boxed by the current bounds,
equality rows for affine layers and, for non-linear layers, the rows of their convex
relaxation (:func:`relaxation_rows`): the triangle (two lower lines and the chord) for
ReLU / LeakyReLU, the two lines of :mod:`.relax` for s-shaped activations, and for
max-pool ``y >= x_m`` for every member plus ``y <= sum_m (x_m - l_m) + max_m l_m`` (or
``y = x_m`` when the group is decided). The matrix is built once per layer; each target
neuron only changes the objective, so HiGHS's dual simplex warm-starts from the last basis.

Soundness of the reported value does not rest on the LP solver's tolerances: from the
row duals ``y`` returned by HiGHS we recompute a *safe* bound by weak duality,
``c.x = y.(Ax) + (c - A^T y).x >= sum_r min(y_r lo_r, y_r hi_r) + sum_j min(r_j lb_j,
r_j ub_j)``, valid for every ``y`` (signs are forced where a row side is infinite) because
every variable has finite bounds. The certificate itself is computed in float64, so it is
moved outward by :func:`~nnresilience.bounds.rounding.sum_error` of the magnitudes of its
terms: the products ``y_r lo_r`` and ``r_j lb_j`` it sums, and the rounding of ``r`` itself
(``|c| + |A|^T |y|`` per column, times the column's largest magnitude). The LP rows are
valid in real arithmetic for the exact network (the relaxation lines of :mod:`.relax`, the
max-pool right-hand side rounded up), so the result bounds the *exact* value of the
target; :func:`~nnresilience.bounds.symbolic.propagate` widens it by ``e_i``. A failed or
timed-out solve leaves the neuron's earlier bound.

Work is split into chunks of neurons; each chunk is one call of the top-level function
:func:`solve_lp_chunk` with picklable arguments, so an executor can run chunks in
processes (each builds its own HiGHS model).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import scipy.sparse as sp

from nnresilience.bounds.relax import S_SHAPED, relax_elementwise, relax_maxpool
from nnresilience.bounds.rounding import down, maxabs, sum_error, up

_BANNER_DONE = False


def new_highs():
    """``highspy.Highs()`` without its once-per-process banner on stdout.

    The banner is written by C++ code to file descriptor 1, which would corrupt
    ``--json -`` output; the first construction runs with fd 1 pointed at /dev/null.
    """
    global _BANNER_DONE
    import highspy

    if _BANNER_DONE:
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_DONE = True
    return h


# ------------------------------------------------------------------ model building
def relaxation_rows(layers: list, los: list, his: list, upto: int,
                    offsets: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Rows ``row_lo <= A z <= row_hi`` linking entries ``0..upto`` (layers ``0..upto-1``).

    ``offsets[j]`` is the first column of entry ``j``. Non-linear layers listed here get
    their convex relaxation for the boxes ``los[j], his[j]``.
    """
    n_cols = int(offsets[upto] + los[upto].size)
    rows_r, rows_c, rows_v, lo_l, hi_l = [], [], [], [], []
    n_rows = 0

    def add(r, c, v, lo, hi):
        nonlocal n_rows
        rows_r.append(np.asarray(r) + n_rows)
        rows_c.append(np.asarray(c))
        rows_v.append(np.asarray(v, float))
        lo_l.append(np.asarray(lo, float))
        hi_l.append(np.asarray(hi, float))
        n_rows += len(lo)

    inf = np.inf
    for j in range(upto):
        layer = layers[j]
        x0, y0 = int(offsets[j]), int(offsets[j + 1])
        n_out = layer.out_size
        if layer.kind == "affine":
            W = sp.coo_matrix(layer.W)
            r = np.concatenate([W.row, np.arange(n_out)])
            c = np.concatenate([W.col + x0, np.arange(n_out) + y0])
            v = np.concatenate([-W.data, np.ones(n_out)])
            add(r, c, v, layer.b, layer.b)
        elif layer.kind in ("relu", "leaky_relu"):
            k = 0.0 if layer.kind == "relu" else layer.slope
            lo, hi = los[j], his[j]
            rel = relax_elementwise(layer, lo, hi)
            unstable = (lo < 0.0) & (hi > 0.0)
            st = np.flatnonzero(~unstable)
            slope = np.where(lo[st] >= 0.0, 1.0, k)
            m = st.size
            add(np.concatenate([np.arange(m), np.arange(m)]),
                np.concatenate([st + y0, st + x0]),
                np.concatenate([np.ones(m), -slope]), np.zeros(m), np.zeros(m))
            un = np.flatnonzero(unstable)
            m = un.size
            ar = np.arange(m)
            # y - x >= 0 ; y - k x >= 0 ; y - s x <= chord intercept
            add(np.concatenate([ar, ar, ar + m, ar + m, ar + 2 * m, ar + 2 * m]),
                np.concatenate([un + y0, un + x0] * 3),
                np.concatenate([np.ones(m), -np.ones(m), np.ones(m), -k * np.ones(m),
                                np.ones(m), -rel.ua[un]]),
                np.concatenate([np.zeros(2 * m), np.full(m, -inf)]),
                np.concatenate([np.full(2 * m, inf), rel.ub[un]]))
        elif layer.kind in S_SHAPED:
            rel = relax_elementwise(layer, los[j], his[j])
            m = n_out
            ar = np.arange(m)
            add(np.concatenate([ar, ar, ar + m, ar + m]),
                np.concatenate([ar + y0, ar + x0, ar + y0, ar + x0]),
                np.concatenate([np.ones(m), -rel.la, np.ones(m), -rel.ua]),
                np.concatenate([rel.lb, np.full(m, -inf)]),
                np.concatenate([np.full(m, inf), rel.ub]))
        elif layer.kind == "maxpool":
            g = layer.groups
            rel = relax_maxpool(g, los[j], his[j])
            out, width = g.shape
            ar = np.repeat(np.arange(out), width)
            # y_i - x_m >= 0 for every member
            add(np.concatenate([np.arange(out * width)] * 2),
                np.concatenate([ar + y0, g.reshape(-1) + x0]),
                np.concatenate([np.ones(out * width), -np.ones(out * width)]),
                np.zeros(out * width), np.full(out * width, inf))
            d = np.flatnonzero(rel.decided)
            m = d.size
            add(np.concatenate([np.arange(m)] * 2),
                np.concatenate([d + y0, rel.lower_idx[d] + x0]),
                np.concatenate([np.ones(m), -np.ones(m)]), np.full(m, -inf), np.zeros(m))
            u = np.flatnonzero(~rel.decided)
            m = u.size
            glo = los[j][g[u]]
            # y <= sum_m (x_m - l_m) + max_m l_m; the constant rounded up
            rhs = up(glo.max(axis=1) - glo.sum(axis=1)
                     + sum_error(2.0 * np.abs(glo).sum(axis=1), width + 1))
            add(np.concatenate([np.arange(m), np.repeat(np.arange(m), width)]),
                np.concatenate([u + y0, g[u].reshape(-1) + x0]),
                np.concatenate([np.ones(m), -np.ones(m * width)]),
                np.full(m, -inf), rhs)
        else:
            raise NotImplementedError(f"no LP relaxation for layer kind {layer.kind!r}")
    if n_rows == 0:
        return sp.csr_matrix((0, n_cols)), np.zeros(0), np.zeros(0)
    A = sp.csr_matrix((np.concatenate(rows_v), (np.concatenate(rows_r),
                                                 np.concatenate(rows_c))),
                      shape=(n_rows, n_cols))
    return A, np.concatenate(lo_l), np.concatenate(hi_l)


def make_highs(A: sp.csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray, lb: np.ndarray,
               ub: np.ndarray, integer: np.ndarray | None = None,
               time_limit: float | None = None):
    """A silent single-threaded HiGHS instance holding ``row_lo <= A x <= row_hi``."""
    import highspy

    inf = highspy.kHighsInf
    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    if time_limit is not None:
        h.setOptionValue("time_limit", max(float(time_limit), 1e-3))
    lp = highspy.HighsLp()
    n = int(lb.size)
    lp.num_col_ = n
    lp.num_row_ = int(A.shape[0])
    lp.col_cost_ = np.zeros(n)
    lp.col_lower_ = np.where(np.isfinite(lb), lb, -inf)
    lp.col_upper_ = np.where(np.isfinite(ub), ub, inf)
    lp.row_lower_ = np.where(np.isfinite(row_lo), row_lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(row_hi), row_hi, inf)
    csc = sp.csc_matrix(A)
    csc.sort_indices()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(np.float64)
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = int(A.shape[0])
    if integer is not None and integer.any():
        lp.integrality_ = [highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
                           for b in integer]
    h.passModel(lp)
    return h


class _Certificate:
    """What :func:`safe_dual_bound` needs besides ``c`` and ``y``, computed once per LP."""

    def __init__(self, A: sp.csr_matrix, lb: np.ndarray, ub: np.ndarray) -> None:
        self.abs_AT = abs(sp.csr_matrix(A)).T.tocsr()
        self.mag_x = maxabs(lb, ub)
        col_nnz = int(np.diff(sp.csc_matrix(A).indptr).max(initial=0))
        self.n_terms = int(A.shape[0]) + int(A.shape[1]) + col_nnz + 2


def safe_dual_bound(A: sp.csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray, lb: np.ndarray,
                    ub: np.ndarray, c: np.ndarray, y: np.ndarray,
                    cert: _Certificate | None = None) -> float:
    """Weak-duality lower bound on ``min c.x`` valid for any multipliers ``y`` (see module),
    in real arithmetic: the float64 evaluation is padded by its own rounding error."""
    cert = _Certificate(A, lb, ub) if cert is None else cert
    y = np.asarray(y, dtype=np.float64).copy()
    y[~np.isfinite(row_lo)] = np.minimum(y[~np.isfinite(row_lo)], 0.0)
    y[~np.isfinite(row_hi)] = np.maximum(y[~np.isfinite(row_hi)], 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        row_terms = np.where(y > 0, y * row_lo, np.where(y < 0, y * row_hi, 0.0))
        r = c - A.T @ y
        col_terms = np.where(r > 0, r * lb, np.where(r < 0, r * ub, 0.0))
        v = float(row_terms.sum() + col_terms.sum())
        # c.x = y.(Ax) + r.x holds for the exact r; the float r is off by at most
        # gamma * (|c| + |A|^T |y|), which costs that times |x_j| <= max(|lb_j|, |ub_j|)
        r_err = (np.abs(c) + cert.abs_AT @ np.abs(y)) @ cert.mag_x
        mag = float(np.abs(row_terms).sum() + np.abs(col_terms).sum() + r_err)
    out = float(down(v - sum_error(mag, cert.n_terms)))
    return out if np.isfinite(out) else -np.inf


# ------------------------------------------------------------------ work unit
def chunk_end(payload: dict) -> float | None:
    """The chunk's deadline on this process's ``perf_counter``: ``seconds`` from now, and
    no later than ``until`` (a ``time.monotonic`` value, system-wide on Linux, so a chunk
    that waited in an executor queue does not get its whole budget again)."""
    ends = []
    if payload.get("seconds") is not None:
        ends.append(time.perf_counter() + float(payload["seconds"]))
    if payload.get("until") is not None:
        ends.append(time.perf_counter() + float(payload["until"]) - time.monotonic())
    return min(ends) if ends else None


def solve_lp_chunk(payload: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Min and max of ``C[k] . z_last + d[k]`` for each row ``k`` of ``payload['C']``.

    Payload keys: ``A, row_lo, row_hi, lb, ub`` (the LP), ``cols`` (columns of the last
    entry), ``C`` (dense target rows), ``d`` (constants), ``seconds`` / ``until`` (budget for
    the chunk, see :func:`chunk_end`).
    Returns lower and upper arrays (``-inf``/``+inf`` where no bound was obtained) and the
    number of LPs solved.
    """
    import highspy

    A, row_lo, row_hi = payload["A"], payload["row_lo"], payload["row_hi"]
    lb, ub, cols = payload["lb"], payload["ub"], payload["cols"]
    C, d = payload["C"], payload["d"]
    t_end = chunk_end(payload)
    h = make_highs(A, row_lo, row_hi, lb, ub)
    # No presolve: HiGHS's LP presolve does not look at the clock. On a 784-input net
    # (8 x 256 ReLU, an LP of 1536 rows with dense 784-wide rows) one presolve ran 4.5 s
    # past a 0.5 s time limit, so compute_bounds(method="lp", timeout=2) took 6 s. Only
    # the first solve of a chunk would presolve at all (the others are warm-started from
    # its basis); without it the same bounds came out as fast (benchmarks/large_unseen.py,
    # RESULTS §10 "Larger unseen networks").
    h.setOptionValue("presolve", "off")
    cert = _Certificate(A, lb, ub)
    k = C.shape[0]
    lower = np.full(k, -np.inf)
    upper = np.full(k, np.inf)
    n = lb.size
    ok_status = highspy.HighsModelStatus.kOptimal
    solved = 0
    cols32 = cols.astype(np.int32)
    for r in range(k):
        for sense in (1.0, -1.0):
            if t_end is not None:
                left = t_end - time.perf_counter()
                if left <= 0:
                    return lower, upper, solved
                h.setOptionValue("time_limit", left)
            coef = sense * C[r]
            h.changeColsCost(cols32.size, cols32, coef)
            h.run()
            solved += 1
            sol = h.getSolution()
            if h.getModelStatus() != ok_status and not sol.dual_valid:
                continue
            c = np.zeros(n)
            c[cols] = coef
            v = safe_dual_bound(A, row_lo, row_hi, lb, ub, c, np.asarray(sol.row_dual), cert)
            if not np.isfinite(v):
                continue
            if sense > 0:
                lower[r] = down(v + d[r])
            else:
                upper[r] = up(-v + d[r])
    return lower, upper, solved


def lp_targets(layers: list, i: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows of entry ``i`` worth an LP: undecided inputs of the non-linear layer ``i``."""
    if i == len(layers):
        return np.arange(lo.size)              # network outputs: few, all useful
    layer = layers[i]
    if layer.kind in ("relu", "leaky_relu") or layer.kind in S_SHAPED:
        return np.flatnonzero((lo < 0.0) & (hi > 0.0))
    if layer.kind == "maxpool":
        und = ~relax_maxpool(layer.groups, lo, hi).decided
        return np.unique(layer.groups[und].reshape(-1))
    return np.zeros(0, dtype=np.int64)


def split_chunks(rows: np.ndarray, executor) -> list[np.ndarray]:
    workers = int(getattr(executor, "workers", 1) or 1)
    if executor is None or workers <= 1 or rows.size < 8:
        return [rows]
    return [c for c in np.array_split(rows, min(rows.size, 2 * workers)) if c.size]


def run_chunks(payloads: list[dict], fn, executor) -> list:
    if executor is None or len(payloads) == 1:
        return [fn(p) for p in payloads]
    out: list = [None] * len(payloads)
    for idx, res in executor.map(fn, payloads):
        out[idx] = res
    return out


class LPRefiner:
    """``refine`` callback of :func:`~nnresilience.bounds.symbolic.propagate` running LPs."""

    def __init__(self, network, executor=None, deadline: float | None = None,
                 outputs: bool = True) -> None:
        self.layers = network.layers
        self.executor = executor
        self.deadline = deadline
        self.outputs = outputs
        self.n_solves = 0
        self.n_chunks = 0
        self.cut_short = False

    def __call__(self, i: int, los: list, his: list):
        layers = self.layers
        if layers[i - 1].kind != "affine" or i < 2:
            return None
        if i == len(layers) and not self.outputs:
            return None
        if any(lay.kind not in ("affine", "relu", "leaky_relu", "maxpool") + S_SHAPED
               for lay in layers[:i - 1]):
            return None
        rows = lp_targets(layers, i, los[i], his[i])
        if rows.size == 0:
            return None
        upto = i - 1
        sizes = np.array([los[j].size for j in range(upto + 1)])
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        A, row_lo, row_hi = relaxation_rows(layers, los, his, upto, offsets)
        lb = np.concatenate(los[:upto + 1])
        ub = np.concatenate(his[:upto + 1])
        cols = np.arange(offsets[upto], offsets[upto] + sizes[upto])
        aff = layers[i - 1]
        seconds = None if self.deadline is None else max(0.0, self.deadline - time.perf_counter())
        payloads = []
        chunks = split_chunks(rows, self.executor)
        for ch in chunks:
            C = aff.W[ch]
            C = C.toarray() if sp.issparse(C) else np.array(C)
            payloads.append({"A": A, "row_lo": row_lo, "row_hi": row_hi, "lb": lb, "ub": ub,
                             "cols": cols, "C": C, "d": aff.b[ch], "seconds": seconds,
                             "until": None if seconds is None else time.monotonic() + seconds})
        results = run_chunks(payloads, solve_lp_chunk, self.executor)
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            self.cut_short = True
        self.n_chunks += len(payloads)
        lo = np.full(los[i].size, -np.inf)
        hi = np.full(los[i].size, np.inf)
        for ch, (l, h, n) in zip(chunks, results, strict=True):
            lo[ch], hi[ch] = l, h
            self.n_solves += n
        return lo, hi, "lp"


def lp_refiner(network, executor=None, deadline: float | None = None) -> LPRefiner:
    return LPRefiner(network, executor=executor, deadline=deadline)
