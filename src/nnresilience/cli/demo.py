"""``nnres demo``: the seed-004 Cardiotocography experiment on data shipped in the package.

The demo loads the 18-36-36-3 Leaky-ReLU network and the 9 table samples from
:mod:`nnresilience.data`, decides local L-infinity robustness of every sample for every
delta in {0.01, ..., 0.035} (the ball intersected with the domain [-1, 1]^18, exactly the
query of the paper's Tables I-III), computes Phi_m of one class (seed 000), stores every
answer and writes an HTML report. Nothing is downloaded; ``../shared`` is not needed.

The grid helpers here (:func:`run_grid`, :func:`markdown_tables`, ...) are also what
``examples/ctg/robustness_table.py`` uses for the two-engine comparison, so the demo and
the recorded ``RESULTS.md`` are produced by the same code.

Soundness: a cell says "Fail" only for a ``violated`` answer, whose counterexample
``verify`` has already replayed through the float64 forward pass; here it is replayed once
more (``flipped_to`` is the argmax of that replay) so a table can never show a Fail whose
witness does not change the class. A cell says "✓" only for ``holds``; ``unknown``
(timeout) is shown as "?".
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import typer

from nnresilience.cli.app import app, console
from nnresilience.cli.output import write_atomic

DELTAS: tuple[float, ...] = (0.01, 0.015, 0.02, 0.025, 0.03, 0.035)
QUICK_DELTAS: tuple[float, ...] = (0.01, 0.035)
QUICK_SAMPLES: tuple[str, ...] = ("A1", "B3", "C1")
SYMBOL = {"holds": "✓", "violated": "Fail", "unknown": "?"}
# Phi_m (seed 000, Def. 1) of the pathologic class, alpha = 4 (p_m >= 4 p_j for every other
# class j), k = 1, L1 norm, on a *local* domain: the L-infinity ball of radius 0.1 (quick:
# 0.05) around sample C1, intersected with [-1, 1]^18. Over the whole [-1, 1]^18 the MIP
# does not close in minutes on this network (measured: 60 s leaves [0, 3.27] for alpha =
# 100), which would make the demo show only an interval; the local domain closes in ~15 s.
PHI_CLASS = 2
PHI_ALPHA = 4.0
PHI_CENTER = "C1"
PHI_RADIUS = 0.1
PHI_RADIUS_QUICK = 0.05


@dataclass
class Cell:
    """One (sample, delta, engine) verification answer, JSON-ready."""

    sample: str
    label: int
    delta: float
    engine: str
    status: str
    seconds: float
    flipped_to: int | None = None
    x: list[float] | None = None
    y: list[float] | None = None
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    # The objects behind the cell (for the campaign store); not serialised.
    prop: Any = field(default=None, repr=False, compare=False)
    result: Any = field(default=None, repr=False, compare=False)

    @property
    def symbol(self) -> str:
        return SYMBOL.get(self.status, "?")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("prop", "result")}


def json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def robustness_property(network, center: np.ndarray, label: int, delta: float,
                        domain: tuple[np.ndarray, np.ndarray], sample_id: str = "x"):
    """The paper's query: some class other than ``label`` reaches ``y_label`` (k = 1).

    "Fail" = exists x in B_inf(center, delta) ∩ [-1,1]^18 with argmax y(x) != label (ties
    count as a failure, which is the conservative reading of "identical classification").
    """
    from nnresilience.spec import property as spec_property

    return spec_property.robustness(
        center, int(label), float(delta), network.n_outputs, norm="linf",
        domain_lo=domain[0], domain_hi=domain[1],
        name=f"ctg {sample_id} linf<={delta:g}")


def run_cell(network, center: np.ndarray, label: int, delta: float, engine: str,
             timeout: float | None, domain: tuple[np.ndarray, np.ndarray],
             sample_id: str = "x", **verify_options: Any) -> Cell:
    """Verify one cell through :func:`nnresilience.verify.verify` and replay the witness."""
    from nnresilience.verify import verify

    prop = robustness_property(network, center, label, delta, domain, sample_id)
    t0 = time.perf_counter()
    res = verify(network, prop, engine=engine, timeout=timeout, **verify_options)
    secs = time.perf_counter() - t0
    cell = Cell(sample=sample_id, label=int(label), delta=float(delta), engine=engine,
                status=res.status.value, seconds=round(secs, 4), message=res.message,
                stats=json_safe(dict(res.stats)), prop=prop, result=res)
    if res.engine:
        cell.stats.setdefault("engine_used", res.engine)
    if res.counterexample is not None:
        x = res.counterexample.x_array
        y = np.asarray(network.forward(x), dtype=np.float64)
        inside = bool(np.all(np.abs(x - center) <= delta + 1e-9)
                      and np.all(x >= domain[0] - 1e-9) and np.all(x <= domain[1] + 1e-9))
        others = np.delete(np.arange(y.size), label)
        best = int(others[np.argmax(y[others])])
        if not inside or y[best] < y[label]:
            # verify() replays before answering; a witness failing here is a bug upstream.
            raise AssertionError(f"{sample_id} delta={delta}: counterexample does not replay")
        cell.flipped_to = best
        cell.x, cell.y = x.tolist(), y.tolist()
    return cell


def run_grid(network, samples, deltas: Sequence[float], engines: Sequence[str],
             timeout: float | None = None, ids: Sequence[str] | None = None,
             on_cell: Callable[[Cell], None] | None = None, **verify_options: Any
             ) -> list[Cell]:
    """All cells (sample x delta x engine), in table order; ``on_cell`` after each one.

    ``samples`` is a :class:`nnresilience.data.CtgSamples`; ``ids`` restricts the rows.
    """
    rows = [i for i, s in enumerate(samples.ids) if ids is None or s in ids]
    cells = []
    for i in rows:
        for d in deltas:
            for eng in engines:
                c = run_cell(network, samples.x[i], int(samples.labels[i]), d, eng, timeout,
                             samples.domain, samples.ids[i], **verify_options)
                cells.append(c)
                if on_cell is not None:
                    on_cell(c)
    return cells


def _index(cells: Sequence[Cell]) -> dict[tuple[str, float], list[Cell]]:
    out: dict[tuple[str, float], list[Cell]] = {}
    for c in cells:
        out.setdefault((c.sample, c.delta), []).append(c)
    return out


def disagreements(cells: Sequence[Cell]) -> list[tuple[str, float, dict[str, str]]]:
    """Cells where two engines gave *definite* different verdicts (holds vs violated)."""
    out = []
    for (s, d), cs in _index(cells).items():
        definite = {c.engine: c.status for c in cs if c.status != "unknown"}
        if len(set(definite.values())) > 1:
            out.append((s, d, definite))
    return out


def cell_text(cs: Sequence[Cell]) -> str:
    """The table cell: the shared symbol, or every engine's symbol when they differ."""
    symbols = {c.symbol for c in cs}
    if len(symbols) == 1:
        return symbols.pop()
    return " / ".join(f"{c.engine}:{c.symbol}" for c in cs) + " **DISAGREE**"


def markdown_tables(cells: Sequence[Cell], samples, deltas: Sequence[float]) -> str:
    """Tables I-III of seed 004: one per class, rows = samples, columns = delta."""
    idx = _index(cells)
    out = []
    roman = ("I", "II", "III", "IV", "V")
    for c, cname in enumerate(samples.class_names):
        ids = [s for s, lab in zip(samples.ids, samples.labels, strict=True) if lab == c
               and any((s, d) in idx for d in deltas)]
        if not ids:
            continue
        out.append(f"**Table {roman[c]}: verification results of the {cname} samples**\n")
        out.append("| perturbation neighbourhood δ | " + " | ".join(f"{d:g}" for d in deltas)
                   + " |")
        out.append("|---|" + "---|" * len(deltas))
        for s in ids:
            row = [cell_text(idx[(s, d)]) if (s, d) in idx else "" for d in deltas]
            out.append(f"| {cname} sample {s} | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def counterexample_lines(cells: Sequence[Cell], samples, limit: int = 18) -> str:
    """One line per Fail (first engine that found it): class reached and moved features.

    Perturbations are shown in scaled units (the delta units) and, for the largest three
    moves, in the clinical units of CTG.csv.
    """
    lines = []
    seen = set()
    by_id = {s: i for i, s in enumerate(samples.ids)}
    for c in cells:
        if c.status != "violated" or (c.sample, c.delta) in seen or c.x is None:
            continue
        seen.add((c.sample, c.delta))
        i = by_id[c.sample]
        x = np.asarray(c.x)
        diff = x - samples.x[i]
        moved = np.flatnonzero(np.abs(diff) > 1e-9)
        order = moved[np.argsort(-np.abs(diff[moved]), kind="stable")]
        feats = ", ".join(f"{samples.feature_names[j]} {diff[j]:+.4f}" for j in order)
        raw0, raw1 = samples.unscale(samples.x[i]), samples.unscale(x)
        clin = "; ".join(f"{samples.feature_names[j]} {raw0[j]:.4g}→{raw1[j]:.4g}"
                         for j in order[:3])
        y = np.asarray(c.y)
        by = str(c.stats.get("engine_used") or c.engine)
        who = c.engine if by == c.engine else f"{c.engine}, found by the {by}"
        lines.append(
            f"- {c.sample} δ={c.delta:g} ({who}): "
            f"{samples.class_names[c.label]} → **{samples.class_names[c.flipped_to]}** "
            f"(logits {np.array2string(y, precision=3, separator=', ')}); "
            f"moved {len(moved)}/{x.size} features: {feats} (clinical: {clin})")
        if len(lines) >= limit:
            lines.append("- ...")
            break
    return "\n".join(lines) if lines else "(no counterexamples: every cell holds)"


# Reluplex statistics tabulated by the examples, in display order: the calculus rules of
# seed 004 (with the Leaky-ReLU variants), then search / bound-tightening counters.
RULE_KEYS: tuple[str, ...] = (
    "Pivot1", "Pivot2", "PivotForRelu", "Update", "Update_b", "Update_f", "L-Update_b1",
    "L-Update_b2", "L-Update_f", "ReluSplit", "Failure", "ReluSuccess", "L-ReluSuccess",
    "splits", "max_depth", "nodes", "bound_tightenings", "phase_fixes", "eliminations",
    "restorations", "pivots", "simplex_steps")


def rule_counts(stats: dict[str, Any]) -> dict[str, int]:
    """The Reluplex statistics worth tabulating (rule applications, splits, depth).

    Accepts either flat statistics (``{"Pivot1": 3, "splits": 2, ...}``) or a nested
    ``rules``/``rule_counts`` dict; booleans and non-numbers are ignored.
    """
    flat: dict[str, Any] = {}
    nested: list[str] = []
    for key in ("rules", "rule_counts"):
        if isinstance(stats.get(key), dict):
            flat.update(stats[key])
            nested += list(stats[key])
    flat.update({k: v for k, v in stats.items() if k in RULE_KEYS})
    out: dict[str, int] = {}
    for key in [*RULE_KEYS, *(k for k in nested if k not in RULE_KEYS)]:
        v = flat.get(key)
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
                v, (bool, np.bool_)):
            out[key] = int(v)
    return out


# ----------------------------------------------------------------------- demo command

def _optional(module: str, attr: str):
    """``module.attr`` if that part of the package is present, else ``None``."""
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(importlib.import_module(module), attr, None)


def _rich_table(cells: Sequence[Cell], samples, deltas: Sequence[float]):
    from rich.table import Table

    idx = _index(cells)
    t = Table(title="CTG Leaky-ReLU network: local L∞ robustness (✓ holds, Fail violated)")
    t.add_column("sample")
    t.add_column("class")
    for d in deltas:
        t.add_column(f"δ={d:g}", justify="center")
    for s, lab in zip(samples.ids, samples.labels, strict=True):
        if not any((s, d) in idx for d in deltas):
            continue
        row = []
        for d in deltas:
            txt = cell_text(idx[(s, d)]) if (s, d) in idx else ""
            style = {"✓": "green", "Fail": "red"}.get(txt, "yellow")
            row.append(f"[{style}]{txt}[/{style}]")
        t.add_row(s, samples.class_names[lab], *row)
    return t


def run_demo(out: Path, quick: bool = False, engine: str = "auto",
             timeout: float | None = None, phi_timeout: float | None = None,
             with_phi: bool = True, show_progress: bool = True) -> dict[str, Any]:
    """The whole demo; returns the summary written to ``out/results.json``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from nnresilience.data import ctg_network, ctg_samples
    from nnresilience.errors import NNResError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = ctg_network()
    samples = ctg_samples()
    pred = np.asarray(net.predict(samples.x))
    if not np.array_equal(pred, samples.labels):
        raise AssertionError("shipped network does not reproduce the shipped labels")
    deltas = QUICK_DELTAS if quick else DELTAS
    ids = QUICK_SAMPLES if quick else samples.ids
    timeout = timeout if timeout is not None else (20.0 if quick else 60.0)
    phi_timeout = phi_timeout if phi_timeout is not None else (30.0 if quick else 90.0)
    n_cells = len(ids) * len(deltas)
    phi_radius = PHI_RADIUS_QUICK if quick else PHI_RADIUS
    c = samples.x[samples.ids.index(PHI_CENTER)]
    phi_domain = (np.maximum(c - phi_radius, -1.0), np.minimum(c + phi_radius, 1.0))
    notes: list[str] = []
    t0 = time.perf_counter()
    cells: list[Cell] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not show_progress,
                  transient=False) as progress:
        task = progress.add_task("robustness cells", total=n_cells)

        def tick(c: Cell) -> None:
            progress.update(task, advance=1,
                            description=f"robustness {c.sample} δ={c.delta:g}: {c.symbol}")

        cells = run_grid(net, samples, deltas, [engine], timeout, ids=ids, on_cell=tick)
        phi_res = None
        phi = _optional("nnresilience.resilience", "phi") if with_phi else None
        if not with_phi:
            notes.append("Phi_m skipped (--no-phi)")
        elif phi is None:
            notes.append("Phi_m skipped: nnresilience.resilience.phi is not available")
        else:
            ptask = progress.add_task(
                f"Phi_{PHI_CLASS} (alpha={PHI_ALPHA:g}, L1, r={phi_radius:g})", total=1)
            try:
                phi_res = phi(net, PHI_CLASS, alpha=PHI_ALPHA, k=1, norm="l1",
                              domain=phi_domain, timeout=phi_timeout)
            except NNResError as exc:   # e.g. no MIP backend installed: say so, go on
                notes.append(f"Phi_m failed: {type(exc).__name__}: {exc}")
            progress.update(ptask, advance=1)
    seconds = time.perf_counter() - t0

    phi_query = {"query": "phi", "cls": PHI_CLASS, "alpha": PHI_ALPHA, "k": 1, "norm": "l1",
                 "domain": f"B_inf({PHI_CENTER}, {phi_radius:g}) ∩ [-1,1]^18",
                 "domain_lo": phi_domain[0].tolist(), "domain_hi": phi_domain[1].tolist()}
    report = _store_and_report(out, net, samples, cells, phi_res, notes, phi_query)
    summary: dict[str, Any] = {
        "network": str(net.source or "ctg_leaky.onnx"), "network_hash": net.content_hash(),
        "engine": engine, "quick": quick, "deltas": list(deltas), "samples": list(ids),
        "cells": [c.to_dict() for c in cells],
        "phi_query": phi_query,
        "phi": None if phi_res is None else json_safe(phi_res.to_dict()),
        "seconds": round(seconds, 3), "notes": notes, "report": report,
        "phi_text": None if phi_res is None else _phi_text(phi_res, samples, phi_radius),
    }
    write_atomic(out / "results.json", json.dumps(json_safe(summary), indent=2) + "\n")
    md = ["# nnres demo: Cardiotocography Leaky-ReLU network (seed 004 §IV)", "",
          f"Engine `{engine}`, L∞ ball of radius δ around each sample, intersected with "
          "the domain [-1, 1]^18. ✓ = robust (proved), Fail = counterexample (replayed), "
          "? = unknown (timeout).", "",
          markdown_tables(cells, samples, deltas), "## Counterexamples", "",
          counterexample_lines(cells, samples), "", "## Phi_m", "",
          _phi_text(phi_res, samples, phi_radius) if phi_res is not None else "skipped", ""]
    write_atomic(out / "tables.md", "\n".join(md))
    return summary


def _phi_text(res, samples, radius: float) -> str:
    """One sentence on Phi_m: a number when proved optimal, else the proven interval."""
    cname = samples.class_names[PHI_CLASS]
    head = (f"Phi_{PHI_CLASS} ({cname}, alpha={PHI_ALPHA:g}, k=1, L1; domain: L∞ ball of "
            f"radius {radius:g} around {PHI_CENTER} ∩ [-1,1]^18)")
    if res.upper is not None and math.isinf(res.upper) and res.optimal:
        return f"{head} = +inf (no perturbation inside the domain changes the class)"
    if not res.feasible:
        return f"{head}: infeasible (no input reaches that confidence) {res.message}"
    if res.optimal:
        return f"{head} = {res.upper:.6g} (optimal, {res.seconds:.1f} s)"
    return (f"{head} in [{res.lower}, {res.upper}] (not proved optimal within the time "
            f"limit, {res.seconds:.1f} s)")


def _store_and_report(out: Path, net, samples, cells: Sequence[Cell], phi_res,
                      notes: list[str], phi_query: dict[str, Any] | None = None
                      ) -> str | None:
    """Put every answer in ``out/campaign.sqlite`` and render ``out/report.html``.

    Each cell is stored under the store's usual key (network hash, property hash, params
    hash), with the sample centre in ``params`` so the report can draw the original next
    to the counterexample. Missing parts of the package are reported as notes.
    """
    if _optional("nnresilience.store", "CampaignStore") is None:
        notes.append("campaign store not available: results are in results.json only")
        return None
    from nnresilience.store import CampaignStore, query_key

    db = out / "campaign.sqlite"
    with CampaignStore(db) as store:
        by_id = {s: i for i, s in enumerate(samples.ids)}
        for c in cells:
            if c.result is None or c.prop is None:
                continue
            # the report groups robustness answers by (norm, k) and draws sample x radius
            params = {"engine": c.engine, "radius": c.delta, "norm": "linf", "k": 1,
                      "sample": by_id[c.sample], "sample_id": c.sample, "label": c.label,
                      "center": samples.x[by_id[c.sample]].tolist()}
            key = query_key(net, c.prop, {"engine": c.engine, "radius": c.delta})
            store.put(key, "robustness", c.result,
                      {"network_name": net.name, "network_path": net.source,
                       "property_name": c.prop.name, "params": params, "engine": c.engine,
                       "info": {"feature_names": list(samples.feature_names),
                                "sample_id": c.sample}})
        if phi_res is not None and phi_query is not None:
            store.put(query_key(net, phi_query, {}), "phi", phi_res,
                      {"network_name": net.name, "network_path": net.source,
                       "property_name": f"phi cls={phi_query['cls']}", "params": phi_query,
                       "info": {"feature_names": list(samples.feature_names)}})
        write_report = _optional("nnresilience.report", "write_report")
        if write_report is None:
            notes.append("HTML report skipped: nnresilience.report is not available")
            return None
        path = out / "report.html"
        write_report(store, path)
    return str(path)


def _demo_work(reporter, out: Path, quick: bool, engine: str, timeout: float | None,
               with_phi: bool, show_progress: bool) -> dict[str, Any]:
    """The demo in a killable child (its progress bar draws on stderr)."""
    return run_demo(out, quick=quick, engine=engine, timeout=timeout, with_phi=with_phi,
                    show_progress=show_progress)


@app.command()
def demo(
    out: Path = typer.Option(Path("nnres-demo"), "--out", help="output folder"),
    quick: bool = typer.Option(False, "--quick",
                               help=f"only samples {', '.join(QUICK_SAMPLES)} and "
                                    f"δ in {QUICK_DELTAS} (seconds, for tests)"),
    engine: str = typer.Option("auto", "--engine", help="auto, milp or reluplex"),
    cell_timeout: float | None = typer.Option(None, "--cell-timeout",
                                              help="seconds per robustness cell"),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds for the whole "
                                         "demo; when they run out it stops (exit 4) "
                                         "without results"),
    no_phi: bool = typer.Option(False, "--no-phi", help="skip the Phi_m computation"),
    json_out: str | None = typer.Option(None, "--json",
                                        help="also write the summary as JSON ('-' = stdout "
                                             "only, no table)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Run the seed-004 Cardiotocography robustness tables on the shipped network."""
    from nnresilience import validate
    from nnresilience.cli.app import err_console
    from nnresilience.cli.command import CommandRun, show_progress
    from nnresilience.data import ctg_samples
    from nnresilience.errors import InvalidArgumentError

    with CommandRun("demo", timeout, quiet) as run:
        js = run.output(json_out, "--json")
        validate.choice(engine, ("auto", "milp", "reluplex"), "--engine")
        cell_timeout = validate.timeout(cell_timeout, "--cell-timeout")
        if Path(out).exists() and not Path(out).is_dir():
            raise InvalidArgumentError(f"--out {out}: exists and is not a folder")
        validate.output_file(Path(out) / "results.json", "--out")
        res = run.in_child(_demo_work, Path(out), quick, engine, cell_timeout, not no_phi,
                           show_progress(quiet or js == "-"))
        if not res.finished:
            err_console.print(f"stopped: the demo did not finish within --timeout "
                              f"{timeout:g} s; no results", highlight=False, soft_wrap=True)
            from nnresilience.cli import EXIT_TIMED_OUT

            raise typer.Exit(EXIT_TIMED_OUT)
        summary = res.value
        run.outputs.write_json(js, json_safe(summary))
    if js == "-":
        return
    samples = ctg_samples()
    cells = [Cell(**c) for c in summary["cells"]]
    console.print(_rich_table(cells, samples, summary["deltas"]))
    if summary.get("phi_text"):
        console.print(summary["phi_text"], highlight=False, soft_wrap=True)
    for note in summary["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)
    console.print(f"results: {Path(out) / 'results.json'}, tables: {Path(out) / 'tables.md'}",
                  highlight=False, soft_wrap=True)
    if summary.get("report"):
        console.print(f"report: {summary['report']}", highlight=False, soft_wrap=True)
    console.print(f"done in {summary['seconds']:.1f} s", highlight=False)
