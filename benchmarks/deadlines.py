"""Deadline table: does every entry point end by T + max(1 s, 5 % of T)?

Each row runs one entry point on a hard instance (one that is not decided within T, so the
deadline is what ends it) in a fresh subprocess, and measures the wall time *from outside*
that process. Python API rows also print the time of the call itself (the promise of the
API is counted from the call; the process time adds interpreter start-up and imports). CLI
rows are timed as a user would see them: the whole command.

    python benchmarks/deadlines.py --timeouts 5,10,30 --out benchmarks/results_deadlines.md

Instances come from ``../shared/benchmarks`` (MNIST-FC 256x4 / 256x6, props that no tool
decided in VNN-COMP 2021) and the shipped digits net (whole-domain Φ_m).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("NNRES_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))
MNIST = BENCH / "mnistfc"
DIGITS = REPO / "examples" / "digits" / "digits_2x50.onnx"

# Python API calls: each snippet defines the call; ``T`` is substituted.
_API_SETUP = """
import json, sys, time
import numpy as np
from nnresilience.loaders import load_network
from nnresilience.spec.vnnlib import read_vnnlib
"""
API = {
    "verify (API)": ("mnist-net_256x6.onnx", "prop_0_0.05.vnnlib", """
from nnresilience.verify import verify
net = load_network(MODEL); prop = read_vnnlib(PROP, net.n_inputs, net.n_outputs)
t = time.monotonic(); r = verify(net, prop, timeout=T); dt = time.monotonic() - t
print(json.dumps({"call": dt, "answer": r.status.value}))
"""),
    "compute_bounds lp (API)": ("mnist-net_256x6.onnx", "prop_0_0.05.vnnlib", """
from nnresilience.bounds import compute_bounds
net = load_network(MODEL); prop = read_vnnlib(PROP, net.n_inputs, net.n_outputs)
t = time.monotonic(); b = compute_bounds(net, prop.cases[0].region, method="milp:1", timeout=T)
dt = time.monotonic() - t
print(json.dumps({"call": dt, "answer": f"timed_out={b.stats.get('timed_out')}"}))
"""),
    "phi (API)": ("DIGITS", "", """
from nnresilience.resilience import phi
net = load_network(MODEL)
t = time.monotonic(); r = phi(net, 0, alpha=20.0, k=1, norm="l1", domain=(0.0, 1.0), timeout=T)
dt = time.monotonic() - t
print(json.dumps({"call": dt, "answer": f"[{r.lower}, {r.upper}] optimal={r.optimal}"}))
"""),
    "xi (API, 2 workers)": ("DIGITS", "", """
from nnresilience.resilience import xi
net = load_network(MODEL)
t = time.monotonic(); r = xi(net, alpha=20.0, k=1, norm="linf", domain=(0.0, 1.0), timeout=T,
                             workers=2)
dt = time.monotonic() - t
print(json.dumps({"call": dt, "answer": f"[{r.lower}, {r.upper}] optimal={r.optimal}"}))
"""),
    "alpha_max (API)": ("mnist-net_256x4.onnx", "", """
from nnresilience.resilience import alpha_max
net = load_network(MODEL)
t = time.monotonic(); r = alpha_max(net, 0, domain=(0.0, 1.0), timeout=T)
dt = time.monotonic() - t
print(json.dumps({"call": dt, "answer": f"[{r.lower}, {r.upper}]"}))
"""),
    "min_perturbation (API)": ("mnist-net_256x6.onnx", "prop_0_0.05.vnnlib", """
from nnresilience.resilience import min_perturbation
net = load_network(MODEL); prop = read_vnnlib(PROP, net.n_inputs, net.n_outputs)
reg = prop.cases[0].region
x = reg.center if reg.center is not None else (reg.lo + reg.hi) / 2
t = time.monotonic(); r = min_perturbation(net, x, norm="linf", domain=(0.0, 1.0), timeout=T)
dt = time.monotonic() - t
print(json.dumps({"call": dt, "answer": f"[{r.lower}, {r.upper}]"}))
"""),
}


def _cli_rows(T: float) -> dict[str, list[str]]:
    m6 = str(MNIST / "mnist-net_256x6.onnx")
    p6 = str(MNIST / "prop_0_0.05.vnnlib")
    return {
        "nnres verify": ["verify", m6, p6, "--timeout", str(T)],
        "nnres vnncomp": ["vnncomp", m6, p6, os.devnull, str(T)],
        "nnres bounds --method milp:1": ["bounds", m6, p6, "--method", "milp:1",
                                         "--timeout", str(T)],
        "nnres resilience (1 class)": ["resilience", str(DIGITS), "--class", "0", "--alpha",
                                       "20", "--domain", "0:1", "--timeout", str(T)],
        "nnres alpha-max": ["alpha-max", str(MNIST / "mnist-net_256x4.onnx"), "--class", "0",
                            "--domain", "0:1", "--timeout", str(T)],
    }


def _run(cmd: list[str], budget: float) -> tuple[float, str, int]:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=budget)
        out, code = p.stdout.strip().splitlines(), p.returncode
        tail = out[-1] if out else p.stderr.strip().splitlines()[-1:] or [""]
        return time.monotonic() - t0, tail if isinstance(tail, str) else tail[0], code
    except subprocess.TimeoutExpired:
        return time.monotonic() - t0, "KILLED by the benchmark (far over the deadline)", -9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeouts", default="5,10,30")
    ap.add_argument("--only", default="", help="substring filter on the row names")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    if not MNIST.is_dir():
        print(f"benchmark data not found at {BENCH}", file=sys.stderr)
        return 2
    rows = ["| entry point | T (s) | limit (s) | call (s) | process (s) | within | answer |",
            "|---|---:|---:|---:|---:|:---:|---|"]
    for T in (float(t) for t in args.timeouts.split(",")):
        limit = T + max(1.0, 0.05 * T)
        for name, (model, prop, body) in API.items():
            if args.only and args.only not in name:
                continue
            mpath = str(DIGITS) if model == "DIGITS" else str(MNIST / model)
            code = (_API_SETUP + f"MODEL = {mpath!r}\nPROP = {str(MNIST / prop)!r}\nT = {T}\n"
                    + body)
            wall, tail, rc = _run([sys.executable, "-c", code], 4 * T + 60)
            try:
                info = json.loads(tail)
                call, answer = f"{info['call']:.2f}", info["answer"]
                ok = info["call"] <= limit
            except (json.JSONDecodeError, KeyError, TypeError):
                call, answer, ok = "-", f"exit {rc}: {tail[:80]}", False
            rows.append(f"| {name} | {T:g} | {limit:.2f} | {call} | {wall:.2f} | "
                        f"{'yes' if ok else 'NO'} | {answer} |")
            print(rows[-1], flush=True)
        for name, cli in _cli_rows(T).items():
            if args.only and args.only not in name:
                continue
            wall, tail, rc = _run([sys.executable, "-m", "nnresilience", *cli], 4 * T + 60)
            ok = wall <= limit and rc in (0, 130)
            rows.append(f"| {name} | {T:g} | {limit:.2f} | - | {wall:.2f} | "
                        f"{'yes' if ok else 'NO'} | exit {rc}: {tail[:70]} |")
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    print()
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
