"""``nnres bounds MODEL PROPERTY``: per-layer bounds of a network over a property's inputs.

The input region is the box of the VNN-LIB property; a property with several input boxes
(a disjunction, e.g. ACAS Xu prop 6) is bounded over their bounding box, which contains
every one of them (sound, maybe loose). The table has one row per layer: the bounds shown
are those of the vector *entering* the layer (pre-activations for activation layers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from nnresilience.cli.app import app, console, emit_json
from nnresilience.errors import InputDataError, ModelLoadError


def vnnlib_input_box(path: Path, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of the input regions of all cases of a VNN-LIB property (sound hull)."""
    from nnresilience.spec.vnnlib import read_vnnlib

    prop = read_vnnlib(path, n_inputs)
    lo = np.min([c.region.lo for c in prop.cases], axis=0)
    hi = np.max([c.region.hi for c in prop.cases], axis=0)
    return lo, hi


def bounds_table(bounds) -> list[list[str]]:
    rows = []
    for r in bounds.stats["layers"]:
        rows.append([str(r["layer"]), r["kind"], str(r["width"]),
                     str(r["unstable"]) if r["kind"] not in ("affine", "output") else "-",
                     f"{r['min_lo']:.6g}", f"{r['max_hi']:.6g}", r["method"],
                     f"{r['seconds']:.3f}"])
    return rows


@app.command("bounds")
def bounds_command(
    model: Path = typer.Argument(..., help="Network file (.onnx, .nnet, .pt)."),
    prop: Path = typer.Argument(..., metavar="PROPERTY", help="VNN-LIB property (input box)."),
    method: str = typer.Option("symbolic", "--method", "-m",
                               help="interval | symbolic | lp | milp:W"),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds for the whole call."),
    workers: int = typer.Option(1, "--workers", help="Processes for LP/MIP work units."),
    neuron_time_limit: float | None = typer.Option(
        None, "--neuron-time-limit", help="Seconds per MIP (milp:W)."),
    json_out: str | None = typer.Option(None, "--json", help="Write JSON to FILE ('-' stdout)."),
) -> None:
    """Sound bounds of every layer of MODEL over the inputs of PROPERTY."""
    from nnresilience.bounds import compute_bounds, parse_method
    from nnresilience.loaders import load_network
    from nnresilience.parallel import make_executor

    try:
        parse_method(method)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not Path(model).is_file():
        raise ModelLoadError(f"{model}: no such model file")
    if not Path(prop).is_file():
        raise InputDataError(f"{prop}: no such property file")
    net = load_network(model)
    lo, hi = vnnlib_input_box(prop, net.n_inputs)
    with make_executor(workers) as ex:
        b = compute_bounds(net, (lo, hi), method=method, executor=ex, timeout=timeout,
                           neuron_time_limit=neuron_time_limit)
    if json_out is not None:
        emit_json({"model": str(model), "property": str(prop), "method": b.method,
                   "seconds": b.seconds, "unstable": b.stats["unstable"],
                   "layers": b.stats["layers"],
                   "output_lo": b.lo[-1], "output_hi": b.hi[-1]}, json_out)
        if json_out == "-":
            return
    from rich.table import Table

    t = Table(title=f"{Path(model).name} / {Path(prop).name}: {b.method}")
    for col in ("layer", "kind", "width", "unstable", "min lo", "max hi", "method", "time s"):
        t.add_column(col, justify="right" if col not in ("kind", "method") else "left")
    for row in bounds_table(b):
        t.add_row(*row)
    console.print(t)
    console.print(f"unstable units: {b.stats['unstable']}   total time: {b.seconds:.3f} s")
