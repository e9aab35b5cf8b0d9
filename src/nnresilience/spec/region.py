"""Input regions: a box, optionally intersected with an L1, L2 or L-infinity ball.

Every region has a bounding box ``lo <= x <= hi`` (what bound methods propagate). An L1
ball adds the constraint ``sum |x - center| <= radius`` that the MILP encoder states
exactly and that :meth:`InputRegion.contains` checks; an L2 ball adds
``||x - center||_2 <= radius`` (a quadratic row in the MILP encoder, so SCIP only; checked
with ``np.linalg.norm`` in float64); an L-infinity ball is exactly its box once
intersected with the domain. Engines that only see the box (bounds, Reluplex) treat an
L1/L2 ball by its box, a superset: sound for ``holds``, and every counterexample is
checked with :meth:`InputRegion.contains`.

A reported counterexample lies in the region *exactly* (``contains(x, tol=0)``): for an
L1 ball the distance ``sum |x_i - c_i|`` is then compared with the radius without
rounding (each difference split into its rounded value and error, summed by
``math.fsum``), because the float64 sum can round a point one ulp outside down to the
radius. :meth:`InputRegion.clip_point` moves a candidate towards the centre until it
passes that test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnresilience.errors import ShapeMismatchError

NORMS = ("linf", "l1", "l2")


@dataclass(frozen=True, eq=False)
class InputRegion:
    """``{x : lo <= x <= hi}`` (and ``||x - center||_p <= radius`` when ``norm`` is
    ``'l1'`` or ``'l2'``)."""

    lo: np.ndarray
    hi: np.ndarray
    center: np.ndarray | None = None
    radius: float | None = None
    norm: str | None = None

    def __post_init__(self) -> None:
        lo = np.asarray(self.lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(self.hi, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise ShapeMismatchError(f"box bounds differ in size: {lo.size} vs {hi.size}")
        if np.any(~np.isfinite(lo)) or np.any(~np.isfinite(hi)):
            raise ShapeMismatchError("input box bounds must be finite")
        if np.any(lo > hi):
            i = int(np.argmax(lo > hi))
            raise ShapeMismatchError(f"empty input box: lower {lo[i]} > upper {hi[i]} at X_{i}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        if self.norm is not None and self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.center is not None:
            object.__setattr__(self, "center",
                               np.asarray(self.center, dtype=np.float64).reshape(-1))

    @property
    def dim(self) -> int:
        return int(self.lo.size)

    @staticmethod
    def box(lo: np.ndarray, hi: np.ndarray) -> InputRegion:
        return InputRegion(lo, hi)

    @staticmethod
    def ball(center: np.ndarray, radius: float, norm: str = "linf",
             domain_lo: np.ndarray | float | None = None,
             domain_hi: np.ndarray | float | None = None) -> InputRegion:
        """The ``norm`` ball of ``radius`` around ``center`` intersected with the domain box."""
        c = np.asarray(center, dtype=np.float64).reshape(-1)
        if radius < 0:
            raise ValueError("radius must be non-negative")
        lo, hi = c - radius, c + radius
        if domain_lo is not None:
            lo = np.maximum(lo, np.broadcast_to(np.asarray(domain_lo, float), c.shape))
        if domain_hi is not None:
            hi = np.minimum(hi, np.broadcast_to(np.asarray(domain_hi, float), c.shape))
        if np.any(lo > hi):
            raise ShapeMismatchError("the centre lies outside the input domain")
        return InputRegion(lo, hi, center=c, radius=float(radius),
                           norm=norm if norm in ("l1", "l2") else "linf")

    @property
    def is_ball(self) -> bool:
        """True for an L1 or L2 ball (a region that is *not* its bounding box)."""
        return self.norm in ("l1", "l2") and self.center is not None \
            and self.radius is not None

    def contains(self, x: np.ndarray, tol: float = 1e-9) -> bool:
        """``x`` in the region up to ``tol``; with ``tol=0`` an L1 distance is compared
        exactly (module docstring), an L2 one in float64."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.dim:
            return False
        ok = bool(np.all(x >= self.lo - tol) and np.all(x <= self.hi + tol))
        if ok and self.is_ball:
            if self.norm == "l1" and tol == 0.0:
                return _l1_within(x, self.center, float(self.radius))
            d = x - self.center
            n = float(np.abs(d).sum()) if self.norm == "l1" else float(np.linalg.norm(d))
            ok = n <= self.radius + tol
        return ok

    def clip_point(self, x: np.ndarray) -> np.ndarray:
        """:meth:`clip` of one point, then moved towards the centre in growing steps
        until ``contains(x, tol=0)``: a counterexample must lie in the region exactly."""
        x = self.clip(np.asarray(x, dtype=np.float64).reshape(-1))
        if not self.is_ball or self.contains(x, 0.0):
            return x
        d = x - self.center
        shrink = 4.0 * np.finfo(float).eps
        for _ in range(60):
            y = np.clip(self.center + d * (1.0 - shrink), self.lo, self.hi)
            if self.contains(y, 0.0):
                return y
            shrink = min(2.0 * shrink, 1.0)
        return self.center.copy()

    def clip(self, x: np.ndarray) -> np.ndarray:
        """Project onto the box (and, for an L1/L2 ball, shrink towards the centre until
        inside). Clipping to the box afterwards cannot leave the ball: the box contains
        the centre, so clipping only moves a coordinate towards it. For L2 the radial
        scale is lowered by a few ulps until the float64 norm is within the radius."""
        x = np.clip(np.asarray(x, dtype=np.float64), self.lo, self.hi)
        if self.is_ball:
            d = x - self.center
            if self.norm == "l1":
                n = np.abs(d).sum(axis=-1, keepdims=True)
            else:
                n = np.linalg.norm(d, axis=-1, keepdims=True)
            scale = np.where(n > self.radius, self.radius / np.maximum(n, 1e-300), 1.0)
            x = np.clip(self.center + d * scale, self.lo, self.hi)
            if self.norm == "l2":
                for _ in range(8):       # rounding of c + d * scale: shrink until inside
                    out = np.linalg.norm(x - self.center, axis=-1, keepdims=True) > self.radius
                    if not np.any(out):
                        break
                    scale = np.where(out, scale * (1.0 - 4 * np.finfo(float).eps), scale)
                    x = np.clip(self.center + d * scale, self.lo, self.hi)
        return x

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points of the region (uniform in the box, projected for L1)."""
        return self.clip(rng.uniform(self.lo, self.hi, size=(n, self.dim)))


def _l1_within(x: np.ndarray, c: np.ndarray, radius: float) -> bool:
    """Exactly ``sum |x_i - c_i| <= radius``: ``x_i - c_i = h_i + e_i`` with ``h_i`` the
    rounded difference and ``e_i`` its exact error (TwoSum), ``|h_i + e_i| = s_i h_i +
    s_i e_i`` with ``s_i`` the sign of ``h_i`` (``|e_i| <= |h_i|/2``), and ``math.fsum``
    rounds the exact total correctly, so its sign is the sign of the exact value."""
    h = x - c                                   # TwoSum of x and -c (Knuth)
    bv = h - x
    e = (x - (h - bv)) + (-c - bv)
    s = np.sign(h)
    parts = np.concatenate([s * h, s * e]).tolist()
    return math.fsum(parts + [-radius]) <= 0.0
