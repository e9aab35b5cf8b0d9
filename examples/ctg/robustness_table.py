"""Tables I-III of seed 004 §IV with both complete engines, cross-checked cell by cell.

For each of the 9 shipped samples (A1-A3 normal, B1-B3 suspect, C1-C3 pathologic) and each
delta in {0.01, 0.015, 0.02, 0.025, 0.03, 0.035}, decide local L-infinity robustness

    for all x in [c - delta, c + delta] ∩ [-1, 1]^18 :  argmax f(x) = label

with ``nnresilience.verify.verify(network, nnresilience.spec.robustness(...), engine=E)``
for E in {milp, reluplex}. Prints the paper-style tables, one line per counterexample
(class reached, moved features), and per-engine seconds and Reluplex rule counts per cell;
any cell where the engines give different definite verdicts is flagged (must be none:
both engines are complete and every "violated" is a replayed counterexample).

Writes ``examples/ctg/RESULTS.md`` and ``benchmarks/results_ctg.md``. Run::

    python examples/ctg/robustness_table.py                 # 54 cells x 2 engines
    python examples/ctg/robustness_table.py --samples A1,C2 --deltas 0.01,0.035 --no-write
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from nnresilience.cli.demo import (
    DELTAS,
    SYMBOL,
    Cell,
    counterexample_lines,
    disagreements,
    json_safe,
    markdown_tables,
    rule_counts,
    run_grid,
)
from nnresilience.data import ctg_network, ctg_samples

REPO = Path(__file__).resolve().parents[2]
ENGINES = ("milp", "reluplex")


def engine_only(network, prop, engine: str, timeout: float | None,
                bounds_method: str = "interval") -> dict:
    """The complete engine alone on the cell: no falsifier, no bound short-cut.

    ``verify`` may answer a cell before the engine runs (the falsifier finds most Fails,
    the output bounds prove some ✓), which would make an engine comparison hollow. This
    call gives every cell to the engine itself, by default with plain interval bounds
    (looser than the symbolic bounds ``verify`` feeds it, so the engine's own search and
    bound tightening do the work); a ``violated`` answer counts only if
    :func:`nnresilience.verify.confirm` replays its witness.
    """
    from nnresilience.bounds import compute_bounds
    from nnresilience.engines import get_engine
    from nnresilience.results import Status
    from nnresilience.verify import confirm

    case = prop.cases[0]
    eng = get_engine(engine)
    eng = eng() if isinstance(eng, type) else eng
    t0 = time.perf_counter()
    bounds = compute_bounds(network, case.region, method=bounds_method)
    ans = eng.check(network, case, bounds, timeout=timeout)
    status = ans.status.value
    message = ans.message
    if ans.status is Status.VIOLATED and confirm(network, case, ans.x) is None:
        status, message = "unknown", "candidate failed replay"
    return {"status": status, "seconds": round(time.perf_counter() - t0, 4),
            "message": message, "stats": json_safe(dict(ans.stats))}


def timing_table(cells: list[Cell], deltas, engines, bounds: str = "interval") -> str:
    """Rows: sample; columns: delta; cell: engine-only seconds per engine (+ verdict)."""
    idx = {(c.sample, c.delta, c.engine): c for c in cells}
    samples = list(dict.fromkeys(c.sample for c in cells))
    head = "| sample | " + " | ".join(f"δ={d:g}" for d in deltas) + " |"
    lines = [f"Engine-only seconds per cell ({' / '.join(engines)}; verdict in brackets; "
             f"{bounds} bounds computed and included, falsifier not run).", "", head,
             "|---|" + "---|" * len(deltas)]
    for s in samples:
        row = []
        for d in deltas:
            parts = []
            for e in engines:
                c = idx.get((s, d, e))
                dr = None if c is None else c.stats.get("direct")
                parts.append("–" if dr is None else
                             f"{dr['seconds']:.2f} [{SYMBOL.get(dr['status'], '?')}]")
            row.append(" / ".join(parts))
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    lines.append("")
    for e in engines:
        secs = [c.stats["direct"]["seconds"] for c in cells
                if c.engine == e and "direct" in c.stats]
        vsecs = [c.seconds for c in cells if c.engine == e]
        if secs:
            lines.append(f"- {e} alone: {len(secs)} cells, total {sum(secs):.1f} s, median "
                         f"{float(np.median(secs)):.3f} s, max {max(secs):.2f} s")
        if vsecs:
            lines.append(f"- verify(engine={e!r}) (falsifier, bounds, then {e}): total "
                         f"{sum(vsecs):.1f} s, median {float(np.median(vsecs)):.3f} s, "
                         f"max {max(vsecs):.2f} s")
    return "\n".join(lines)


def rules_table(cells: list[Cell], engine: str = "reluplex") -> str:
    """Reluplex statistics per cell (rule applications, splits, ...)."""
    rows = [(c, rule_counts(c.stats.get("direct", {}).get("stats", {})))
            for c in cells if c.engine == engine]
    keys: list[str] = []
    for _, rc in rows:
        keys += [k for k in rc if k not in keys]
    # keep the Leaky-ReLU rules of seed 004 even when zero; drop other all-zero columns
    keys = [k for k in keys if k.startswith("L-") or k == "ReluSplit"
            or any(rc.get(k, 0) for _, rc in rows)]
    if not keys:
        return f"({engine} reported no rule statistics)"
    lines = ["| cell | verdict | " + " | ".join(keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    totals = dict.fromkeys(keys, 0)
    for c, rc in rows:
        lines.append(f"| {c.sample} δ={c.delta:g} | {c.symbol} | "
                     + " | ".join(str(rc.get(k, "")) for k in keys) + " |")
        for k in keys:   # depth-like counters aggregate by max, the rest by sum
            v = rc.get(k, 0)
            totals[k] = max(totals[k], v) if "depth" in k else totals[k] + v
    lines.append("| **total** (max for depth) | | "
                 + " | ".join(str(totals[k]) for k in keys) + " |")
    return "\n".join(lines)


def direct_cells(cells: list[Cell]) -> list[Cell]:
    """The engine-only answers as pseudo-cells (engine name ``<engine>-alone``)."""
    out = []
    for c in cells:
        dr = c.stats.get("direct")
        if dr is not None:
            out.append(Cell(sample=c.sample, label=c.label, delta=c.delta,
                            engine=f"{c.engine}-alone", status=dr["status"],
                            seconds=dr["seconds"]))
    return out


def how_decided(cells: list[Cell]) -> str:
    """Which part of the pipeline answered each engine's cells (falsifier, bounds, engine)."""
    out = []
    for e in dict.fromkeys(c.engine for c in cells):
        counts: dict[str, int] = {}
        for c in cells:
            if c.engine == e:
                k = str(c.stats.get("decided_by") or c.stats.get("engine_used") or e)
                counts[k] = counts.get(k, 0) + 1
        out.append(f"- {e}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--samples", default=None, help="comma-separated ids, e.g. A1,B2")
    ap.add_argument("--deltas", default=None, help="comma-separated radii")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per cell")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--no-direct", action="store_true",
                    help="skip the engine-only run of every cell (verify() only)")
    ap.add_argument("--direct-bounds", default="interval",
                    help="bounds given to the engine-only runs: interval (default; loose, so "
                         "the engines do the work) or symbolic (what verify() uses)")
    ap.add_argument("--json", type=Path, default=None, help="also dump all cells as JSON")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    deltas = DELTAS if args.deltas is None else tuple(float(d) for d in args.deltas.split(","))
    ids = None if args.samples is None else [s.strip() for s in args.samples.split(",")]

    net, samples = ctg_network(), ctg_samples()
    t0 = time.perf_counter()

    def show(c: Cell) -> None:
        if not args.no_direct:
            c.stats["direct"] = engine_only(net, c.prop, c.engine, args.timeout,
                                            args.direct_bounds)
        dr = c.stats.get("direct", {})
        print(f"  {c.sample} δ={c.delta:<6g} {c.engine:9s} verify: {c.status:9s} "
              f"{c.seconds:7.2f} s  alone: {dr.get('status', '-'):9s} "
              f"{dr.get('seconds', float('nan')):7.2f} s", file=sys.stderr, flush=True)

    cells = run_grid(net, samples, deltas, engines, timeout=args.timeout, ids=ids,
                     on_cell=show)
    wall = time.perf_counter() - t0
    bad = disagreements(cells + direct_cells(cells))
    unknown = [c for c in cells if c.status == "unknown"]
    tables = markdown_tables(cells, samples, deltas)
    cex = counterexample_lines(cells, samples, limit=100)
    n_direct = len(direct_cells(cells))
    agree = ("**Engine agreement:** all "
             f"{len({(c.sample, c.delta) for c in cells})} cells agree: {len(cells)} "
             f"verify() answers ({', '.join(engines)}) and {n_direct} engine-alone answers "
             f"({args.direct_bounds} bounds), zero disagreements." if not bad else
             "**ENGINE DISAGREEMENT** in cells: " + "; ".join(
                 f"{s} δ={d:g} {v}" for s, d, v in bad))
    if unknown:
        why = sorted({c.message or "no reason given" for c in unknown})
        agree += f" {len(unknown)} verify() answers were unknown ({'; '.join(why)})."
    env = (f"{platform.processor() or platform.machine()}, Python "
           f"{platform.python_version()}, one process, timeout {args.timeout:g} s per cell")
    print(tables)
    print(agree)
    print(cex)
    print(timing_table(cells, deltas, engines, args.direct_bounds))
    if not args.no_write:
        results = "\n".join([
            "# CTG Leaky-ReLU network: robustness tables (seed 004 §IV)", "",
            "Produced by `python examples/ctg/robustness_table.py` on the shipped network "
            "`src/nnresilience/data/ctg_leaky.onnx` and samples `ctg_samples.npz` "
            "(see `examples/ctg/README.md`). Query per cell: is the class of every x in "
            "the L∞ ball of radius δ around the sample, intersected with [-1, 1]^18, the "
            "sample's class? ✓ = proved, Fail = counterexample (replayed through the "
            "float64 forward pass), ? = unknown.", "",
            f"Engines: {', '.join(engines)}. {agree}", "",
            tables, "## Counterexamples", "",
            "Scaled units (δ units) first, then the three largest moves in CTG.csv units.",
            "", cex, "", "## How each cell was decided", "",
            "`verify()` runs the falsifier first, then symbolic bounds, then the engine; "
            "the counts say which stage answered. Every cell was *also* given to each "
            f"engine alone ({args.direct_bounds} bounds, no falsifier): those verdicts are "
            "in the timing table below and enter the agreement check.", "",
            how_decided(cells), "",
            "## Timings", "", timing_table(cells, deltas, engines, args.direct_bounds), "",
            f"Wall time {wall:.1f} s on {env}.", ""])
        bench = "\n".join([
            "# CTG benchmark: engine × cell seconds and Reluplex rule counts", "",
            "`python examples/ctg/robustness_table.py` (9 samples × 6 δ × "
            f"{len(engines)} engines). {agree}", "",
            timing_table(cells, deltas, engines, args.direct_bounds), "",
            f"## Reluplex statistics per cell (engine alone, {args.direct_bounds} bounds)", "",
            rules_table(cells), "", f"Wall time {wall:.1f} s on {env}.", ""])
        (REPO / "examples" / "ctg" / "RESULTS.md").write_text(results)
        (REPO / "benchmarks").mkdir(exist_ok=True)
        (REPO / "benchmarks" / "results_ctg.md").write_text(bench)
    if args.json is not None:
        args.json.write_text(json.dumps([c.to_dict() for c in cells], indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
