"""NNet loader: the plain-text format of the ACAS Xu networks (Katz et al.).

Layout after the ``//`` comment lines (values comma-separated, trailing commas allowed):

1. ``numLayers, inputSize, outputSize, maxLayerSize``
2. the ``numLayers + 1`` layer sizes
3. a "symmetric" flag (unused)
4. input minima, 5. input maxima (one per input)
6. means, 7. ranges (one per input plus one for all outputs)
8. per layer: ``out`` rows of ``in`` weights, then ``out`` lines of one bias each.

The stored network works on *normalised* values. We make the normalisation explicit so that
the loaded :class:`Network` takes RAW inputs and returns RAW outputs: ``(x - mean) / range``
is an affine map folded into the first layer, and ``y * range_out + mean_out`` is folded
into the last one (exact up to float64 rounding of the products). The input domain
``[min, max]`` becomes ``input_lo``/``input_hi``; the reference implementation clips inputs to
it, which is the identity on the domain, so properties must stay inside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnresilience.errors import ModelLoadError
from nnresilience.network.layers import Affine, Layer, ReLU
from nnresilience.network.model import Network


def _numbers(line: str, path: Path, lineno: int) -> list[float]:
    try:
        return [float(v) for v in line.replace(",", " ").split()]
    except ValueError as exc:
        raise ModelLoadError(f"{path}:{lineno}: expected numbers, got {line.strip()[:60]!r}"
                             ) from exc


def load_nnet(path: str | Path, normalize: bool = True) -> Network:
    """Load an ``.nnet`` file. With ``normalize`` (default) the network maps raw inputs to
    raw outputs; with ``normalize=False`` it is the stored network on normalised values."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such model file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{p}: cannot read NNet file ({exc})") from exc
    rows = [(k + 1, line) for k, line in enumerate(text.splitlines())
            if line.strip() and not line.lstrip().startswith("//")]
    pos = 0

    def nxt() -> list[float]:
        nonlocal pos
        if pos >= len(rows):
            raise ModelLoadError(f"{p}: file ends early (truncated NNet file)")
        lineno, line = rows[pos]
        pos += 1
        return _numbers(line, p, lineno)

    head = nxt()
    if len(head) < 3:
        raise ModelLoadError(f"{p}: header must give numLayers, inputSize, outputSize")
    n_layers, n_in, n_out = (int(v) for v in head[:3])
    sizes = [int(v) for v in nxt()]
    if len(sizes) != n_layers + 1 or sizes[0] != n_in or sizes[-1] != n_out:
        raise ModelLoadError(f"{p}: layer sizes {sizes} do not match the header "
                             f"({n_layers} layers, {n_in} inputs, {n_out} outputs)")
    nxt()  # symmetric flag
    lo, hi, mean, rng = nxt(), nxt(), nxt(), nxt()
    for name, vals, n in (("minimum", lo, n_in), ("maximum", hi, n_in),
                          ("mean", mean, n_in + 1), ("range", rng, n_in + 1)):
        if len(vals) != n:
            raise ModelLoadError(f"{p}: {name} line has {len(vals)} values, expected {n}")
    weights: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(n_layers):
        W = np.array([nxt() for _ in range(sizes[k + 1])], dtype=np.float64)
        if W.shape != (sizes[k + 1], sizes[k]):
            raise ModelLoadError(f"{p}: layer {k} weights have shape {W.shape}, expected "
                                 f"{(sizes[k + 1], sizes[k])}")
        b = np.array([nxt() for _ in range(sizes[k + 1])], dtype=np.float64)
        if b.shape != (sizes[k + 1], 1):
            raise ModelLoadError(f"{p}: layer {k} biases must be one value per line")
        weights.append((W, b.reshape(-1)))
    if normalize:
        m_in, r_in = np.array(mean[:n_in]), np.array(rng[:n_in])
        if np.any(r_in == 0) or rng[n_in] == 0:
            raise ModelLoadError(f"{p}: a normalisation range is zero")
        W0, b0 = weights[0]
        # W0 ((x - m) / r) + b0 = (W0 / r) x + (b0 - W0 (m / r))
        weights[0] = (W0 / r_in[None, :], b0 - W0 @ (m_in / r_in))
        Wl, bl = weights[-1]
        weights[-1] = (Wl * rng[n_in], bl * rng[n_in] + mean[n_in])
    layers: list[Layer] = []
    for k, (W, b) in enumerate(weights):
        layers.append(Affine(W, b))
        if k < n_layers - 1:
            layers.append(ReLU(size=W.shape[0]))
    return Network(layers, input_shape=(n_in,), input_lo=np.array(lo), input_hi=np.array(hi),
                   name=p.stem, source=str(p), source_format="nnet")


def write_nnet(path: str | Path, weights: list[tuple[np.ndarray, np.ndarray]],
               lo: np.ndarray, hi: np.ndarray, mean: np.ndarray, rng: np.ndarray) -> None:
    """Write an NNet file (ReLU after every layer but the last). Used by tests and demos;
    ``mean``/``rng`` have ``n_inputs + 1`` entries (last one for all outputs)."""
    sizes = [weights[0][0].shape[1]] + [W.shape[0] for W, _ in weights]
    fmt = ",".join
    lines = ["// written by nnresilience",
             f"{len(weights)},{sizes[0]},{sizes[-1]},{max(sizes)},",
             fmt(str(s) for s in sizes) + ",", "0,",
             fmt(repr(float(v)) for v in lo) + ",", fmt(repr(float(v)) for v in hi) + ",",
             fmt(repr(float(v)) for v in mean) + ",", fmt(repr(float(v)) for v in rng) + ","]
    for W, b in weights:
        lines += [fmt(repr(float(v)) for v in row) + "," for row in np.asarray(W)]
        lines += [repr(float(v)) + "," for v in np.asarray(b).reshape(-1)]
    Path(path).write_text("\n".join(lines) + "\n")
