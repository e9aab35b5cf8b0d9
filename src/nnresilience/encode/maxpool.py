"""MILP encoder of n-ary max-pooling ``y_o = max_j x[groups[o, j]]`` (seed 000, §3).

The paper nests binary maxima (three binaries for a 2x2 window); we encode the n-ary max
directly with one binary ``d_j`` per *live* member ``j`` of the group::

    y >= x_j                          for every live j
    y <= x_j + (U - l_j)(1 - d_j)     for every live j
    sum_j d_j = 1

where ``U`` is the largest upper bound of the live members. Exactness: the member with
``d_j = 1`` gives ``y <= x_j``, so ``y = x_j = max``; for the others the relaxed row holds
because ``y <= U`` and ``x_j >= l_j``. A member is *dead* when its upper bound is strictly
below the largest lower bound ``L`` of the group (it can never be the maximum; the member
attaining ``L`` is always live), and duplicates of an index (padding at borders) count
once. A group with one live member is the equality ``y = x_m``, no binary.

With a uniform ``big_m`` (paper baseline) no member is pruned and ``U - l_j`` is replaced
by ``M`` (:class:`~nnresilience.encode.bigm.BigMTooSmallError` when ``M`` is smaller than
the spread, which would be unsound). Spreads from bounds are rounded outward.
"""

from __future__ import annotations

import numpy as np

from nnresilience.encode.bigm import check_uniform, pad_up
from nnresilience.encode.model import MilpModel
from nnresilience.encode.relu import _rows
from nnresilience.errors import EngineUnsupportedError


def encode_maxpool(model: MilpModel, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   out_lo: np.ndarray, out_hi: np.ndarray, groups: np.ndarray,
                   big_m: float | None, name: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode the layer; ``x``/``lo``/``hi`` are the input variables and their bounds.

    Returns ``(y, binaries, owners)``; ``owners[k] = (o, j)``: binary ``k`` selects input
    ``j`` (index into the layer's input vector) as the maximum of group ``o``.
    """
    g = np.sort(np.asarray(groups, dtype=np.int64), axis=1)
    n_out, width = g.shape
    glo, ghi = lo[g], hi[g]
    live = np.ones_like(g, dtype=bool)
    live[:, 1:] = g[:, 1:] != g[:, :-1]                  # duplicates count once
    if not (np.all(np.isfinite(glo)) and np.all(np.isfinite(ghi))):
        raise EngineUnsupportedError(f"layer '{name}': max-pool input bounds must be finite")
    L = glo.max(axis=1)
    if big_m is None:
        live &= ghi >= L[:, None]
        # ties: the member attaining L always stays (its hi >= its lo == L)
        live[np.arange(n_out), np.argmax(glo, axis=1)] = True
        # a duplicate of the argmax may have been re-enabled; drop it again
        live[:, 1:] &= g[:, 1:] != g[:, :-1]
    U = np.where(live, ghi, -np.inf).max(axis=1)
    ylo = np.maximum(L, out_lo)
    yhi = np.maximum(np.minimum(U, out_hi), ylo)
    y = model.add_vars(n_out, ylo, yhi, name=name)

    n_live = live.sum(axis=1)
    single = np.flatnonzero(n_live == 1)
    if single.size:
        pos = np.argmax(live[single], axis=1)
        r = np.arange(single.size)
        _rows(model, [(r, y[single], 1.0), (r, x[g[single, pos]], -1.0)], single.size, 0.0, 0.0)

    multi = n_live >= 2
    mo, mp = np.nonzero(live & multi[:, None])          # (output, position) of each member
    m = mo.size
    if m == 0:
        return y, np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    d = model.add_binaries(m, name=f"{name}_d")
    xm = x[g[mo, mp]]
    spread = pad_up(U[mo] - glo[mo, mp], np.abs(U[mo]) + np.abs(glo[mo, mp]))
    if big_m is not None:
        check_uniform(big_m, spread, lambda i: f"max-pool group {int(mo[i])} of layer "
                                               f"'{name}' (the spread of its inputs' bounds)")
        M = np.full(m, float(big_m))
    else:
        M = spread
    r = np.arange(m)
    # y - x_j >= 0
    _rows(model, [(r, y[mo], 1.0), (r, xm, -1.0)], m, 0.0, np.inf)
    # y - x_j + M_j d_j <= M_j
    _rows(model, [(r, y[mo], 1.0), (r, xm, -1.0), (r, d, M)], m, -np.inf, M)
    # sum of the group's d_j = 1: the row of member (o, p) is the rank of o among multi groups
    grp = np.cumsum(multi) - 1
    n_grp = int(multi.sum())
    _rows(model, [(grp[mo], d, 1.0)], n_grp, 1.0, 1.0)
    return y, d, np.stack([mo, g[mo, mp]], axis=1)
