"""``nnres report STORE -o report.html``: a self-contained HTML page of a campaign."""

from __future__ import annotations

from pathlib import Path

import typer

from nnresilience import validate
from nnresilience.cli.app import app, err_console
from nnresilience.cli.command import CommandRun


@app.command("report")
def report(
    store: Path = typer.Argument(..., help="SQLite campaign store (nnres campaign run)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o",
                                help="HTML file to write (atomically)."),
    title: str = typer.Option(None, "--title", help="Page title (default: the store name)."),
    all_answers: bool = typer.Option(False, "--all", help="Every stored answer (default: "
                                     "the latest answer of each question)."),
) -> None:
    """Write an HTML report of a campaign store (opens offline).

    Verdict counts, robustness grid, Phi_m bars, timings, counterexample pictures and a
    table of the answers: the latest answer of each question, or every answer with --all.
    """
    from nnresilience.report import render_report
    from nnresilience.store import CampaignStore

    with CommandRun("report") as cmd:
        out = cmd.output(output, "--output", (store,), allow_stdout=False)
        with CampaignStore(validate.input_file(store, "campaign store"), readonly=True) as st:
            cmd.start()
            html = render_report(st, title or f"nnresilience report: {store.stem}",
                                 latest=not all_answers)
        cmd.outputs.write(out, html)
    err_console.print(f"report written to {out}", highlight=False, soft_wrap=True)
