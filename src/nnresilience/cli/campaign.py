"""``nnres campaign run`` and ``nnres campaign show``: long, resumable query campaigns.

``run`` reads a VNN-COMP ``instances.csv`` or a JSON config, skips every query already in
the SQLite store, runs the rest (serially, on a local Dask cluster with ``--workers N``,
or on an existing Dask scheduler with ``--scheduler tcp://host:port``) and commits each
answer as it arrives. Exit codes: 0 all units answered; 1 some units failed (listed);
4 stopped by ``--timeout`` with units left (run again to resume); 130 Ctrl-C (or SIGTERM);
2 bad input.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import typer

from nnresilience.cli.app import app, console, emit_json, err_console

campaign_app = typer.Typer(
    help="Run resumable campaigns of many queries into a SQLite store, and inspect them.",
    no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")

EXIT_FAILED_UNITS = 1
EXIT_TIMED_OUT = 4


def _executor(workers: int | None, scheduler: str | None, executor: str | None):
    from nnresilience.parallel import DaskExecutor, InlineExecutor, make_executor

    chosen = [o for o, v in (("--workers", workers), ("--scheduler", scheduler),
                             ("--executor", executor)) if v]
    if len(chosen) > 1:
        raise typer.BadParameter(f"choose one of {', '.join(chosen)}")
    if scheduler:
        from nnresilience.errors import BackendUnavailableError

        try:
            return DaskExecutor(scheduler=scheduler, connect_timeout=30)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendUnavailableError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    if executor:
        try:
            return make_executor(executor)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    if workers is not None and workers < 1:
        raise typer.BadParameter("--workers must be at least 1")
    if workers and workers > 1:
        return DaskExecutor(workers=workers)
    return InlineExecutor()


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    # A batch system stops jobs with SIGTERM: shut the workers down like Ctrl-C does.
    raise KeyboardInterrupt


@campaign_app.command("run")
def run(
    campaign: Path = typer.Argument(..., help="instances.csv (onnx,vnnlib,timeout) or a "
                                    "JSON campaign config."),
    store: Path = typer.Option(..., "--store", "-s", help="SQLite campaign store (created "
                               "if missing; answers already in it are skipped)."),
    workers: int = typer.Option(None, "--workers", "-w", help="Start a local Dask cluster "
                                "with N single-threaded worker processes (1 = serial)."),
    scheduler: str = typer.Option(None, "--scheduler", help="Join a running Dask scheduler "
                                  "(tcp://host:port) instead."),
    executor: str = typer.Option(None, "--executor", help="Advanced: any executor spec "
                                 "('inline', 'processes', 'N' = process pool, 'dask:N')."),
    timeout: float = typer.Option(None, "--timeout", help="Wall-clock budget of the whole "
                                  "campaign in seconds; unfinished units stay for the next "
                                  "run."),
    query_timeout: float = typer.Option(None, "--query-timeout", help="Per-query timeout in "
                                        "seconds for every unit (replaces the file's)."),
    engine: str = typer.Option(None, "--engine", help="Engine for every unit (auto, milp, "
                               "reluplex; replaces the file's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON line per finished unit on "
                               "stdout (instead of the progress bar)."),
    json_out: str = typer.Option(None, "--json", help="Write the run summary as JSON "
                                 "(FILE or - for stdout)."),
) -> None:
    """Run every query of CAMPAIGN not yet answered in STORE; resume after any crash."""
    from nnresilience.campaign import load_campaign, run_campaign
    from nnresilience.progress import make_progress
    from nnresilience.store import CampaignStore

    overrides = {k: v for k, v in (("timeout", query_timeout), ("engine", engine))
                 if v is not None}
    camp = load_campaign(campaign, overrides=overrides)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with CampaignStore(store) as st:
            progress = make_progress(quiet=quiet, jsonl=jsonl, console=err_console,
                                     title=camp.name)
            with _executor(workers, scheduler, executor) as ex:
                summary = run_campaign(camp.units, st, ex, timeout=timeout,
                                       progress=progress, task=camp.task)
            stored = st.count()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if json_out:
        emit_json({**summary.to_dict(), "store": str(store), "stored_total": stored},
                  json_out)
    if not quiet and not jsonl:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(summary.counts.items())) or "-"
        err_console.print(
            f"{summary.done} answered ({counts}), {summary.skipped} already stored, "
            f"{len(summary.errors)} failed, {summary.remaining} left; {stored} answers in "
            f"{store} ({summary.seconds:.1f} s)", highlight=False)
    for err in summary.errors:
        if not jsonl:
            err_console.print(f"failed: {err.get('name')}: {err.get('type')}: "
                              f"{err.get('message')}", highlight=False, markup=False)
    if summary.aborted:
        err_console.print(f"stopped: a worker died ({summary.aborted}); {summary.remaining} "
                          "unit(s) left, run the same command again to resume",
                          highlight=False, markup=False)
    if summary.errors or summary.aborted:
        raise typer.Exit(EXIT_FAILED_UNITS)
    if summary.timed_out and summary.remaining > 0:
        err_console.print(f"--timeout reached: {summary.remaining} unit(s) left; run the "
                          "same command again to resume", highlight=False)
        raise typer.Exit(EXIT_TIMED_OUT)


@campaign_app.command("show")
def show(
    store: Path = typer.Argument(..., help="SQLite campaign store."),
    kind: str = typer.Option(None, "--kind", help="Only this kind (verify, robustness, phi, "
                             "min_perturbation)."),
    rows: bool = typer.Option(False, "--rows", help="List every answer, not only counts."),
    json_out: str = typer.Option(None, "--json", help="Write the answers as JSON (FILE or "
                                 "- for stdout)."),
) -> None:
    """Counts of answers per kind and status (and optionally every answer)."""
    from rich.table import Table

    from nnresilience.store import CampaignStore

    with CampaignStore(store, readonly=True) as st:
        summary = st.summary()
        records = st.all(kind) if (rows or json_out) else []
        total = st.count()
    if kind is not None:
        summary = {k: v for k, v in summary.items() if k == kind}
    if json_out:
        emit_json({"store": str(store), "total": total, "summary": summary,
                   "answers": [r.to_dict() for r in records]}, json_out)
        if json_out == "-":
            return
    table = Table(title=f"{store} — {total} answers")
    table.add_column("kind")
    table.add_column("status")
    table.add_column("count", justify="right")
    for k, by_status in summary.items():
        for status, n in by_status.items():
            table.add_row(k, status, str(n))
    console.print(table)
    if rows:
        t = Table()
        for col in ("kind", "network", "property", "status", "lower", "upper", "seconds",
                    "engine"):
            t.add_column(col)
        for r in records:
            t.add_row(r.kind, r.network_name or "", r.property_name or "", r.status or "",
                      _num(r.lower), _num(r.upper), _num(r.seconds), r.engine or "")
        console.print(t)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"
