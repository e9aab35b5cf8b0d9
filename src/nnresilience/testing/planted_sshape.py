"""Planted violations on s-shaped networks (sigmoid, tanh, arctan), near ties.

The ReLU generator (:mod:`.planted`) finds the exact maximiser of the unsafe margin by
enumerating activation patterns; an s-shaped network has no such enumeration, so only
*violations* can be planted with certainty: take the best point ``x*`` of a dense search
(grid, then a local refinement), then move the condition's threshold so that the float64
margin at ``x*`` is ``+δ`` (``δ`` = 1e-7 … 1e-4 of the logit scale). ``x*`` replays, so the
instance is violated whatever the true maximum is; every answer other than ``violated``
(with a replayed witness) or ``unknown`` is wrong. The nets are small (2-3 inputs, one or
two hidden layers of 3-6), with weight scales from 1 to 100 (steep: the relaxations are
at their loosest) and logit offsets up to 1e4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnresilience.network.layers import Affine, Arctan, Sigmoid, Tanh
from nnresilience.network.model import Network
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion

ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "arctan": Arctan}


@dataclass(frozen=True, eq=False)
class PlantedSShape:
    seed: int
    network: Network
    case: Case
    point: np.ndarray
    margin: float
    kind: str
    scale: float
    status: Status = Status.VIOLATED

    @property
    def prop(self) -> Property:
        return Property((self.case,), name=f"planted-sshape-{self.seed}")

    def describe(self) -> str:
        sizes = "x".join(map(str, self.network.layer_sizes()))
        return (f"seed={self.seed} {self.kind} scale={self.scale:g} net={sizes} "
                f"margin={self.margin:.3g}")


def _score(net: Network, X: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``a · y`` per row: the condition is ``a · y <= b``, so the margin is ``b - a · y``
    and its maximiser minimises ``a · y``."""
    return net.forward(X) @ a


def planted_sshape(seed: int) -> PlantedSShape:
    rng = np.random.default_rng(seed)
    kind = ("sigmoid", "tanh", "arctan")[seed % 3]
    scale = float(rng.choice([1.0, 10.0, 100.0]))
    n_in = int(rng.integers(2, 4))
    widths = [int(rng.integers(3, 7)) for _ in range(int(rng.integers(1, 3)))]
    n_out = int(rng.integers(2, 4))
    layers: list = []
    prev = n_in
    for w in widths:
        layers.append(Affine(rng.normal(0, scale, (w, prev)), rng.normal(0, scale, w)))
        layers.append(ACTIVATIONS[kind](w))
        prev = w
    offset = float(rng.choice([0.0, 1e2, 1e4]))
    layers.append(Affine(rng.normal(0, 3.0, (n_out, prev)), rng.normal(0, 1, n_out) + offset))
    net = Network(layers)
    c = rng.uniform(-1, 1, n_in)
    r = rng.uniform(0.05, 0.5, n_in)
    lo, hi = c - r, c + r
    a = np.zeros(n_out)
    i, j = rng.choice(n_out, 2, replace=False)
    a[i], a[j] = 1.0, -1.0                      # unsafe: y_i - y_j <= b
    # dense search for the minimiser of a · y, then a shrinking local search
    g = np.linspace(0.0, 1.0, 41 if n_in == 2 else 17)
    grid = np.stack(np.meshgrid(*([g] * n_in), indexing="ij"), -1).reshape(-1, n_in)
    X = lo + grid * (hi - lo)
    s = _score(net, X, a)
    x = X[int(np.argmin(s))]
    step = (hi - lo) / 40.0
    for _ in range(60):
        P = np.clip(x + rng.normal(0, 1, (64, n_in)) * step, lo, hi)
        sp = _score(net, P, a)
        k = int(np.argmin(sp))
        if sp[k] < _score(net, x[None], a)[0]:
            x = P[k]
        else:
            step = step * 0.7
    best = float(_score(net, x[None], a)[0])
    logit = max(1.0, float(np.max(np.abs(net.forward(x)))))
    delta = logit * float(10.0 ** rng.uniform(-7, -4))
    b = best + delta
    cond = OutputCondition((Conjunction(a[None, :], np.array([b])),), n_out)
    margin = float(cond.max_margin(net.forward(x)))
    if margin <= 0.0:                            # b rounded below: push it up a little
        b = float(np.nextafter(best + 2 * delta, np.inf))
        cond = OutputCondition((Conjunction(a[None, :], np.array([b])),), n_out)
        margin = float(cond.max_margin(net.forward(x)))
    assert margin > 0.0 and cond.satisfied(net.forward(x))
    return PlantedSShape(seed, net, Case(InputRegion(lo, hi), cond), x, margin, kind, scale)
