"""Reading input samples from data files (``.npy`` and ``.csv``).

Inputs are returned as a float64 array of shape ``(rows, values)``: one row per sample,
flattened. A ``.npy`` array of shape ``(n,)`` is one sample; ``(B, ...)`` is ``B`` samples
(trailing axes flattened). A ``.csv`` file holds one sample per line, comma (or
whitespace) separated; a first line that is not numeric is taken as a header and skipped.
Non-finite values are refused: no verification question is meaningful on NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnresilience.errors import InputDataError


def load_inputs(path: str | Path) -> np.ndarray:
    """Load samples as float64 ``(rows, values)``; raise :class:`InputDataError` if the file
    is missing, unreadable, empty or holds non-finite values."""
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{p}: no such input file")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
            arr = np.asarray(arr, dtype=np.float64)
        except (OSError, ValueError, TypeError) as exc:
            raise InputDataError(f"{p}: not a numeric .npy array ({exc})") from exc
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr.reshape(1, -1)
        else:
            arr = arr.reshape(arr.shape[0], -1)
    elif suffix in (".csv", ".txt"):
        arr = _read_csv(p)
    else:
        raise InputDataError(f"{p}: unknown input format {p.suffix!r}; use .npy or .csv")
    if arr.size == 0:
        raise InputDataError(f"{p}: holds no values")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputDataError(f"{p}: non-finite value at row {r}, column {c}")
    return arr


def _read_csv(p: Path) -> np.ndarray:
    try:
        lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{p}: cannot read ({exc})") from exc
    rows = []
    for k, line in enumerate(lines):
        fields = line.replace(",", " ").split()
        try:
            rows.append([float(v) for v in fields])
        except ValueError as exc:
            if k == 0:
                continue  # header line
            raise InputDataError(f"{p}:{k + 1}: not a number in {line.strip()[:60]!r}") from exc
    if not rows:
        return np.zeros((0, 0))
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InputDataError(f"{p}: rows have different lengths {sorted(widths)}")
    return np.array(rows, dtype=np.float64)


__all__ = ["load_inputs"]
