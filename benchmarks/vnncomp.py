"""Run VNN-COMP instance lists through ``nnres vnncomp`` and compare with expected results.

Usage (from the repository root)::

    python benchmarks/vnncomp.py --instances ../shared/benchmarks/acasxu/instances.csv \
        --max-timeout 60 --out benchmarks/out/acasxu.csv
    # the comparison table: this run, a "before" run (the CSV of the same script run on
    # older code), and the published VNN-COMP counts
    python benchmarks/vnncomp.py --instances ../shared/benchmarks/mnistfc/instances.csv \
        --max-timeout 60 --out benchmarks/out/mnistfc.csv --before OLD.csv --published
    python benchmarks/vnncomp.py --table-only benchmarks/out/mnistfc.csv --before OLD.csv \
        --published          # the table again from saved CSVs, without running anything

Each instance runs in its own ``nnres vnncomp`` subprocess (so load time counts, memory
is returned, and the command's own timeout handling is what gets measured); the runner
kills it if it overruns ``timeout + 30`` s. Every ``sat`` answer's assignment is checked
again here, independently: the X values from the result file are replayed through the
float64 forward pass and must violate the property. Expected verdicts come from
``expected_results.csv`` next to ``instances.csv``; an ``unknown`` on either side is not a
disagreement, any other mismatch (or a witness that does not replay) is, and makes the
exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORD_TO_STATUS = {"sat": "violated", "unsat": "holds", "timeout": "unknown",
                  "unknown": "unknown", "error": "error"}


def read_instances(path: Path) -> list[tuple[str, str, float]]:
    rows = []
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 3 and row[0].strip():
                rows.append((row[0].strip(), row[1].strip(), float(row[2])))
    return rows


def read_expected(folder: Path) -> dict[tuple[str, str], str]:
    path = folder / "expected_results.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {(r["onnx"], r["vnnlib"]): r["expected"].strip() for r in csv.DictReader(fh)}


def check_witness(model: Path, prop: Path, text: str) -> bool:
    """Replay the X assignment of a ``sat`` file through the float64 forward pass."""
    from nnresilience.cli.verify import load_model, load_property

    network = load_model(model)
    pr = load_property(prop, network)
    xs = dict((int(i), float(v)) for i, v in re.findall(r"\(X_(\d+)\s+([^\s()]+)\)", text))
    if len(xs) != network.n_inputs:
        return False
    import numpy as np

    x = np.array([xs[i] for i in range(network.n_inputs)])
    return bool(pr.violated_by(x, network.forward(x)))


def run_instance(folder: Path, onnx: str, vnnlib: str, timeout: float, engine: str,
                 bounds: str) -> tuple[str, float, str]:
    """Returns ``(result, seconds, note)``; result is holds/violated/unknown/error."""
    with tempfile.TemporaryDirectory() as tmp:
        res_file = Path(tmp) / "result.txt"
        cmd = [sys.executable, "-m", "nnresilience.cli", "vnncomp", str(folder / onnx),
               str(folder / vnnlib), str(res_file), f"{timeout:g}", "--engine", engine,
               "--bounds", bounds]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            return "error", time.monotonic() - t0, "runner killed the process (overran)"
        secs = time.monotonic() - t0
        if proc.returncode != 0 or not res_file.is_file():
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return "error", secs, f"exit {proc.returncode}: {err}"
        text = res_file.read_text()
    word = text.split()[0] if text.split() else "error"
    result = WORD_TO_STATUS.get(word, "error")
    note = ""
    if result == "violated" and not check_witness(folder / onnx, folder / vnnlib, text):
        result, note = "error", "sat witness does not replay"
    return result, secs, note


# Published VNN-COMP results on these benchmarks: instances decided (holds + violated).
# MNIST-FC is the same 90 instances every year (2021 lists 89 rows); ACAS Xu counts are
# over all 186 instances (the 42 here are a subset). Competition timeouts: those of the
# instances.csv files (MNIST-FC: 120 s for 256x2, 300 s for 256x4 / 256x6), on AWS
# machines with a GPU for the tools that use one.
PUBLISHED = {
    "mnistfc": [
        ("2021", "alpha-beta-CROWN", "70 (49 h + 21 v)", "nnenum", "47 (35 + 12)",
         "Marabou", "54 (35 + 19)",
         "stanleybak/vnncomp2021_results output_voting.txt (commit a451211), the mnistfc "
         "summary rows, counted"),
        ("2022", "alpha-beta-CROWN", "84 (66 + 18)", "nnenum", "59 (48 + 11)",
         "Marabou", "60 (44 + 16)",
         "ChristopherBrix/vnncomp2022_results SCORING/results.txt (commit 0761ed5), "
         "table mnist-fc"),
        ("2023", "alpha-beta-CROWN", "86", "nnenum", "59", "Marabou", "not run",
         "ChristopherBrix/vnncomp2023_results SCORING/plots/accumulated-2022_mnist_fc-*.txt "
         "(commit ed700b0; no Marabou file)"),
    ],
    "acasxu": [
        ("2021", "alpha-beta-CROWN", "score 1742", "nnenum", "score 1922", "Marabou",
         "score 1809", "stanleybak/vnncomp2021_results output_voting.txt: scores only, "
         "counts not extracted"),
        ("2022", "alpha-beta-CROWN", "185 / 186 (139 + 46)", "nnenum",
         "186 / 186 (139 + 47)", "Marabou", "not run",
         "ChristopherBrix/vnncomp2022_results SCORING/latex/unscored.tex (commit 1860623)"),
        ("2023", "alpha-beta-CROWN", "186 / 186", "nnenum", "186 / 186", "Marabou",
         "181 / 186", "ChristopherBrix/vnncomp2023_results "
         "SCORING/plots/accumulated-2023_acasxu-*.txt (commit ed700b0 / 0b9dbb6)"),
    ],
}


def read_records(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _group(rec: dict) -> str:
    """``256x2 eps 0.03`` for MNIST-FC, the benchmark name otherwise."""
    m = re.search(r"(\d+x\d+)", rec["network"])
    e = re.search(r"_(0\.\d+)\.vnnlib", rec["property"])
    if rec["benchmark"] == "mnistfc" and m and e:
        return f"{m.group(1)} eps {e.group(1)}"
    return rec["benchmark"]


def comparison_table(records: list[dict], before: list[dict] | None) -> str:
    """Per group: solved (holds + violated), unknown, seconds, disagreements, now and
    before (the same instances only)."""
    head = "| group | n | solved | holds | violated | unknown | seconds | disagreements |"
    if before is not None:
        head += " solved before | seconds before | disagreements before |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    old = {(r["network"], r["property"]): r for r in before or []}
    groups = list(dict.fromkeys(_group(r) for r in records)) + ["**all**"]
    for g in groups:
        rs = [r for r in records if g == "**all**" or _group(r) == g]
        cnt = {k: sum(r["result"] == k for r in rs) for k in ("holds", "violated", "unknown")}
        secs = sum(float(r["seconds"]) for r in rs)
        dis = sum(r["agrees"] in ("no", "error") for r in rs)
        line = (f"| {g} | {len(rs)} | {cnt['holds'] + cnt['violated']} | {cnt['holds']} | "
                f"{cnt['violated']} | {cnt['unknown']} | {secs:.0f} | {dis} |")
        if before is not None:
            bs = [old[(r["network"], r["property"])] for r in rs
                  if (r["network"], r["property"]) in old]
            bsolved = sum(b["result"] in ("holds", "violated") for b in bs)
            bsecs = sum(float(b["seconds"]) for b in bs)
            bdis = sum(b["agrees"] in ("no", "error") for b in bs)
            line += f" {bsolved} / {len(bs)} | {bsecs:.0f} | {bdis} |"
        lines.append(line)
    return "\n".join(lines)


def published_table(benchmarks: list[str]) -> str:
    lines = ["| benchmark | year | alpha-beta-CROWN | nnenum | Marabou | source |",
             "|---|---|---|---|---|---|"]
    for b in benchmarks:
        for year, _a, av, _n, nv, _m, mv, src in PUBLISHED.get(b, []):
            lines.append(f"| {b} | {year} | {av} | {nv} | {mv} | {src} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", nargs="+", type=Path)
    ap.add_argument("--table-only", nargs="+", type=Path, default=None,
                    help="print the tables from saved CSVs of earlier runs, run nothing")
    ap.add_argument("--before", nargs="+", type=Path, default=None,
                    help="CSVs of a run of older code on the same instances")
    ap.add_argument("--published", action="store_true",
                    help="also print the published VNN-COMP counts")
    ap.add_argument("--timeout-scale", type=float, default=1.0)
    ap.add_argument("--max-timeout", type=float, default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N instances per list")
    ap.add_argument("--select", default=None, help="regex on 'network,property'")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--bounds", default="symbolic")
    args = ap.parse_args(argv)
    before = None
    if args.before:
        before = [r for p in args.before for r in read_records(p)]
    if args.table_only:
        records = [r for p in args.table_only for r in read_records(p)]
        _print_tables(records, before, args.published)
        return 0
    if not args.instances:
        ap.error("--instances is required (or --table-only)")

    records = []
    for inst in args.instances:
        folder = inst.resolve().parent
        expected = read_expected(folder)
        rows = read_instances(inst)
        if args.select:
            rows = [r for r in rows if re.search(args.select, f"{r[0]},{r[1]}")]
        if args.limit is not None:
            rows = rows[: args.limit]
        for onnx, vnnlib, t in rows:
            timeout = t * args.timeout_scale
            if args.max_timeout is not None:
                timeout = min(timeout, args.max_timeout)
            result, secs, note = run_instance(folder, onnx, vnnlib, timeout, args.engine,
                                              args.bounds)
            exp = expected.get((onnx, vnnlib), "")
            if result == "error":
                agrees = "error"
            elif exp in ("", "unknown") or result == "unknown":
                agrees = "n/a"
            else:
                agrees = "yes" if exp == result else "no"
            rec = {"benchmark": folder.name, "network": onnx, "property": vnnlib,
                   "timeout": f"{timeout:g}", "expected": exp, "result": result,
                   "seconds": f"{secs:.2f}", "agrees": agrees, "note": note}
            records.append(rec)
            flag = "" if agrees in ("yes", "n/a") else f"{agrees.upper()} {note}"
            print(f"{folder.name} {onnx} {vnnlib}: {result} ({secs:.1f} s, expected "
                  f"{exp or '?'}) {flag}", flush=True)
            if args.out is not None:
                _write_csv(args.out, records)

    print()
    print(markdown_table(records))
    _print_tables(records, before, args.published)
    bad = [r for r in records if r["agrees"] in ("no", "error")]
    return 1 if bad else 0


def _print_tables(records: list[dict], before: list[dict] | None, published: bool) -> None:
    print()
    print(comparison_table(records, before))
    if published:
        print()
        print(published_table(list(dict.fromkeys(r["benchmark"] for r in records))))


def _write_csv(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    tmp.replace(path)


def markdown_table(records: list[dict]) -> str:
    lines = ["| benchmark | instances | holds | violated | unknown | errors | total s "
             "| disagreements |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for bench in dict.fromkeys(r["benchmark"] for r in records):
        rs = [r for r in records if r["benchmark"] == bench]
        count = {k: sum(r["result"] == k for r in rs)
                 for k in ("holds", "violated", "unknown", "error")}
        total = sum(float(r["seconds"]) for r in rs)
        dis = sum(r["agrees"] == "no" for r in rs)
        lines.append(f"| {bench} | {len(rs)} | {count['holds']} | {count['violated']} | "
                     f"{count['unknown']} | {count['error']} | {total:.1f} | {dis} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
