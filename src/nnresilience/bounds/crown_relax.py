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

from nnresilience.bounds.relax import PIECEWISE, S_SHAPED, relax_elementwise


@dataclass
class Relaxation:
    """Lines ``la z + lb <= f(z) <= ua z + ub`` per (domain, neuron), shapes ``(B, 1, w)``.

    ``unstable`` marks the (Leaky)ReLU neurons whose lower slope is free (``alpha``);
    ``slope`` is ``k``. For max-pool: ``idx`` (B, out) the member kept as lower bound,
    ``decided`` where it equals the max, ``upper`` the constant upper bound elsewhere.
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


def sound_relaxation(layer, lo, hi, groups=None) -> Relaxation:
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
        rel = sound_relaxation(layer, lo, hi)
        for name in ("la", "lb", "ua", "ub"):
            setattr(rel, name, getattr(rel, name).to(lo.dtype))
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
