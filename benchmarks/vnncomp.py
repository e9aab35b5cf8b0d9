"""Run VNN-COMP instance lists through ``nnres vnncomp`` and compare with expected results.

Usage (from the repository root)::

    python benchmarks/vnncomp.py --instances ../shared/benchmarks/acasxu/instances.csv \
        --max-timeout 60 --out benchmarks/out/acasxu.csv

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", nargs="+", required=True, type=Path)
    ap.add_argument("--timeout-scale", type=float, default=1.0)
    ap.add_argument("--max-timeout", type=float, default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N instances per list")
    ap.add_argument("--select", default=None, help="regex on 'network,property'")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--bounds", default="symbolic")
    args = ap.parse_args(argv)

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
    bad = [r for r in records if r["agrees"] in ("no", "error")]
    return 1 if bad else 0


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
