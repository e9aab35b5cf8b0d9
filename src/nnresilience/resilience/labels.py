"""What a resilience answer on an S-shaped network rests on: the activation encoding.

Arctan/tanh/sigmoid are not piecewise linear, so the MIPs encode them approximately and
the answer has to say how (issue 14). Two encodings, chosen by
``ResilienceSettings.arctan`` (the names of ``MilpEngine(arctan=...)``):

* ``pwl`` — a sound linear relaxation (:mod:`nnresilience.encode.arctan`): every true
  activation value satisfies its rows, so ``lower`` is a proven lower bound of Φ;
* ``miqcp`` (arctan only; tanh/sigmoid stay ``pwl``) — seed 000's quadratic approximation
  ``π/4 x + 0.273 x (1 - |x|)`` (and ``± π/2 - A(1/x)`` outside ``[-1, 1]``) with its
  error band ``±0.0039``. The paper's MIQCP without the band solves for an approximated
  network, and Theorem 1 gives ``Φ' <= Φ`` (an under-approximation); with the band the
  true graph satisfies the rows (the band covers the approximation error, max 0.00376
  measured on a 2e6-point grid), so the encoded problem is a relaxation and ``lower`` is
  still ``<= Φ`` — resting on that measured error bound and on SCIP's dual bound of a
  non-convex MIQCP (spatial branch-and-bound), not on linear programming alone.

In both modes ``upper`` is a witness replayed exactly through the float64 network, so
``optimal`` (lower and upper meeting) pins Φ down. :func:`labelled` stamps every answer on
such a network with ``stats['activation_encoding']``, ``stats['lower_bound_basis']`` and a
short note in the message; the CLI copies the encoding into its JSON (``encoding``).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

S_SHAPED = ("arctan", "tanh", "sigmoid")

BASIS = {
    "pwl": "sound linear relaxation of the S-shaped activations: lower is a proven "
           "lower bound of Phi",
    "miqcp": "seed 000 MIQCP (quadratic arctan approximation widened by its 0.0039 error "
             "band, a relaxation; Theorem 1: Phi' <= Phi): lower <= Phi given the measured "
             "band and SCIP's non-convex dual bound",
}
NOTE = {
    "pwl": "{kinds}: pwl relaxation (lower proven)",
    "miqcp": "{kinds}: MIQCP approximation + band (lower <= Phi, Theorem 1)",
}


def encoding_of(network, settings) -> str | None:
    """``"pwl"``/``"miqcp"`` for a network with S-shaped layers, else None (exact MILP).
    ``miqcp`` only when an arctan layer is present (tanh/sigmoid are always ``pwl``)."""
    kinds = {la.kind for la in network.layers}
    if not kinds & set(S_SHAPED):
        return None
    mode = getattr(settings, "arctan", "pwl")
    return "miqcp" if mode == "miqcp" and "arctan" in kinds else "pwl"


def label(result, network, settings):
    """``result`` with the encoding stamped in (unchanged for piecewise-linear nets)."""
    enc = encoding_of(network, settings)
    if enc is None or result is None or not hasattr(result, "stats") \
            or (result.stats or {}).get("activation_encoding") == enc:   # labelled already
        return result
    stats = dict(result.stats or {}, activation_encoding=enc, lower_bound_basis=BASIS[enc])
    msg = result.message or ""
    # the S-shaped kinds the net has (a tanh net is not "arctan"), in a fixed order
    kinds = "/".join(k for k in S_SHAPED if any(la.kind == k for la in network.layers))
    note = NOTE[enc].format(kinds=kinds)
    msg = f"{msg}; {note}" if msg else note
    return replace(result, stats=stats, message=msg)


def labelled(fn):
    """Decorator for the public queries ``fn(network, ..., settings=...)``: the answer (a
    result or a list of results) labelled with :func:`label`."""
    @functools.wraps(fn)
    def wrapper(network, *args: Any, **kwargs: Any):
        from nnresilience.resilience.settings import DEFAULT

        out = fn(network, *args, **kwargs)
        settings = kwargs.get("settings") or DEFAULT
        if isinstance(out, list):
            return [label(r, network, settings) for r in out]
        return label(out, network, settings)

    return wrapper
