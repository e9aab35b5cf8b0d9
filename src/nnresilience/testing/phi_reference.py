"""Reference values of Φ_m on 1-input nets, shared by the resilience tests.

For one input, the premise set ``{x : y_m - y_j >= ln α}`` and the flip set ``{x : m
leaves the top-k}`` are unions of intervals; Φ_m is the smallest gap between an interval
of the first and one of the second. Any continuous net qualifies (ReLU, arctan, ...),
since the intervals are found by sampling and bisecting the sign changes of the two
margins, not by enumerating linear pieces (:mod:`.phi_bruteforce` does that for
piecewise-linear nets of any small input dimension).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnresilience.network.model import Network
from nnresilience.testing.bruteforce import random_network


def premise_margins(net: Network, X: np.ndarray, m: int) -> np.ndarray:
    """``y_m - max_{j != m} y_j`` per row of ``X``."""
    Y = net.forward(X)
    return Y[:, m] - np.delete(Y, m, axis=1).max(axis=1)


def flip_slacks(net: Network, X: np.ndarray, m: int, k: int = 1) -> np.ndarray:
    """The k-th largest ``y_j - y_m`` (``j != m``) per row: ``>= 0`` iff m is out of the
    top-k."""
    Y = net.forward(X)
    D = np.delete(Y, m, axis=1) - Y[:, [m]]
    return -np.sort(-D, axis=1)[:, k - 1]


def intervals_1d(fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                 n: int = 4001) -> list[tuple[float, float]]:
    """Intervals of ``[lo, hi]`` where the continuous ``fn >= 0`` (``fn`` takes an
    ``(N, 1)`` array), from ``n`` samples with every crossing bisected to ~1e-12."""
    xs = np.linspace(lo, hi, n)
    inside = fn(xs[:, None]) >= 0

    def cross(x0: float, x1: float) -> float:
        f0 = fn(np.array([[x0]]))[0] >= 0
        for _ in range(60):
            xm = 0.5 * (x0 + x1)
            if (fn(np.array([[xm]]))[0] >= 0) == f0:
                x0 = xm
            else:
                x1 = xm
        return 0.5 * (x0 + x1)

    out, i = [], 0
    while i < n:
        if not inside[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and inside[j + 1]:
            j += 1
        out.append((xs[i] if i == 0 else cross(xs[i], xs[i - 1]),
                    xs[j] if j == n - 1 else cross(xs[j], xs[j + 1])))
        i = j + 1
    return out


def interval_distance(P: list[tuple[float, float]], F: list[tuple[float, float]]) -> float:
    """Smallest gap between an interval of ``P`` and one of ``F`` (inf if either is
    empty)."""
    return min((max(0.0, b0 - a1, a0 - b1) for a0, a1 in P for b0, b1 in F),
               default=float("inf"))


def tiny_network(seed: int, sizes: list[int], lo: float, hi: float,
                 kind: str = "relu") -> Network:
    """The first random net from ``seed`` on where at least two classes win somewhere in
    ``[lo, hi]^d`` (else Φ is trivially vacuous); deterministic."""
    for s in range(seed, seed + 1000):
        net = random_network(np.random.default_rng(s), sizes, kind=kind, scale=2.0)
        xs = np.linspace(lo, hi, 41)
        G = xs[:, None] if sizes[0] == 1 else \
            np.stack(np.meshgrid(*[xs] * sizes[0]), -1).reshape(-1, sizes[0])
        if np.unique(net.predict(G)).size >= 2:
            return net
    raise AssertionError("no network where two classes win was found")
