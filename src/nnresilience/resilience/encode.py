"""The resilience MIPs of seed 000 on top of the shared network encoder.

Nothing here encodes a neuron: each copy of the network is one call of
:func:`nnresilience.encode.milp.encode_network`. This module adds what is particular to
resilience (MIP (6) and its relatives):

* two copies of the network, copy 1 at ``a`` and copy 2 at ``b = a + ε``, both inputs
  boxed by the domain D, so each copy's big-M values come from bounds over D;
* the confidence rows ``y1_m - y1_i >= ln(alpha)`` (Proposition 2: the softmax ratio
  ``p_m >= alpha p_i`` is exactly this logit difference);
* the top-k disjunction on copy 2: binaries ``c_i``, ``sum c_i >= k`` and
  ``y2_i - y2_m >= shift - M_i (1 - c_i)`` with ``M_i = hi2_m - lo2_i + shift`` rounded
  outward (the smallest M for which ``c_i = 0`` leaves the row slack for every b in D),
  or the uniform constant of the paper, checked against that bound
  (:class:`~nnresilience.encode.bigm.BigMTooSmallError` when it is smaller);
* the premise and flip rows take a constant ``shift``: ``-τ`` gives the *relaxed* problem
  (its optimum is a lower bound that solver tolerances cannot push above the true one),
  ``+τ`` the *tightened* one (its solutions replay exactly); the row indices are kept
  (``premise_rows``, ``flip_rows``) so a built model can be shifted without rebuilding;
* the norm: L1 with ``e_i >= ±(b_i - a_i)`` and objective ``sum e_i`` (the paper's
  ``ε^abs``), L∞ with one ``t >= ±(b_i - a_i)`` and objective ``t``.

ε is not a variable of its own: ``ε = b - a`` is read back from the solution, which saves
``d`` columns and ``d`` equality rows. Every builder returns the index arrays needed to lift
a solver answer back to inputs (the cvxpy habit of keeping the inverse map).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nnresilience.bounds.types import NetworkBounds
from nnresilience.encode.bigm import box_max, check_uniform
from nnresilience.encode.model import MilpModel
from nnresilience.errors import EngineUnsupportedError
from nnresilience.resilience.settings import ResilienceSettings


@dataclass(eq=False)
class ResilienceMip:
    """A built model and the maps back to inputs.

    ``a``: copy-1 inputs (``None`` when a is a constant); ``b``: copy-2 inputs;
    ``cost``: the objective variables (``e`` for L1, ``[t]`` for L∞, ``[t]`` margin for the
    premise MIP); ``c``: top-k selectors; ``out1``/``out2``: logits of the copies;
    ``premise_rows``/``flip_rows``: row indices of the confidence and top-k rows (their
    lower bounds carry the shift).
    """

    model: MilpModel
    a: np.ndarray | None
    b: np.ndarray | None
    cost: np.ndarray
    c: np.ndarray | None = None
    out1: np.ndarray | None = None
    out2: np.ndarray | None = None
    n_binaries: int = 0
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)
    premise_rows: np.ndarray | None = None
    flip_rows: np.ndarray | None = None
    enc: object | None = None          # NetworkEncoding of a single-copy model (MIP start)
    # how far a float64 logit difference y_i - y_j can be from the exact one over the
    # bounds' boxes (:func:`difference_slack`); the relaxed problem loosens by it too
    float_slack: float = 0.0
    # [diff hook] the copies' encodings (full MIP starts, difference rows)
    enc1: object | None = None
    enc2: object | None = None
    # per-sample MIP: the float64 k-th largest ``y_j - y_m`` at ``b = x`` (objective 0).
    # When it is >= -τ, x itself satisfies the relaxed problem, whose optimum is then 0
    # (a solver bound above 0 is rejected: HiGHS's presolve reported 0.0743 there)
    origin_slack: float | None = None


def difference_slack(network, bounds: NetworkBounds) -> float:
    """Bound on ``|fl(y_i - y_j) - (y_i - y_j)|`` of the float64 replay against the exact
    network, any ``i, j``, over the bounds' boxes: the premise and flip rows are logit
    differences, and the witnesses are judged by the float64 replay. A relaxed problem
    loosened by this (and the solver's τ) keeps every pair that replays; negligible
    (~1e-13) on unit-scale nets, decisive at large magnitudes."""
    from nnresilience.bounds.rounding import maxabs, replay_slack

    e = float(np.max(bounds.forward_errors(network)[-1], initial=0.0))
    y = float(np.max(maxabs(bounds.lo[-1], bounds.hi[-1]), initial=0.0))
    return float(replay_slack(np.array([[1.0, -1.0]]), np.array([e, e]),
                              np.array([-y, -y]), np.array([y, y]))[0])


def network_bounds(network, lo: np.ndarray, hi: np.ndarray, settings: ResilienceSettings,
                   timeout: float | None = None) -> NetworkBounds:
    """Bounds of every layer over the box ``[lo, hi]`` by the configured method.

    Interval bounds come straight from the foundation; the other methods (symbolic,
    ``milp:W`` look-back of heuristic 1) from :func:`nnresilience.bounds.compute_bounds`.
    ``timeout`` is the time the bounds may take (callers pass their share of the query's
    deadline; when it runs out the cheaper bounds already computed are kept, still sound).
    """
    method = settings.bounds_method
    if method == "interval":
        from nnresilience.bounds.interval import interval_bounds

        return interval_bounds(network, lo, hi)
    from nnresilience.bounds import compute_bounds

    return compute_bounds(network, (np.asarray(lo, float), np.asarray(hi, float)),
                          method=method, timeout=timeout)


def _encode_copy(model: MilpModel, network, bounds: NetworkBounds, inputs: np.ndarray,
                 settings: ResilienceSettings):
    from nnresilience.encode.milp import encode_network

    big_m = settings.big_m_value if settings.big_m == "uniform" else None
    return encode_network(model, network, bounds, inputs, big_m=big_m,
                          arctan=settings.arctan, priorities=settings.priorities)


def _topk_rows(model: MilpModel, out: np.ndarray, out_lo: np.ndarray, out_hi: np.ndarray,
               m: int, k: int, settings: ResilienceSettings, shift: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """At least ``k`` classes ``i != m`` with ``y_i - y_m >= shift``; returns the binaries
    ``c`` and the indices of the ``n - 1`` top-k rows."""
    others = np.array([i for i in range(out.size) if i != m], dtype=np.int64)
    n = others.size
    c = model.add_binaries(n, name="c")
    model.add_terms(np.zeros(n, np.int64), c, np.ones(n), 1, float(k), np.inf)
    # c_i = 0 must leave y_i - y_m >= shift - M_i slack everywhere: M_i >= max(y_m - y_i)
    # + shift over the output box (rounded outward)
    A = np.zeros((n, out.size))
    A[np.arange(n), m] = 1.0
    A[np.arange(n), others] = -1.0
    need = np.maximum(box_max(A, np.zeros(n), out_lo, out_hi, max(shift, 0.0)), 0.0)
    if settings.big_m == "uniform":
        check_uniform(settings.big_m_value, need,
                      lambda i: f"the top-k row of class {int(others[i])} against class {m} "
                                f"(bound on y_{m} - y_{int(others[i])} over the domain)")
        M = np.full(n, settings.big_m_value)
    else:
        M = need
    r = np.arange(n)
    # y_i - y_m - M_i c_i >= shift - M_i
    rows = model.add_terms(np.r_[r, r, r], np.r_[out[others], np.full(n, out[m]), c],
                           np.r_[np.ones(n), -np.ones(n), -M], n, shift - M, np.inf)
    return c, rows


def _confidence_rows(model: MilpModel, out: np.ndarray, m: int, log_alpha: float
                     ) -> np.ndarray:
    """``y_m - y_i >= ln(alpha)`` for every ``i != m`` (Proposition 2); returns row indices."""
    others = np.array([i for i in range(out.size) if i != m], dtype=np.int64)
    n = others.size
    r = np.arange(n)
    return model.add_terms(np.r_[r, r], np.r_[np.full(n, out[m]), out[others]],
                           np.r_[np.ones(n), -np.ones(n)], n, log_alpha, np.inf)


def _norm_rows(model: MilpModel, b: np.ndarray, a: np.ndarray | None, a_const: np.ndarray | None,
               span: np.ndarray, norm: str) -> np.ndarray:
    """Objective variables bounding ``|b - a|``; ``a`` is variables or the constant ``a_const``.

    L1: ``e_i >= b_i - a_i`` and ``e_i >= a_i - b_i``, minimise ``sum e``.
    L∞: ``t >= b_i - a_i`` and ``t >= a_i - b_i`` for all i, minimise ``t``.
    L2: ``s >= ||b - a||_2`` by one cone row, minimise ``s`` (:mod:`nnresilience.encode.l2`).
    """
    if norm == "l2":        # a cone row (SCIP only): nnresilience.encode.l2
        from nnresilience.encode.l2 import encode_l2_norm

        return encode_l2_norm(model, b, a, a_const, span)
    d = b.size
    r = np.arange(d)
    if norm == "l1":
        cost = model.add_vars(d, 0.0, span, obj=1.0, name="eps_abs")
        cols_e = cost
    elif norm == "linf":
        cost = model.add_vars(1, 0.0, float(span.max(initial=0.0)), obj=1.0, name="t")
        cols_e = np.full(d, cost[0])
    else:
        raise EngineUnsupportedError(
            f"norm {norm!r} is not supported by the resilience MIP (use l1, l2 or linf)")
    for sign in (1.0, -1.0):
        # e - sign*b + sign*a >= 0
        if a is not None:
            model.add_terms(np.r_[r, r, r], np.r_[cols_e, b, a],
                            np.r_[np.ones(d), -sign * np.ones(d), sign * np.ones(d)],
                            d, 0.0, np.inf)
        else:
            model.add_terms(np.r_[r, r], np.r_[cols_e, b], np.r_[np.ones(d), -sign * np.ones(d)],
                            d, -sign * a_const, np.inf)
    model.set_objective(cost, 1.0)
    return cost


def build_phi_mip(network, m: int, log_alpha: float, k: int, norm: str, lo: np.ndarray,
                  hi: np.ndarray, bounds: NetworkBounds, settings: ResilienceSettings,
                  premise_shift: float = 0.0, flip_shift: float = 0.0, diff=None
                  ) -> ResilienceMip:
    """MIP (6): minimise ``||b - a||`` with a confident for m and b out of m's top-k.

    Both copies use ``bounds`` (computed over D, which contains both a and b). The
    premise rows read ``y1_m - y1_i >= ln(alpha) + premise_shift``, the flip rows
    ``y2_i - y2_m >= flip_shift`` for the selected classes. The flip rows' Ms leave room
    for any shift up to ``max(flip_shift, 0)``.
    ``diff`` (a :class:`~nnresilience.resilience.difference_rows.DifferencePlan`) adds the
    radius row, the cut, the difference rows and tighter copy bounds of the two-copy
    analysis (all valid for every pair within the plan's radius, whatever the shifts).
    """
    t0 = time.perf_counter()
    model = MilpModel()
    d = network.n_inputs
    # [diff hook] copy bounds from the differential analysis (resilience/difference_rows.py)
    b1, b2 = (bounds, bounds) if diff is None else diff.copy_bounds(bounds)
    a = model.add_vars(d, lo, hi, name="a")
    enc1 = _encode_copy(model, network, b1, a, settings)
    prem = _confidence_rows(model, enc1.outputs, m, log_alpha + premise_shift)
    b = model.add_vars(d, lo, hi, name="b")
    enc2 = _encode_copy(model, network, b2, b, settings)
    c, flip = _topk_rows(model, enc2.outputs, b2.lo[-1], b2.hi[-1], m, k, settings,
                         flip_shift)
    cost = _norm_rows(model, b, a, None, hi - lo, norm)
    n_cut = 0
    if settings.coupling:
        n_cut = add_coupling_rows(model, network, bounds, list(enc1.layer_vars),
                                  list(enc2.layer_vars), cost, norm, m)
    stats = {"coupling_rows": n_cut}
    if diff is not None:  # [diff hook] difference rows
        stats.update(diff.add(model, network, enc1, enc2, cost, norm, c, m, log_alpha))
    nb = int(enc1.n_binaries + enc2.n_binaries + c.size)
    return ResilienceMip(model, a, b, cost, c, enc1.outputs, enc2.outputs, nb,
                         time.perf_counter() - t0, stats, prem, flip,
                         float_slack=difference_slack(network, bounds), enc1=enc1,
                         enc2=enc2)


def build_local_mip(network, x: np.ndarray, m: int, k: int, norm: str, lo: np.ndarray,
                    hi: np.ndarray, bounds: NetworkBounds, settings: ResilienceSettings,
                    radius: float | None = None, flip_shift: float = 0.0) -> ResilienceMip:
    """Per-sample problem: a is the constant ``x``; minimise ``||b - x||`` over b in
    ``[lo, hi]`` (already intersected with any radius box) with m out of b's top-k.

    ``radius`` (optional) adds ``||b - x|| <= radius`` as a row (for L1; for L∞ the box
    already says it). ``flip_shift`` as in :func:`build_phi_mip`.
    """
    t0 = time.perf_counter()
    model = MilpModel()
    b = model.add_vars(network.n_inputs, lo, hi, name="b")
    enc2 = _encode_copy(model, network, bounds, b, settings)
    c, flip = _topk_rows(model, enc2.outputs, bounds.lo[-1], bounds.hi[-1], m, k, settings,
                         flip_shift)
    span = np.maximum(np.abs(hi - x), np.abs(x - lo))
    cost = _norm_rows(model, b, None, np.asarray(x, float), span, norm)
    if radius is not None:
        model.add_terms(np.zeros(cost.size, np.int64), cost, np.ones(cost.size), 1,
                        -np.inf, float(radius))
    n_cut = 0
    if settings.coupling:
        v1 = [v[0] for v in network.forward_all(np.asarray(x, float))]
        n_cut = add_coupling_rows(model, network, bounds, v1, list(enc2.layer_vars), cost,
                                  norm, m)
    nb = int(enc2.n_binaries + c.size)
    y = network.forward(np.asarray(x, float))
    origin = float(-np.sort(-(np.delete(y, m) - y[m]))[k - 1])
    return ResilienceMip(model, None, b, cost, c, None, enc2.outputs, nb,
                         time.perf_counter() - t0, {"coupling_rows": n_cut}, None, flip,
                         float_slack=difference_slack(network, bounds), origin_slack=origin)


def build_premise_mip(network, m: int, lo: np.ndarray, hi: np.ndarray, bounds: NetworkBounds,
                      settings: ResilienceSettings, min_margin: float | None = None
                      ) -> ResilienceMip:
    """Maximise ``t`` with ``t <= y_m - y_i`` for all i != m over a in D (α_max = e^t*).

    Written as ``minimise -t``. ``min_margin`` adds ``t >= min_margin`` (used to find an
    input meeting a given alpha, heuristic 3 step 1).
    """
    t0 = time.perf_counter()
    model = MilpModel()
    a = model.add_vars(network.n_inputs, lo, hi, name="a")
    enc = _encode_copy(model, network, bounds, a, settings)
    out = enc.outputs
    olo, ohi = bounds.lo[-1], bounds.hi[-1]
    others = np.array([i for i in range(out.size) if i != m], dtype=np.int64)
    # every output of the box has margin >= t_floor; none exceeds t_hi (a hair of
    # outward slack for the float64 differences)
    pad = 4.0 * np.finfo(float).eps * (np.abs(ohi[m]) + np.abs(olo[others]).max(initial=0.0)
                                       + np.abs(olo[m]) + np.abs(ohi[others]).max(initial=0.0))
    t_hi = float(np.min(ohi[m] - olo[others]) + pad)
    t_floor = float(np.min(olo[m] - ohi[others]) - pad)
    t_lo = t_floor if min_margin is None else float(min_margin)
    t = model.add_vars(1, t_lo, max(t_hi, t_lo), name="margin")
    n = others.size
    r = np.arange(n)
    # y_m - y_i - t >= 0
    prem = model.add_terms(np.r_[r, r, r],
                           np.r_[np.full(n, out[m]), out[others], np.full(n, t[0])],
                           np.r_[np.ones(n), -np.ones(n), -np.ones(n)], n, 0.0, np.inf)
    model.set_objective(t, -1.0)
    return ResilienceMip(model, a, None, t, None, out, None, int(enc.n_binaries),
                         time.perf_counter() - t0, premise_rows=prem, enc=enc,
                         float_slack=difference_slack(network, bounds))


# ------------------------------------------------------------------ coupling cuts
# Dense sensitivity matrices above this many entries are skipped (the cuts are optional).
_COUPLING_MAX_ENTRIES = 4_000_000
# Total nonzeros the coupling rows may add to one model.
_COUPLING_MAX_NNZ = 400_000
# A coupling row whose norm-column coefficient exceeds this is left out. Its other
# coefficients are ±1, and such a range breaks the solver: on a 2-4-3-3 net with
# first-layer weights of 6e7, rows with coefficients up to 2.5e9 on the L∞ column made
# HiGHS's presolve report an optimum of 0.2677 (dual bound included) for a per-sample
# minimum perturbation of 0.2198 (a certified-looking wrong `optimal`); without those rows
# it returns 0.2198. The rows are optional cuts, so dropping some keeps every bound valid.
_COUPLING_MAX_COEF = 1e6


def sensitivity_matrices(network, bounds: NetworkBounds) -> list[np.ndarray] | None:
    """``G[i]`` (shape ``(n_i, d)``, entries >= 0) with ``|v_i(b) - v_i(a)| <= G[i] @ |b - a|``
    for the vector ``v_i`` entering layer ``i``, for all a, b in the bounds' input box.

    Built layer by layer: affine ``|W| G``; ReLU/LeakyReLU/S-shaped activations are
    1-Lipschitz (and a stable-inactive ReLU is constant: its row becomes 0); max-pool:
    ``|max u - max v| <= max_i |u_i - v_i|``, so the row is the entrywise max over the group.
    Returns None when a matrix would be too large or a layer kind is unknown.
    """
    d = network.n_inputs
    G = np.eye(d)
    out = [G]
    for i, layer in enumerate(network.layers):
        if layer.kind == "affine":
            G = np.asarray(layer.abs_W() @ G)
        elif layer.kind == "relu":
            G = G * (bounds.hi[i] > 0)[:, None]
        elif layer.kind in ("leaky_relu", "arctan", "tanh"):
            G = G.copy()
        elif layer.kind == "sigmoid":
            G = 0.25 * G
        elif layer.kind == "maxpool":
            G = np.max(G[layer.groups], axis=1)
        else:
            return None
        if G.size > _COUPLING_MAX_ENTRIES:
            return None
        out.append(G)
    return out


def add_coupling_rows(model: MilpModel, network, bounds: NetworkBounds, v1, v2, cost: np.ndarray,
                      norm: str, m: int) -> int:
    """Valid cuts tying copy 2 to copy 1 through the perturbation (heuristic of ours).

    For every non-input vector ``v_i`` and, sharper, for the output differences
    ``y_j - y_m``: ``|v2 - v1| <= G @ e`` (L1, ``e = |ε|``), ``<= (G @ 1) t`` (L∞) or
    ``<= ||G_j||_2 s`` row by row (L2).
    Every feasible point of MIP (6) satisfies them (Lipschitz argument of
    :func:`sensitivity_matrices`), so the optimum is unchanged; they stop the LP relaxation
    from reaching a near-zero ε by letting the two copies' relaxations drift apart.
    ``v1`` holds the copy-1 columns per layer, or constants (per-sample query).
    Returns the number of rows added.
    """
    Gs = sensitivity_matrices(network, bounds)
    if Gs is None:
        return 0
    last = network.layers[-1]
    n_rows = 0
    pairs = []
    if last.kind == "affine":
        Wd = last.dense_W()
        others = np.array([j for j in range(Wd.shape[0]) if j != m], dtype=np.int64)
        D = Wd[others] - Wd[m][None, :]
        Gd = np.abs(D) @ Gs[-2]
        pairs.append((Gd, others, -1))
    # Output-difference rows first (they bound the objective most directly), then the
    # layers in order, while the nonzeros stay within budget (backends build rows in Python).
    budget = _COUPLING_MAX_NNZ
    for i in range(1, len(Gs)):
        pairs.append((Gs[i], None, i))
    kept = []
    for G, others, i in pairs:
        nnz = 2 * (np.count_nonzero(G) if norm == "l1" else G.shape[0]) + 4 * G.shape[0]
        if nnz <= budget:
            kept.append((G, others, i))
            budget -= nnz
    for G, others, i in kept:
        if norm == "l1":
            coef = G
            ecols = cost
        else:
            # L∞: G @ |ε| <= (G @ 1) t; L2: G_j @ |ε| <= ||G_j||_2 s (Cauchy-Schwarz)
            coef = G.sum(axis=1, keepdims=True) if norm == "linf" else \
                np.linalg.norm(G, axis=1, keepdims=True)
            ecols = cost[:1]
        # rows of numerically dangerous range are left out (see _COUPLING_MAX_COEF)
        sel = np.flatnonzero(coef.max(axis=1, initial=0.0) <= _COUPLING_MAX_COEF)
        if sel.size == 0:
            continue
        coef = coef[sel]
        n = sel.size
        nz_r, nz_c = np.nonzero(coef)
        r = np.arange(n)
        for sign in (1.0, -1.0):
            rows, cols, vals = [nz_r], [ecols[nz_c]], [-coef[nz_r, nz_c]]
            rhs = np.zeros(n)
            # sign * (v2 - v1) - coef @ e <= 0, with v = y_j - y_m for the difference rows
            if others is None:
                rows.append(r)
                cols.append(np.asarray(v2[i])[sel])
                vals.append(np.full(n, sign))
                if v1[i].dtype.kind == "i":
                    rows.append(r)
                    cols.append(np.asarray(v1[i])[sel])
                    vals.append(np.full(n, -sign))
                else:
                    rhs = rhs + sign * np.asarray(v1[i], float)[sel]
            else:
                o = others[sel]
                y2 = v2[-1]
                rows += [r, r]
                cols += [y2[o], np.full(n, y2[m])]
                vals += [np.full(n, sign), np.full(n, -sign)]
                y1 = v1[-1]
                if y1.dtype.kind == "i":
                    rows += [r, r]
                    cols += [y1[o], np.full(n, y1[m])]
                    vals += [np.full(n, -sign), np.full(n, sign)]
                else:
                    rhs = rhs + sign * (y1[o] - y1[m])
            model.add_terms(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), n,
                            -np.inf, rhs)
            n_rows += n
    return n_rows
