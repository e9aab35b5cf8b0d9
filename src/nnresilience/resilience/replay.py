"""Witness replay and repair for resilience answers.

A MIP solver returns points that satisfy its rows only up to its feasibility tolerance
(~1e-6) and an optimum sits exactly on the decision boundary, so the raw witness may fail
the exact float64 check by a hair. The rules here decide what a witness must satisfy
(through :meth:`Network.forward`, float64) and nudge a near-miss across the boundary:

* premise at ``a``: ``y_m - y_j >= ln(alpha)`` for every ``j != m``;
* flip at ``b``: at least ``k`` classes ``j != m`` with ``y_j >= y_m``;

both exactly, in float64, with no slack: a witness accepted "within 1e-6" is how issue 11
got ``Φ = 0.033, optimal`` for a true 0.65 (the margin peaked at ``ln α - 5e-7`` far from
the truly confident inputs). The reported upper bound is the norm of the *replayed*
``b - a``, never the solver's objective.
"""

from __future__ import annotations

import numpy as np

# Relative growths of ε tried by the repair, then gradient nudges of the same sizes.
_SCALES = (0.0, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def norm_of(eps: np.ndarray, norm: str) -> float:
    eps = np.asarray(eps, float)
    if norm == "l1":
        return float(np.abs(eps).sum())
    if norm == "linf":
        return float(np.abs(eps).max(initial=0.0))
    if norm == "l2":
        return float(np.linalg.norm(eps))
    raise ValueError(f"unknown norm {norm!r}")


def premise_margin(y: np.ndarray, m: int) -> float:
    """``min_{j != m} (y_m - y_j)``: the log of the smallest ratio ``p_m / p_j``."""
    others = np.delete(np.asarray(y, float), m)
    return float(y[m] - others.max())


def flip_count(y: np.ndarray, m: int) -> int:
    """Number of classes ``j != m`` with ``y_j >= y_m``."""
    return int(np.sum(np.delete(np.asarray(y, float), m) >= y[m]))


def flip_slack(y: np.ndarray, m: int, k: int) -> float:
    """``k``-th largest ``y_j - y_m`` over ``j != m``; the flip holds iff this is >= 0."""
    d = np.sort(np.delete(np.asarray(y, float), m) - y[m])[::-1]
    return float(d[k - 1])


def premise_ok(network, a: np.ndarray, m: int, log_alpha: float) -> bool:
    """``y_m(a) - y_j(a) >= ln(alpha)`` for every ``j != m``, exactly in float64."""
    return premise_margin(network.forward(a), m) >= log_alpha


def flip_ok(network, b: np.ndarray, m: int, k: int) -> bool:
    return flip_count(network.forward(b), m) >= k


def _num_grad(fn, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Central-difference gradient (one batched forward pass of 2d points)."""
    d = x.size
    h = 1e-6 * np.maximum(1.0, hi - lo)
    P = np.repeat(x[None, :], 2 * d, axis=0)
    P[np.arange(d), np.arange(d)] += h
    P[d + np.arange(d), np.arange(d)] -= h
    v = fn(P)
    return (v[:d] - v[d:]) / (2 * h)


def _first_passing(make, ok) -> np.ndarray | None:
    """Smallest scale of :data:`_SCALES` whose candidate passes, refined by bisection
    between it and the last failing scale (so the repair costs as little norm as possible;
    a pass/fail pattern that is not monotone only makes the result a little larger)."""
    prev = None
    for s in _SCALES:
        cand = make(s)
        if ok(cand):
            if prev is None:
                return cand
            lo_s, hi_s, best = prev, s, cand
            for _ in range(40):
                mid = 0.5 * (lo_s + hi_s)
                c = make(mid)
                if ok(c):
                    hi_s, best = mid, c
                else:
                    lo_s = mid
            return best
        prev = s
    return None


def _gradient_walk(fn, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   ok) -> np.ndarray | None:
    """First point ``x + s·g/|g|`` (growing ``s`` of :data:`_SCALES`, scaled by the box)
    along the numerical gradient ``g`` of ``fn`` that passes ``ok``, or None."""
    g = _num_grad(fn, x, lo, hi)
    gn = float(np.linalg.norm(g))
    if gn == 0.0 or not np.isfinite(gn):
        return None
    scale = float(np.max(hi - lo, initial=1.0))
    for s in _SCALES[1:]:
        cand = np.clip(x + s * scale * g / gn, lo, hi)
        if ok(cand):
            return cand
    return None


def repair_flip(network, a: np.ndarray, b: np.ndarray, m: int, k: int, lo: np.ndarray,
                hi: np.ndarray) -> np.ndarray | None:
    """A point near ``b`` (in ``[lo, hi]``) that passes the exact flip check, or None.

    First grows ε = b - a a little (the optimum lies on the boundary, so moving further
    along ε crosses it), then steps along the gradient of the k-th flip slack.
    """
    eps = b - a
    cand = _first_passing(lambda s: np.clip(a + (1.0 + s) * eps, lo, hi),
                          lambda c: flip_ok(network, c, m, k))
    if cand is not None:
        return cand

    def slack(P: np.ndarray) -> np.ndarray:
        Y = network.forward(P)
        D = np.delete(Y, m, axis=1) - Y[:, [m]]
        return -np.sort(-D, axis=1)[:, k - 1]

    return _gradient_walk(slack, b, lo, hi, lambda c: flip_ok(network, c, m, k))


def repair_premise(network, a: np.ndarray, b: np.ndarray, m: int, log_alpha: float,
                   lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """A point near ``a`` (in ``[lo, hi]``) meeting the premise, or None.

    Moves a away from b (``a - s ε``), then along the gradient of the premise margin.
    """
    eps = b - a
    cand = _first_passing(lambda s: np.clip(a - s * eps, lo, hi),
                          lambda c: premise_ok(network, c, m, log_alpha))
    if cand is not None:
        return cand

    def margin(P: np.ndarray) -> np.ndarray:
        Y = network.forward(P)
        return Y[:, m] - np.delete(Y, m, axis=1).max(axis=1)

    return _gradient_walk(margin, a, lo, hi,
                          lambda c: premise_ok(network, c, m, log_alpha))


def replay_pair(network, a: np.ndarray, b: np.ndarray, m: int, log_alpha: float | None,
                k: int, lo: np.ndarray, hi: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Check (and if needed repair) a witness pair. Returns ``(a, b, repaired)`` or None.

    ``log_alpha=None`` means ``a`` is a fixed data point (per-sample query): only b is
    checked and repaired. Both points are clipped into the domain first (the solver may
    return values a hair outside its variable bounds).
    """
    a = np.clip(np.asarray(a, float), lo, hi)
    b = np.clip(np.asarray(b, float), lo, hi)
    repaired = False
    if log_alpha is not None and not premise_ok(network, a, m, log_alpha):
        a2 = repair_premise(network, a, b, m, log_alpha, lo, hi)
        if a2 is None:
            return None
        a, repaired = a2, True
    if not flip_ok(network, b, m, k):
        b2 = repair_flip(network, a, b, m, k, lo, hi)
        if b2 is None:
            return None
        b, repaired = b2, True
    return a, b, repaired
