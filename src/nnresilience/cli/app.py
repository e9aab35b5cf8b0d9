"""The shared Typer application object and small helpers used by every command module."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="nnres",
    help="Verify neural networks (holds / violated / unknown) and measure their maximum "
         "resilience (Phi_m, Xi, minimum perturbation).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(stderr=False)
err_console = Console(stderr=True)


def emit_json(data: Any, target: str | None) -> None:
    """Write ``data`` as JSON to ``target`` ('-' = stdout) atomically (tmp file + rename)."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_default)
    if target in (None, "-"):
        sys.stdout.write(text + "\n")
        return
    write_atomic(Path(target), text + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write a file so a reader never sees half of it: write a sibling, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "value"):
        return o.value
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@app.callback()
def _root() -> None:
    """nnres: holds / violated / unknown, and how much perturbation a network tolerates."""


@app.command()
def version() -> None:
    """Print the nnresilience version."""
    from nnresilience import __version__

    console.print(__version__)
