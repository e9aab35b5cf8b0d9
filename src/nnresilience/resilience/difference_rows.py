"""Difference rows for MIP (6): the coupling of the two copies made visible to the LP.

MIP (6) (:func:`~nnresilience.resilience.encode.build_phi_mip`) encodes copy 1 at ``a``
and copy 2 at ``b`` separately. Given a radius ``u`` no smaller than the optimum (the norm
of a replayed witness pair), every optimal pair has ``||b - a|| <= u``, so adding the row
``||b - a|| <= u`` loses nothing, and then every fact of
:class:`~nnresilience.bounds.differential.DiffBounds` over
``PairRegion(D, norm, u)`` holds at every remaining feasible point. This module turns
those facts into rows (all valid in exact arithmetic for points with ``||b - a|| <= u``):

* **radius** ``Σ ε_abs <= u`` (L1) / ``t <= u`` (L∞), and the **cut** ``objective >= r``
  for a certified lower bound ``r`` (:mod:`.certify_diff`);
* **copy boxes**: copy 2's bounds become the differential ones (``x1 + Δ`` and the
  symbolic copy-2 bounds of the pair region), which also makes neurons stable in copy 2
  that are not over D: fewer binaries, smaller big-Ms (:meth:`DifferencePlan.copy_bounds`);
* **difference boxes** ``dl <= v2 - v1 <= du`` for every entry vector;
* **difference planes** at every (Leaky)ReLU / s-shaped neuron not stable in the same
  phase in both copies: ``h2 - h1 <= su (z2 - z1) + cu`` and ``>= sl (z2 - z1) + cl``
  (plane (A) of :mod:`nnresilience.bounds.differential`; plane (B) is what the LP of the
  two big-M encodings already has);
* **linking** rows between a neuron's binaries and the other copy (ReLU/LeakyReLU):
  ``d1 = 0`` means ``z1 <= 0``, hence ``z2 <= du``: ``z2 <= du + (u2 - du) d1``; likewise
  ``z2 >= l2 + (dl - l2) d1``, ``z1 <= -dl + (u1 + dl) d2``, ``z1 >= l1 + (-du - l1) d2``;
  and with ``s_c`` the phase of copy ``c`` (its binary, or 0/1 when stable) and
  ``δ = max(|dl|, |du|)``, since ``Δh = g Δz`` with ``g ∈ [k, 1]`` and ``g = 1`` (``k``)
  when both copies are active (inactive)::

      |Δh - Δz|   <= (1 - k) δ (2 - s1 - s2)
      |Δh - k Δz| <= (1 - k) δ (s1 + s2)

  (stable-in-both neurons in the same phase become equalities between the copies).
  The binary pair of one neuron also satisfies ``d2 <= d1`` when ``du <= 0`` and
  ``d1 <= d2`` when ``dl >= 0`` (a representation at ``z = 0`` is only dropped when the
  other one exists).

Nothing here changes the optimum: it moves the LP bound. Soundness of the MIP's dual bound
under solver tolerances is the business of the resilience query, as for every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.bounds.differential import (
    DiffBounds,
    difference_planes,
    envelope_intercepts,
    slope_range,
)
from nnresilience.bounds.types import NetworkBounds
from nnresilience.encode.model import MilpModel

#: Row families, in the order they are added (each switchable for measurements).
ROW_KINDS = ("box", "planes", "link", "scaled", "flip")


@dataclass
class DifferencePlan:
    """What to add to one MIP (6): the differential bounds for radius ``radius``, an
    optional certified ``lower`` bound and the row families ``kinds``."""

    diff: DiffBounds
    radius: float
    lower: float | None = None
    kinds: tuple[str, ...] = ROW_KINDS
    ladder: list[DiffBounds] = field(default_factory=list)
    out_up: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: The rows that use the premise or the flip (the cut, the per-class flip rows) hold
    #: for those rows loosened by up to this much (the relaxed MIP's ``τ``).
    relax: float = 0.0

    def copy_bounds(self, bounds: NetworkBounds) -> tuple[NetworkBounds, NetworkBounds]:
        """Bounds of copy 1 and copy 2, each intersected with the differential boxes
        (copy 2's are only valid together with the radius row)."""
        d = self.diff

        def inter(los, his, method):
            lo = [np.maximum(a, b) for a, b in zip(bounds.lo, los, strict=True)]
            hi = [np.maximum(np.minimum(a, b), lo_) for a, b, lo_ in
                  zip(bounds.hi, his, lo, strict=True)]
            return NetworkBounds(lo, hi, method=method, seconds=bounds.seconds)

        return (inter(d.lo1, d.hi1, bounds.method),
                inter(d.lo2, d.hi2, f"{bounds.method}+differential"))

    def add(self, model: MilpModel, network, enc1, enc2, cost: np.ndarray, norm: str,
            c: np.ndarray | None = None, m: int | None = None, log_alpha: float = 0.0
            ) -> dict[str, int]:
        """Append the rows to ``model`` (after both copies are encoded); ``c`` are the
        top-k selectors of class ``m``'s MIP (6), for the per-class flip rows."""
        n: dict[str, Any] = {"radius_rows": 0, "cut_rows": 0, "diff_box_rows": 0,
                             "diff_plane_rows": 0, "link_rows": 0}
        first = model.n_rows
        one = np.zeros(cost.size, np.int64)
        model.add_terms(one, cost, np.ones(cost.size), 1, -np.inf, float(self.radius))
        n["radius_rows"] = 1
        if self.lower is not None and self.lower > 0:
            model.add_terms(one, cost, np.ones(cost.size), 1, float(self.lower), np.inf)
            n["cut_rows"] = 1
        d = self.diff
        v1, v2 = list(enc1.layer_vars), list(enc2.layer_vars)
        if "box" in self.kinds:
            for i in range(1, len(v1)):
                n["diff_box_rows"] += _box_rows(model, v1[i], v2[i], d, i)
        for i, layer in enumerate(network.layers):
            if layer.kind in ("affine", "maxpool"):
                continue
            if "planes" in self.kinds:
                n["diff_plane_rows"] += _plane_rows(model, layer, v1, v2, d, i)
            if "link" in self.kinds and layer.kind in ("relu", "leaky_relu"):
                n["link_rows"] += _link_rows(model, layer, v1, v2, enc1, enc2, d, i)
        rho = None
        if len(self.ladder) >= 2 and ("scaled" in self.kinds or "flip" in self.kinds):
            rho = _rho_column(model, cost, norm)
        if "scaled" in self.kinds and rho is not None:
            n["scaled_rows"] = _scaled_rows(model, network, v1, v2, self.ladder, rho)
        if "flip" in self.kinds and self.out_up is not None and c is not None and \
                rho is not None:
            n["flip_rows"] = _flip_rows(model, v1[-1], v2[-1], self.ladder, self.out_up,
                                        rho, c, int(m), float(log_alpha), self.relax)
        # where the rows are (tests check them at sampled pairs) and the norm column
        n["diff_row_range"] = (first, model.n_rows)
        n["rho_col"] = rho
        self.stats.update(n)
        return n


def _pair_rows(model, c1, c2, k1, k2, rhs_lo, rhs_hi, extra=()) -> int:
    """Rows ``lo <= k1·x[c1] + k2·x[c2] + Σ extra <= hi`` (vectors of equal length)."""
    m = c1.size
    if m == 0:
        return 0
    r = np.arange(m)
    rows, cols, vals = [r, r], [c1, c2], [np.broadcast_to(k1, (m,)), np.broadcast_to(k2, (m,))]
    for cc, kk in extra:
        rows.append(r)
        cols.append(cc)
        vals.append(np.broadcast_to(kk, (m,)))
    model.add_terms(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), m,
                    rhs_lo, rhs_hi)
    return m


def _box_rows(model, v1, v2, d: DiffBounds, i: int) -> int:
    """``dl <= v2 - v1 <= du`` where it says more than the two copy boxes."""
    dl, du = d.dlo[i], d.dhi[i]
    useful = (du < d.hi2[i] - d.lo1[i]) | (dl > d.lo2[i] - d.hi1[i])
    useful &= np.isfinite(dl) & np.isfinite(du)
    idx = np.flatnonzero(useful)
    return _pair_rows(model, v2[idx], v1[idx], 1.0, -1.0, dl[idx], du[idx])


def _plane_rows(model, layer, v1, v2, d: DiffBounds, i: int) -> int:
    """Plane (A) rows for neurons not stable in the same phase in both copies."""
    l1, u1, l2, u2, dl, du = d.lo1[i], d.hi1[i], d.lo2[i], d.hi2[i], d.dlo[i], d.dhi[i]
    same = ((l1 >= 0) & (l2 >= 0)) | ((u1 <= 0) & (u2 <= 0))
    idx = np.flatnonzero(~same & (du > dl))
    if idx.size == 0:
        return 0
    su, cu, sl, cl = difference_planes(layer, l1[idx], u1[idx], l2[idx], u2[idx], dl[idx],
                                       du[idx])
    z1, z2, h1, h2 = v1[i][idx], v2[i][idx], v1[i + 1][idx], v2[i + 1][idx]
    # h2 - h1 - su z2 + su z1 <= cu ;  h2 - h1 - sl z2 + sl z1 >= cl
    n = _pair_rows(model, h2, h1, 1.0, -1.0, -np.inf, cu, ((z2, -su), (z1, su)))
    n += _pair_rows(model, h2, h1, 1.0, -1.0, cl, np.inf, ((z2, -sl), (z1, sl)))
    return n


def _phase(layer_bin, owners, n: int, lo: np.ndarray):
    """Per neuron: binary column or -1, and the constant phase (1 active, 0 inactive)."""
    col = np.full(n, -1, dtype=np.int64)
    if layer_bin.size:
        col[owners[:, 0]] = layer_bin
    const = (lo >= 0).astype(float)
    return col, const


def _link_rows(model, layer, v1, v2, enc1, enc2, d: DiffBounds, i: int) -> int:
    k = float(getattr(layer, "slope", 0.0))
    l1, u1, l2, u2, dl, du = d.lo1[i], d.hi1[i], d.lo2[i], d.hi2[i], d.dlo[i], d.dhi[i]
    n_neur = l1.size
    b1, c1 = _phase(enc1.binaries[i], enc1.binary_owners[i], n_neur, l1)
    b2, c2 = _phase(enc2.binaries[i], enc2.binary_owners[i], n_neur, l2)
    z1, z2, h1, h2 = v1[i], v2[i], v1[i + 1], v2[i + 1]
    n = 0
    has1, has2 = b1 >= 0, b2 >= 0
    # z2 <= du + (u2 - du) d1 ; z2 >= l2 + (dl - l2) d1
    idx = np.flatnonzero(has1 & (du < u2))
    n += _pair_rows(model, z2[idx], b1[idx], 1.0, -(u2[idx] - du[idx]), -np.inf, du[idx])
    idx = np.flatnonzero(has1 & (dl > l2))
    n += _pair_rows(model, z2[idx], b1[idx], 1.0, -(dl[idx] - l2[idx]), l2[idx], np.inf)
    # z1 <= -dl + (u1 + dl) d2 ; z1 >= l1 + (-du - l1) d2
    idx = np.flatnonzero(has2 & (-dl < u1))
    n += _pair_rows(model, z1[idx], b2[idx], 1.0, -(u1[idx] + dl[idx]), -np.inf, -dl[idx])
    idx = np.flatnonzero(has2 & (-du > l1))
    n += _pair_rows(model, z1[idx], b2[idx], 1.0, -(-du[idx] - l1[idx]), l1[idx], np.inf)
    # binary order when the sign of Δz is known
    idx = np.flatnonzero(has1 & has2 & (du <= 0))
    n += _pair_rows(model, b2[idx], b1[idx], 1.0, -1.0, -np.inf, 0.0)
    idx = np.flatnonzero(has1 & has2 & (dl >= 0))
    n += _pair_rows(model, b1[idx], b2[idx], 1.0, -1.0, -np.inf, 0.0)
    # phase-conditional difference rows where at least one copy has a binary
    idx = np.flatnonzero(has1 | has2)
    if idx.size == 0:
        return n
    delta = (1.0 - k) * np.maximum(np.abs(dl[idx]), np.abs(du[idx]))
    delta = np.nextafter(delta * (1.0 + 1e-12), np.inf)
    for kk, coef_s, base in ((1.0, 1.0, 2.0), (k, -1.0, 0.0)):
        # |Δh - kk Δz| <= δ (base - coef_s (s1 + s2))  with s = binary or constant
        for sign in (1.0, -1.0):
            terms = [(h2[idx], sign), (h1[idx], -sign), (z2[idx], -sign * kk),
                     (z1[idx], sign * kk)]
            rhs = delta * base
            for has, bcol, cst in ((has1, b1, c1), (has2, b2, c2)):
                hb = has[idx]
                # binary present: + δ coef_s s on the left; constant: move to the right
                coef = np.where(hb, delta * coef_s, 0.0)
                rhs = rhs - np.where(hb, 0.0, delta * coef_s * cst[idx])
                terms.append((np.where(hb, bcol[idx], h2[idx]), coef))
            rows = np.arange(idx.size)
            model.add_terms(np.concatenate([rows] * len(terms)),
                            np.concatenate([t[0] for t in terms]),
                            np.concatenate([np.broadcast_to(t[1], (idx.size,)) for t in terms]),
                            idx.size, -np.inf, rhs)
            n += idx.size
    return n


def full_start(mip, network, a: np.ndarray, b: np.ndarray, m: int, norm: str) -> None:
    """A complete MIP start of MIP (6) from a replayed pair: both copies' columns and
    binaries from the forward pass (:func:`~nnresilience.encode.milp.network_start`), the
    norm columns and the top-k selectors. Solvers accept it without the completion
    sub-MIP a partial start needs (measured: SCIP spent a whole 30 s limit completing
    the inputs-only start of the digits 2x50 net and failed)."""
    from nnresilience.encode.milp import network_start

    model = mip.model
    network_start(model, mip.enc1, network, a)
    network_start(model, mip.enc2, network, b)
    eps = np.abs(np.asarray(b, float) - np.asarray(a, float))
    if norm == "l1":
        model.set_start(mip.cost, eps)
    else:
        # L∞: t = max |ε_i| (exact); L2: s a hair above the float64 norm so the cone row
        # holds at the start (its ε columns are completed by the solver)
        from nnresilience.resilience.replay import norm_of

        val = norm_of(b - a, norm) if norm == "linf" else norm_of(b - a, norm) * (1 + 1e-12)
        model.set_start(mip.cost, np.array([val]))
    rho = mip.stats.get("rho_col")
    if rho is not None and norm == "l1":
        model.set_start(np.array([rho]), np.array([eps.sum()]))
    y = network.forward(np.asarray(b, float))
    others = np.delete(np.arange(y.size), m)
    model.set_start(mip.c, (y[others] >= y[m]).astype(float))


# ------------------------------------------------------------------ scaled rows
def _envelope_line(radii: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(α, β)`` per column of ``Q`` (rows: rungs of increasing radius) with
    ``Q[k] <= α + β ρ`` for every ``ρ ∈ (radii[k-1], radii[k]]`` and ``Q[0] = α`` below
    ``radii[0]``: a quantity bounded at every rung is bounded by a line in ``ρ``."""
    alpha = Q[0].copy()
    beta = np.zeros_like(alpha)
    with np.errstate(invalid="ignore"):   # inf - inf: that row is dropped (not finite)
        for k in range(1, len(radii)):
            beta = np.maximum(beta, (Q[k] - alpha) / radii[k - 1])
    beta = np.nextafter(np.maximum(beta, 0.0) * (1.0 + 1e-12), np.inf)
    return alpha, beta


def _rho_column(model: MilpModel, cost: np.ndarray, norm: str) -> int:
    """A column equal to the norm (L1: ``Σ ε_abs``, which is >= ||ε||; L∞: ``t``)."""
    if norm != "l1":
        return int(cost[0])
    rho = model.add_vars(1, 0.0, np.inf, name="rho")
    n = cost.size
    model.add_terms(np.zeros(n + 1, np.int64), np.r_[rho, cost], np.r_[1.0, -np.ones(n)], 1,
                    0.0, 0.0)
    return int(rho[0])


def _scaled_rows(model, network, v1, v2, ladder: list[DiffBounds], rho: int) -> int:
    """Difference boxes and plane intercepts that shrink with the norm ``ρ`` of the pair:
    ``v2 - v1 <= α + β ρ`` (and below), ``h2 - h1 - su (z2 - z1) <= α + β ρ`` (and the
    lower plane), with ``(α, β)`` from the ladder of radii (:func:`_envelope_line`). At
    ``ε = 0`` they force the copies together, which no fixed-radius row does."""
    radii = np.array([d.region.radius for d in ladder])
    n = 0
    for i in range(1, len(v1)):
        up = np.stack([d.dhi[i] for d in ladder])
        dn = np.stack([-d.dlo[i] for d in ladder])
        for sign, Q in ((1.0, up), (-1.0, dn)):
            al, be = _envelope_line(radii, Q)
            idx = np.flatnonzero(np.isfinite(al) & np.isfinite(be))
            n += _pair_rows(model, v2[i][idx], v1[i][idx], sign, -sign, -np.inf, al[idx],
                            ((np.full(idx.size, rho), -be[idx]),))
    top = ladder[-1]
    for i, layer in enumerate(network.layers):
        if layer.kind in ("affine", "maxpool"):
            continue
        glo = np.min([slope_range(layer, d.lo1[i], d.hi1[i], d.lo2[i], d.hi2[i])[0]
                      for d in ladder], axis=0)
        ghi = np.max([slope_range(layer, d.lo1[i], d.hi1[i], d.lo2[i], d.hi2[i])[1]
                      for d in ladder], axis=0)
        idx = np.flatnonzero(glo < ghi)
        if idx.size == 0:
            continue
        su, _, sl, _ = difference_planes(layer, top.lo1[i][idx], top.hi1[i][idx],
                                         top.lo2[i][idx], top.hi2[i][idx], top.dlo[i][idx],
                                         top.dhi[i][idx])
        cus, cls = [], []
        for d in ladder:
            cu, cl = envelope_intercepts(glo[idx], ghi[idx], su, sl, d.dlo[i][idx],
                                         d.dhi[i][idx])
            cus.append(cu)
            cls.append(-cl)
        z1, z2, h1, h2 = v1[i][idx], v2[i][idx], v1[i + 1][idx], v2[i + 1][idx]
        rcol = np.full(idx.size, rho)
        al, be = _envelope_line(radii, np.stack(cus))
        # h2 - h1 - su z2 + su z1 - β ρ <= α
        n += _pair_rows(model, h2, h1, 1.0, -1.0, -np.inf, al,
                        ((z2, -su), (z1, su), (rcol, -be)))
        al, be = _envelope_line(radii, np.stack(cls))
        # -(h2 - h1) + sl z2 - sl z1 - β ρ <= α   (α, β bound -cl)
        n += _pair_rows(model, h2, h1, -1.0, 1.0, -np.inf, al,
                        ((z2, sl), (z1, -sl), (rcol, -be)))
    return n


def _flip_rows(model, y1, y2, ladder, out_up, rho: int, c, m: int, log_alpha: float,
               relax: float = 0.0) -> int:
    """Per class ``j != m``: ``Δ(y_j - y_m) <= α_j + β_j ρ`` and, since ``c_j = 1`` means
    ``y2_j >= y2_m - relax`` while the premise says ``y1_m - y1_j >= ln α - relax`` (so
    ``Δ(y_j - y_m) >= ln α - 2 relax``: the rows hold on the problem relaxed by
    ``relax``), ``β_j ρ >= (ln α - 2 relax - α_j) c_j``. With ``Σ c >= k`` the LP then
    needs ``ρ`` of at least the certified radius, which the plain disjunction rows (big-M
    on a fractional ``c``) never demand."""
    radii = np.array([d.region.radius for d in ladder])
    others = np.delete(np.arange(y1.size), m)
    al, be = _envelope_line(radii, out_up[:, others])
    n = 0
    ok = np.isfinite(al) & np.isfinite(be)
    idx = np.flatnonzero(ok)
    j = others[idx]
    # (y2_j - y2_m) - (y1_j - y1_m) - β ρ <= α
    r = np.arange(idx.size)
    model.add_terms(np.concatenate([r] * 5),
                    np.concatenate([y2[j], np.full(idx.size, y2[m]), y1[j],
                                    np.full(idx.size, y1[m]), np.full(idx.size, rho)]),
                    np.concatenate([np.ones(idx.size), -np.ones(idx.size), -np.ones(idx.size),
                                    np.ones(idx.size), -be[idx]]), idx.size, -np.inf, al[idx])
    n += idx.size
    # β ρ - (ln α - α) c >= 0 (a hair of slack on the coefficient for the solver's sake)
    need = np.maximum(log_alpha - 2.0 * relax - al[idx], 0.0) * (1.0 - 1e-9)
    sel = np.flatnonzero(need > 0)
    if sel.size:
        n += _pair_rows(model, np.full(sel.size, rho), c[idx[sel]], be[idx[sel]], -need[sel],
                        0.0, np.inf)
    return n


def plan_ladder(network, lo, hi, norm: str, radius: float, rungs: int = 16,
                ratio: float = 1.3, a_lo=None, a_hi=None, prior1=None, prior2=None,
                m: int | None = None) -> tuple[list[DiffBounds], np.ndarray | None]:
    """Differential bounds at ``rungs`` radii ``radius / ratio^k`` (increasing, the last
    one ``radius``) sharing one copy-1 analysis; with ``m``, also the upper bounds of
    ``Δ(y_j - y_m)`` per rung (shape ``(rungs, n_out)``, column m unused)."""
    from nnresilience.bounds.differential import (
        DifferentialAnalysis,
        LinearTargets,
        PairRegion,
    )

    radii = sorted(radius / ratio ** k for k in range(rungs))
    an = DifferentialAnalysis(network, PairRegion(lo, hi, norm, radii[0], a_lo, a_hi),
                              prior1, prior2)
    out, ups = [], []
    n_out = an.network.n_outputs
    if m is not None:
        B = np.eye(n_out)
        B[:, m] -= 1.0
        tg = LinearTargets(np.zeros((n_out, n_out)), B, np.zeros(n_out))
    for r in radii:
        an.set_radius(r)
        if m is None:
            out.append(an.bounds())
        else:
            up, db = an.target_upper(tg)
            out.append(db)
            ups.append(up)
    return out, (np.stack(ups) if ups else None)
