"""``nnres info MODEL`` and ``nnres eval MODEL INPUT``: look at a network, run it on inputs.

Both commands load the model through :func:`nnresilience.loaders.load_network`, so they are
also the quickest way to check that a model file translates (an unsupported operator is a
one-line error with exit code 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from nnresilience import validate
from nnresilience.cli.app import app, console
from nnresilience.cli.output import Outputs
from nnresilience.errors import ShapeMismatchError


def network_info(network) -> dict:
    """The facts ``nnres info`` shows, as a JSON-ready dict."""
    rows = network.summary()
    dom = None
    if network.input_lo is not None and network.input_hi is not None:
        dom = {"lo": network.input_lo.tolist(), "hi": network.input_hi.tolist()}
    return {
        "name": network.name,
        "source": network.source,
        "format": network.source_format,
        "input_shape": list(network.input_shape),
        "onnx_input_shape": (list(network.onnx_input_shape)
                             if network.onnx_input_shape is not None else None),
        "n_inputs": network.n_inputs,
        "n_outputs": network.n_outputs,
        "n_layers": len(network.layers),
        "n_parameters": network.n_parameters(),
        "n_neurons": network.n_neurons(),
        "softmax": network.softmax,
        "input_domain": dom,
        "content_hash": network.content_hash(),
        "layers": rows,
    }


def _domain_text(lo: np.ndarray, hi: np.ndarray) -> str:
    if lo.size <= 8:
        return ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in zip(lo, hi, strict=True))
    return f"[{lo.min():.6g}, {hi.max():.6g}] (elementwise, {lo.size} inputs)"


@app.command()
def info(model: Path = typer.Argument(..., help="Model file (.onnx, .nnet, .pt/.pth)."),
         prop: Path | None = typer.Option(None, "--property", "-p",
                                          help="Also read a VNN-LIB property and check that "
                                               "its sizes fit the network."),
         json_out: str | None = typer.Option(None, "--json",
                                             help="Write the facts as JSON to FILE ('-' = stdout).")
         ) -> None:
    """Show a network's layers, sizes, parameters, input shape and domain."""
    from nnresilience.loaders import load_network

    outputs = Outputs()
    js = outputs.declare(json_out, "--json", (model, prop))
    net = load_network(validate.input_file(model, "model"))
    data = {"command": "info", **network_info(net)}
    if prop is not None:
        from nnresilience.spec.vnnlib import read_vnnlib

        pr = read_vnnlib(validate.input_file(prop, "property"), n_inputs=net.n_inputs,
                         n_outputs=net.n_outputs)
        data["property"] = {
            "name": pr.name, "source": str(prop), "cases": len(pr.cases),
            "terms_per_case": [len(c.unsafe.terms) for c in pr.cases],
            "meta": pr.meta,
        }
    with outputs:
        outputs.write_json(js, data)
    if js == "-":
        return
    table = Table(title=f"{net.name} ({net.source_format})")
    table.add_column("#", justify="right")
    table.add_column("kind")
    table.add_column("in -> out", justify="right")
    table.add_column("parameters", justify="right")
    table.add_column("detail")
    for r in data["layers"]:
        table.add_row(str(r["index"]), r["kind"], f"{r['in']} -> {r['out']}",
                      f"{r['parameters']:,}" if r["parameters"] else "", r["description"])
    console.print(table)
    console.print(f"layers: {data['n_layers']}   parameters: {data['n_parameters']:,}   "
                  f"non-linear units: {data['n_neurons']:,}")
    console.print(f"input shape: {tuple(net.input_shape)} ({net.n_inputs} values)   "
                  f"outputs: {net.n_outputs}   final softmax: {'yes' if net.softmax else 'no'}")
    if net.input_lo is not None and net.input_hi is not None:
        console.print(f"input domain: {_domain_text(net.input_lo, net.input_hi)}")
    else:
        console.print("input domain: not stored in the model file")
    if "property" in data:
        d = data["property"]
        console.print(f"property {d['name']}: {d['cases']} input box(es), unsafe-set terms "
                      f"per box {d['terms_per_case']} (sizes match the network)")


@app.command("eval")
def eval_cmd(model: Path = typer.Argument(..., help="Model file (.onnx, .nnet, .pt/.pth)."),
             inputs: Path = typer.Argument(..., help="Inputs: .npy or .csv, one sample per row."),
             json_out: str | None = typer.Option(None, "--json",
                                                 help="Write outputs as JSON ('-' = stdout).")
             ) -> None:
    """Run the float64 forward pass on inputs; print the logits and the arg-max class."""
    from nnresilience.io import load_inputs
    from nnresilience.loaders import load_network

    outputs = Outputs()
    js = outputs.declare(json_out, "--json", (model, inputs))
    net = load_network(validate.input_file(model, "model"))
    X = load_inputs(validate.input_file(inputs, "inputs"))
    if X.shape[1] != net.n_inputs:
        raise ShapeMismatchError(
            f"{inputs}: samples have {X.shape[1]} values, {net.name} expects {net.n_inputs} "
            f"(input shape {tuple(net.input_shape)})")
    Y = np.atleast_2d(net.forward(X))
    top = np.argmax(Y, axis=1)
    data = {"command": "eval", "model": str(model), "inputs": str(inputs),
            "outputs": Y.tolist(), "argmax": top.tolist()}
    if net.softmax:
        data["probabilities"] = np.atleast_2d(net.probabilities(X)).tolist()
    with outputs:
        outputs.write_json(js, data)
    if js == "-":
        return
    table = Table(title=f"{net.name} on {inputs.name}")
    table.add_column("row", justify="right")
    table.add_column("argmax", justify="right")
    table.add_column("outputs")
    for i, (y, k) in enumerate(zip(Y, top, strict=True)):
        shown = ", ".join(f"{v:.6g}" for v in y[:12]) + (" ..." if y.size > 12 else "")
        table.add_row(str(i), str(int(k)), shown)
    console.print(table)
