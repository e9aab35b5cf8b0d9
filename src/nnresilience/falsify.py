"""Cheap counterexample search: sampling, box corners, then projected gradient ascent.

The falsifier runs before any bound or solver (a found counterexample ends the query) and
is also used to *repair* a solver candidate that misses the unsafe set by rounding error:
starting from the candidate, a few small ascent steps usually reach a point that violates
the property strictly.

Objective: ``case.unsafe.max_margin(f(x))`` (max over disjunction terms of min over rows of
``b - A y``); it is ``>= 0`` exactly on the unsafe set. Its (sub)gradient is computed by a
small numpy backward pass through the IR layers (affine: ``W^T``; ReLU/LeakyReLU: masks;
max-pool: routed to the winning member; tanh/sigmoid/arctan: their derivatives), for a
whole batch of restarts at once. Steps are signed-gradient steps (L-infinity geometry)
scaled by the box width, followed by ``region.clip`` (which also projects into an L1
ball by shrinking towards its centre).

Soundness: a point is returned only when ``region.contains(x)`` and the float64
:meth:`Network.forward` output satisfies the unsafe condition exactly (no tolerance).
Determinism: with the same ``rng`` seed and a budget that is not exhausted, the same
point is returned.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from nnresilience.network.model import Network


def margin_and_grad(network: Network, case, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``max_margin`` of each row of ``X`` (shape ``(B, n)``) and its gradient ``(B, n)``."""
    vals = network.forward_all(X)
    Y = vals[-1]
    B = Y.shape[0]
    best = np.full(B, -np.inf)
    gy = np.zeros_like(Y)
    for term in case.unsafe.terms:
        m = term.margins(Y)                          # (B, rows)
        r = np.argmin(m, axis=1)
        mt = m[np.arange(B), r]
        better = mt > best
        if np.any(better):
            best = np.where(better, mt, best)
            gy[better] = -term.A[r[better]]
    g = gy
    for layer, h in zip(reversed(network.layers), reversed(vals[:-1]), strict=True):
        g = _backward(layer, h, g)
    return best, g


def _backward(layer, h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the layer input ``h`` given the gradient ``g`` w.r.t. its output."""
    kind = layer.kind
    if kind == "affine":
        W = layer.W
        return np.asarray((W.T @ g.T).T) if sp.issparse(W) else g @ W
    if kind == "relu":
        return g * (h > 0.0)
    if kind == "leaky_relu":
        return g * np.where(h >= 0.0, 1.0, layer.slope)
    if kind == "tanh":
        return g * (1.0 - np.tanh(h) ** 2)
    if kind == "sigmoid":
        s = layer.fn(h)
        return g * s * (1.0 - s)
    if kind == "arctan":
        return g / (1.0 + h * h)
    if kind == "maxpool":
        groups = layer.groups
        members = h[:, groups]                       # (B, out, g)
        win = groups[np.arange(groups.shape[0])[None, :], np.argmax(members, axis=2)]
        out = np.zeros_like(h)
        rows = np.broadcast_to(np.arange(h.shape[0])[:, None], win.shape)
        np.add.at(out, (rows, win), g)
        return out
    raise NotImplementedError(f"falsifier: no gradient for layer kind {kind!r}")


def _hits(network: Network, case, X: np.ndarray) -> np.ndarray | None:
    """First row of ``X`` that lies in the region and whose output is unsafe, exactly."""
    Y = network.forward(X)
    sat = np.atleast_1d(case.unsafe.satisfied(Y))
    for i in np.flatnonzero(sat):
        # Re-evaluate one sample alone: batched BLAS could round differently.
        if case.region.contains(X[i]) and bool(case.unsafe.satisfied(network.forward(X[i]))):
            return X[i].copy()
    return None


def _ascent(network: Network, case, X: np.ndarray, steps: int, step0: float,
            deadline: float) -> np.ndarray | None:
    """Signed-gradient ascent from the rows of ``X``; returns the first exact hit."""
    region = case.region
    width = region.hi - region.lo
    if region.norm in ("l1", "l2") and region.radius is not None:
        width = np.minimum(width, region.radius)
    for k in range(steps):
        if time.monotonic() > deadline:
            return None
        _, g = margin_and_grad(network, case, X)
        step = step0 * (1.0 - k / max(steps, 1)) + step0 * 0.01
        X = region.clip(X + step * width * np.sign(g))
        hit = _hits(network, case, X)
        if hit is not None:
            return hit
    return None


def falsify(network: Network, case, rng: np.random.Generator | int | None = None,
            budget_seconds: float = 1.0, n_random: int = 1024, pgd_steps: int = 40,
            n_restarts: int = 16, max_rounds: int = 6,
            deadline: float | None = None) -> np.ndarray | None:
    """Search for an input of ``case.region`` whose output satisfies ``case.unsafe``.

    Round 0 evaluates the box midpoint (and the ball centre), ``n_random`` random box
    corners and ``n_random`` uniform samples. Every round then draws ``n_random`` fresh
    samples and refines the ``n_restarts`` best points seen (by margin) with signed-gradient
    ascent at decreasing step sizes (3%, 1%, 0.3%, 0.1% of the box width, ``pgd_steps``
    each): unsafe pockets of ACAS Xu-like properties are small and interior, so a wide
    sample followed by local refinement beats long ascent from a few points, which gets
    stuck at box corners. Also ascends from ``n_restarts`` random points with a large step
    (3 rounds of 10%). Stops after ``max_rounds`` rounds, ``budget_seconds`` or at
    ``deadline`` (a ``time.monotonic()`` value), whichever is first.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    t_end = time.monotonic() + max(0.0, budget_seconds)
    if deadline is not None:
        t_end = min(t_end, deadline)
    region = case.region
    starts = [((region.lo + region.hi) / 2.0)[None, :]]
    if region.center is not None:
        starts.append(region.center[None, :])
    corners = np.where(rng.integers(0, 2, size=(n_random, region.dim)) == 1,
                       region.hi, region.lo)
    starts.append(region.clip(corners))
    elite = np.vstack(starts)
    for rnd in range(max_rounds):
        X = np.vstack([elite, region.sample(n_random, rng)])
        hit = _hits(network, case, X)
        if hit is not None or time.monotonic() > t_end:
            return hit
        margins = case.unsafe.max_margin(network.forward(X))
        elite = X[np.argsort(-margins, kind="stable")[:n_restarts]]
        if rnd < 3:
            hit = _ascent(network, case, region.sample(n_restarts, rng), pgd_steps, 0.1, t_end)
            if hit is not None:
                return hit
        for step0 in (0.03, 0.01, 0.003, 0.001):
            hit = _ascent(network, case, elite.copy(), pgd_steps, step0, t_end)
            if hit is not None:
                return hit
        if time.monotonic() > t_end:
            break
    return None


def repair(network: Network, case, x: np.ndarray, steps: int = 30,
           deadline: float | None = None) -> np.ndarray | None:
    """Small ascent steps from a candidate that misses the unsafe set by rounding error.

    Solvers return points on the boundary ``A y = b`` (or a hair outside the box); a few
    steps of relative size 1e-6 .. 1e-3 move them strictly inside when that is possible.
    """
    region = case.region
    x0 = region.clip(np.asarray(x, dtype=np.float64).reshape(1, -1))
    hit = _hits(network, case, x0)
    if hit is not None:
        return hit
    t_end = time.monotonic() + 5.0 if deadline is None else deadline
    for step0 in (1e-6, 1e-5, 1e-4, 1e-3):
        hit = _ascent(network, case, x0.copy(), steps, step0, t_end)
        if hit is not None:
            return hit
    return None
