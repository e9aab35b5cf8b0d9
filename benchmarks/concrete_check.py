"""What the search's concrete check costs and finds: the same instances with it on and off.

Usage (from the repository root)::

    python benchmarks/concrete_check.py --timeout 60
    python benchmarks/concrete_check.py --timeout 60 --falsify-budget 0 \\
        --select '1_9_batch.*prop_7|prop_2'

Each instance runs through ``verify`` (engine ``auto``: the input-splitting ``bab`` search
on ACAS Xu) in a fresh subprocess, once with ``SearchSettings.concrete`` on and once off,
and the table gives per run the verdict, the seconds, and summed over the property's
cases the boxes bounded, the MILP leaves, the points the concrete check evaluated and
the seconds it took (part of the bound time), and who found a witness (``concrete``
check, the search's ``attack`` or ``leaf``, or the up-front ``falsifier``). The default
instances are the ACAS Xu ones that reach the search and take longest, plus the one only
the check decides (1_9 prop 7). Every witness is replayed in float64 by ``verify``
before it is reported.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

DEFAULT = [
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_5.vnnlib"),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_6.vnnlib"),
    ("ACASXU_run2a_3_3_batch_2000.onnx", "prop_9.vnnlib"),
    ("ACASXU_run2a_1_8_batch_2000.onnx", "prop_2.vnnlib"),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_3.vnnlib"),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_2.vnnlib"),
    ("ACASXU_run2a_1_3_batch_2000.onnx", "prop_2.vnnlib"),
    ("ACASXU_run2a_1_9_batch_2000.onnx", "prop_7.vnnlib"),
]

CHILD = r"""
import json, sys
from nnresilience.cli.verify import load_model, load_property
from nnresilience.verify import verify
model, prop_file, timeout, budget, concrete = sys.argv[1:6]
net = load_model(model)
prop = load_property(prop_file, net)
res = verify(net, prop, timeout=float(timeout), falsify_budget=float(budget),
             engine_options={"concrete": concrete == "1"})
cases = res.stats["cases"]
total = lambda k: sum(c.get(k, 0) + c.get("joint_" + k, 0) for c in cases)
who = ""
if res.status.value == "violated":
    if any(c.get("method") == "falsifier" for c in cases):
        who = "falsifier"
    elif total("concrete_hits"):
        who = "concrete"
    elif total("falsified"):
        who = "attack"
    else:
        who = "leaf"
print(json.dumps({"status": res.status.value, "seconds": res.seconds,
                  "domains": total("domains"), "leaves": total("leaves"),
                  "points": total("concrete_points"),
                  "concrete_s": total("seconds_concrete"), "who": who}))
"""


def run(folder: Path, onnx: str, vnnlib: str, timeout: float, budget: float,
        concrete: bool) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(folder / onnx), str(folder / vnnlib),
           str(timeout), str(budget), "1" if concrete else "0"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError):
        return {"status": "error", "seconds": float("nan"), "domains": 0, "leaves": 0,
                "points": 0, "concrete_s": 0.0, "who": ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("../shared/benchmarks/acasxu"))
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--falsify-budget", type=float, default=1.0)
    ap.add_argument("--select", default=None,
                    help="regex on 'network,property' over instances.csv instead of the "
                         "default list")
    args = ap.parse_args()
    pairs = DEFAULT
    if args.select:
        rows = [line.split(",")[:2] for line in
                (args.folder / "instances.csv").read_text().splitlines() if line.strip()]
        pairs = [(a, b) for a, b in rows if re.search(args.select, f"{a},{b}")]
    print(f"timeout {args.timeout:g} s, falsify budget {args.falsify_budget:g} s\n")
    print("| network | property | check | result | seconds | boxes | leaves | points "
          "| check s | found by |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---|")
    for onnx, vnnlib in pairs:
        for concrete in (True, False):
            r = run(args.folder, onnx, vnnlib, args.timeout, args.falsify_budget, concrete)
            net = onnx.replace("ACASXU_run2a_", "").replace("_batch_2000.onnx", "")
            print(f"| {net} | {vnnlib.replace('.vnnlib', '')} | {'on' if concrete else 'off'} "
                  f"| {r['status']} | {r['seconds']:.1f} | {r['domains']} | {r['leaves']} "
                  f"| {r['points']} | {r['concrete_s']:.2f} | {r['who']} |", flush=True)


if __name__ == "__main__":
    main()
