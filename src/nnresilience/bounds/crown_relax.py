"""Relaxations of the non-linear layers for :mod:`.crown`, batched over domains, in torch.

The lines themselves are those of :mod:`nnresilience.bounds.relax` (its docstring states
why each one is valid); this module only lays them out as ``(B, 1, width)`` tensors for a
batch of ``B`` boxes and adds the one free choice that CROWN optimises:

* **ReLU / LeakyReLU(k), lower line** ``alpha * z`` for an unstable neuron, with any
  ``alpha`` in ``[k, 1]``: for ``z >= 0``, ``alpha z <= z``; for ``z < 0``,
  ``alpha z <= k z`` because ``alpha >= k``. So ``alpha z <= max(kz, z)`` for every real
  ``z`` and every float ``alpha`` in the range: the line is valid exactly, with no box and
  no rounding allowance (intercept 0). The initial value is the DeepPoly choice of
  :mod:`.relax` (``1`` if ``u > -l`` else ``k``), so unoptimised CROWN equals ``symbolic``.
* **Sigmoid / tanh / arctan, tangent points.** Both lines may be tangents of ``f`` at a
  point ``d`` chosen in a range where the tangent is valid on ``[l, u]`` (``f`` is convex
  on ``x <= 0``, concave on ``x >= 0``):

  - lower line, ``u <= 0``: any ``d`` in ``[l, u]`` (tangent below a convex function);
    ``l < 0 < u``: any ``d <= 0`` whose tangent passes below ``(u, f(u))`` -- it is below
    ``f`` on ``x <= 0`` by convexity, and on ``[0, u]`` ``f`` minus the line is concave
    and non-negative at both ends. Those ``d`` form ``[l, d*]`` (``d*``: the tangent
    through ``(u, f(u))``, found by bisection; the range stops a little short of it);
    empty if the tangent at ``l`` already passes above ``(u, f(u))``;
  - upper line: the mirror image (``u`` for ``l``, concave for convex).

  One parameter ``t`` in ``[0, 1]`` per (domain, spec row, neuron) places the point:
  ``d = d0 + t (d1 - d0)`` in the lower range and ``d = d1 - t (d1 - d0)`` in the upper
  one (a back-substitution step uses only one of the two lines of a neuron for a row: the
  lower where the coefficient is ``>= 0``). Where a range is empty (lower line of a
  concave piece: the chord is already the best line) the fixed line of :mod:`.relax` is
  kept. :func:`s_shaped_lines` with ``sound=True`` builds each line in float64 with the
  rounding allowances of :mod:`.relax`, re-checks the condition at the far end for the
  mixed case, and falls back to the fixed line wherever a check fails: the validity of
  a reported bound never depends on the bisection or on the optimiser.

Two builders: :func:`sound_relaxation` (float64, from boxes that contain the exact values,
the lines taken from :func:`~nnresilience.bounds.relax.relax_elementwise`, so the single
statement of their floating-point validity is there) and :func:`fast_relaxation` (any
dtype, differentiable in the box for the ReLU chord, used only while optimising; nothing
it produces is ever reported). Max-pool (selection, exact in floating point) is the same
in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnresilience.bounds.relax import PIECEWISE, S_SHAPED, TINY_WIDTH, relax_elementwise


@dataclass
class Relaxation:
    """Lines ``la z + lb <= f(z) <= ua z + ub`` per (domain, neuron), shapes ``(B, 1, w)``.

    ``unstable`` marks the (Leaky)ReLU neurons whose lower slope is free (``alpha``);
    ``slope`` is ``k``. For max-pool: ``idx`` (B, out) the member kept as lower bound,
    ``decided`` where it equals the max, ``upper`` the constant upper bound elsewhere.
    For s-shaped layers: the box ``l``, ``u`` and the tangent-point ranges ``[tl0, tl1]``
    (lower line) and ``[tu0, tu1]`` (upper line), each (B, 1, w), with ``lpar`` /
    ``upar`` marking the neurons whose line is a parameter (see the module doc).
    """

    kind: str
    la: Any = None
    lb: Any = None
    ua: Any = None
    ub: Any = None
    unstable: Any = None
    slope: float = 0.0
    idx: Any = None
    decided: Any = None
    upper: Any = None
    l: Any = None
    u: Any = None
    tl0: Any = None
    tl1: Any = None
    tu0: Any = None
    tu1: Any = None
    lpar: Any = None
    upar: Any = None


#: Fields of :class:`Relaxation` that hold per-neuron tensors (indexing, dtype casts).
TENSOR_FIELDS = ("la", "lb", "ua", "ub", "unstable", "idx", "decided", "upper", "l", "u",
                 "tl0", "tl1", "tu0", "tu1", "lpar", "upar")
#: Bisection steps for the tangent through an interval end (the range is re-checked):
#: float64 passes, and the optimisation passes (only a starting range there).
BISECT_STEPS = 50
FAST_BISECT_STEPS = 16
#: The lower range stops this fraction of its length short of the bisected end point,
#: so that the float64 re-check at the far end is not decided by rounding.
RANGE_MARGIN = 1e-3


def _value_and_slope(kind: str, x: np.ndarray):
    """``f(x)`` and ``f'(x)`` in float64 with one transcendental call (for the tangent
    ranges only, which are re-checked: no rounding model needed here)."""
    if kind == "sigmoid":
        v = 0.5 + 0.5 * np.tanh(0.5 * x)
        return v, v * (1.0 - v)
    if kind == "tanh":
        v = np.tanh(x)
        return v, 1.0 - v * v
    with np.errstate(over="ignore"):
        return np.arctan(x), 1.0 / (1.0 + x * x)


def _lower_ends(kind: str, lo: np.ndarray, hi: np.ndarray, wide: np.ndarray, steps: int):
    """Tangent points ``[d0, d1]`` whose tangent is below an s-shaped ``f`` on each
    ``[lo, hi]`` (real-arithmetic reasoning in the module doc; float64 values here are
    only a starting range, every line is re-checked by :func:`s_shaped_lines`)."""
    n = lo.size
    d1 = np.zeros(n)
    par = np.zeros(n, dtype=bool)
    convex = wide & (hi <= 0.0)
    d1[convex] = hi[convex]
    par[convex] = True
    mixed = wide & (lo < 0.0) & (hi > 0.0)
    if mixed.any():
        l, u = lo[mixed], hi[mixed]
        fu, _ = _value_and_slope(kind, u)

        def phi(d):       # tangent at d minus f at u; increasing in d <= 0
            fd, sd = _value_and_slope(kind, d)
            with np.errstate(over="ignore", invalid="ignore"):
                return fd + sd * (u - d) - fu

        ok = phi(l) < 0.0
        a, b = l.copy(), np.zeros_like(l)
        for _ in range(steps):
            m = 0.5 * a + 0.5 * b
            below = phi(m) <= 0.0
            a = np.where(below, m, a)
            b = np.where(below, b, m)
        top = l + (a - l) * (1.0 - RANGE_MARGIN)
        d1[mixed] = np.where(ok, top, l)
        par[mixed] = ok
    return d1, par


def _s_ranges(kind: str, lo: np.ndarray, hi: np.ndarray, steps: int = BISECT_STEPS):
    """Both tangent-point ranges, ``(tl0, tl1, lpar), (tu0, tu1, upar)``, flat.

    ``f`` is point-symmetric about ``(0, f(0))`` (sigmoid, tanh, arctan), so a line is
    above ``f`` on ``[l, u]`` exactly when its mirror image is below ``f`` on
    ``[-u, -l]`` (the tangent at ``d`` becomes the tangent at ``-d``): the upper ranges
    come out of the same bisection as the lower ones, on the mirrored boxes, in one batch.
    """
    n = lo.size
    with np.errstate(over="ignore"):           # a box too wide for float64 is wide
        wide = (hi - lo) > TINY_WIDTH
    d1, par = _lower_ends(kind, np.concatenate([lo, -hi]), np.concatenate([hi, -lo]),
                          np.concatenate([wide, wide]), steps)
    return (lo.copy(), d1[:n], par[:n]), (-d1[n:], hi.copy(), par[n:])


def _maxpool(groups, lo, hi) -> Relaxation:
    """Batched :func:`~nnresilience.bounds.relax.relax_maxpool` (same rule)."""
    import torch

    B = lo.shape[0]
    glo, ghi = lo[:, groups], hi[:, groups]               # (B, out, g)
    j = torch.argmax(glo, dim=-1, keepdim=True)
    g = groups.expand(B, *groups.shape)
    best = torch.gather(g, 2, j).squeeze(-1)
    best_lo = torch.gather(glo, 2, j).squeeze(-1)
    others = torch.where(g == best[..., None], torch.full_like(ghi, -float("inf")), ghi)
    decided = best_lo >= others.amax(dim=-1)
    return Relaxation("maxpool", idx=best, decided=decided, upper=ghi.amax(dim=-1))


def sound_relaxation(layer, lo, hi, groups=None, steps: int = BISECT_STEPS) -> Relaxation:
    """Float64 lines valid in real arithmetic on the boxes ``[lo, hi]`` (B, w) (torch)."""
    import torch

    if layer.kind == "maxpool":
        return _maxpool(groups, lo, hi)
    B, w = lo.shape
    rel = relax_elementwise(layer, lo.detach().cpu().numpy().reshape(-1),
                            hi.detach().cpu().numpy().reshape(-1))

    def t(a: np.ndarray):
        return torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(B, 1, w),
                               device=lo.device)

    out = Relaxation(layer.kind, la=t(rel.la), lb=t(rel.lb), ua=t(rel.ua), ub=t(rel.ub))
    if layer.kind in S_SHAPED:
        lo_n = lo.detach().cpu().numpy().reshape(-1)
        hi_n = hi.detach().cpu().numpy().reshape(-1)
        (tl0, tl1, lpar), (tu0, tu1, upar) = _s_ranges(layer.kind, lo_n, hi_n, steps)
        out.l, out.u = t(lo_n), t(hi_n)
        out.tl0, out.tl1, out.tu0, out.tu1 = t(tl0), t(tl1), t(tu0), t(tu1)
        out.lpar = torch.as_tensor(lpar.reshape(B, 1, w), device=lo.device)
        out.upar = torch.as_tensor(upar.reshape(B, 1, w), device=lo.device)
    if layer.kind in PIECEWISE:
        out.slope = float(getattr(layer, "slope", 0.0))
        out.unstable = ((lo < 0.0) & (hi > 0.0))[:, None, :]
    return out


def fast_relaxation(layer, lo, hi, groups=None) -> Relaxation:
    """Lines for the optimisation passes (dtype of ``lo``; gradients flow through the
    ReLU chord into the box). Not used for any reported bound."""
    import torch

    if layer.kind == "maxpool":
        return _maxpool(groups, lo, hi)
    if layer.kind in S_SHAPED:
        return _fast_s_shaped(layer.kind, lo, hi)
    k = float(getattr(layer, "slope", 0.0))
    active = lo >= 0.0
    inactive = hi <= 0.0
    unstable = ~(active | inactive)
    width = torch.where(unstable, hi - lo, torch.ones_like(lo))
    s = (hi - k * lo) / width
    ua = torch.where(unstable, s, torch.where(active, torch.ones_like(lo), torch.full_like(lo, k)))
    ub = torch.where(unstable, hi * (1.0 - s), torch.zeros_like(lo))
    deep = torch.where(hi > -lo, torch.ones_like(lo), torch.full_like(lo, k))
    la = torch.where(active, torch.ones_like(lo), torch.where(unstable, deep,
                                                              torch.full_like(lo, k)))
    return Relaxation(layer.kind, la=la[:, None, :], lb=torch.zeros_like(la)[:, None, :],
                      ua=ua[:, None, :], ub=ub[:, None, :], unstable=unstable[:, None, :],
                      slope=k)


def _fast_s_shaped(kind: str, lo, hi) -> Relaxation:
    """The lines of :func:`sound_relaxation` for an optimisation pass, in torch and in
    ``lo``'s dtype, without the rounding allowances (nothing here is reported): the
    tangent-point ranges from one batched float64 bisection (:func:`_s_ranges`, fewer
    steps), the fixed lines of :mod:`.relax` (chords, midpoint tangents, the parallel
    lines of the mixed case, constants on a point-like box) where no range exists.

    Differentiable in the box where a line is a function of it (the optimised
    intermediate bounds then steer later layers' lines): the ranges' box ends and the
    chords; the bisected ends and the other fixed lines are constants."""
    import torch

    B, w = lo.shape
    dt, dev = lo.dtype, lo.device
    lo_n = lo.detach().cpu().numpy().astype(np.float64).reshape(-1)
    hi_n = hi.detach().cpu().numpy().astype(np.float64).reshape(-1)
    (_, tl1, lpar), (tu0, _, upar) = _s_ranges(kind, lo_n, hi_n, FAST_BISECT_STEPS)
    both = torch.as_tensor(np.stack([tl1, tu0]).reshape(2, B, 1, w), dtype=dt, device=dev)
    pars = torch.as_tensor(np.stack([lpar, upar]).reshape(2, B, 1, w), device=dev)
    lo3, hi3 = lo[:, None, :], hi[:, None, :]
    wide = (hi3 - lo3) > TINY_WIDTH
    convex = wide & (hi3 <= 0.0)
    concave = wide & (lo3 >= 0.0)
    mixed = wide & ~convex & ~concave
    fl, sl = _torch_fn(kind, lo3)
    fu, su = _torch_fn(kind, hi3)
    chord = (fu - fl) / torch.where(wide, hi3 - lo3, torch.ones_like(lo3))
    cb = fl - chord * lo3
    with torch.no_grad():
        l3, h3 = lo3.detach(), hi3.detach()
        mid = 0.5 * l3 + 0.5 * h3
        fm, sm = _torch_fn(kind, mid)
        tb = fm - sm * mid                      # midpoint tangent
        lam = torch.minimum(sl, su).detach()    # mixed: parallel lines
        zero = torch.zeros_like(l3)
        la = torch.where(convex, sm, torch.where(mixed, lam, zero))
        lb = torch.where(convex, tb, torch.where(mixed, fl.detach() - lam * l3, fl.detach()))
        ua = torch.where(concave, sm, torch.where(mixed, lam, zero))
        ub = torch.where(concave, tb, torch.where(mixed, fu.detach() - lam * h3, fu.detach()))
    return Relaxation(
        kind, la=torch.where(concave, chord, la), lb=torch.where(concave, cb, lb),
        ua=torch.where(convex, chord, ua), ub=torch.where(convex, cb, ub), l=lo3, u=hi3,
        tl0=lo3, tl1=torch.where(hi3 <= 0.0, hi3, both[0]), tu0=torch.where(
            lo3 >= 0.0, lo3, both[1]), tu1=hi3, lpar=pars[0], upar=pars[1])


def _torch_fn(kind: str, x):
    import torch

    if kind == "sigmoid":
        s = torch.sigmoid(x)
        return s, s * (1.0 - s)
    if kind == "tanh":
        v = torch.tanh(x)
        return v, 1.0 - v * v
    return torch.atan(x), 1.0 / (1.0 + x * x)


def fast_s_shaped_step(kind: str, rel: Relaxation, t, A):
    """One optimisation-pass back-substitution step ``A h -> A' z + c'`` through an
    s-shaped layer with tangent points ``t`` (B, R, w) in ``[0, 1]``: each entry builds
    only the line it uses (the lower one where ``A >= 0``), one ``f`` evaluation per
    entry. Returns ``(A', c' increment)``; differentiable in ``t``, ``A`` and the box
    (through the ranges and the chords of ``rel``); never reported.

    One autograd node with its gradient written out (the plain torch formula, which
    ``tests/bounds/test_sshape_alpha.py`` compares it with, recorded ~30 nodes of
    ``(B, R, w)`` work, most of them ``where``, and was most of a root call's time on
    the 6 x 100 digits net: 21 such steps per optimisation step). The side of each
    entry is a 0/1 float mask, so choosing between per-neuron values is two products
    and a sum, exact, and much cheaper in torch than ``where``. ``t`` is clamped to
    ``[0, 1]`` and its gradient passed through unchanged (the callers keep it there)."""
    return _step_function().apply(kind, t, A, rel.tl0, rel.tl1, rel.tu0, rel.tu1,
                                  rel.la, rel.lb, rel.ua, rel.ub, rel.lpar, rel.upar)


_STEP_FN = None


def _step_function():
    global _STEP_FN
    if _STEP_FN is None:
        import torch

        class _SStep(torch.autograd.Function):
            @staticmethod
            def forward(ctx, kind, t, A, tl0, tl1, tu0, tu1, la, lb, ua, ub, lpar, upar):
                # non-finite per-neuron values (a box overflowing in the optimisation
                # dtype) would turn a 0 weight into nan on the other side
                tl0, tl1, tu0, tu1, la, lb, ua, ub = (
                    torch.nan_to_num(x) for x in (tl0, tl1, tu0, tu1, la, lb, ua, ub))
                dt = A.dtype
                posf = (A >= 0.0).to(dt)
                negf = 1.0 - posf
                tc = t.clamp(0.0, 1.0)
                span = (tl1 - tl0) * posf + (tu0 - tu1) * negf
                d = tl0 * posf + tu1 * negf + tc * span
                fd, sd = _torch_fn(kind, d)
                parf = lpar.to(dt) * posf + upar.to(dt) * negf
                nparf = 1.0 - parf
                slope = sd * parf + (la * posf + ua * negf) * nparf
                icpt = (fd - sd * d) * parf + (lb * posf + ub * negf) * nparf
                ctx.kind = kind
                ctx.shapes = [x.shape for x in (tl0, tl1, tu0, tu1, la, lb, ua, ub)]
                ctx.save_for_backward(A, posf, parf, tc, span, d, fd, sd, slope, icpt)
                return A * slope, (A * icpt).sum(-1)

            @staticmethod
            def backward(ctx, gAn, gc):
                A, posf, parf, tc, span, d, fd, sd, slope, icpt = ctx.saved_tensors
                need = ctx.needs_input_grad
                gc3 = gc[..., None]
                gA = gAn * slope + gc3 * icpt if need[2] else None
                # tangent entries: slope f'(d), intercept f(d) - f'(d) d, so
                # dL/dd = A f''(d) (gAn - gc d)
                if ctx.kind == "sigmoid":
                    f2 = sd - 2.0 * sd * fd
                elif ctx.kind == "tanh":
                    f2 = -2.0 * fd * sd
                else:
                    f2 = -2.0 * d * sd * sd
                gd = (A * parf) * f2 * (gAn - gc3 * d)
                gt = gd * span if need[1] else None
                grads = [None] * 8                     # tl0 tl1 tu0 tu1 la lb ua ub
                if any(need[3:7]):
                    # d = tl0 (1 - tc) + tl1 tc where A >= 0, tu1 (1 - tc) + tu0 tc elsewhere
                    gpos = gd * posf
                    gneg = gd - gpos
                    g1, g2 = gpos * tc, gneg * tc
                    grads[:4] = [gpos - g1, g1, g2, gneg - g2]
                if any(need[7:11]):
                    # the fixed lines, where no tangent is used
                    nA = A * (1.0 - parf)
                    fa, fb = gAn * nA, gc3 * nA
                    fa_pos, fb_pos = fa * posf, fb * posf
                    grads[4:] = [fa_pos, fb_pos, fa - fa_pos, fb - fb_pos]
                grads = [None if g is None or not need[3 + k] else
                         g.sum_to_size(ctx.shapes[k]) for k, g in enumerate(grads)]
                return (None, gt, gA, *grads, None, None)

        _STEP_FN = _SStep
    return _STEP_FN


def s_shaped_lines(layer, rel: Relaxation, t, sound: bool, lower_side=None):
    """Lines ``(la, lb, ua, ub)`` (each shaped like ``t``, (B, R, w)) of an s-shaped layer
    for the tangent-point parameters ``t`` in ``[0, 1]`` (module doc).

    ``sound=False``: in ``t``'s dtype, differentiable in ``t``, for the optimisation
    passes only. ``sound=True``: float64 lines valid in real arithmetic on the box, built
    as :func:`~nnresilience.bounds.relax.relax_elementwise` builds its tangents (library
    values widened by :func:`~nnresilience.bounds.rounding.activation_rounding`, slope
    error by :data:`~nnresilience.bounds.relax.DERIVATIVE_ERROR`, intercepts rounded
    outward), each re-checked at the far interval end; the fixed line where not.
    ``lower_side`` (bool, like ``t``): where the caller uses only the lower line (the
    upper one elsewhere); the other line of each entry is then left fixed (not built)."""
    import torch

    t = t.clamp(0.0, 1.0)
    dl = rel.tl0 + t * (rel.tl1 - rel.tl0)
    du = rel.tu1 - t * (rel.tu1 - rel.tu0)
    if not sound:
        fl, al = _torch_fn(layer.kind, dl)
        fu, au = _torch_fn(layer.kind, du)
        la = torch.where(rel.lpar, al, rel.la)
        lb = torch.where(rel.lpar, fl - al * dl, rel.lb)
        ua = torch.where(rel.upar, au, rel.ua)
        ub = torch.where(rel.upar, fu - au * du, rel.ub)
        return la, lb, ua, ub
    if lower_side is None:
        return (*sound_s_shaped_side(layer, rel, t, True),
                *sound_s_shaped_side(layer, rel, t, False))
    a, b = sound_s_shaped_side(layer, rel, t, lower_side)
    return (torch.where(lower_side, a, rel.la), torch.where(lower_side, b, rel.lb),
            torch.where(lower_side, rel.ua, a), torch.where(lower_side, rel.ub, b))


def sound_s_shaped_side(layer, rel: Relaxation, t, lower):
    """Float64 line ``(slope, intercept)`` per entry of ``t`` (B, R, w), below ``f``
    where ``lower`` (a bool, or a bool tensor broadcastable to ``t``) and above it
    elsewhere: the tangent at the point ``t`` places in the entry's range, built and
    re-checked by :func:`_sound_tangent`, or the fixed line where there is no range or
    the check fails. Elementwise, so an entry's line does not depend on the others' sides
    (``s_shaped_lines`` returns the same lines from one call per side). In numpy on the
    flat entries that can use a tangent: no torch indexing per side."""
    import torch

    t = t.clamp(0.0, 1.0)
    shape = t.shape
    dev = t.device

    def n(x):
        return np.broadcast_to(x.detach().cpu().numpy(), shape)

    low = np.full(shape, lower) if isinstance(lower, bool) else n(lower)
    out_a = np.where(low, n(rel.la), n(rel.ua))
    out_b = np.where(low, n(rel.lb), n(rel.ub))
    box_l, box_u = n(rel.l), n(rel.u)
    for side in (True, False):
        if isinstance(lower, bool) and lower is not side:
            continue
        par = rel.lpar if side else rel.upar
        want = (low if side else ~low) & n(par)
        if not want.any():
            continue
        # the tangent points, by the same float64 operations as the optimisation's map
        d = rel.tl0 + t * (rel.tl1 - rel.tl0) if side else rel.tu1 - t * (rel.tu1 - rel.tu0)
        # f at the far end, per neuron (the same library values as per entry)
        far = np.broadcast_to(layer.fn((rel.u if side else rel.l).detach().cpu().numpy()), shape)
        a, b, ok = _sound_tangent(layer, n(d)[want], box_l[want], box_u[want], side,
                                  far[want])
        idx = np.flatnonzero(want)[ok]
        out_a.flat[idx] = a[ok]
        out_b.flat[idx] = b[ok]
    return (torch.as_tensor(out_a, dtype=torch.float64, device=dev),
            torch.as_tensor(out_b, dtype=torch.float64, device=dev))


def _sound_tangent(layer, d, l, u, lower: bool, f_far=None):
    """Float64 tangent at ``d`` (1-D) below (``lower``) or above ``f``, valid in real
    arithmetic on ``[l, u]``, and the mask where it is (the checks of the module doc; the
    intercept follows the rule of :mod:`.relax`). ``f_far``: the library value of ``f``
    at ``u`` (``lower``) or ``l``, if the caller has it (computed here otherwise)."""
    from nnresilience.bounds.relax import DERIVATIVE_ERROR, _above, _below, _derivative
    from nnresilience.bounds.rounding import activation_rounding, down, sum_error, up

    kind, f = layer.kind, layer.fn
    # |library f - f|: the same allowance at every point
    err = float(np.max(activation_rounding(layer, np.zeros(1)), initial=0.0))
    with np.errstate(over="ignore", invalid="ignore"):
        a = _derivative(kind, d)
        fd = f(d)
        rad = np.maximum(up(u - d), up(d - l))               # |x - d| on [l, u]
        slack = up(DERIVATIVE_ERROR * rad)
        if lower:
            # below f on x <= 0 (convexity); then f(u) above the line at u
            b = down(_below(down(fd - err), d, a) - slack)
            au = a * u
            at_u = up(au + b + sum_error(np.abs(au) + np.abs(b), 2))
            fu = f(u) if f_far is None else f_far
            ok = (d <= 0.0) & ((u <= 0.0) | (at_u <= down(fu - err)))
        else:
            b = up(_above(up(fd + err), d, a) + slack)
            al = a * l
            at_l = down(al + b - sum_error(np.abs(al) + np.abs(b), 2))
            fl = f(l) if f_far is None else f_far
            ok = (d >= 0.0) & ((l >= 0.0) | (at_l >= up(fl + err)))
        ok &= np.isfinite(a) & np.isfinite(b) & np.isfinite(rad)
    return a, b, ok
