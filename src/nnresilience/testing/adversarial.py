"""Running planted instances through ``verify`` and the bound methods, and judging them.

Shared by the adversarial test suite (``tests/adversarial``) and the benchmark
(``benchmarks/adversarial.py``), so both apply the same rules:

* a **wrong answer** is ``holds`` on a planted violation, or ``violated`` on a planted hold,
  or a ``violated`` whose counterexample does not lie in the box or does not satisfy the
  unsafe condition when replayed through :meth:`Network.forward` (float64, no tolerance);
* ``unknown`` is never wrong (a sound tool may always give up);
* a **bound violation** is a float64 forward value (at the witness, at random points, at
  corners) outside the boxes of a :func:`~nnresilience.bounds.compute_bounds` method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from nnresilience.results import Status

ENGINES = ("milp", "reluplex", "bab")
BOUND_METHODS = ("interval", "symbolic", "alpha", "lp", "milp:1")
FALSIFY_ON = 0.2          # seconds of falsifier per case when "on" (off is 0)


@dataclass(frozen=True)
class Config:
    """One way of asking ``verify``: engine (or ``none``), bound method, falsifier budget,
    and whether the input-splitting search runs (``verify``'s default for these small
    boxes) or the engine / bounds see the whole box once."""

    engine: str
    bounds: str
    falsify: float
    split: bool = False

    @property
    def name(self) -> str:
        f = "on" if self.falsify > 0 else "off"
        return f"{self.engine}/{self.bounds}/falsify-{f}" + ("/split" if self.split else "")

    def applies(self, inst) -> bool:
        """Reluplex handles no max-pool layers (it says so with an error, tested apart)."""
        return not (self.engine == "reluplex" and inst.kind == "maxpool")


def configs(falsify_on: float = FALSIFY_ON, split: bool = False) -> list[Config]:
    """Every engine with symbolic bounds, and every bound method without an engine; each
    with the falsifier on and off (``split``: through the input-splitting search)."""
    out = [Config(e, "symbolic", f, split) for e in ENGINES for f in (0.0, falsify_on)]
    out += [Config("none", m, f, split) for m in BOUND_METHODS for f in (0.0, falsify_on)]
    return out


@dataclass(frozen=True)
class Outcome:
    """What ``verify`` said about one planted instance, and whether that was wrong."""

    status: Status
    wrong: str                # "" when acceptable
    seconds: float
    decided_by: str
    message: str


def judge(inst, result) -> str:
    """``""`` if ``result`` is acceptable for the planted instance, else why it is wrong."""
    if result.status is Status.HOLDS and inst.status is Status.VIOLATED:
        return "holds on a planted violation"
    if result.status is Status.VIOLATED:
        cex = result.counterexample
        if cex is None:
            return "violated without a counterexample"
        x = np.asarray(cex.x_array, dtype=np.float64)
        if x.shape != inst.point.shape or not inst.case.region.contains(x, 0.0):
            return "counterexample outside the box"
        if not bool(inst.case.unsafe.satisfied(inst.network.forward(x))):
            return "counterexample does not replay"
        if inst.status is Status.HOLDS:
            return "violated on a planted hold (replaying witness: planted proof wrong?)"
    return ""


def run(inst, config: Config, timeout: float = 2.0) -> Outcome:
    """``verify`` the instance under ``config`` and judge the answer."""
    from nnresilience.verify import verify

    t0 = time.perf_counter()
    res = verify(inst.network, inst.prop, engine=config.engine, bounds_method=config.bounds,
                 falsify_budget=config.falsify, timeout=timeout, seed=inst.seed,
                 input_split=config.split)
    return Outcome(res.status, judge(inst, res), time.perf_counter() - t0, res.engine,
                   res.message)


def bound_violations(inst, method: str, n_samples: int = 256, timeout: float = 10.0
                     ) -> list[str]:
    """Entries where a float64 forward value escapes ``compute_bounds(method)``'s boxes.

    Points: the planted maximiser, the box corners (up to 16), random points and points
    within 1e-6 of the maximiser.
    """
    from nnresilience.bounds import compute_bounds

    region = inst.case.region
    rng = np.random.default_rng(inst.seed)
    n = region.dim
    corners = np.array([[region.hi[i] if (k >> i) & 1 else region.lo[i] for i in range(n)]
                        for k in range(min(2 ** n, 16))])
    X = np.vstack([inst.point, corners, region.sample(n_samples, rng),
                   region.clip(inst.point + rng.normal(0.0, 1e-6, (32, n)))])
    nb = compute_bounds(inst.network, region, method=method, timeout=timeout)
    vals = inst.network.forward_all(X)
    out = []
    for i, v in enumerate(vals):
        below = v < nb.lo[i]
        above = v > nb.hi[i]
        if np.any(below | above):
            j = int(np.argmax(np.any(below | above, axis=0)))
            k = int(np.argmax(below[:, j] | above[:, j]))
            out.append(f"entry {i} unit {j}: forward {v[k, j]!r} outside "
                       f"[{nb.lo[i][j]!r}, {nb.hi[i][j]!r}]")
    return out
