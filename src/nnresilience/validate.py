"""One place that checks user-supplied values before any work starts.

Every command line option and every API entry point that takes a number, a name or a
file passes it through one of these functions first. Each returns the value in its
canonical type (``float``, ``int``, :class:`~pathlib.Path`) or raises
:class:`~nnresilience.errors.InvalidArgumentError` with a message that names the
argument and says what is allowed, so the CLI can print one line and exit 2 *before*
any output file is created or truncated.

Why a module of its own: the same rule (a timeout is a positive finite number of
seconds, ``1 <= k < classes``, a label is a class) used to be checked in some commands,
differently in others and not at all in the rest; ``--timeout inf`` crashed in a solver
and ``--timeout -5`` answered ``unknown`` in no time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.errors import InvalidArgumentError

NORMS = ("l1", "linf")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}")
    return v


def timeout(value: Any, name: str = "--timeout") -> float | None:
    """A time limit in seconds: ``None`` (no limit) or a finite number > 0."""
    if value is None:
        return None
    v = _number(value, name)
    if v <= 0:
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {value!r}")
    return v


def positive(value: Any, name: str) -> float:
    """A finite number > 0."""
    v = _number(value, name)
    if v <= 0:
        raise InvalidArgumentError(f"{name} must be > 0, got {value!r}")
    return v


def nonnegative(value: Any, name: str) -> float:
    """A finite number >= 0 (a radius, an epsilon, a budget that may be zero)."""
    v = _number(value, name)
    if v < 0:
        raise InvalidArgumentError(f"{name} must be >= 0, got {value!r}")
    return v


def integer(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer in ``[lo, hi]`` (either end optional); ``2.0`` is accepted, ``2.5`` not."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    v = int(f)
    if lo is not None and hi is not None and not lo <= v <= hi:
        raise InvalidArgumentError(f"{name} must be in {lo}..{hi}, got {v}")
    if lo is not None and v < lo:
        raise InvalidArgumentError(f"{name} must be at least {lo}, got {v}")
    if hi is not None and v > hi:
        raise InvalidArgumentError(f"{name} must be at most {hi}, got {v}")
    return v


def workers(value: Any, name: str = "--workers") -> int:
    """A number of worker processes: an integer >= 1."""
    return integer(value, name, lo=1)


def device(value: Any, name: str = "--device") -> str:
    """A torch device: ``cpu``, ``cuda`` or ``cuda:N`` of a GPU that is present (torch is
    imported only to check a GPU, so a CPU query keeps its start-up)."""
    import re

    text = str(value).strip().lower()
    if text == "cpu":
        return text
    if not re.fullmatch(r"cuda(:\d+)?", text):
        raise InvalidArgumentError(f"{name} must be cpu, cuda or cuda:N, got {value!r}")
    import torch

    index = int(text.partition(":")[2] or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise InvalidArgumentError(f"{name} {value}: no such CUDA device on this machine")
    return text


def alpha(value: Any, name: str = "--alpha") -> float:
    """The confidence ratio alpha of Φ_m: a finite number >= 1."""
    v = _number(value, name)
    if v < 1.0:
        raise InvalidArgumentError(f"{name} must be >= 1 (p_m >= alpha p_j), got {value!r}")
    return v


def top_k(value: Any, n_classes: int, name: str = "--k") -> int:
    """``k`` of 'leave the top-k': an integer with ``1 <= k < n_classes``."""
    if n_classes < 2:
        raise InvalidArgumentError(f"the network has {n_classes} output; top-k questions "
                                   "need at least 2 classes")
    return integer(value, name, lo=1, hi=n_classes - 1)


def class_index(value: Any, n_classes: int, name: str = "--class") -> int:
    """A class (output index) of a network with ``n_classes`` outputs."""
    return integer(value, name, lo=0, hi=n_classes - 1)


def classes(values: Iterable[Any] | None, n_classes: int, name: str = "--class"
            ) -> list[int] | None:
    """Several classes (duplicates dropped, order kept); ``None``/empty → ``None``."""
    if not values:
        return None
    out: list[int] = []
    for v in values:
        c = class_index(v, n_classes, name)
        if c not in out:
            out.append(c)
    return out


def labels(values: Any, n_classes: int, n_rows: int | None = None,
           name: str = "labels") -> np.ndarray:
    """Integer class labels, each in ``0..n_classes-1`` (and ``n_rows`` of them if given)."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if n_rows is not None and arr.size != n_rows:
        raise InvalidArgumentError(f"{name}: {arr.size} labels for {n_rows} samples")
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        i = int(np.argmax(~np.isfinite(arr) | (arr != np.round(arr))))
        raise InvalidArgumentError(f"{name}: label {arr[i]!r} (row {i}) is not an integer")
    out = arr.astype(np.int64)
    bad = (out < 0) | (out >= n_classes)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InvalidArgumentError(f"{name}: label {out[i]} (row {i}) is not a class of a "
                                   f"network with {n_classes} outputs (0..{n_classes - 1})")
    return out


def choice(value: Any, allowed: Sequence[str], name: str) -> str:
    """One of ``allowed`` (exact match)."""
    if value not in allowed:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def engine_choices() -> tuple[str, ...]:
    """Engine names ``verify`` accepts: ``auto``, the engines of
    :data:`nnresilience.engines.ENGINE_NAMES` (the one list), ``none``; plus
    ``milp:<backend>``."""
    from nnresilience.engines import ENGINE_NAMES

    return ("auto", *ENGINE_NAMES, "none")


def engine(value: Any, name: str = "--engine") -> str:
    """A complete-engine name (:func:`engine_choices`, or ``milp:<backend>``)."""
    choices = engine_choices()
    if isinstance(value, str):
        base, sep, backend = value.partition(":")
        if value in choices or (sep and base == "milp" and backend):
            return value
    raise InvalidArgumentError(f"{name} must be one of {', '.join(choices)} or "
                               f"milp:<backend>, got {value!r}")


def norm(value: Any, name: str = "--norm", allowed: Sequence[str] = NORMS) -> str:
    """A perturbation norm name."""
    return choice(value, allowed, name)


def box(lo: Any, hi: Any, n: int | None = None, name: str = "domain"
        ) -> tuple[np.ndarray, np.ndarray]:
    """A finite, non-empty box ``[lo, hi]`` (scalars are broadcast to ``n`` values)."""
    try:
        lo_a = np.asarray(lo, dtype=np.float64).reshape(-1)
        hi_a = np.asarray(hi, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name}: bounds must be numbers") from None
    if n is not None:
        if lo_a.size == 1:
            lo_a = np.full(n, lo_a[0])
        if hi_a.size == 1:
            hi_a = np.full(n, hi_a[0])
        if lo_a.size != n or hi_a.size != n:
            raise InvalidArgumentError(f"{name}: {lo_a.size}/{hi_a.size} bounds for {n} inputs")
    if lo_a.shape != hi_a.shape:
        raise InvalidArgumentError(f"{name}: {lo_a.size} lower and {hi_a.size} upper bounds")
    if not (np.all(np.isfinite(lo_a)) and np.all(np.isfinite(hi_a))):
        raise InvalidArgumentError(f"{name}: bounds must be finite")
    if np.any(lo_a > hi_a):
        i = int(np.argmax(lo_a > hi_a))
        raise InvalidArgumentError(f"{name}: empty, lower {lo_a[i]:g} > upper {hi_a[i]:g} "
                                   f"at input {i}")
    return lo_a, hi_a


def domain_text(text: str, n: int, name: str = "--domain") -> tuple[np.ndarray, np.ndarray]:
    """``'LO:HI'`` (the same interval for every input) as a box of ``n`` inputs."""
    parts = str(text).split(":")
    if len(parts) != 2:
        raise InvalidArgumentError(f"{name} {text!r}: expected LO:HI, e.g. 0:1 or -1:1")
    lo = _number(parts[0], f"{name} lower bound")
    hi = _number(parts[1], f"{name} upper bound")
    return box(lo, hi, n, name)


# ------------------------------------------------------------------------------ files
def input_file(path: Any, what: str, suffixes: Sequence[str] | None = None) -> Path:
    """An existing, readable regular file (with one of ``suffixes`` if given)."""
    if path is None or str(path) == "":
        raise InvalidArgumentError(f"{what}: no file given")
    p = Path(path)
    if not p.exists():
        raise InvalidArgumentError(f"{what} {p}: no such file")
    if p.is_dir():
        raise InvalidArgumentError(f"{what} {p}: is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise InvalidArgumentError(f"{what} {p}: not readable (permission denied)")
    if suffixes and p.suffix.lower() not in suffixes:
        raise InvalidArgumentError(f"{what} {p}: expected a {' or '.join(suffixes)} file")
    return p


def output_file(path: Any, what: str, inputs: Iterable[Any] = ()) -> Path:
    """A path an output can be written to: not a directory, not one of ``inputs``, in a
    folder that exists (or can be created) and is writable."""
    if path is None or str(path) == "":
        raise InvalidArgumentError(f"{what}: no file name given")
    p = Path(path)
    if p.is_dir():
        raise InvalidArgumentError(f"{what} {p}: is a directory")
    rp = p.resolve()
    for src in inputs:
        if src is not None and Path(src).resolve() == rp:
            raise InvalidArgumentError(f"{what} {p}: is also an input file; refusing to "
                                       "overwrite it")
    parent = rp.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidArgumentError(f"{what} {p}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        # outputs are written as a sibling temp file and renamed: the folder must be
        # writable (the old file's own permissions do not matter)
        raise InvalidArgumentError(f"{what} {p}: folder {parent} is not writable")
    return p


def distinct(paths: dict[str, Any]) -> None:
    """Two outputs of one command must not be the same file (``{what: path}``)."""
    seen: dict[Path, str] = {}
    for what, p in paths.items():
        if p is None or str(p) == "-":
            continue
        rp = Path(p).resolve()
        if rp in seen:
            raise InvalidArgumentError(f"{what} and {seen[rp]} are the same file {p}")
        seen[rp] = what


__all__ = ["alpha", "box", "choice", "class_index", "classes", "distinct", "domain_text",
           "engine", "engine_choices", "input_file", "integer", "labels", "nonnegative",
           "norm", "output_file", "positive", "timeout", "top_k", "workers"]
