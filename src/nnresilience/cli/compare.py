"""``nnres compare MODEL_A MODEL_B ...``: resilience of several networks side by side.

Φ_m and α_max per class, Ξ, and the distribution of per-sample minimum perturbations over
the same domain and samples, in one HTML page with plots (``-o``) and one JSON document
(``--json``), optionally with every witness pair as ``.npz``.

The command follows the conventions of every command (``docs/cli.md``; the same machinery
as ``nnres contract``, :mod:`nnresilience.cli.contract`): inputs checked before any
output is touched, the work in a killable child with the deadline promise and Ctrl-C
(exit 130, no file left), staged atomic outputs, a live status line on a terminal unless
``--quiet``. The child hands over each model as it finishes it: a run killed at the
deadline writes the JSON (and witnesses) of the models that finished, the others marked
``stopped at the deadline``, and no page. Exit codes: 0 written, 2 bad input, 130
interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from nnresilience import validate
from nnresilience.cli.app import app, console, err_console
from nnresilience.cli.command import CommandRun
from nnresilience.cli.contract import (
    SCHED_OPT,
    STOPPED,
    WORKERS_OPT,
    answer,
    compute_budget,
    document,
    domain_box,
    executor_spec,
    finished_pieces,
    say,
    stage_page,
)
from nnresilience.cli.resilience import (
    BACK_OPT,
    PRESET_OPT,
    QUIET_OPT,
    _load_array,
    _load_model,
    _settings,
)
from nnresilience.errors import InvalidArgumentError

# Seconds kept for the page (after matplotlib is warmed up): its three plots are all
# drawn (Φ_m, α_max, the distribution: ~1 s each at load 6 on the shared 2-core machine).
PAGE_RESERVE = 3.5


def _npz_labels(path: Path) -> np.ndarray | None:
    """The labels stored next to the samples in an ``.npz`` (array ``labels`` or ``y``),
    or None."""
    from nnresilience.io import load_labels

    if Path(path).suffix.lower() != ".npz":
        return None
    with np.load(path, allow_pickle=False) as z:
        if not any(k in z.files for k in ("labels", "y")):
            return None
    return load_labels(path)


def _named(models: list[Path]) -> list[tuple[str, Any, Path]]:
    """``(name, network, path)`` per model file: its stem, or the path when two stems
    are the same."""
    nets = [(Path(p).stem, _load_model(p), p) for p in models]
    names = [n for n, _, _ in nets]
    if len(set(names)) < len(names):
        nets = [(str(p), net, p) for _, net, p in nets]
    return nets


def _compare_work(reporter, nets, q, settings, spec, alpha_max_too: bool, page: bool):
    """Body of the child: the comparison, handed over as soon as it exists, then its page."""
    from nnresilience.compare import compare_models
    from nnresilience.contract import strict_json

    cmp = compare_models(nets, (q.lo, q.hi), q.alpha, q.k, q.norm, data=q.X, labels=q.labels,
                         settings=settings, workers=spec, alpha_max_too=alpha_max_too,
                         timeout=compute_budget(reporter, page, PAGE_RESERVE),
                         progress=reporter.progress)
    reporter.partial(("comparison", cmp))
    if not page:
        return cmp, None
    from nnresilience.report_compare import render_compare

    reporter.progress({"phase": "drawing the page"})
    return cmp, render_compare(strict_json(cmp))


def _comparison_of_killed_run(out, run: CommandRun, nets, q, settings, spec
                              ) -> dict[str, Any]:
    """What a child killed at the deadline leaves: the comparison it handed over, else
    the models it finished (the others are marked as stopped)."""
    from nnresilience.compare import assemble_compare, stopped_model

    whole = document(out.partials, "comparison")
    if whole is not None:
        return whole
    done = {m["name"]: m for m in finished_pieces(out.partials, "model done")}
    entries = [done.get(name) or stopped_model(name, net, path) for name, net, path in nets]
    return assemble_compare(q, entries, settings=settings, timeout=run.budget.timeout,
                            workers=spec, seconds=run.budget.elapsed(), killed=True)


@app.command("compare")
def compare_cmd(
    models: list[Path] = typer.Argument(..., help="two or more network files over the same "
                                        "inputs and classes"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI (default: "
                               "the first model's own)"),
    alpha: float = typer.Option(2.0, "--alpha", help="confidence ratio of Phi_m (>= 1; at 1 "
                                "Phi_m is 0 wherever two classes meet)"),
    k: int = typer.Option(1, "--k", help="the class must stay in the top-k (1..d-1)"),
    norm: str = typer.Option("l1", "--norm", help="perturbation norm: l1 or linf"),
    data: Path = typer.Option(None, "--data", help="samples (.npy/.csv, or .npz with x and "
                              "optionally labels) for the minimum-perturbation "
                              "distribution"),
    labels: Path = typer.Option(None, "--labels", help="labels of --data (default: the "
                                "npz's labels, else each model's prediction)"),
    samples: int = typer.Option(None, "--samples", help="use only the first N samples"),
    no_alpha_max: bool = typer.Option(False, "--no-alpha-max", help="skip alpha_max"),
    timeout: float = typer.Option(None, "--timeout", help="seconds for the whole command "
                                  "(start-up included); the models and their stages share "
                                  "it"),
    workers: int = WORKERS_OPT, scheduler: str = SCHED_OPT,
    preset: str = PRESET_OPT, backend: str = BACK_OPT,
    output: Path = typer.Option(None, "--output", "-o", help="the HTML page"),
    json_out: str = typer.Option(None, "--json", help="the comparison as JSON (FILE or '-' "
                                 "= stdout, then the summary goes to stderr)"),
    witnesses: Path = typer.Option(None, "--witnesses", help="also write every witness pair "
                                   "(.npz, training-set ready)"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Compare the resilience of several networks (Xi, Phi_m, alpha_max, min. perturbation)."""
    from nnresilience.compare import compare_query
    from nnresilience.contract import dumps
    from nnresilience.export_witnesses import npz_bytes, pairs_from_compare

    with CommandRun("compare", timeout, quiet) as run:
        inputs = (*models, data, labels)
        page_out = run.output(output, "--output", inputs, allow_stdout=False)
        js = run.output(json_out, "--json", inputs)
        npz_out = run.output(witnesses, "--witnesses", inputs, allow_stdout=False)
        if len(models) < 2:
            raise InvalidArgumentError("give at least two models to compare")
        if page_out is None and js is None and npz_out is None:
            raise InvalidArgumentError("nothing to write: give -o PAGE.html, --json FILE or "
                                       "--witnesses FILE")
        if samples is not None:
            samples = validate.integer(samples, "--samples", lo=1)
        if labels is not None and data is None:
            raise InvalidArgumentError("--labels needs --data")
        spec = executor_spec(workers, scheduler)
        settings = _settings(preset, None, None, None, None, backend)
        nets = _named(models)
        ref = nets[0][1]
        X = y = None
        if data is not None:
            X = _load_array(data, "--data", ref)
            if labels is not None:
                from nnresilience.io import load_labels

                y = validate.labels(load_labels(validate.input_file(labels, "--labels")),
                                    ref.n_outputs, X.shape[0], name=f"--labels {labels}")
            else:
                y = _npz_labels(data)
                if y is not None:
                    y = validate.labels(y, ref.n_outputs, X.shape[0], name=f"{data} labels")
            if samples is not None:
                X = X[:samples]
                y = None if y is None else y[:samples]
        q = compare_query(nets, domain_box(ref, domain), validate.alpha(alpha),
                          validate.top_k(k, ref.n_outputs), validate.norm(norm), X, y)
        res = run.in_child(_compare_work, nets, q, settings, spec, not no_alpha_max,
                           page_out is not None)
        cmp, page = answer(res, lambda: _comparison_of_killed_run(res, run, nets, q,
                                                                  settings, spec))
        run.outputs.write(js, dumps({"command": "compare", **cmp}))
        stage_page(run, page_out, page)
        if npz_out is not None:
            run.outputs.write(npz_out, npz_bytes(pairs_from_compare(cmp, source="compare")))
    _print(cmp, to_stderr=js == "-")
    if not res.finished:
        say(f"TIMED OUT: the command was stopped at its deadline; models marked "
            f"'{STOPPED}' have no answers"
            + ("; the page was not written" if page_out is not None else ""),
            to_stderr=js == "-")


def _print(r: dict, to_stderr: bool) -> None:
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
    (err_console if to_stderr else console).print(table)
