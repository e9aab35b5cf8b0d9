"""Deadlines of the resilience entry points, measured from outside the process.

Each entry point runs in its own ``python`` subprocess on a hard shared instance with
timeout T. Two times are reported: the call's own duration, measured in the subprocess
around the Python call (what the API promises: T + max(1 s, 5 % of T)), and the wall time
of the whole subprocess taken by this script from outside (interpreter start, model
loading, the call, exit; the start-up alone is measured by a run that does everything but
the call). The answer's interval is printed too. One markdown table.

Usage (from the repository root; the machine is shared, so walls are noisy)::

    python benchmarks/resilience_deadlines.py --timeouts 5 10 30
    python benchmarks/resilience_deadlines.py --timeouts 10 --only phi xi

Instances: MNIST-FC 256x2/256x4/256x6 of the shared benchmarks (samples are the centres of
the VNN-COMP property boxes) and the digits nets of ``examples/`` (whole-domain Φ).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PRELUDE = r"""
import json, sys, time
import numpy as np
from nnresilience.loaders import load_network
from nnresilience.spec.vnnlib import read_vnnlib
from nnresilience.resilience import *
from nnresilience.divide import min_perturbation_divided, phi_divided
B, EX = sys.argv[1], sys.argv[2]
T = float(sys.argv[3])
def mnist(n):
    return load_network(f"{B}/mnistfc/mnist-net_256x{n}.onnx")
def centre(net, i, eps="0.05"):
    p = read_vnnlib(f"{B}/mnistfc/prop_{i}_{eps}.vnnlib", net.n_inputs, net.n_outputs)
    r = p.cases[0].region
    return (r.lo + r.hi) / 2.0
def digits(n):
    return load_network(f"{EX}/digits/digits_{n}x50.onnx")
def out(r):
    d = {"lower": getattr(r, "lower", None), "upper": getattr(r, "upper", None),
         "optimal": getattr(r, "optimal", None)}
    if isinstance(r, list):
        d = {"rows": len(r), "with_upper": sum(x.upper is not None for x in r)}
    if hasattr(r, "status"):
        d = {"status": r.status.value}
    print("RESULT " + json.dumps({"call": CALL, **d}, default=str))
CALL = None
"""

# name -> (instance label, setup code, call code)
CASES = {
    "phi": ("MNIST 256x2, Φ_0 over [0,1]^784, L1", "net = mnist(2)",
            "r = phi(net, 0, 1.0, 1, 'l1', (0.0, 1.0), timeout=T)"),
    "xi": ("digits 4x50, Ξ (α=20, 10 classes)", "net = digits(4)",
           "r = xi(net, 20.0, 1, 'l1', (0.0, 1.0), timeout=T)"),
    "alpha_max": ("MNIST 256x4, class 0", "net = mnist(4)",
                  "r = alpha_max(net, 0, (0.0, 1.0), timeout=T)"),
    "min_perturbation": ("MNIST 256x4, centre of prop 0, L1", "net = mnist(4); x = centre(net, 0)",
                         "r = min_perturbation(net, x, None, 'l1', 1, (0.0, 1.0), timeout=T)"),
    "delta_check": ("MNIST 256x6, centre of prop 0, L∞ δ=0.05",
                    "net = mnist(6); x = centre(net, 0)",
                    "r = delta_check(net, x, None, 0.05, 'linf', 1, (0.0, 1.0), timeout=T)"),
    "robustness_table": ("MNIST 256x2, 4 centres, L∞",
                         "net = mnist(2); X = np.vstack([centre(net, i) for i in range(4)])",
                         "r = robustness_table(net, X, None, 'linf', 1, (0.0, 1.0), timeout=T)"),
    "phi_divided": ("digits 4x50, Φ_0 (α=20), 4 parts inline", "net = digits(4)",
                    "r = phi_divided(net, 0, 20.0, 1, 'l1', (0.0, 1.0), None, 4, timeout=T)"),
    "min_perturbation_divided": ("MNIST 256x4, centre of prop 1, L1, 4 parts inline",
                                 "net = mnist(4); x = centre(net, 1)",
                                 "r = min_perturbation_divided(net, x, None, 'l1', 1, "
                                 "(0.0, 1.0), None, 4, timeout=T)"),
}


def _run(code: str, bench: Path, T: float, limit: float) -> tuple[float, str]:
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", code, str(bench), str(REPO / "examples"),
                            str(T)], capture_output=True, text=True, timeout=limit,
                           cwd=REPO)
        wall = time.monotonic() - t0
        res = [ln[7:] for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        text = res[-1] if res else f"exit {p.returncode}: {p.stderr.strip()[-200:]}"
    except subprocess.TimeoutExpired:
        wall, text = time.monotonic() - t0, "killed (overran the runner's limit)"
    return wall, text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeouts", type=float, nargs="+", default=[5.0, 10.0, 30.0])
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), default=None)
    args = ap.parse_args(argv)
    bench = Path(os.environ.get("NNRES_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))
    if not bench.is_dir():
        print(f"shared benchmarks not found at {bench}", file=sys.stderr)
        return 2
    names = args.only or list(CASES)
    print("| entry point | instance | T (s) | call (s) | bound T+max(1,5%) | kept | "
          "process start-up (s) | process wall, outside (s) | answer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        label, setup, call = CASES[name]
        start, _ = _run(PRELUDE + setup + "\nout(None)\n", bench, 0.0, 600)
        for T in args.timeouts:
            bound = T + max(1.0, 0.05 * T)
            timed = f"_t0 = time.monotonic()\n{call}\nCALL = time.monotonic() - _t0\n"
            wall, text = _run(PRELUDE + setup + "\n" + timed + "out(r)\n", bench, T,
                              10 * T + 120)
            try:
                ans = json.loads(text)
                inside = float(ans.pop("call"))
                ans = json.dumps(ans)
            except (ValueError, KeyError, TypeError):
                inside, ans = math.nan, text
            print(f"| {name} | {label} | {T:g} | {inside:.2f} | {bound:.1f} | "
                  f"{'yes' if inside <= bound else '**no**'} | {start:.1f} | {wall:.1f} | "
                  f"{ans} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
