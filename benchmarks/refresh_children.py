"""Children of one split at the MNIST-FC root: parent boxes (``reuse``) against ``refresh``.

For the first term (promising-first order) of a VNN-COMP MNIST-FC case, both children of
up to 16 unstable ReLUs of each hidden layer but the last are bounded from the root's
state (10 steps), once keeping the parent's intermediate boxes, once re-bounding the
unstable neurons of the layers after the split (``CrownBounder(refresh=True)``) and once
doing so with the root's optimised intermediate slopes (``refresh_alpha=True``); the table
gives the mean child bound, the mean unstable ReLUs per layer and the milliseconds per
child. With ``--best``, every unstable ReLU of every hidden layer is split instead, and
the table gives per layer the best and the mean *worse* child (the bound of the parent
after that split)::

    NNRES_BENCHMARKS=../shared/benchmarks python benchmarks/refresh_children.py [--best]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

CONFIGS = {"parent (reuse)": {}, "refresh": {"refresh": True},
           "refresh, root α": {"refresh": True, "refresh_alpha": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="mnist-net_256x4.onnx")
    ap.add_argument("--prop", default="prop_0_0.03.vnnlib")
    ap.add_argument("--best", action="store_true")
    a = ap.parse_args()

    from nnresilience.bounds.crown import CrownBounder
    from nnresilience.loaders import load_network
    from nnresilience.search import decide
    from nnresilience.spec.vnnlib import read_vnnlib

    root = Path(os.environ.get("NNRES_BENCHMARKS", "../shared/benchmarks")) / "mnistfc"
    net = load_network(root / a.net).merged()
    case = read_vnnlib(root / a.prop, net.n_inputs, net.n_outputs).cases[0]
    term = decide._promising_first(net, case, 0)[0]
    lo, hi = case.region.lo[None], case.region.hi[None]
    print(f"{a.net} {a.prop}, first term, load {os.getloadavg()[0]:.1f}\n")
    if a.best:
        print("| boxes | split layer | candidates | best worse child | mean worse child "
              "| ms / child |")
        print("|---|---:|---:|---:|---:|---:|")
    else:
        print("| split layer | children | boxes | mean child bound | unstable per layer "
              "| ms / child |")
        print("|---:|---:|---|---:|---|---:|")
    for name, opts in CONFIGS.items():
        b = CrownBounder(net, term.A, **opts)
        r = b.bound(lo, hi, iters=20)
        for L in (b.piecewise if a.best else b.piecewise[:-1]):
            plo, phi = r.pre_lo[L][0], r.pre_hi[L][0]
            un = np.flatnonzero((plo < 0) & (phi > 0))
            if not a.best:
                un = un[:16]
            B = 2 * len(un)
            if B == 0:
                continue
            clo = np.full((B, plo.size), -np.inf)
            chi = np.full((B, plo.size), np.inf)
            for k, u in enumerate(un):
                chi[2 * k, u] = 0.0
                clo[2 * k + 1, u] = 0.0
            t0 = time.perf_counter()
            rc = b.bound(np.repeat(lo, B, 0), np.repeat(hi, B, 0), {L: (clo, chi)}, iters=10,
                         warm=r.state.select(np.zeros(B, dtype=int)))
            ms = 1000 * (time.perf_counter() - t0) / B
            if a.best:
                worse = np.minimum(rc.lower[0::2].min(1), rc.lower[1::2].min(1))
                print(f"| {name} | {L} | {len(un)} | {worse.max():.3f} | {worse.mean():.3f} "
                      f"| {ms:.1f} |", flush=True)
                continue
            rc.pre_lo[L] = np.maximum(rc.pre_lo[L], clo)
            rc.pre_hi[L] = np.minimum(rc.pre_hi[L], chi)
            unst = " / ".join(f"{((rc.pre_lo[j] < 0) & (rc.pre_hi[j] > 0)).sum(1).mean():.1f}"
                              for j in b.piecewise)
            print(f"| {L} | {B} | {name} | {rc.lower.mean():.3f} | {unst} | {ms:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
