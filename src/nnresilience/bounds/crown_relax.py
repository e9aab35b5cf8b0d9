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


def _lower_range(fn, deriv, lo: np.ndarray, hi: np.ndarray, wide: np.ndarray, steps: int):
    """Tangent points ``[d0, d1]`` whose tangent is below an s-shaped ``fn`` on each
    ``[lo, hi]`` (real-arithmetic reasoning in the module doc; float64 values here are
    only a starting range, every line is re-checked by :func:`s_shaped_lines`)."""
    n = lo.size
    d0 = lo.copy()
    d1 = np.zeros(n)
    par = np.zeros(n, dtype=bool)
    convex = wide & (hi <= 0.0)
    d1[convex] = hi[convex]
    par[convex] = True
    mixed = wide & (lo < 0.0) & (hi > 0.0)
    if mixed.any():
        l, u = lo[mixed], hi[mixed]
        fu = fn(u)

        def phi(d):       # tangent at d minus f at u; increasing in d <= 0
            with np.errstate(over="ignore", invalid="ignore"):
                return fn(d) + deriv(d) * (u - d) - fu

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
    return d0, d1, par


def _s_ranges(layer, lo: np.ndarray, hi: np.ndarray, steps: int = BISECT_STEPS):
    from nnresilience.bounds.relax import _derivative

    kind = layer.kind
    with np.errstate(over="ignore"):           # a box too wide for float64 is wide
        wide = (hi - lo) > TINY_WIDTH
    lower = _lower_range(layer.fn, lambda x: _derivative(kind, x), lo, hi, wide,
                         steps)
    # upper lines of f on [l, u] are the mirror images of lower lines of g(y) = -f(-y)
    # on [-u, -l] (tangent at e of g <-> tangent at -e of f); g' (y) = f'(-y) = f'(y)
    g0, g1, upar = _lower_range(lambda y: -layer.fn(-y), lambda y: _derivative(kind, y),
                                -hi, -lo, wide, steps)
    return lower, (-g1, -g0, upar)


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
        (tl0, tl1, lpar), (tu0, tu1, upar) = _s_ranges(layer, lo_n, hi_n, steps)
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
        rel = sound_relaxation(layer, lo.detach(), hi.detach(), steps=FAST_BISECT_STEPS)
        for name in ("la", "lb", "ua", "ub", "l", "u", "tl0", "tl1", "tu0", "tu1"):
            setattr(rel, name, getattr(rel, name).to(lo.dtype))
        # differentiable in the box where the line is a function of it (the optimised
        # intermediate bounds then steer later layers' lines): the tangent ranges' box
        # ends and the chords; the bisected ends stay constants
        lo3, hi3 = lo[:, None, :], hi[:, None, :]
        rel.l, rel.u = lo3, hi3
        rel.tl0 = lo3
        rel.tl1 = torch.where(hi3 <= 0.0, hi3, rel.tl1)
        rel.tu1 = hi3
        rel.tu0 = torch.where(lo3 >= 0.0, lo3, rel.tu0)
        wide = (hi3 - lo3) > TINY_WIDTH
        fl, _ = _torch_fn(layer.kind, lo3)
        fu, _ = _torch_fn(layer.kind, hi3)
        chord = (fu - fl) / torch.where(wide, hi3 - lo3, torch.ones_like(lo3))
        cb = fl - chord * lo3
        concave = wide & (lo3 >= 0.0)
        convex = wide & (hi3 <= 0.0)
        rel.la = torch.where(concave, chord, rel.la)
        rel.lb = torch.where(concave, cb, rel.lb)
        rel.ua = torch.where(convex, chord, rel.ua)
        rel.ub = torch.where(convex, cb, rel.ub)
        return rel
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


def _torch_fn(kind: str, x):
    import torch

    if kind == "sigmoid":
        s = torch.sigmoid(x)
        return s, s * (1.0 - s)
    if kind == "tanh":
        v = torch.tanh(x)
        return v, 1.0 - v * v
    return torch.atan(x), 1.0 / (1.0 + x * x)


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
    shape = t.shape
    dev = t.device
    box = (rel.l.expand(shape), rel.u.expand(shape))
    out = []
    for d, par, fixed, lower in ((dl, rel.lpar, (rel.la, rel.lb), True),
                                 (du, rel.upar, (rel.ua, rel.ub), False)):
        want = par.expand(shape)
        if lower_side is not None:
            want = want & (lower_side if lower else ~lower_side)
        a_full, b_full = (f.expand(shape).clone() for f in fixed)
        if bool(want.any()):
            # only the entries that can use a tangent are built (flat, in numpy)
            a, b, ok = _sound_tangent(layer, d[want].cpu().numpy(), box[0][want].cpu().numpy(),
                                      box[1][want].cpu().numpy(), lower)
            sel = torch.nonzero(want, as_tuple=True)
            keep = torch.as_tensor(ok, device=dev)
            sel = tuple(i[keep] for i in sel)
            a_full[sel] = torch.as_tensor(a[ok], dtype=torch.float64, device=dev)
            b_full[sel] = torch.as_tensor(b[ok], dtype=torch.float64, device=dev)
        out += [a_full, b_full]
    return tuple(out)


def _sound_tangent(layer, d, l, u, lower: bool):
    """Float64 tangent at ``d`` (1-D) below (``lower``) or above ``f``, valid in real
    arithmetic on ``[l, u]``, and the mask where it is (the checks of the module doc; the
    intercept follows the rule of :mod:`.relax`)."""
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
            ok = (d <= 0.0) & ((u <= 0.0) | (at_u <= down(f(u) - err)))
        else:
            b = up(_above(up(fd + err), d, a) + slack)
            al = a * l
            at_l = down(al + b - sum_error(np.abs(al) + np.abs(b), 2))
            ok = (d >= 0.0) & ((l >= 0.0) | (at_l >= up(f(l) + err)))
        ok &= np.isfinite(a) & np.isfinite(b) & np.isfinite(rad)
    return a, b, ok
