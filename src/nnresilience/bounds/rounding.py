"""Floating-point soundness: the one rule every bound method follows.

A bound is only useful if it contains the value that :meth:`Network.forward` computes in
float64, for every input of the region, whatever the magnitude of weights and biases.
Two things separate a real-arithmetic bound from that value, and each is accounted for
from the *magnitudes of the terms involved* (``|W|·|h| + |b|``), never from the result
alone (``x + 1e8 -> ReLU -> -1e8`` has a result near 0.3 and intermediate terms near 1e8):

1. **The forward pass rounds.** For an input ``x``, the float64 value ``h_i^f`` of entry
   ``i`` (the vector entering layer ``i``) differs from the exact real value ``h_i`` of the
   same input by at most ``e_i``, built layer by layer (:class:`ForwardError`):

   * affine ``fl(W h + b)``: a dot product of ``n`` terms plus a bias rounds by at most
     ``gamma(n + 1) * (|W| |h| + |b|)`` (Higham, *Accuracy and Stability of Numerical
     Algorithms*, §3.1; any summation order, with or without FMA), and the error carried
     in ``h`` grows by ``|W|``: ``e_out = |W| e_in + gamma(n + 1) (|W| m_in + |b|)`` with
     ``m_in = max(|lo_in|, |hi_in|)`` from the box of the layer input;
   * ReLU and max-pool are exact (``e_out = e_in``, max over the group); LeakyReLU rounds
     ``k x`` by one unit; arctan / tanh / sigmoid are evaluated by libm within a few units
     in the last place (:data:`ACTIVATION_ULPS`) and carry ``e_in`` with their Lipschitz
     constant (:data:`LIPSCHITZ`).

2. **The bound computation rounds.** A method that sums terms (centre/radius of an
   interval step, a back-substituted linear bound, an LP certificate) is off by at most
   ``gamma(n) * (sum of |terms|)``; it widens its own result by :func:`sum_error` of the
   magnitudes it summed.

The stored box of entry ``i`` is *(real-arithmetic bound, widened by its own computation
error) widened by* ``e_i`` (:func:`enclose`, which also rounds the widening itself
outward with ``nextafter``). Such a box contains ``h_i`` (so relaxations built on it are
valid for the exact network, which is what an encoding or a later layer reasons about)
and ``h_i^f`` (what a replay computes), for any magnitude float64 represents. Overflow to
``inf`` gives an infinite, still sound, bound.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Unit roundoff of float64 (round to nearest).
UNIT = 2.0 ** -53
#: Absolute allowance per operation for gradual underflow (subnormal results).
TINY = 2.0 ** -1000
#: Error of the float64 evaluation of each s-shaped activation (as :mod:`network.layers`
#: computes it), in units in the last place of the result: numpy's arctan / tanh / exp are
#: documented within 4 ulps (SVML or libm); sigmoid adds ``1 + t`` and a division.
ACTIVATION_ULPS = {"arctan": 4.0, "tanh": 4.0, "sigmoid": 8.0}
#: Largest magnitude of each s-shaped activation (its range is within ±this).
ACTIVATION_RANGE = {"arctan": np.pi / 2, "tanh": 1.0, "sigmoid": 1.0}
#: Lipschitz constant of each non-affine kind (how an error in the input carries over).
LIPSCHITZ = {"relu": 1.0, "leaky_relu": 1.0, "maxpool": 1.0, "arctan": 1.0, "tanh": 1.0,
             "sigmoid": 0.25}


def gamma(n: int) -> float:
    """``n u / (1 - n u)``: bound on the relative error of ``n`` chained roundings."""
    nu = float(n) * UNIT
    if nu >= 0.5:
        raise ValueError(f"gamma({n}) is not defined: too many terms for float64")
    return nu / (1.0 - nu)


def maxabs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(|lo|, |hi|)``: the largest magnitude of a value in the box."""
    return np.maximum(np.abs(lo), np.abs(hi))


def down(x: np.ndarray) -> np.ndarray:
    """The next float below ``x``: makes a rounded lower bound safe."""
    return np.nextafter(x, -np.inf)


def up(x: np.ndarray) -> np.ndarray:
    """The next float above ``x``: makes a rounded upper bound safe."""
    return np.nextafter(x, np.inf)


def sum_error(magnitude: np.ndarray, n_terms: int) -> np.ndarray:
    """Bound on the rounding error of summing terms whose magnitudes sum to ``magnitude``.

    ``magnitude`` was itself computed in float64 (``|A| @ m + |c|``), so it is scaled up by
    one more ``gamma`` before use; :data:`TINY` per term covers underflow.
    """
    g = gamma(int(n_terms) + 2)
    return up(np.asarray(magnitude, dtype=np.float64) * (g * (1.0 + 2.0 * g))
              + TINY * (int(n_terms) + 2))


def enclose(lo: np.ndarray, hi: np.ndarray, pad: np.ndarray | float
            ) -> tuple[np.ndarray, np.ndarray]:
    """``[lo - pad, hi + pad]`` with the subtraction and addition rounded outward."""
    pad = np.asarray(pad, dtype=np.float64)
    return down(np.asarray(lo, float) - pad), up(np.asarray(hi, float) + pad)


def row_terms(W) -> int:
    """Largest number of non-zero terms in a row of ``W`` (the dot-product length)."""
    if type(W) is not np.ndarray and sp.issparse(W):
        W = sp.csr_matrix(W)
        return int(np.diff(W.indptr).max(initial=0))
    return int(W.shape[1])


_row_terms = row_terms


def affine_rounding(layer, mag_in: np.ndarray, abs_w=None) -> np.ndarray:
    """Bound on ``|fl(W h + b) - (W h + b)|`` over ``|h| <= mag_in`` (elementwise).

    ``abs_w``: ``|W|`` if the caller already has it."""
    abs_w = layer.abs_W() if abs_w is None else abs_w
    terms = np.asarray(abs_w @ mag_in).reshape(-1) + np.abs(layer.b)
    return sum_error(terms, _row_terms(layer.W) + 1)


def activation_rounding(layer, mag_in: np.ndarray) -> np.ndarray:
    """Bound on the rounding of a non-affine layer's float64 evaluation (0 when exact)."""
    kind = layer.kind
    if kind in ("relu", "maxpool"):
        return np.zeros(layer.out_size)
    if kind == "leaky_relu":
        # k * x is one multiplication: half a unit of |k x|, and TINY for underflow
        return up(UNIT * abs(layer.slope) * np.asarray(mag_in, float) + TINY)
    if kind in ACTIVATION_ULPS:
        # one ulp of a value v is at most 2 u |v| <= 2 u * range
        return np.full(layer.out_size,
                       ACTIVATION_ULPS[kind] * 2.0 * UNIT * ACTIVATION_RANGE[kind] + TINY)
    raise NotImplementedError(f"no rounding model for layer kind {kind!r}")


def carry_error(layer, e_in: np.ndarray, abs_w=None) -> np.ndarray:
    """How an error ``e_in`` on a layer's input shows in its output (before own rounding)."""
    kind = layer.kind
    if kind == "affine":
        abs_w = layer.abs_W() if abs_w is None else abs_w
        raw = np.asarray(abs_w @ e_in).reshape(-1)
        return up(raw * (1.0 + 2.0 * gamma(_row_terms(layer.W) + 2)))
    if kind == "maxpool":
        return e_in[layer.groups].max(axis=1)
    return up(LIPSCHITZ[kind] * np.asarray(e_in, float))


def merged_error(layer, e_in: np.ndarray, mag_in: np.ndarray) -> np.ndarray:
    """``e_out`` of an affine layer that ``Network.merged()`` built from consecutive affine
    layers (``layer.merged_from``): how far the *source* network's float64 value can be from
    the exact value of the merged layer, given ``|h| <= mag_in`` and an input error ``e_in``.

    Two parts. The source evaluates its layers one by one, each rounding on the magnitude
    of *its* terms (``x + 1e8`` then ``- 1e8`` rounds at ``1e8`` even though the merged
    layer is the identity): the error is carried and added layer by layer along the chain.
    And the merged weights were multiplied in float64: each of the ``k - 1`` products of a
    ``k``-layer chain is within ``gamma(n + 1)`` of the magnitudes ``|W_k| ... |W_1| m +``
    bias terms (first order, with the chain's widest dot product ``n``).
    """
    chain = layer.merged_from
    err = np.asarray(e_in, dtype=np.float64)
    mag = np.asarray(mag_in, dtype=np.float64)
    n_max = 1
    for src in chain:
        absw = src.abs_W()
        n_max = max(n_max, _row_terms(src.W))
        err = up(carry_error(src, err, absw) + affine_rounding(src, up(mag + err), absw))
        mag = up(np.asarray(absw @ mag).reshape(-1) + np.abs(src.b))
    products = max(1, len(chain) - 1)
    return up(err + sum_error(mag, products * (n_max + 1)))


class ForwardError:
    """``e_i``: how far the float64 forward value of entry ``i`` can be from the exact one.

    Built alongside a layer-by-layer bound computation: :meth:`step` needs the (final)
    box of the layer's input, and returns ``e`` for the layer's output. ``e[0] = 0``
    (the input is given exactly).
    """

    def __init__(self, n_inputs: int) -> None:
        self.e: list[np.ndarray] = [np.zeros(int(n_inputs))]

    def step(self, layer, lo_in: np.ndarray, hi_in: np.ndarray) -> np.ndarray:
        e_in = self.e[-1]
        if layer.kind in ("relu", "maxpool"):           # exact: the error only carries
            out = e_in if layer.kind == "relu" else carry_error(layer, e_in)
            self.e.append(out)
            return out
        mag = maxabs(np.asarray(lo_in, float), np.asarray(hi_in, float))
        if layer.kind == "affine" and getattr(layer, "merged_from", ()):
            out = merged_error(layer, e_in, mag)
        elif layer.kind == "affine":
            # |W| is recomputed rather than kept: holding one per layer made glibc return
            # and re-fault ~40 MB per MNIST 256x6 pass (measured)
            absw = layer.abs_W()
            out = carry_error(layer, e_in, absw) + affine_rounding(layer, mag, absw)
        else:
            out = carry_error(layer, e_in) + activation_rounding(layer, mag)
        out = up(out)
        self.e.append(out)
        return out


def forward_errors(layers, los: list[np.ndarray], his: list[np.ndarray]) -> list[np.ndarray]:
    """``e_i`` for every entry, given sound boxes of every entry (``len(layers) + 1``)."""
    fe = ForwardError(los[0].size)
    for i, layer in enumerate(layers):
        fe.step(layer, los[i], his[i])
    return fe.e


def replay_slack(A: np.ndarray, e_out: np.ndarray, lo_out: np.ndarray,
                 hi_out: np.ndarray) -> np.ndarray:
    """How far the float64 replay's ``A y`` (``Conjunction.margins``, any summation order)
    can be from ``A`` times the *exact* network output, per row of ``A``.

    ``|A| e_out`` (the forward error of the output) plus the rounding of the product over
    the output box. A procedure that decides the exact network (a MILP, Reluplex) proves
    "no float64 replay satisfies ``A y <= b``" only by proving the exact ``A y <= b +
    replay_slack`` infeasible.
    """
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    absA = np.abs(A)
    carried = up((absA @ np.asarray(e_out, float)) * (1.0 + 2.0 * gamma(A.shape[1] + 2)))
    return up(carried + sum_error(absA @ maxabs(np.asarray(lo_out, float),
                                                np.asarray(hi_out, float)), A.shape[1] + 1))
