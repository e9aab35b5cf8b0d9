"""Exact decision of tiny piecewise-linear networks by enumerating activation patterns.

Why this is exact: once every ReLU/LeakyReLU is fixed active or inactive and every
max-pool group has a fixed winner, the network is an affine map ``y = M x + c`` on the
polyhedron ``P`` of inputs that produce that pattern (``G x <= h``). The union of the
``P`` over all patterns covers the input region (interval bounds, which are sound, only
remove patterns that no input can produce). So

    max_{x in region} max_margin(f(x)) = max over patterns, terms of an LP

where for a term ``A y <= b`` the LP maximises the slack ``t`` subject to
``A (M x + c) + t <= b``, ``G x <= h`` and ``x`` in the region (box, plus the L1 ball
through auxiliary variables ``s >= |x - center|``, ``sum s <= radius``). The property is
violated iff that maximum is ``>= 0``. The network is continuous, so a point on the
boundary between two patterns gets the same value from either side: closed
polyhedra are fine.

Patterns are enumerated depth first, layer by layer, with one feasibility LP per partial
pattern so infeasible branches are cut early. The cost is exponential in the number of
unstable units; above :data:`MAX_UNSTABLE` we refuse (:class:`BruteForceTooLarge`).

Tolerance: HiGHS solves in floating point, so an LP optimum ``t`` within ``1e-9`` of zero
is not decisive on its own; every candidate is replayed through
:meth:`Network.forward` and a case is reported violated only when the replayed
``max_margin`` is ``>= -REPLAY_TOL``. Tests comparing an engine with this reference
should skip instances whose exact margin lies within a few ``REPLAY_TOL`` of zero.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from nnresilience.network.layers import Affine, LeakyReLU, MaxPool, ReLU
from nnresilience.network.model import Network
from nnresilience.results import Status

MAX_UNSTABLE = 14
REPLAY_TOL = 1e-7
_T_CAP = 1.0e3          # the slack variable is capped so every LP is bounded


class BruteForceTooLarge(ValueError):
    """The network has more unstable units than brute force can enumerate."""


# --------------------------------------------------------------------------- networks
def random_network(rng: np.random.Generator, sizes: list[int], kind: str = "relu",
                   slope: float | None = None, scale: float = 1.0) -> Network:
    """A small random network ``sizes[0] -> ... -> sizes[-1]`` for property-based tests.

    ``kind``: ``relu``, ``leaky`` (random slope in [0.01, 0.5] unless ``slope`` is given),
    ``maxpool`` (ReLU followed by a max over consecutive pairs, so the next affine layer
    sees ``ceil(h / 2)`` values) or ``mixed`` (each hidden layer draws one of the above).
    Weights are ``N(0, scale^2 / fan_in)`` and biases ``N(0, (scale / 2)^2)`` so that, on
    inputs in ``[-1, 1]``, a good share of the neurons is unstable.
    """
    if len(sizes) < 2:
        raise ValueError("sizes needs at least an input and an output size")
    if kind not in ("relu", "leaky", "maxpool", "mixed"):
        raise ValueError(f"unknown kind {kind!r}")
    layers = []
    width = int(sizes[0])
    for depth, out in enumerate(sizes[1:]):
        out = int(out)
        W = rng.normal(0.0, scale / np.sqrt(max(width, 1)), size=(out, width))
        b = rng.normal(0.0, scale / 2.0, size=out)
        layers.append(Affine(W, b))
        width = out
        if depth == len(sizes) - 2:
            break
        this = kind if kind != "mixed" else str(rng.choice(["relu", "leaky", "maxpool"]))
        if this == "leaky":
            k = float(rng.uniform(0.01, 0.5)) if slope is None else float(slope)
            layers.append(LeakyReLU(out, slope=k))
        else:
            layers.append(ReLU(out))
        if this == "maxpool" and out >= 2:
            n_groups = (out + 1) // 2
            first = np.arange(n_groups) * 2
            second = np.minimum(first + 1, out - 1)     # an odd tail repeats its index
            layers.append(MaxPool(np.stack([first, second], axis=1), n_in=out))
            width = n_groups
    return Network(layers, name=f"random-{kind}-{'x'.join(map(str, sizes))}")


# ----------------------------------------------------------------------------- LPs
@dataclass
class _Region:
    """The input region as LP data over variables ``[x (n), s (n if L1)]``."""

    n: int
    lo: np.ndarray
    hi: np.ndarray
    l1: bool
    A_ub: np.ndarray        # rows over [x, s]
    b_ub: np.ndarray

    @staticmethod
    def of(region) -> _Region:
        n = region.dim
        l1 = region.norm == "l1" and region.center is not None and region.radius is not None
        if not l1:
            return _Region(n, region.lo, region.hi, False, np.zeros((0, n)), np.zeros(0))
        c = region.center
        eye = np.eye(n)
        rows = np.vstack([
            np.hstack([eye, -eye]),                     # x - s <= c
            np.hstack([-eye, -eye]),                    # -x - s <= -c
            np.hstack([np.zeros((1, n)), np.ones((1, n))]),   # sum s <= r
        ])
        rhs = np.concatenate([c, -c, [region.radius]])
        return _Region(n, region.lo, region.hi, True, rows, rhs)

    @property
    def n_vars(self) -> int:
        return 2 * self.n if self.l1 else self.n

    def var_bounds(self) -> list[tuple[float, float]]:
        bx = list(zip(self.lo.tolist(), self.hi.tolist(), strict=True))
        if self.l1:
            bx += [(0.0, None)] * self.n
        return bx


def _lp(obj: np.ndarray, A: np.ndarray, b: np.ndarray, bounds) -> tuple[str, np.ndarray | None]:
    res = linprog(obj, A_ub=A if A.size else None, b_ub=b if A.size else None,
                  bounds=bounds, method="highs")
    if res.status == 0:
        return "optimal", np.asarray(res.x)
    if res.status == 2:
        return "infeasible", None
    raise RuntimeError(f"brute force LP ended with status {res.status}: {res.message}")


def _feasible(reg: _Region, G: np.ndarray, h: np.ndarray) -> bool:
    """Is ``{x in region : G x <= h}`` non-empty?"""
    pad = np.zeros((G.shape[0], reg.n_vars - reg.n))
    A = np.vstack([np.hstack([G, pad]), reg.A_ub])
    b = np.concatenate([h, reg.b_ub])
    status, _ = _lp(np.zeros(reg.n_vars), A, b, reg.var_bounds())
    return status == "optimal"


def _max_slack(reg: _Region, G: np.ndarray, h: np.ndarray, AM: np.ndarray, rhs: np.ndarray
               ) -> tuple[float, np.ndarray] | None:
    """``max t`` s.t. ``AM x + t <= rhs``, ``G x <= h``, ``x`` in region (None if empty)."""
    nv = reg.n_vars
    extra = nv - reg.n
    rows = [np.hstack([G, np.zeros((G.shape[0], extra)), np.zeros((G.shape[0], 1))]),
            np.hstack([AM, np.zeros((AM.shape[0], extra)), np.ones((AM.shape[0], 1))])]
    if reg.A_ub.size:
        rows.append(np.hstack([reg.A_ub, np.zeros((reg.A_ub.shape[0], 1))]))
    A = np.vstack(rows)
    b = np.concatenate([h, rhs, reg.b_ub])
    obj = np.zeros(nv + 1)
    obj[-1] = -1.0
    status, z = _lp(obj, A, b, reg.var_bounds() + [(-_T_CAP, _T_CAP)])
    if status != "optimal":
        return None
    return float(z[-1]), z[: reg.n]


# ------------------------------------------------------------------- enumeration
def _count_unstable(network: Network, lo: list[np.ndarray], hi: list[np.ndarray]) -> int:
    total = 0
    for i, layer in enumerate(network.layers):
        if isinstance(layer, (ReLU, LeakyReLU)):
            total += int(np.sum((lo[i] < 0.0) & (hi[i] > 0.0)))
        elif isinstance(layer, MaxPool):
            total += sum(len(c) > 1 for c in _pool_candidates(layer, lo[i], hi[i]))
    return total


def _pool_candidates(layer: MaxPool, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """Members of each group that can be the maximum (``hi_j >= max lo`` of the group)."""
    out = []
    for g in layer.groups:
        g = np.unique(g)
        floor = lo[g].max()
        out.append(g[hi[g] >= floor])
    return out


def _patterns(network: Network, reg: _Region, lo, hi):
    """Yield ``(M, c, G, h)`` for every feasible full pattern (depth first)."""
    n = reg.n

    def rec(i: int, M: np.ndarray, c: np.ndarray, G: np.ndarray, h: np.ndarray):
        if i == len(network.layers):
            yield M, c, G, h
            return
        layer = network.layers[i]
        if isinstance(layer, Affine):
            W = layer.dense_W()
            yield from rec(i + 1, W @ M, W @ c + layer.b, G, h)
            return
        if isinstance(layer, (ReLU, LeakyReLU)):
            k = layer.slope if isinstance(layer, LeakyReLU) else 0.0
            active = lo[i] >= 0.0
            unstable = np.flatnonzero((lo[i] < 0.0) & (hi[i] > 0.0))
            for signs in itertools.product((True, False), repeat=len(unstable)):
                on = active.copy()
                on[unstable] = np.asarray(signs, dtype=bool)
                # active: -(M x + c) <= 0 ; inactive: M x + c <= 0
                sgn = np.where(np.asarray(signs, dtype=bool), -1.0, 1.0)[:, None]
                G2 = np.vstack([G, sgn * M[unstable]])
                h2 = np.concatenate([h, -(sgn[:, 0] * c[unstable])])
                if len(unstable) and not _feasible(reg, G2, h2):
                    continue
                gain = np.where(on, 1.0, k)
                yield from rec(i + 1, gain[:, None] * M, gain * c, G2, h2)
            return
        if isinstance(layer, MaxPool):
            cands = _pool_candidates(layer, lo[i], hi[i])
            for choice in itertools.product(*[range(len(cd)) for cd in cands]):
                winners = np.array([cd[j] for cd, j in zip(cands, choice, strict=True)])
                Gs, hs = [G], [h]
                for cd, w in zip(cands, winners, strict=True):
                    others = cd[cd != w]
                    if others.size:       # x_k - x_w <= 0 for the other candidates
                        Gs.append(M[others] - M[w])
                        hs.append(c[w] - c[others])
                G2, h2 = np.vstack(Gs), np.concatenate(hs)
                if G2.shape[0] > G.shape[0] and not _feasible(reg, G2, h2):
                    continue
                yield from rec(i + 1, M[winners], c[winners], G2, h2)
            return
        raise ValueError(f"brute force handles affine/relu/leaky_relu/maxpool layers, "
                         f"not {layer.kind!r}")

    yield from rec(0, np.eye(n), np.zeros(n), np.zeros((0, n)), np.zeros(0))


def _bounds(network: Network, region):
    """Sound pre-activation boxes (symbolic: fewer unstable units than interval). Only
    their soundness matters for exactness; tightness only saves LPs."""
    from nnresilience.bounds import compute_bounds

    return compute_bounds(network, region, method="symbolic")


def brute_force_max_margin(network: Network, case, stop_at_violation: bool = False
                           ) -> tuple[float, np.ndarray | None]:
    """Exact ``max_{x in region} case.unsafe.max_margin(f(x))`` and a maximiser.

    The value is the replayed (float64 forward) margin of the best LP point, after
    clipping it into the region; ``(-inf, None)`` only if the region is empty (cannot
    happen for a valid region). With ``stop_at_violation`` the search ends at the first
    point whose replay satisfies the unsafe condition exactly.
    """
    region = case.region
    nb = _bounds(network, region)
    if _count_unstable(network, nb.lo, nb.hi) > MAX_UNSTABLE:
        raise BruteForceTooLarge(
            f"more than {MAX_UNSTABLE} unstable units: too large for brute force")
    reg = _Region.of(region)
    best_val, best_x = -np.inf, None
    for M, c, G, h in _patterns(network, reg, nb.lo, nb.hi):
        for term in case.unsafe.terms:
            got = _max_slack(reg, G, h, term.A @ M, term.b - term.A @ c)
            if got is None:
                continue
            x = region.clip(got[1])
            val = float(case.unsafe.max_margin(network.forward(x)))
            if val > best_val:
                best_val, best_x = val, x
            if stop_at_violation and best_val >= 0.0:
                return best_val, best_x
    return best_val, best_x


def brute_force_case(network: Network, case) -> tuple[Status, np.ndarray | None]:
    """``(VIOLATED, x)`` if some input of the region reaches the unsafe set, else ``(HOLDS, None)``.

    ``x`` is the replayed point with the largest margin; it satisfies the condition up to
    :data:`REPLAY_TOL` (exactly, in the usual case of a margin >= 0).
    """
    val, x = brute_force_max_margin(network, case, stop_at_violation=True)
    if x is not None and val >= -REPLAY_TOL:
        return Status.VIOLATED, x
    return Status.HOLDS, None


def brute_force_property(network: Network, prop) -> tuple[Status, np.ndarray | None]:
    """Brute force over every case of a property: violated if any case is."""
    for case in prop.cases:
        status, x = brute_force_case(network, case)
        if status is Status.VIOLATED:
            return status, x
    return Status.HOLDS, None
