"""``nnres bounds MODEL PROPERTY``: sound bounds of every layer over a property's inputs.

The input region is the box of the VNN-LIB property; a property with several input boxes
(a disjunction, e.g. ACAS Xu prop 6) is bounded over their bounding box, which contains
every one of them (sound, maybe loose).

One row per vector of the network, labelled by the layer that *produces* it: ``input``,
then ``0 affine`` (the output of layer 0, i.e. the pre-activations of layer 1), ``1 relu``
and so on; ``undecided`` counts the entries whose sign the bounds leave open when the
next layer is an activation (the ReLUs that stay non-linear). The work runs in a killable
child: the cheap interval bounds are computed first and kept, so a run stopped at its
deadline still shows sound bounds and says it ran out of time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from nnresilience import validate
from nnresilience.cli.app import app, console, err_console
from nnresilience.cli.command import CommandRun
from nnresilience.errors import InvalidArgumentError


def vnnlib_input_box(path: Path, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of the input regions of all cases of a VNN-LIB property (sound hull)."""
    from nnresilience.spec.vnnlib import read_vnnlib

    prop = read_vnnlib(path, n_inputs)
    lo = np.min([c.region.lo for c in prop.cases], axis=0)
    hi = np.max([c.region.hi for c in prop.cases], axis=0)
    return lo, hi


_ACTIVATIONS = ("relu", "leaky_relu", "maxpool", "arctan", "sigmoid", "tanh")


def vector_rows(network, bounds) -> list[dict[str, Any]]:
    """One JSON row per vector, labelled by the layer producing it (module docstring)."""
    stats_rows = bounds.stats.get("layers") or []
    n = len(network.layers)
    out = []
    for j in range(n + 1):
        lo, hi = np.asarray(bounds.lo[j]), np.asarray(bounds.hi[j])
        st = stats_rows[j] if j < len(stats_rows) else {}
        nxt = network.layers[j].kind if j < n else None
        undecided = st.get("unstable") if nxt in _ACTIVATIONS else None
        out.append({
            "vector": j, "describes": "input" if j == 0 else
            f"output of layer {j - 1} ({network.layers[j - 1].kind})",
            "layer": None if j == 0 else j - 1,
            "kind": "input" if j == 0 else network.layers[j - 1].kind,
            "width": int(lo.size), "next_layer": nxt, "undecided": undecided,
            "min_lo": float(lo.min()) if lo.size else 0.0,
            "max_hi": float(hi.max()) if hi.size else 0.0,
            "method": st.get("method", bounds.method), "seconds": st.get("seconds", 0.0)})
    return out


def _bounds_work(reporter, net, lo, hi, method: str, workers: int,
                 neuron_time_limit: float | None):
    """Child body: interval bounds first (kept if killed), then the requested method."""
    from nnresilience.bounds import compute_bounds
    from nnresilience.parallel import make_executor

    reporter.progress({"phase": "interval bounds"})
    ib = compute_bounds(net, (lo, hi), method="interval")
    if method == "interval":
        return ib
    reporter.partial(ib)
    reporter.progress({"phase": f"{method} bounds"})
    with make_executor(workers) as ex:
        return compute_bounds(net, (lo, hi), method=method, executor=ex,
                              timeout=reporter.budget.remaining(),
                              neuron_time_limit=neuron_time_limit)


@app.command("bounds")
def bounds_command(
    model: Path = typer.Argument(..., help="Network file (.onnx, .nnet, .pt)."),
    prop: Path = typer.Argument(..., metavar="PROPERTY", help="VNN-LIB property (input box)."),
    method: str = typer.Option("symbolic", "--method", "-m",
                               help="interval | symbolic | lp | milp:W"),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds for the whole "
                                         "command; when it runs out the bounds computed so "
                                         "far (still sound) are shown, marked timed out."),
    workers: int = typer.Option(1, "--workers", help="Processes for LP/MIP work units."),
    neuron_time_limit: float | None = typer.Option(
        None, "--neuron-time-limit", help="Seconds per MIP (milp:W)."),
    json_out: str | None = typer.Option(None, "--json", help="Write JSON to FILE ('-' stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Sound bounds of every layer of MODEL over the inputs of PROPERTY."""
    from nnresilience.bounds import parse_method
    from nnresilience.loaders import load_network

    with CommandRun("bounds", timeout, quiet) as run:
        js = run.output(json_out, "--json", (model, prop))
        try:
            parse_method(method)
        except ValueError as exc:
            raise InvalidArgumentError(f"--method: {exc}") from None
        workers = validate.workers(workers)
        if neuron_time_limit is not None:
            validate.timeout(neuron_time_limit, "--neuron-time-limit")
        net = load_network(validate.input_file(model, "model"))
        lo, hi = vnnlib_input_box(validate.input_file(prop, "property"), net.n_inputs)
        res = run.in_child(_bounds_work, net, lo, hi, method, workers, neuron_time_limit)
        if res.finished:
            b, status = res.value, ("timed_out" if res.value.stats.get("timed_out")
                                    else "complete")
        elif res.partials:
            b, status = res.partials[-1], "killed"
        else:
            from nnresilience.bounds import compute_bounds

            b, status = compute_bounds(net, (lo, hi), method="interval"), "killed"
        rows = vector_rows(net, b)
        note = {"complete": "",
                "timed_out": f"time ran out: layers not reached by {method} keep the "
                             "cheaper bounds computed before (still sound)",
                "killed": f"time ran out before {method} finished: showing the "
                          f"{b.method} bounds computed first (sound, looser)"}[status]
        run.outputs.write_json(js, {
            "command": "bounds", "model": str(model), "property": str(prop),
            "method_requested": method, "method": b.method, "status": status,
            "timed_out": status != "complete", "note": note,
            "timeout": run.budget.timeout, "seconds": b.seconds,
            "timings": {"bounds": b.seconds, "command": round(run.budget.elapsed(), 3)},
            "unstable": b.stats.get("unstable"), "vectors": rows,
            "output_lo": np.asarray(b.lo[-1]), "output_hi": np.asarray(b.hi[-1])})
    if js == "-":
        if note:
            err_console.print(f"note: {note}", highlight=False, markup=False,
                              soft_wrap=True)
        return
    from rich.table import Table

    t = Table(title=f"{Path(model).name} / {Path(prop).name}: {b.method} bounds")
    for col in ("bounds of", "width", "undecided", "min lo", "max hi", "method", "time s"):
        t.add_column(col, justify="left" if col in ("bounds of", "method") else "right")
    for r in rows:
        label = "input" if r["layer"] is None else f"{r['layer']} {r['kind']}"
        t.add_row(label, str(r["width"]),
                  "-" if r["undecided"] is None else str(r["undecided"]),
                  f"{r['min_lo']:.6g}", f"{r['max_hi']:.6g}", str(r["method"]),
                  f"{r['seconds']:.3f}")
    console.print(t)
    console.print("undecided: entries of that vector whose sign the bounds leave open, "
                  "where the next layer is an activation", highlight=False, soft_wrap=True)
    console.print(f"undecided units: {b.stats.get('unstable')}   total time: "
                  f"{b.seconds:.3f} s", highlight=False, soft_wrap=True)
    if note:
        console.print(f"TIMED OUT: {note}", highlight=False, markup=False, soft_wrap=True)
