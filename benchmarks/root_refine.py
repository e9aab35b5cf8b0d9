"""Root intermediate boxes of one MNIST-FC term refined by ``milp:W`` MIPs: cost and gain.

Bounds the root of the first term (promising-first order) of a VNN-COMP MNIST-FC case
with the optimised bounder (20 steps, optimised intermediate bounds), then tightens the
boxes of the given entries with :class:`~nnresilience.bounds.tighten.MilpRefiner`
(``milp:W``, each MIP capped at ``--mip-seconds``) and prints, per stage, the seconds, the
MIPs solved / stopped at their limit and the unstable ReLUs per hidden layer::

    NNRES_BENCHMARKS=../shared/benchmarks python benchmarks/root_refine.py \\
        --net mnist-net_256x4.onnx --prop prop_0_0.03.vnnlib --width 1 --entries 7
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="mnist-net_256x4.onnx")
    ap.add_argument("--prop", default="prop_0_0.03.vnnlib")
    ap.add_argument("--width", type=int, default=1)
    ap.add_argument("--mip-seconds", type=float, default=2.0)
    ap.add_argument("--entries", default="7", help="comma-separated entry indices")
    a = ap.parse_args()

    from nnresilience.bounds.crown import CrownBounder
    from nnresilience.bounds.tighten import MilpRefiner
    from nnresilience.loaders import load_network
    from nnresilience.search import decide
    from nnresilience.spec.vnnlib import read_vnnlib

    root = Path(os.environ.get("NNRES_BENCHMARKS", "../shared/benchmarks")) / "mnistfc"
    net = load_network(root / a.net).merged()
    case = read_vnnlib(root / a.prop, net.n_inputs, net.n_outputs).cases[0]
    term = decide._promising_first(net, case, 0)[0]
    lo, hi = case.region.lo[None], case.region.hi[None]
    t0 = time.perf_counter()
    res = CrownBounder(net, term.A).bound(lo, hi, iters=20)
    t_root = time.perf_counter() - t0
    n = len(net.layers)
    los = [res.pre_lo[i][0].copy() for i in range(n + 1)]
    his = [res.pre_hi[i][0].copy() for i in range(n + 1)]
    for i, (blo, bhi) in res.state.boxes.items():
        los[i] = np.maximum(los[i], blo[0])
        his[i] = np.minimum(his[i], bhi[0])
    relu = [i for i, lay in enumerate(net.layers) if lay.kind in ("relu", "leaky_relu")]

    def unstable() -> str:
        return " / ".join(str(int(((los[i] < 0) & (his[i] > 0)).sum())) for i in relu)

    print(f"{a.net} {a.prop}, first term, load {os.getloadavg()[0]:.1f}\n")
    print("| stage | seconds | MIPs | at limit | unstable per hidden layer |")
    print("|---|---:|---:|---:|---|")
    print(f"| root α-CROWN (key {float(res.lower.min()):.3f}) | {t_root:.1f} | | | "
          f"{unstable()} |")
    for i in (int(x) for x in a.entries.split(",")):
        ref = MilpRefiner(net, a.width, time_limit=a.mip_seconds)
        t0 = time.perf_counter()
        out = ref(i, los, his)
        dt = time.perf_counter() - t0
        if out is not None:
            los[i] = np.maximum(los[i], out[0])
            his[i] = np.minimum(his[i], out[1])
        print(f"| entry {i}, milp:{a.width} | {dt:.1f} | {ref.n_solves} | {ref.n_limit} | "
              f"{unstable()} |")


if __name__ == "__main__":
    main()
