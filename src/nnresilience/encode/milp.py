"""Network + region + unsafe condition -> :class:`~nnresilience.encode.model.MilpModel`.

The encoding of seed 000 (§3) in matrix form. Every layer appends a whole block:

* ``affine``: new variables ``v`` with the equality rows ``W h - v = -b`` (one sparse
  block built from ``W``'s triplets; the paper's equation (1));
* ``relu`` / ``leaky_relu``: :mod:`nnresilience.encode.relu` (per-side big-M from the
  bounds, stable neurons exact and binary-free; or the paper's uniform ``M``);
* ``maxpool``: :mod:`nnresilience.encode.maxpool` (n-ary, one binary per live member);
* ``arctan`` / ``tanh`` / ``sigmoid``: :mod:`nnresilience.encode.arctan` (sound linear
  relaxation ``pwl``, or the paper's quadratic MIQCP for arctan).

Variable bounds come from :class:`~nnresilience.bounds.types.NetworkBounds` (``lo[i]``
bounds the vector entering layer ``i``), which is what makes small per-side big-Ms
possible. The lift-back map is the :class:`NetworkEncoding`: ``inputs`` are the columns
holding the network input, so a solver point ``x`` maps back as ``x[enc.inputs]``.

Exactness: for piecewise-linear networks the feasible set projected onto (input, output)
is exactly the graph of the network over the bounds' input box (up to solver
tolerances). With S-shaped activations it is a superset (a relaxation): infeasibility
still proves a property, a feasible point must be replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from nnresilience.encode.arctan import encode_sshape
from nnresilience.encode.condition import MarginEncoding, encode_condition, encode_margin
from nnresilience.encode.maxpool import encode_maxpool
from nnresilience.encode.model import MilpModel
from nnresilience.encode.relu import _rows, encode_piecewise_max

__all__ = ["ENCODERS", "MarginEncoding", "NetworkEncoding", "encode_condition",
           "encode_margin", "encode_network", "encode_region", "network_start"]


@dataclass(eq=False)
class NetworkEncoding:
    """Where the network lives in the model.

    ``layer_vars[i]`` are the columns of the vector entering layer ``i`` (``layer_vars[0]``
    = ``inputs``, ``layer_vars[-1]`` = ``outputs``); ``binaries[i]`` the binaries added for
    layer ``i`` (empty for affine layers) and ``binary_owners[i]`` (``(n, 2)`` ints) what
    each decides (see the per-kind encoders; used by :func:`network_start`). ``relaxed`` is
    True when some layer is only over-approximated (S-shaped activations), so a feasible
    point is merely a candidate.
    """

    inputs: np.ndarray
    outputs: np.ndarray
    layer_vars: list[np.ndarray]
    binaries: list[np.ndarray]
    binary_owners: list[np.ndarray] = field(default_factory=list)
    relaxed: bool = False
    stats: dict = field(default_factory=dict)

    @property
    def n_binaries(self) -> int:
        return int(sum(b.size for b in self.binaries))


@dataclass(frozen=True)
class EncodeContext:
    big_m: float | None
    arctan: str
    name: str


LayerEncoder = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


def _enc_affine(model, layer, h, lo, hi, out_lo, out_hi, ctx):
    W = layer.W
    Wc = W.tocoo() if sp.issparse(W) else sp.coo_matrix(W)
    m = layer.out_size
    v = model.add_vars(m, out_lo, np.maximum(out_hi, out_lo), name=ctx.name)
    r = np.arange(m)
    _rows(model, [(Wc.row.astype(np.int64), h[Wc.col], Wc.data), (r, v, -1.0)], m,
          -layer.b, -layer.b)
    return v, np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)


def _enc_relu(model, layer, h, lo, hi, out_lo, out_hi, ctx):
    return encode_piecewise_max(model, h, lo, hi, out_lo, out_hi, 0.0, ctx.big_m, ctx.name)


def _enc_leaky(model, layer, h, lo, hi, out_lo, out_hi, ctx):
    return encode_piecewise_max(model, h, lo, hi, out_lo, out_hi, layer.slope, ctx.big_m,
                                ctx.name)


def _enc_maxpool(model, layer, h, lo, hi, out_lo, out_hi, ctx):
    return encode_maxpool(model, h, lo, hi, out_lo, out_hi, layer.groups, ctx.big_m, ctx.name)


def _enc_sshape(model, layer, h, lo, hi, out_lo, out_hi, ctx):
    return encode_sshape(model, h, lo, hi, out_lo, out_hi, layer.kind, ctx.arctan, ctx.name)


ENCODERS: dict[str, LayerEncoder] = {
    "affine": _enc_affine,
    "relu": _enc_relu,
    "leaky_relu": _enc_leaky,
    "maxpool": _enc_maxpool,
    "arctan": _enc_sshape,
    "tanh": _enc_sshape,
    "sigmoid": _enc_sshape,
}
RELAXED_KINDS = ("arctan", "tanh", "sigmoid")


def encode_network(model: MilpModel, network, bounds, inputs: np.ndarray | None = None, *,
                   big_m: float | None = None, arctan: str = "pwl",
                   priorities: bool = True) -> NetworkEncoding:
    """Append the network's constraints to ``model``.

    ``inputs``: existing columns to use as the network input (two copies of a network share
    them, or a resilience query ties them to ``a + ε``); their bounds are left alone. Else
    new input variables bounded by ``bounds.lo[0]``/``bounds.hi[0]`` are created.
    ``big_m``: the paper's uniform M for every ReLU/LeakyReLU/max-pool (baseline mode);
    ``None`` uses per-side Ms from ``bounds``. ``priorities``: binaries of earlier layers
    get higher branching priority (seed 000 heuristic 2).
    """
    from nnresilience.errors import EngineUnsupportedError

    if arctan not in ("pwl", "miqcp"):
        raise ValueError(f"arctan must be 'pwl' or 'miqcp', got {arctan!r}")
    n_layers = len(network.layers)
    if len(bounds.lo) != n_layers + 1:
        raise ValueError(f"bounds have {len(bounds.lo)} entries, expected {n_layers + 1} "
                         f"(layers + 1) for network {network.name!r}")
    if inputs is None:
        h = model.add_vars(network.n_inputs, bounds.lo[0], bounds.hi[0], name="x")
    else:
        h = np.asarray(inputs, dtype=np.int64).reshape(-1)
        if h.size != network.n_inputs:
            raise ValueError(f"{h.size} input columns given, network has "
                             f"{network.n_inputs} inputs")
    layer_vars = [h]
    binaries: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    relaxed = False
    for i, layer in enumerate(network.layers):
        enc = ENCODERS.get(layer.kind)
        if enc is None:
            raise EngineUnsupportedError(
                f"layer {i} of {network.name!r} has kind {layer.kind!r}; the MILP encoder "
                f"supports {', '.join(sorted(ENCODERS))}")
        lo = np.asarray(bounds.lo[i], float)
        hi = np.asarray(bounds.hi[i], float)
        ctx = EncodeContext(big_m, arctan, f"L{i}_{layer.kind}")
        h, b, own = enc(model, layer, h, lo, hi, np.asarray(bounds.lo[i + 1], float),
                        np.asarray(bounds.hi[i + 1], float), ctx)
        owners.append(own)
        relaxed |= layer.kind in RELAXED_KINDS
        layer_vars.append(h)
        binaries.append(b)
        if priorities and b.size:
            model.set_priority(b, n_layers - i)
    return NetworkEncoding(inputs=layer_vars[0], outputs=layer_vars[-1], layer_vars=layer_vars,
                           binaries=binaries, binary_owners=owners, relaxed=relaxed)


def encode_region(model: MilpModel, inputs_idx: np.ndarray, region) -> np.ndarray:
    """Restrict the input columns to ``region``; returns the ``ε_abs`` columns (L1), the
    ``δ = x - center`` columns (L2, :mod:`nnresilience.encode.l2`) or ``[]``.

    The box is intersected into the variable bounds. For ``norm == 'l1'`` the paper's
    transformation (i) of MIP (6): ``t_i >= x_i - c_i``, ``t_i >= c_i - x_i`` and
    ``sum t_i <= r`` — exact, since any feasible ``x`` has ``sum |x - c| <= sum t <= r`` and
    ``t = |x - c|`` is feasible for every ``x`` of the ball.
    """
    x = np.asarray(inputs_idx, dtype=np.int64).reshape(-1)
    if x.size != region.dim:
        raise ValueError(f"region has {region.dim} inputs, encoding has {x.size}")
    lb, ub = model.bounds_of(x)
    new_lb, new_ub = np.maximum(lb, region.lo), np.minimum(ub, region.hi)
    if np.any(new_lb > new_ub):
        # empty intersection: keep it visible to the solver as an infeasible row
        model.add_rows(np.zeros((1, 0)), 1.0, np.inf)
        new_ub = np.maximum(new_ub, new_lb)
    model.set_bounds(x, lb=new_lb, ub=new_ub)
    if region.norm == "l2" and region.center is not None and region.radius is not None:
        from nnresilience.encode.l2 import encode_l2_ball

        return encode_l2_ball(model, x, region.center, float(region.radius), new_lb, new_ub)
    if region.norm != "l1" or region.center is None or region.radius is None:
        return np.zeros(0, dtype=np.int64)
    c = region.center
    n = x.size
    t = model.add_vars(n, 0.0, np.maximum(np.abs(new_lb - c), np.abs(new_ub - c)), name="eps_abs")
    r = np.arange(n)
    # t - x >= -c ; t + x >= c
    _rows(model, [(r, t, 1.0), (r, x, -1.0)], n, -c, np.inf)
    _rows(model, [(r, t, 1.0), (r, x, 1.0)], n, c, np.inf)
    _rows(model, [(np.zeros(n, dtype=np.int64), t, 1.0)], 1, -np.inf, float(region.radius))
    return t


def network_start(model: MilpModel, enc: NetworkEncoding, network, x: np.ndarray) -> None:
    """Set the MIP start of every network column from the forward pass at input ``x``.

    Layer values come from :meth:`Network.forward_all`; ReLU/LeakyReLU binaries are the
    sign of the pre-activation, max-pool binaries select the first live member attaining
    the maximum, arctan-MIQCP case binaries the case containing ``x`` (the reciprocal
    variables are left to the solver). Columns of the region/condition are not touched, so
    the start may be partial; solvers complete or repair it (seed 000, heuristic 3).
    """
    vals = network.forward_all(np.asarray(x, float).reshape(1, -1))
    for idx, v in zip(enc.layer_vars, vals, strict=True):
        model.set_start(idx, v[0])
    for i, layer in enumerate(network.layers):
        b, own = enc.binaries[i], enc.binary_owners[i] if enc.binary_owners else None
        if own is None or b.size == 0:
            continue
        pre = vals[i][0]
        if layer.kind in ("relu", "leaky_relu"):
            model.set_start(b, (pre[own[:, 0]] >= 0).astype(float))
        elif layer.kind == "maxpool":
            o, j = own[:, 0], own[:, 1]
            best = np.full(layer.out_size, -np.inf)
            np.maximum.at(best, o, pre[j])
            win = np.flatnonzero(pre[j] >= best[o])
            _, first = np.unique(o[win], return_index=True)
            d = np.zeros(b.size)
            d[win[first]] = 1.0
            model.set_start(b, d)
        elif layer.kind == "arctan":
            p = pre[own[:, 0]]
            case = np.where(p <= -1, 0, np.where(p <= 0, 1, np.where(p < 1, 2, 3)))
            model.set_start(b, (case == own[:, 1]).astype(float))
