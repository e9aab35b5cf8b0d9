"""``nnres campaign run|show|export``: long, resumable query campaigns.

``run`` reads a VNN-COMP ``instances.csv`` or a JSON/TOML config (plus, optionally, a
settings file ``--config``), checks every value, skips every query already in the SQLite
store, runs the rest (serially, on a local Dask cluster with ``--workers N``, or on an
existing Dask scheduler with ``--scheduler tcp://host:port``) and commits each answer as
it arrives. ``show`` and ``export`` read a store; by default they keep the latest answer
of every question (a re-run with a longer timeout or another engine is a second answer
to the same question), ``--all`` keeps every answer.

Exit codes: 0 all units answered; 1 some units failed (listed); 4 stopped by
``--timeout`` with units left (run again to resume); 130 Ctrl-C (or SIGTERM); 2 bad
input (nothing is created: a bad campaign file or option never leaves an empty store).
"""

from __future__ import annotations

from pathlib import Path

import typer

from nnresilience import validate
from nnresilience.cli import EXIT_FAILED_UNITS, EXIT_TIMED_OUT
from nnresilience.cli.app import app, console, err_console
from nnresilience.cli.command import CommandRun, show_progress
from nnresilience.errors import InvalidArgumentError

campaign_app = typer.Typer(
    help="Run resumable campaigns of many queries into a SQLite store; show and export "
         "their answers.",
    no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")



def _executor(workers: int | None, scheduler: str | None, executor: str | None):
    from nnresilience.errors import BackendUnavailableError
    from nnresilience.parallel import DaskExecutor, InlineExecutor, make_executor

    if scheduler:
        try:
            return DaskExecutor(scheduler=scheduler, connect_timeout=30)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendUnavailableError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    if executor:
        return make_executor(executor)
    if workers and workers > 1:
        return DaskExecutor(workers=workers)
    return InlineExecutor()


def _check_executor_options(workers: int | None, scheduler: str | None,
                            executor: str | None) -> None:
    """All executor options are checked before the store is created."""
    chosen = [o for o, v in (("--workers", workers), ("--scheduler", scheduler),
                             ("--executor", executor)) if v is not None]
    if len(chosen) > 1:
        raise InvalidArgumentError(f"choose one of {', '.join(chosen)}")
    if workers is not None:
        validate.workers(workers)
    if scheduler is not None and not str(scheduler).startswith(
            ("tcp://", "tls://", "ucx://", "inproc://")):
        raise InvalidArgumentError(f"--scheduler {scheduler!r}: expected an address such as "
                                   "tcp://host:8786")
    if executor is not None:
        spec = str(executor)
        ok = spec in ("inline", "serial", "processes", "dask") or spec.isdigit() and \
            int(spec) >= 1 or (spec.startswith("dask:") and spec[5:].isdigit()
                               and int(spec[5:]) >= 1)
        if not ok:
            raise InvalidArgumentError(f"--executor {spec!r}: use inline, processes, a "
                                       "worker count N >= 1, dask or dask:N")


# Seconds a pool of worker processes needs to be torn down at the deadline (measured: 1 s
# for a local Dask cluster at load 16 on 2 cores); kept out of the campaign's budget.
POOL_TEARDOWN = 1.5


def _campaign_budget(cmd: CommandRun, executor) -> float | None:
    """What ``run_campaign`` gets of ``--timeout``: the time left, less the teardown of a
    worker pool (units run inline are stopped by their own killable child)."""
    from nnresilience.parallel import InlineExecutor

    left = cmd.budget.remaining(floor=0.01)
    if left is None or isinstance(executor, InlineExecutor):
        return left
    return max(left - min(POOL_TEARDOWN, 0.1 * (cmd.budget.timeout or 0.0)), 0.01)


def _check_store_path(store: Path, what: str = "--store") -> Path:
    """The store file: a writable path that is not a directory (checked before it is
    created, so bad input never leaves an empty store behind)."""
    return validate.output_file(store, what)


@campaign_app.command("run")
def run(
    campaign: Path = typer.Argument(..., help="instances.csv (onnx,vnnlib,timeout), or a "
                                    "JSON or TOML campaign config."),
    store: Path = typer.Option(..., "--store", "-s", help="SQLite campaign store (created "
                               "if missing; answers already in it are skipped)."),
    config: Path = typer.Option(None, "--config", "-c", help="Settings file (.toml or "
                                ".json): engine, bounds, solver, timeout and resilience "
                                "settings for every unit (overrides the campaign's own)."),
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
    from nnresilience.campaign import load_campaign, load_settings, run_campaign
    from nnresilience.progress import make_progress
    from nnresilience.store import CampaignStore

    with CommandRun("campaign", timeout, quiet or jsonl) as cmd:
        js = cmd.output(json_out, "--json", (campaign, config))
        if js == "-" and jsonl:
            raise InvalidArgumentError("--json - and --jsonl both write to stdout; give "
                                       "--json a FILE")
        store = _check_store_path(store)
        validate.distinct({"--store": store, "--json": js, "CAMPAIGN": campaign,
                           "--config": config})
        _check_executor_options(workers, scheduler, executor)
        overrides = {k: v for k, v in (("timeout", query_timeout), ("engine", engine))
                     if v is not None}
        settings = load_settings(config) if config is not None else None
        camp = load_campaign(validate.input_file(campaign, "campaign file"),
                             overrides=overrides, settings=settings)
        cmd.start()
        with CampaignStore(store) as st:
            progress = make_progress(quiet=not show_progress(quiet) and not jsonl,
                                     jsonl=jsonl, console=err_console, title=camp.name)
            with _executor(workers, scheduler, executor) as ex:
                summary = run_campaign(camp.units, st, ex,
                                       timeout=_campaign_budget(cmd, ex),
                                       progress=progress, task=camp.task)
            stored = st.count()
        cmd.outputs.write_json(js, {"command": "campaign run", **summary.to_dict(),
                                    "store": str(store), "stored_total": stored,
                                    "settings": camp.settings})
    if not quiet and not jsonl:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(summary.counts.items())) or "-"
        err_console.print(
            f"{summary.done} answered ({counts}), {summary.skipped} already stored, "
            f"{len(summary.errors)} failed, {summary.remaining} left; {stored} answers in "
            f"{store} ({summary.seconds:.1f} s)", highlight=False, soft_wrap=True)
    for err in summary.errors:
        if not jsonl:
            err_console.print(f"failed: {err.get('name')}: {err.get('type')}: "
                              f"{err.get('message')}", highlight=False, markup=False,
                              soft_wrap=True)
    if summary.aborted:
        err_console.print(f"stopped: a worker died ({summary.aborted}); {summary.remaining} "
                          "unit(s) left, run the same command again to resume",
                          highlight=False, markup=False, soft_wrap=True)
    if summary.errors or summary.aborted:
        raise typer.Exit(EXIT_FAILED_UNITS)
    if summary.timed_out and summary.remaining > 0:
        err_console.print(f"--timeout reached: {summary.remaining} unit(s) left; run the "
                          "same command again to resume", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_TIMED_OUT)


ALL_OPT = typer.Option(False, "--all", help="Every stored answer (default: the latest "
                       "answer of each question; re-runs with other settings are kept "
                       "apart).")


@campaign_app.command("show")
def show(
    store: Path = typer.Argument(..., help="SQLite campaign store."),
    kind: str = typer.Option(None, "--kind", help="Only this kind (verify, robustness, phi, "
                             "min_perturbation)."),
    rows: bool = typer.Option(False, "--rows", help="List every answer, not only counts."),
    all_answers: bool = ALL_OPT,
    json_out: str = typer.Option(None, "--json", help="Write the answers as JSON (FILE or "
                                 "- for stdout)."),
) -> None:
    """Counts of answers per kind and status (and optionally every answer)."""
    from rich.table import Table

    from nnresilience.campaign import KINDS
    from nnresilience.store import CampaignStore

    with CommandRun("campaign show") as cmd:
        js = cmd.output(json_out, "--json", (store,))
        if kind is not None:
            validate.choice(kind, KINDS, "--kind")
        with CampaignStore(validate.input_file(store, "campaign store"), readonly=True) as st:
            records = st.all(kind, latest=not all_answers)
            total = st.count()
        summary: dict[str, dict[str, int]] = {}
        for r in records:
            d = summary.setdefault(r.kind, {})
            d[r.status or "unknown"] = d.get(r.status or "unknown", 0) + 1
        cmd.outputs.write_json(js, {"command": "campaign show", "store": str(store),
                                    "total": total, "shown": len(records),
                                    "latest_only": not all_answers, "summary": summary,
                                    "answers": [r.to_dict() for r in records]})
    if js == "-":
        return
    which = "all answers" if all_answers else "the latest answer of each question"
    console.print(f"{store}: {total} answers stored; showing {len(records)} ({which})",
                  highlight=False, markup=False, soft_wrap=True)
    table = Table()
    table.add_column("kind")
    table.add_column("status")
    table.add_column("count", justify="right")
    for k, by_status in sorted(summary.items()):
        for status, n in sorted(by_status.items()):
            table.add_row(k, status, str(n))
    console.print(table)
    if rows:
        t = Table()
        for col in ("kind", "network", "property", "status", "lower", "upper", "seconds",
                    "timeout", "engine", "stored at"):
            # names are never cut: a narrow terminal folds them onto more lines
            t.add_column(col, overflow="fold",
                         no_wrap=col not in ("network", "property", "engine"))
        for r in records:
            t.add_row(r.kind, r.network_name or "", r.property_name or "", r.status or "",
                      _num(r.lower), _num(r.upper), _num(r.seconds),
                      _num(r.params.get("timeout")), r.engine or "", r.created_at)
        console.print(t)


WITNESSES_NPZ = "witnesses-npz"


@campaign_app.command("export")
def export(
    store: Path = typer.Argument(..., help="SQLite campaign store."),
    fmt: str = typer.Option("vnncomp-csv", "--format", "-f", help="vnncomp-csv (the "
                            "competition's results.csv: category,onnx,vnnlib,result,"
                            "runtime), csv (one row per answer, with a header), json, or "
                            "witnesses-npz (every witness pair (a, a+eps) with its label, "
                            "training-set ready; needs -o FILE.npz)."),
    output: str = typer.Option("-", "--output", "-o", help="File to write ('-' = stdout)."),
    counterexamples: Path = typer.Option(None, "--counterexamples", help="Folder for one "
                                         "VNN-COMP counterexample file per violated answer "
                                         "(default with -o FILE: FILE's name + "
                                         "'_counterexamples/'; none for stdout)."),
    category: str = typer.Option(None, "--category", help="vnncomp-csv: the benchmark "
                                 "category column (default: the model's folder name)."),
    kind: str = typer.Option(None, "--kind", help="Only this kind."),
    network: str = typer.Option(None, "--network", help="Only the answers of this network "
                                "(file stem or path)."),
    all_answers: bool = ALL_OPT,
) -> None:
    """Export the answers of STORE (VNN-COMP results.csv, csv, json or the witness pairs
    as .npz) and the counterexamples of violated ones."""
    from nnresilience.campaign import (
        EXPORT_FORMATS,
        KINDS,
        counterexample_files,
        export_rows,
    )
    from nnresilience.store import CampaignStore

    with CommandRun("campaign export") as cmd:
        out = cmd.output(output, "--output", (store,))
        validate.choice(fmt, (*EXPORT_FORMATS, WITNESSES_NPZ), "--format")
        if kind is not None:
            validate.choice(kind, KINDS, "--kind")
        if fmt == WITNESSES_NPZ:
            if out == "-":
                raise InvalidArgumentError("--format witnesses-npz writes a binary .npz: "
                                           "give -o FILE.npz")
            if counterexamples is not None:
                raise InvalidArgumentError("--counterexamples does not go with --format "
                                           "witnesses-npz (its pairs hold the "
                                           "counterexamples)")
            with CampaignStore(validate.input_file(store, "campaign store"),
                               readonly=True) as st:
                cmd.start()
                from nnresilience.export_witnesses import export_store_witnesses

                n = export_store_witnesses(st, out, network, kind=kind,
                                           latest=not all_answers, writer=cmd.outputs.write)
            err_console.print(f"{n} witness pair(s) exported to {out} ({fmt})",
                              highlight=False, markup=False, soft_wrap=True)
            return
        cex_dir = counterexamples
        if cex_dir is None and out not in (None, "-"):
            cex_dir = Path(out).with_name(Path(out).stem + "_counterexamples")
        if cex_dir is not None:
            if cex_dir.exists() and not cex_dir.is_dir():
                raise InvalidArgumentError(f"--counterexamples {cex_dir}: exists and is not "
                                           "a folder")
            validate.output_file(cex_dir / "x.counterexample", "--counterexamples")
        with CampaignStore(validate.input_file(store, "campaign store"), readonly=True) as st:
            records = st.all(kind, latest=not all_answers)
        if network is not None:
            records = [r for r in records if network in (r.network_name, r.network_path)]
        cmd.start()
        cmd.outputs.write(out, export_rows(records, fmt, category))
        files = counterexample_files(records) if cex_dir is not None else {}
        for name, text in files.items():
            cmd.outputs.declare(cex_dir / name, "counterexample")
            cmd.outputs.write(cex_dir / name, text)
        if cex_dir is not None and cex_dir.is_dir():
            # a counterexample of an earlier export whose answer is no longer 'violated'
            for old in cex_dir.glob("*.counterexample"):
                if old.name not in files:
                    cmd.outputs.remove(old)
    where = "stdout" if out == "-" else str(out)
    msg = f"{len(records)} answer(s) exported to {where} ({fmt})"
    if cex_dir is not None:
        msg += f"; {len(files)} counterexample file(s) in {cex_dir}"
    err_console.print(msg, highlight=False, markup=False, soft_wrap=True)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"
