"""``nnres report STORE -o report.html``: a self-contained HTML page of a campaign."""

from __future__ import annotations

from pathlib import Path

import typer

from nnresilience.cli.app import app, err_console


@app.command("report")
def report(
    store: Path = typer.Argument(..., help="SQLite campaign store (nnres campaign run)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o",
                                help="HTML file to write (atomically)."),
    title: str = typer.Option(None, "--title", help="Page title (default: the store name)."),
) -> None:
    """Write an HTML report: verdict counts, robustness grid, Phi_m bars, timings,
    counterexample pictures and a table of every answer. Opens offline (no external files)."""
    from nnresilience.report import write_report

    out = write_report(store, output, title=title or f"nnresilience report: {store.stem}")
    err_console.print(f"report written to {out}", highlight=False)
