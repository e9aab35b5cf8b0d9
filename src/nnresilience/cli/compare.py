"""``nnres compare MODEL_A MODEL_B ...``: resilience of several networks side by side.

Φ_m and α_max per class, Ξ, and the distribution of per-sample minimum perturbations over
the same domain and samples, in one HTML page with plots (``-o``) and one JSON document
(``--json``). Every input is read and checked before anything runs or is written;
``--timeout`` is the budget of the whole comparison. Exit codes: 0 written, 2 bad input.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from nnresilience.cli.app import app, console
from nnresilience.cli.contract import (
    BACKEND_OPT,
    PRESET_OPT,
    SCHED_OPT,
    TIMEOUT_OPT,
    WORKERS_OPT,
    budget_left,
    check_output,
    check_timeout,
    load_samples,
    parse_domain,
    resilience_settings,
    workers_spec,
)
from nnresilience.errors import InputDataError


@app.command("compare")
def compare_cmd(
    models: list[Path] = typer.Argument(..., help="two or more network files over the same "
                                        "inputs and classes"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI"),
    alpha: float = typer.Option(2.0, "--alpha", help="confidence ratio of Phi_m (>= 1; at 1 "
                                "Phi_m is 0 wherever two classes meet)"),
    k: int = typer.Option(1, "--k", help="the class must stay in the top-k"),
    norm: str = typer.Option("l1", "--norm", help="perturbation norm: l1 or linf"),
    data: Path = typer.Option(None, "--data", help="samples (.npy/.csv, or .npz with x and "
                              "optionally labels) for the minimum-perturbation "
                              "distribution"),
    labels: Path = typer.Option(None, "--labels", help="labels of --data (default: the "
                                "npz's labels, else each model's prediction)"),
    samples: int = typer.Option(None, "--samples", help="use only the first N samples"),
    no_alpha_max: bool = typer.Option(False, "--no-alpha-max", help="skip alpha_max"),
    timeout: float = TIMEOUT_OPT, workers: int = WORKERS_OPT, scheduler: str = SCHED_OPT,
    preset: str = PRESET_OPT, backend: str = BACKEND_OPT,
    output: Path = typer.Option(None, "--output", "-o", help="the HTML page"),
    json_out: str = typer.Option(None, "--json", help="the comparison as JSON (FILE or -)"),
    witnesses: Path = typer.Option(None, "--witnesses", help="also write every witness pair "
                                   "(.npz, training-set ready)"),
) -> None:
    """Compare the resilience of several networks (Xi, Phi_m, alpha_max, min. perturbation)."""
    from nnresilience.compare import compare_models
    from nnresilience.contract import check_query, dumps, write_json
    from nnresilience.loaders import load_network

    if len(models) < 2:
        raise InputDataError("give at least two models to compare")
    if output is None and json_out is None and witnesses is None:
        raise InputDataError("nothing to write: give -o PAGE.html, --json FILE or "
                             "--witnesses FILE")
    check_output(output, "--output")
    check_output(witnesses, "--witnesses")
    if json_out not in (None, "-"):
        check_output(Path(json_out), "--json")
    check_timeout(timeout)
    if samples is not None and samples < 1:
        raise InputDataError(f"--samples must be at least 1, got {samples}")
    nets = [(Path(p).stem, load_network(p), p) for p in models]
    names = [n for n, _, _ in nets]
    if len(set(names)) < len(names):       # two files of the same stem: tell them apart
        nets = [(str(p), net, p) for _, net, p in nets]
    ref = nets[0][1]
    check_query(ref, alpha, k, norm)
    dom = parse_domain(domain, ref)
    X = y = None
    if data is not None:
        X, y = load_samples(data, ref, labels)
        if samples is not None:
            X = X[:samples]
            y = None if y is None else y[:samples]
    elif labels is not None:
        raise InputDataError("--labels needs --data")
    settings = resilience_settings(preset, backend)
    spec = workers_spec(workers, scheduler)
    result = compare_models(nets, dom, alpha, k, norm, data=X, labels=y, settings=settings,
                            timeout=budget_left(timeout, reserve=2.0), workers=spec,
                            alpha_max_too=not no_alpha_max)
    if json_out == "-":
        typer.echo(dumps(result), nl=False)
    elif json_out is not None:
        write_json(result, json_out)
    if output is not None:
        from nnresilience.contract import strict_json
        from nnresilience.report_compare import write_compare_page

        write_compare_page(strict_json(result), output)
    if witnesses is not None:
        from nnresilience.export_witnesses import pairs_from_compare, write_witnesses_npz

        write_witnesses_npz(pairs_from_compare(result, source="compare"), witnesses)
    if json_out != "-":
        _print(result)


def _print(r: dict) -> None:
    from nnresilience.report_page import fmt

    table = Table(title=f"resilience comparison (alpha={r['parameters']['alpha']:g}, "
                        f"norm={r['parameters']['norm']})")
    for col in ("model", "Xi lower", "Xi upper", "median min-pert. (proven)",
                "median (witnessed)", "seconds"):
        table.add_column(col)
    for m in r["models"]:
        s = m["summary"]
        table.add_row(m["name"], fmt(m["xi"]["lower"]), fmt(m["xi"]["upper"]),
                      fmt(s.get("median_lower")), fmt(s.get("median_upper")),
                      f"{m['seconds']:.1f}")
    console.print(table)
