"""The measurement behind ``verify``'s ``auto`` engine choice: engines side by side.

Usage (from the repository root)::

    python benchmarks/auto_table.py --instances ../shared/benchmarks/mnistfc/instances.csv \\
        --select '256x2.onnx,prop_[0-9]+_0.03' --engines milp bab --timeout 60

For every instance: the number of unstable ReLUs after the root symbolic bounds (what
``auto`` can see before choosing), then ``verify(engine=E, timeout=T)`` for each engine
``E`` in this process (load time excluded; the falsifier runs first for every engine, so
the engines differ only in what they do after it). Prints one Markdown row per instance
(verdict and seconds per engine) and a summary row (solved, seconds). Every ``violated``
answer is replayed through the float64 forward pass; a disagreement with
``expected_results.csv`` is flagged and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def root_unstable(network, case) -> int:
    from nnresilience.verify import _case_bounds, _n_unstable, _spec_network

    nb, _ = _case_bounds(network, _spec_network(network, case.unsafe), case, None, None,
                         "symbolic", None)
    return _n_unstable(network, nb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", required=True, type=Path)
    ap.add_argument("--select", default=None, help="regex on 'network,property'")
    ap.add_argument("--engines", nargs="+", default=["milp", "bab"])
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)

    from nnresilience.loaders import load_network
    from nnresilience.spec.vnnlib import read_vnnlib
    from nnresilience.verify import verify

    folder = args.instances.resolve().parent
    expected = {}
    exp_path = folder / "expected_results.csv"
    if exp_path.is_file():
        with open(exp_path, newline="") as fh:
            expected = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(fh)}
    rows = []
    with open(args.instances, newline="") as fh:
        for r in csv.reader(fh):
            if len(r) >= 2 and (not args.select or re.search(args.select, f"{r[0]},{r[1]}")):
                rows.append((r[0].strip(), r[1].strip()))
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    head = "| instance | expected | root unstable | " + " | ".join(args.engines) + " |"
    lines = [head, "|---|---|---:|" + "---|" * len(args.engines)]
    solved = dict.fromkeys(args.engines, 0)
    seconds = dict.fromkeys(args.engines, 0.0)
    bad = 0
    for onnx, vnnlib in rows:
        net = load_network(folder / onnx)
        prop = read_vnnlib(folder / vnnlib, net.n_inputs, net.n_outputs)
        exp = expected.get((onnx, vnnlib), "")
        cells = []
        for eng in args.engines:
            t = time.monotonic()
            res = verify(net, prop, engine=eng, timeout=args.timeout)
            dt = time.monotonic() - t
            seconds[eng] += dt
            word = res.status.value
            if word == "violated":
                x = res.counterexample.x_array
                if not prop.violated_by(x, net.forward(x)):
                    word, bad = "WITNESS FAILS", bad + 1
            if word in ("holds", "violated"):
                solved[eng] += 1
                if exp in ("holds", "violated") and exp != word:
                    word, bad = f"DISAGREES ({word})", bad + 1
            cells.append(f"{word} {dt:.1f} s")
        unstable = root_unstable(net, prop.cases[0])
        line = f"| {onnx} {vnnlib} | {exp} | {unstable} | " + " | ".join(cells) + " |"
        lines.append(line)
        print(line, flush=True)
    lines.append("| **solved / seconds** | | | " + " | ".join(
        f"**{solved[e]}** / {seconds[e]:.0f} s" for e in args.engines) + " |")
    print()
    print("\n".join(lines))
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
