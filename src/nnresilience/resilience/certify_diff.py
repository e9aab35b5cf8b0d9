"""A certified lower bound of Φ_m from differential bounds, without a MIP.

The argument
------------
Let ``(a, b)`` be a pair that MIP (6) accepts: ``a`` confident for class ``m``
(``y_m(a) - y_i(a) >= ln α`` for every ``i != m``) and ``b`` out of ``m``'s top-k (at
least ``k`` classes ``j`` with ``y_j(b) >= y_m(b)``). For such a ``j`` and any
multipliers ``λ >= 0``::

    0 <= (y_j - y_m)(b) + Σ_i λ_i ((y_m - y_i)(a) - ln α)
      = (e_j - e_m)·Δy + c_λ·y(a) - ln α Σ_i λ_i,
    c_λ = (e_j - e_m) + Σ_i λ_i (e_m - e_i),     Δy = y(b) - y(a).

With ``λ = e_j`` this is ``Δ(y_j - y_m) >= ln α``: a flip needs the margin to move by
``ln α``. :class:`~nnresilience.bounds.differential.DifferentialAnalysis` bounds the
right-hand side over every pair with ``||b - a|| <= r``; if the bound is negative for
all but ``k - 1`` classes ``j``, no accepted pair has norm ``<= r`` and ``Φ_m > r``.
The multipliers are the Lagrangian of the premise (a confident ``a`` is the only one
that matters); they are optimised with the relaxation parameters when asked.

The largest such ``r`` is found by bisection (:func:`certified_lower_bound`): every
probe is one pass of differential bounds (milliseconds on the digits nets), so the bound
is always cheap; optimised probes continue the bisection above the plain one.

Floating point: the witness replay (:func:`~nnresilience.resilience.replay.replay_pair`)
accepts ``a`` when its float64 margin is ``>= ln α`` and ``b`` when its float64 outputs
flip, both exactly; the differential bounds are about exact network values, so the
thresholds absorb the forward errors of both copies (``e1``, ``e2`` at the output). The
norm of a replayed pair is computed in float64 too: the reported bound is scaled down
by ``1 - gamma(d + 2)``.

``relax`` (default 0) widens both sets in exact values: premise ``>= ln α - relax``, flip
``y_j - y_m >= -relax``. A larger set only lowers the bound, so it stays a lower bound
of Φ_m; with ``relax >= τ`` it also bounds the *relaxed* MIP (6) of
:mod:`nnresilience.resilience.query` (premise and flip rows loosened by ``τ``), which is
what a cut row in that problem needs.

An a-box smaller than the domain (branching, :mod:`.branch`) gives one piece's bound,
and a piece where copy-1 bounds prove that no input reaches the confidence is vacuous
(its minimum is +inf).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.bounds import vertex_difference
from nnresilience.bounds.differential import (
    ELEMENTWISE,
    DifferentialAnalysis,
    DiffParams,
    LinearTargets,
    PairRegion,
    slope_range,
)
from nnresilience.bounds.rounding import TINY, UNIT, gamma

#: Seconds (at most; never past REFINE_SHARE of the certifier's time left) of splitting
#: the slope boxes inside the L∞ vertex bound (:func:`~nnresilience.bounds.vertex_difference.
#: group_upper`, ``refine``) by default: digits 2x50 class 0, worst row 359 -> 321 / 312
#: / 300 / 291 after 3 / 5 / 10 / 20 s (follow-up phi7). A query's deadline caps it at
#: :data:`REFINE_SHARE` of the certifier's time (~7 s at T = 60 s, ~30 s at T = 300 s).
REFINE_SECONDS = 30.0
#: Share of the certifier's time left that the splitting may take (the segment
#: splitting after it bounds its pieces without it, so its ``L`` rarely beats the
#: refined root's: the refinement is the better use of the time).
REFINE_SHARE = 0.8


@dataclass
class CertifiedRadius:
    """Answer of :func:`certified_lower_bound` on one a-box.

    ``lower``: proven ``Φ_m(a-box) >= lower`` (``inf`` when ``vacuous`` or
    ``unreachable``); ``vacuous``: no input of the a-box reaches the confidence;
    ``unreachable``: not even the widest pair of the region flips; ``params``: the
    relaxation parameters of the last certified probe (reusable warm start).
    """

    lower: float
    vacuous: bool = False
    unreachable: bool = False
    probes: int = 0
    seconds: float = 0.0
    params: DiffParams | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    split: Any = None                       # lipschitz_split.SplitLipschitz, if run
    vertex: Any = None                      # (slope-box key, L) of the vertex bound


def _others(m: int, n_out: int) -> np.ndarray:
    return np.delete(np.arange(n_out), m)


def margin_rows(n_out: int, m: int) -> np.ndarray:
    """The rows ``C`` (one per other class ``j``) with ``C·y = y_j - y_m``: the margins whose
    change the vertex bound and the segment splitting bound."""
    others = _others(m, n_out)
    C = np.zeros((others.size, n_out))
    C[np.arange(others.size), others] = 1.0
    C[:, m] = -1.0
    return C


def premise_upper(an: DifferentialAnalysis, m: int) -> float:
    """An upper bound of the float64 margin ``fl(y_m - y_i)`` (min over i != m) of any
    input of the a-box: copy-1 bounds of the exact differences, plus the forward errors
    ``e_m + e_i`` and the subtraction's rounding. ``ln α_max`` of the a-box is below it."""
    n_out = an.network.n_outputs
    others = _others(m, n_out)
    A = np.zeros((others.size, n_out))
    A[np.arange(others.size), m] = 1.0
    A[np.arange(others.size), others] = -1.0
    up, db = an.target_upper(LinearTargets(A, np.zeros_like(A), np.zeros(others.size)))
    e = db.e1[-1]
    exact = np.nextafter(up + (e[m] + e[others]), np.inf)
    fl = np.nextafter(exact + 2.0 * UNIT * np.abs(exact) + TINY, np.inf)
    return float(np.min(fl))


def premise_vacuous(an: DifferentialAnalysis, m: int, log_alpha: float,
                    relax: float = 0.0) -> bool:
    """True when copy-1 bounds over the a-box prove ``max_a min_i (y_m - y_i)(a)`` is below
    the acceptance threshold ``ln α - relax`` (float64 replay or exact values)."""
    return premise_upper(an, m) < log_alpha - relax


def _flip_targets(m: int, n_out: int, lam: np.ndarray, theta: np.ndarray):
    """Rows of the Lagrangian bound per class ``j != m`` (module docstring), constant
    ``-Σ λ_i θ_i``; ``lam`` (T, n_out) with zeros at column m."""
    others = _others(m, n_out)
    T = others.size
    B = np.zeros((T, n_out))
    B[np.arange(T), others] = 1.0
    B[np.arange(T), m] = -1.0
    A = B + lam.sum(1, keepdims=True) * np.eye(n_out)[m][None, :] - lam
    return LinearTargets(A, B, -(lam * theta[None, :]).sum(1))


def _sub_ulp(log_alpha: float) -> float:
    """Rounding allowance of the replay's float64 margin ``fl(y_m - y_i) >= ln α``: the
    exact difference is at least ``ln α (1 - u)`` (α >= 1, so ``ln α >= 0``)."""
    return float(np.nextafter(2.0 * UNIT * abs(log_alpha) + TINY, np.inf))


def _thresholds(db, m: int, log_alpha: float, relax: float):
    """``θ_i`` (premise in exact values) and the flip margins ``e2_j + e2_m + relax``."""
    e1, e2 = db.e1[-1], db.e2[-1]
    theta = log_alpha - relax - _sub_ulp(log_alpha) - (e1[m] + e1)
    theta[m] = 0.0
    return theta, np.nextafter(e2 + e2[m] + relax, np.inf)


class RadiusCertifier:
    """Decides "no accepted pair within radius r" for one a-box, reusing parameters."""

    def __init__(self, network, m: int, log_alpha: float, k: int, norm: str, lo, hi,
                 a_lo=None, a_hi=None, relax: float = 0.0, prior1=None,
                 prior2=None, deadline: float | None = None,
                 refine_seconds: float | None = None) -> None:
        self.net = network.merged()
        self.m, self.log_alpha, self.k, self.norm = int(m), float(log_alpha), int(k), norm
        self.relax = float(relax)
        self.region = PairRegion(lo, hi, norm, 0.0, a_lo, a_hi)
        self.prior1, self.prior2 = prior1, prior2
        n_out = self.net.n_outputs
        self.others = _others(self.m, n_out)
        lam = np.zeros((self.others.size, n_out))
        lam[np.arange(self.others.size), self.others] = 1.0
        self.lam = lam
        self.params: DiffParams | None = None
        self._an: DifferentialAnalysis | None = None
        self.n_probes = 0
        self.margin_upper = math.inf        # bound of the float64 premise margin
        self.opt_stats: list[dict] = []
        # the vertex bound of the λ = e_j rows (bounds.vertex_difference): L1 at the
        # ball's vertices, L∞ / L2 the dual norm of the per-coordinate bounds
        self.use_vertex = norm in ("l1", "linf", "l2") and \
            vertex_difference.supported(self.net)
        self._rows = margin_rows(n_out, self.m)
        self._vertex_cache: tuple[bytes, np.ndarray] | None = None
        self.vertex_decided = 0             # probes decided by the vertex bound alone
        self.deadline = deadline            # time.perf_counter() value for the vertex bound
        # seconds of slope-box splitting in the L∞ groups (first slope box; 0: off)
        self.refine_seconds = REFINE_SECONDS if refine_seconds is None else refine_seconds
        # (radius, L): the split vertex bound (lipschitz_split), valid up to that radius
        self.split: tuple[float, np.ndarray] | None = None

    def analysis(self, radius: float) -> DifferentialAnalysis:
        """The one analysis of this a-box (copy 1 computed once), moved to ``radius``."""
        if self._an is None:
            self._an = DifferentialAnalysis(self.net, self.region.with_radius(radius),
                                            self.prior1, self.prior2)
        else:
            self._an.set_radius(radius)
        return self._an

    def vacuous(self) -> bool:
        self.margin_upper = premise_upper(self.analysis(0.0), self.m)
        return self.margin_upper < self.log_alpha - self.relax

    def _verdict(self, up: np.ndarray, flip_margin: np.ndarray) -> bool:
        blocked = up < -flip_margin[self.others]
        return int((~blocked).sum()) < self.k

    def _upper(self, an: DifferentialAnalysis, lam: np.ndarray, params):
        """Sound upper bounds of the Lagrangian rows and the flip margins (one pass):
        the rows are bounded without their constant, which is then subtracted outward
        (the premise thresholds need the forward errors of this very pass)."""
        n_out = self.net.n_outputs
        zero = np.zeros(n_out)
        up0, db = an.target_upper(_flip_targets(self.m, n_out, lam, zero), params)
        theta, fm = _thresholds(db, self.m, self.log_alpha, self.relax)
        shift = (lam * theta[None, :]).sum(1)
        up = up0 - shift
        up = np.nextafter(up + 4 * UNIT * (np.abs(up0) + np.abs(shift)) + TINY, np.inf)
        if self.use_vertex:
            alt = self._vertex_rows(an.region.radius, db, theta)
            if not self._verdict(up, fm) and self._verdict(alt, fm):
                self.vertex_decided += 1
            up = np.minimum(up, alt)
        return up, fm, theta

    def _vertex_rows(self, radius: float, db, theta: np.ndarray) -> np.ndarray:
        """Upper bounds of the rows with ``λ = e_j``, ``Δ(y_j - y_m) - θ_j``, from the
        vertex bound ``Δ(y_j - y_m) <= r L_j`` (:mod:`~nnresilience.bounds.vertex_difference`:
        L1 at the ball's vertices, L∞ / L2 the dual norm of the per-coordinate bounds;
        the slope box comes from this pass's boxes of both copies, so it holds for every
        pair of the region). ``L`` is cached while the slope box does not change."""
        slopes = {i: slope_range(layer, db.lo1[i], db.hi1[i], db.lo2[i], db.hi2[i])
                  for i, layer in enumerate(self.net.layers) if layer.kind in ELEMENTWISE}
        key = b"".join(np.ascontiguousarray(g).tobytes() for i in sorted(slopes)
                       for g in slopes[i])
        if self._vertex_cache is None or self._vertex_cache[0] != key:
            # the L∞ groups get half the time left: a short deadline keeps time for
            # the bisection (the per-coordinate bound stands in when they are late);
            # the splitting of their slope boxes then gets REFINE_SHARE of the time left,
            # at most refine_seconds, on the first slope box only (the bisection's later
            # boxes would each start a search of their own; the bisection's probes at
            # this box cost ~1 ms each)
            now = time.perf_counter()
            half = None if self.deadline is None else now + 0.5 * (self.deadline - now)
            refine = None
            if self.refine_seconds > 0 and self._vertex_cache is None:
                refine = now + self.refine_seconds
                if self.deadline is not None:
                    refine = min(refine, now + REFINE_SHARE * (self.deadline - now))
            L = vertex_difference.unit_upper(self.net, self._rows, slopes, self.norm,
                                             self.deadline, group_deadline=half,
                                             refine=refine)
            if L is None:                   # over budget or late: not in this certifier
                self.use_vertex = False
                return np.full(self.others.size, np.inf)
            self._vertex_cache = (key, L)
        L = self._vertex_cache[1]
        if self.split is not None and radius <= self.split[0]:
            L = np.minimum(L, self.split[1])
        th = theta[self.others]
        rl = np.nextafter(radius * L * (1.0 + 2 * UNIT) + TINY, np.inf)
        alt = np.nextafter(rl - th + 4 * UNIT * (np.abs(rl) + np.abs(th)) + TINY, np.inf)
        return np.where(np.isfinite(alt), alt, np.inf)

    def holds(self, radius: float, optimise: int = 0, deadline: float | None = None,
              lr: float = 0.1) -> bool:
        """Sound decision at ``radius`` (optionally after ``optimise`` gradient steps)."""
        self.n_probes += 1
        an = self.analysis(radius)
        params = None if self.params is None else self.params.as_numpy()
        up, fm, theta = self._upper(an, self.lam, params)
        if self._verdict(up, fm):
            self.params = params
            return True
        if optimise <= 0:
            return False
        import torch

        lam_t = torch.as_tensor(self.lam.copy()).requires_grad_(True)
        n_out = self.net.n_outputs
        m = self.m
        T = self.others.size
        B = torch.zeros((T, n_out), dtype=torch.float64)
        B[torch.arange(T), torch.as_tensor(self.others)] = 1.0
        B[:, m] = -1.0
        keep = torch.ones(n_out, dtype=torch.float64)
        keep[m] = 0.0
        theta_t = torch.as_tensor(theta)

        def build():
            lam_m = lam_t * keep[None, :]
            A = B - lam_m
            A[:, m] = A[:, m] + lam_m.sum(1)
            return LinearTargets(A, B, -(lam_m * theta_t[None, :]).sum(1))

        goal = -fm[self.others]
        _, best, st = an.optimise(build, params, iterations=optimise, lr=lr, goal=goal,
                                  deadline=deadline, extra_vars=(lam_t,))
        self.opt_stats.append(st)
        lam = lam_t.detach().numpy().copy()
        lam[:, m] = 0.0
        # the verdict comes from a fresh sound pass with the best parameters found
        up, fm, _ = self._upper(an, lam, best)
        ok = self._verdict(up, fm)
        if ok:
            self.params, self.lam = best, lam
        return ok


def _scale_down(r: float, d: int) -> float:
    """``r`` shrunk by the relative error of a float64 norm of ``d`` terms."""
    if r <= 0.0 or math.isinf(r):
        return r
    return float(np.nextafter(r * (1.0 - gamma(d + 2)), 0.0))


def certified_lower_bound(network, m: int, log_alpha: float, k: int, norm: str, lo, hi, *,
                          a_lo=None, a_hi=None, upper: float | None = None,
                          relax: float = 0.0, optimise: int = 0, rel_tol: float = 1e-3,
                          max_probes: int = 40, deadline: float | None = None,
                          prior1=None, prior2=None, split_seconds: float = 0.0,
                          split=None, refine_seconds: float | None = None,
                          vertex=None) -> CertifiedRadius:
    """Largest radius the differential bounds certify, by bisection (see module doc).

    ``upper`` (a replayed witness norm, optional) caps the search: certifying it proves
    the a-box cannot beat it. ``optimise`` > 0 continues the bisection with that many
    gradient steps per probe. ``deadline`` (``time.perf_counter`` value) stops probing;
    the answer is whatever was certified by then.

    ``split_seconds`` > 0 (:func:`~.lipschitz_split.supported` nets): after the plain
    bisection, split the points of ``a-box ⊕ B_cap`` (``cap`` = the search's upper end)
    for at most that long (and never past ``deadline``) to tighten the vertex bound, then
    continue the bisection above; ``split`` passes a
    :class:`~.lipschitz_split.SplitLipschitz` computed before (reused, not recomputed).
    Either only lowers ``L``, so the answer never decreases.

    ``refine_seconds`` (default :data:`REFINE_SECONDS`; 0: off): how long the L∞ vertex
    bound may split its slope boxes (never past :data:`REFINE_SHARE` of the time left
    before ``deadline``); ``vertex`` passes the :attr:`CertifiedRadius.vertex` of a call
    on the same a-box and norm (used while the slope box is the same: the bound does not
    depend on ``relax``).
    """
    t0 = time.perf_counter()
    cert = RadiusCertifier(network, m, log_alpha, k, norm, lo, hi, a_lo, a_hi, relax,
                           prior1, prior2, deadline, refine_seconds)
    cert._vertex_cache = vertex
    d = cert.region.dim
    if cert.vacuous():
        return CertifiedRadius(math.inf, vacuous=True, probes=1,
                               stats={"margin_upper": cert.margin_upper},
                               seconds=time.perf_counter() - t0)
    diam = cert.region.diameter()
    r_hi = diam if upper is None else min(float(upper), diam)
    late = lambda: deadline is not None and time.perf_counter() > deadline  # noqa: E731
    if cert.holds(r_hi):
        unreachable = r_hi >= diam
        return CertifiedRadius(math.inf if unreachable else _scale_down(r_hi, d),
                               unreachable=unreachable, probes=cert.n_probes,
                               seconds=time.perf_counter() - t0, params=cert.params,
                               vertex=cert._vertex_cache)
    r_lo = 0.0
    stats: dict[str, Any] = {}
    cap = r_hi
    found = None
    t_plain = time.perf_counter()
    for phase, iters in (("plain", 0), ("split", 0), ("optimised", optimise)):
        if phase == "optimised" and iters <= 0:
            break
        if phase == "split":
            # keep time for the bisection after it: the plain phase's, at least 10 %
            reserve = None if deadline is None else max(
                time.perf_counter() - t_plain, 0.1 * (deadline - time.perf_counter()))
            found = _split_phase(cert, lo, hi, a_lo, a_hi, cap, r_lo, split,
                                 split_seconds,
                                 None if deadline is None else deadline - reserve, stats)
            if found is None:
                continue
            r_hi = cap                      # re-open the bracket above the plain answer
        if phase == "optimised":
            # re-open the bracket above the plain answer
            stats["plain_lower"] = r_lo
        n = 0
        while r_hi - r_lo > rel_tol * max(r_hi, 1e-300) and n < max_probes and not late():
            mid = 0.5 * (r_lo + r_hi) if r_lo > 0 else (r_hi * 0.5 if n else r_hi * 0.25)
            if cert.holds(mid, optimise=iters, deadline=deadline):
                r_lo = mid
            else:
                r_hi = mid
            n += 1
        if phase in ("plain", "split") and optimise > 0:
            r_hi = min(diam if upper is None else float(upper), max(r_hi, 2.0 * r_lo))
    stats["optimise"] = cert.opt_stats[-3:]
    return CertifiedRadius(_scale_down(r_lo, d), probes=cert.n_probes,
                           seconds=time.perf_counter() - t0, params=cert.params, stats=stats,
                           split=found, vertex=cert._vertex_cache)


def _split_phase(cert: RadiusCertifier, lo, hi, a_lo, a_hi, cap: float,
                 r_lo: float, split, seconds: float, deadline: float | None,
                 stats: dict):
    """Install the split vertex bound in ``cert`` (computed here or reused); the
    :class:`~.lipschitz_split.SplitLipschitz` used, or ``None`` when there is none."""
    from nnresilience.resilience import lipschitz_split

    if not cert.use_vertex or r_lo >= cap or not math.isfinite(cap):
        return None
    if split is None:
        if seconds <= 0.0 or not lipschitz_split.supported(cert.net):
            return None
        end = time.perf_counter() + seconds
        end = end if deadline is None else min(end, deadline)
        if time.perf_counter() >= end:
            return None
        box_lo = np.asarray(lo if a_lo is None else a_lo, np.float64)
        box_hi = np.asarray(hi if a_hi is None else a_hi, np.float64)
        # stop once every piece certifies the cap (premise thresholds ~ ln α - relax)
        goal = 1.0 / cap
        scale = np.full(cert.others.size, 1.0 / max(cert.log_alpha - cert.relax, 1e-300))
        split = lipschitz_split.split_lipschitz(cert.net, cert._rows, box_lo, box_hi, cap,
                                                deadline=end, scale=scale, goal=goal,
                                                norm=cert.norm)
        if split is None:
            return None
    if split.radius < cap:
        return None
    cert.split = (split.radius, split.L)
    stats.update({"split_pieces": split.pieces, "split_open": split.open,
                  "split_seconds": split.seconds, "split_lower": r_lo})
    return split
