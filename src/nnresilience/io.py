"""Reading input samples and labels from data files (``.npy``, ``.npz`` and ``.csv``).

Inputs are returned as a float64 array of shape ``(rows, values)``: one row per sample,
flattened. A ``.npy`` array of shape ``(n,)`` is one sample; ``(B, ...)`` is ``B`` samples
(trailing axes flattened). A ``.npz`` archive gives its array ``x`` (or its only array),
so the shipped ``ctg_samples.npz`` can be passed as it is. A ``.csv`` file holds one
sample per line, comma (or whitespace) separated; a first line that is not numeric is
taken as a header and skipped. Non-finite values are refused: no verification question is
meaningful on NaN. Labels (:func:`load_labels`) come from the same formats (``.npz``:
array ``labels``, ``y`` or the only array), one integer per sample.

JSON going out (:func:`json_text`) is strict (RFC 8259): numpy values become plain
numbers and ``inf``/``-inf``/``nan`` become ``null`` -- Python's default ``Infinity``
breaks other parsers. Every JSON file and ``--json`` output of the package uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import os
from pathlib import Path
from typing import Any

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
        except (OSError, ValueError, TypeError, EOFError) as exc:
            raise InputDataError(f"{p}: not a numeric .npy array ({exc})") from exc
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr.reshape(1, -1)
        else:
            arr = arr.reshape(arr.shape[0], -1)
    elif suffix == ".npz":
        arr = _npz_array(p, ("x", "inputs", "X"))
        arr = arr.reshape(1, -1) if arr.ndim <= 1 else arr.reshape(arr.shape[0], -1)
    elif suffix in (".csv", ".txt"):
        arr = _read_csv(p)
    else:
        raise InputDataError(f"{p}: unknown input format {p.suffix!r}; use .npy, .npz or "
                             ".csv")
    if arr.size == 0:
        raise InputDataError(f"{p}: holds no values")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputDataError(f"{p}: non-finite value at row {r}, column {c}")
    return arr


def load_labels(path: str | Path) -> np.ndarray:
    """Labels as a flat float64 array (the caller checks they are classes): ``.npy``,
    ``.csv`` (one per line or one row) or ``.npz`` (array ``labels``, ``y`` or the only one).
    """
    p = Path(path)
    if p.suffix.lower() == ".npz":
        if not p.is_file():
            raise InputDataError(f"{p}: no such labels file")
        arr = _npz_array(p, ("labels", "y"))
    else:
        arr = load_inputs(p)
    arr = np.asarray(arr, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InputDataError(f"{p}: holds no labels")
    if not np.all(np.isfinite(arr)):
        raise InputDataError(f"{p}: non-finite label")
    return arr


def _npz_array(p: Path, names: tuple[str, ...]) -> np.ndarray:
    """The first of ``names`` in a ``.npz`` archive, or its only array."""
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.keys())
            key = next((k for k in names if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputDataError(f"{p}: .npz archive without an array named "
                                     f"{' or '.join(names)} (it has {', '.join(keys)})")
            arr = np.asarray(z[key], dtype=np.float64)
    except InputDataError:
        raise
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise InputDataError(f"{p}: not a readable numeric .npz archive ({exc})") from exc
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


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: non-finite floats → None, numpy → Python, tuples and
    sets → lists, enums → their value, objects with ``to_dict()`` → that dict."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return jsonable(float(obj))
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_text(obj: Any) -> str:
    """Strict, indented JSON text of ``obj`` (see :func:`jsonable`), newline-terminated."""
    return json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write one file so a reader never sees half of it: a sibling temp file, then rename.
    ``data`` is text (UTF-8) or bytes (an ``.npz``, an image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


__all__ = ["json_text", "jsonable", "load_inputs", "load_labels", "write_atomic"]
