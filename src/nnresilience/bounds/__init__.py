"""Sound per-neuron bounds: :func:`compute_bounds` and the methods behind it.

Methods, from cheapest to tightest; each starts from the previous one and intersects with
it, so ``interval ⊇ symbolic ⊇ lp ⊇ milp:W`` and ``symbolic ⊇ alpha`` hold box by box:

``interval``  box arithmetic layer by layer (:mod:`.interval`);
``symbolic``  back-substitution of linear relaxations to the input (:mod:`.symbolic`);
``alpha``     the same with optimised ReLU lower slopes (α-CROWN, :mod:`.crown`);
``lp``        one LP per undecided neuron over the relaxation of all earlier layers (:mod:`.lp`);
``milp:W``    one MIP per undecided neuron over the last ``W`` non-linear layers, exact there
              (seed 000, heuristic 1; :mod:`.tighten`).

Regions: an :class:`~nnresilience.spec.region.InputRegion` or a ``(lo, hi)`` pair. An L1
region is bounded through its bounding box (sound, since the ball lies inside the box;
the exact L1 constraint is stated only by the MILP encoder).

Every box contains the exact and the float64 forward value of every input of the region,
at any magnitude: the one rule of :mod:`nnresilience.bounds.rounding` (docs/bounds.md,
"Floating-point soundness").
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from nnresilience.bounds.interval import interval_bounds
from nnresilience.bounds.relax import maxpool_undecided
from nnresilience.bounds.types import NetworkBounds
from nnresilience.errors import ShapeMismatchError

METHODS = ("interval", "symbolic", "alpha", "lp", "milp:W")

__all__ = ["METHODS", "NetworkBounds", "compute_bounds", "interval_bounds", "layer_stats",
           "parse_method", "region_box", "unstable_count"]


def parse_method(method: str) -> tuple[str, int]:
    """``'milp:2'`` → ``('milp', 2)``; other names → ``(name, 0)``; bad names raise."""
    m = method.strip().lower()
    if m in ("interval", "symbolic", "alpha", "lp"):
        return m, 0
    if m.startswith("milp"):
        _, _, w = m.partition(":")
        try:
            width = int(w) if w else 1
        except ValueError:
            width = -1
        if width >= 1:
            return "milp", width
    raise ValueError(f"unknown bounds method {method!r}: use interval, symbolic, alpha, lp or "
                     "milp:W (W >= 1)")


def region_box(network, region) -> tuple[np.ndarray, np.ndarray]:
    """The box of an InputRegion (bounding box for L1) or a ``(lo, hi)`` pair, checked."""
    if hasattr(region, "lo") and hasattr(region, "hi"):
        lo, hi = region.lo, region.hi
    else:
        lo, hi = region
    lo = np.asarray(lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1)
    n = network.n_inputs
    if lo.size != n or hi.size != n:
        raise ShapeMismatchError(f"input box has {lo.size}/{hi.size} values, the network "
                                 f"expects {n} inputs")
    if np.any(lo > hi):
        raise ShapeMismatchError("empty input box (some lower bound exceeds its upper bound)")
    return lo, hi


def unstable_count(layer, lo: np.ndarray, hi: np.ndarray) -> int:
    """Undecided units of a non-linear layer given the box entering it (0 for affine).

    Activations: pre-activation interval strictly contains 0 (for the s-shaped kinds this
    is "crosses the inflection point"). Max-pool: groups whose maximising member is open.
    """
    if layer.kind == "affine":
        return 0
    if layer.kind == "maxpool":
        return int(maxpool_undecided(layer.groups, lo, hi).sum())
    return int(np.count_nonzero((lo < 0.0) & (hi > 0.0)))


def layer_stats(network, bounds_lo: list, bounds_hi: list, methods: list[str] | None = None,
                seconds: list[float] | None = None) -> dict[str, Any]:
    """Per-layer rows (index, kind, width, unstable, min_lo, max_hi, method, seconds).

    Row ``i`` describes the vector entering layer ``i``: ``width`` is its size (a max-pool
    row counts undecided *groups* in ``unstable``); the last row is the network output.
    """
    rows = []
    for i, layer in enumerate(network.layers):
        lo, hi = bounds_lo[i], bounds_hi[i]
        rows.append({
            "layer": i, "kind": layer.kind, "width": int(lo.size),
            "unstable": unstable_count(layer, lo, hi),
            "min_lo": float(lo.min()) if lo.size else 0.0,
            "max_hi": float(hi.max()) if hi.size else 0.0,
            "method": methods[i] if methods else "",
            "seconds": float(seconds[i]) if seconds else 0.0,
        })
    lo, hi = bounds_lo[-1], bounds_hi[-1]
    rows.append({"layer": len(network.layers), "kind": "output", "width": int(lo.size),
                 "unstable": 0, "min_lo": float(lo.min()), "max_hi": float(hi.max()),
                 "method": methods[-1] if methods else "",
                 "seconds": float(seconds[-1]) if seconds else 0.0})
    return {"layers": rows, "unstable": sum(r["unstable"] for r in rows)}


def _finish(network, los, his, method, t0, methods, seconds, extra=None,
            deadline: float | None = None, cut_short: bool = False) -> NetworkBounds:
    """Package the boxes; ``timed_out`` when the deadline passed or cut a stage short."""
    stats = layer_stats(network, los, his, methods, seconds)
    now = time.perf_counter()
    total = now - t0
    stats.update({"method": method, "seconds": total,
                  "timed_out": bool(cut_short or (deadline is not None and now > deadline))})
    if extra:
        stats.update(extra)
    return NetworkBounds(list(los), list(his), method=method, seconds=total, stats=stats)


def compute_bounds(network, region, method: str = "symbolic", executor=None,
                   timeout: float | None = None, prior: NetworkBounds | None = None,
                   neuron_time_limit: float | None = None) -> NetworkBounds:
    """Sound boxes around every vector entering each layer, for inputs in ``region``.

    ``method`` is ``interval``, ``symbolic``, ``lp`` or ``milp:W``. ``executor`` (see
    :mod:`nnresilience.parallel`) runs LP/MIP work units; default inline. ``timeout``
    (seconds) bounds the whole call: when it is reached the remaining layers keep the
    cheaper bounds already computed (still sound). ``prior`` bounds (e.g. from an earlier
    call) are intersected in; for ``milp:W`` a prior from ``lp`` (or ``milp``) replaces the
    symbolic and LP stages. ``neuron_time_limit`` caps each MIP of ``milp:W``.
    """
    kind, width = parse_method(method)
    lo0, hi0 = region_box(network, region)
    t0 = time.perf_counter()
    deadline = None if timeout is None else t0 + float(timeout)
    pri = None if prior is None else list(zip(prior.lo, prior.hi, strict=True))

    ib = interval_bounds(network, lo0, hi0)
    los, his = ib.lo, ib.hi
    if pri is not None:
        los = [np.maximum(a, p[0]) for a, p in zip(los, pri, strict=True)]
        his = [np.minimum(a, p[1]) for a, p in zip(his, pri, strict=True)]
    n = len(network.layers)
    if kind == "interval":
        return _finish(network, los, his, "interval", t0, ["interval"] * (n + 1),
                       [ib.seconds] + [0.0] * n)

    from nnresilience.bounds.symbolic import propagate

    if kind == "milp" and prior is not None and prior.method.startswith(("lp", "milp")):
        # The caller already paid for the LP stage: refine its boxes directly.
        return _milp_stage(network, lo0, hi0, list(zip(los, his, strict=True)), width,
                           executor, deadline, neuron_time_limit, t0, {})

    # Each stage takes the previous one as prior, so the boxes only shrink.
    sym = propagate(network, lo0, hi0, prior=list(zip(los, his, strict=True)),
                    deadline=deadline)
    if kind == "symbolic":
        return _finish(network, sym.los, sym.his, "symbolic", t0, sym.methods, sym.seconds,
                       deadline=deadline, cut_short=sym.timed_out)
    if kind == "alpha":
        from nnresilience.bounds.crown import alpha_boxes

        ab = alpha_boxes(network, lo0, hi0, sym.los, sym.his, deadline=deadline,
                         reference_seconds=sum(sym.seconds))
        return _finish(network, ab.los, ab.his, "alpha", t0, ab.methods, ab.seconds, ab.extra,
                       deadline=deadline, cut_short=sym.timed_out)

    from nnresilience.bounds.lp import lp_refiner

    refine = lp_refiner(network, executor=executor, deadline=deadline)
    lp = propagate(network, lo0, hi0, prior=list(zip(sym.los, sym.his, strict=True)),
                   refine=refine, deadline=deadline)
    cut = sym.timed_out or lp.timed_out or refine.cut_short
    if kind == "lp":
        return _finish(network, lp.los, lp.his, "lp", t0, lp.methods, lp.seconds,
                       {"lp_solves": refine.n_solves, "lp_chunks": refine.n_chunks},
                       deadline=deadline, cut_short=cut)

    return _milp_stage(network, lo0, hi0, list(zip(lp.los, lp.his, strict=True)), width,
                       executor, deadline, neuron_time_limit, t0,
                       {"lp_solves": refine.n_solves}, cut)


def _milp_stage(network, lo0, hi0, base, width, executor, deadline, neuron_time_limit, t0,
                extra, cut_short: bool = False) -> NetworkBounds:
    from nnresilience.bounds.symbolic import propagate
    from nnresilience.bounds.tighten import milp_refiner

    mrefine = milp_refiner(network, width, executor=executor, deadline=deadline,
                           time_limit=neuron_time_limit)
    out = propagate(network, lo0, hi0, prior=base, refine=mrefine, deadline=deadline)
    extra = dict(extra, mip_solves=mrefine.n_solves, mip_early_stops=mrefine.n_limit)
    return _finish(network, out.los, out.his, f"milp:{width}", t0, out.methods, out.seconds,
                   extra, deadline=deadline,
                   cut_short=cut_short or out.timed_out or mrefine.cut_short)
