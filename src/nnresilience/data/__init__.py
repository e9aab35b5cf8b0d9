"""Data shipped inside the package: the Cardiotocography Leaky-ReLU network of seed 004.

``nnres demo`` and the examples run on these files alone, with no download and no
``../shared`` folder. Provenance and the exact training recipe are in ``README.md`` next to
this file (the files are produced by ``examples/ctg/train.py``).

* ``ctg_leaky.onnx`` — 18-36-36-3, Gemm / LeakyRelu(alpha=0.1), float32 weights; input
  ``input`` ``[N, 18]`` (features scaled to [-1, 1]), output ``logits`` ``[N, 3]``
  (0 normal, 1 suspect, 2 pathologic).
* ``ctg_samples.npz`` — the 9 test samples of the robustness tables (3 per class, ids
  A1..A3, B1..B3, C1..C3), already scaled; their labels; feature names; the per-feature
  min/max used for scaling (to map a counterexample back to clinical units).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent
CTG_ONNX = DATA_DIR / "ctg_leaky.onnx"
CTG_SAMPLES = DATA_DIR / "ctg_samples.npz"


@dataclass(frozen=True)
class CtgSamples:
    """The table samples. ``x`` is ``(9, 18)`` float64 in [-1, 1]; ``labels`` ``(9,)``."""

    x: np.ndarray
    labels: np.ndarray
    ids: tuple[str, ...]
    rows: np.ndarray                     # 1-based line numbers in CTG.csv (header = line 1)
    feature_names: tuple[str, ...]
    dropped: tuple[str, ...]
    feature_min: np.ndarray
    feature_max: np.ndarray
    class_names: tuple[str, ...]
    slope: float

    @property
    def domain(self) -> tuple[np.ndarray, np.ndarray]:
        """The verification domain [-1, 1]^18: the image of the data set's min/max box."""
        n = self.x.shape[1]
        return -np.ones(n), np.ones(n)

    def unscale(self, x: np.ndarray) -> np.ndarray:
        """Map scaled features back to the units of CTG.csv (inverse of the [-1, 1] map)."""
        x = np.asarray(x, dtype=np.float64)
        return self.feature_min + (x + 1.0) * 0.5 * (self.feature_max - self.feature_min)


def ctg_samples() -> CtgSamples:
    """Load ``ctg_samples.npz`` (plain arrays, no pickle)."""
    with np.load(CTG_SAMPLES, allow_pickle=False) as z:
        return CtgSamples(
            x=np.asarray(z["x"], dtype=np.float64), labels=np.asarray(z["labels"], int),
            ids=tuple(str(s) for s in z["ids"]), rows=np.asarray(z["rows"], int),
            feature_names=tuple(str(s) for s in z["feature_names"]),
            dropped=tuple(str(s) for s in z["dropped"]),
            feature_min=np.asarray(z["feature_min"], float),
            feature_max=np.asarray(z["feature_max"], float),
            class_names=tuple(str(s) for s in z["class_names"]), slope=float(z["slope"]))


def ctg_network():
    """The shipped CTG network as a :class:`~nnresilience.network.model.Network`.

    Loaded through the ONNX loader (so ``source`` points at the file and counterexamples
    can be replayed through onnxruntime). Domain [-1, 1]^18 is attached as
    ``input_lo``/``input_hi``.
    """
    from nnresilience.loaders import load_network

    net = load_network(CTG_ONNX)
    n = net.n_inputs
    net.input_lo, net.input_hi = -np.ones(n), np.ones(n)
    net.name = "ctg_leaky"
    return net
