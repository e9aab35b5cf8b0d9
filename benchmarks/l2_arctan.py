"""L2 against L1/L∞, and the arctan PWL relaxation against the paper's MIQCP (issue 14).

Two markdown tables, one command (from the repository root)::

    python benchmarks/l2_arctan.py 2>/dev/null     # both tables, 30 s per query (~7 min)
    python benchmarks/l2_arctan.py --timeout 10 --only arctan

(SoPlex prints "Cannot set feasibility tolerance ... without GMP" on stderr when SCIP runs
at the tightened tolerances; it uses 1e-10 then.)

Table A: Φ_m of every class of small random ReLU nets (seeded, ``random_network``) under
the three norms, domain [-1, 1]^d, alpha 1.1, k 1, default settings (L2 goes to SCIP, the
others to the auto backend). Table B: Φ_m of every class of random arctan nets of our own
(seeded; 2-12-3 and 3-8-8-3, weights N(0, 4/fan_in)), alpha 1.3, L1, with
``arctan="pwl"`` and ``arctan="miqcp"``. Each row: the proven interval [lower, upper],
its width, ``optimal``, the backend and the call's wall seconds. Rows whose premise is
proven infeasible (no input reaches alpha) are left out. The machine may be shared:
seconds are noisy; the intervals are not.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from nnresilience.network.layers import Affine, Arctan
from nnresilience.network.model import Network
from nnresilience.resilience import DEFAULT, phi
from nnresilience.testing.bruteforce import random_network


def _fmt(v) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.6g}"


def _row(name, m, what, r, secs) -> str:
    width = None if r.upper is None or r.lower is None or math.isinf(r.upper) \
        else r.upper - r.lower
    return (f"| {name} | {m} | {what} | {_fmt(r.lower)} | {_fmt(r.upper)} | {_fmt(width)} | "
            f"{'yes' if r.optimal else 'no'} | {r.stats.get('backend', '-')} | {secs:.2f} |")


HEAD = ("| net | class | {} | lower | upper | width | optimal | backend | s |\n"
        "|---|---|---|---|---|---|---|---|---|")


def relu_nets():
    return [(f"relu {'-'.join(map(str, sizes))} seed {seed}",
             random_network(np.random.default_rng(seed), sizes, scale=2.0))
            for sizes, seed in (([2, 8, 8, 3], 0), ([2, 8, 8, 3], 1), ([5, 16, 16, 4], 2))]


def arctan_nets():
    out = []
    for sizes, seed in (([2, 12, 3], 0), ([3, 8, 8, 3], 1)):
        rng = np.random.default_rng(seed)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(Affine(rng.normal(size=(b, a)) * 2.0 / math.sqrt(a),
                                 rng.normal(size=b) * 0.5))
            if i < len(sizes) - 2:
                layers.append(Arctan(b))
        out.append((f"arctan {'-'.join(map(str, sizes))} seed {seed}", Network(layers)))
    return out


def table_norms(timeout: float) -> None:
    print("### A. Φ_m under L1, L2 and L∞ (ReLU nets, alpha 1.1, k 1, D = [-1, 1]^d)\n")
    print(HEAD.format("norm"))
    for name, net in relu_nets():
        for m in range(net.n_outputs):
            for norm in ("l1", "l2", "linf"):
                t0 = time.perf_counter()
                r = phi(net, m, 1.1, 1, norm, (-1.0, 1.0), timeout=timeout)
                secs = time.perf_counter() - t0
                if not r.feasible:
                    break
                print(_row(name, m, norm, r, secs), flush=True)
    print()


def table_arctan(timeout: float) -> None:
    print("### B. Arctan nets: PWL relaxation vs the paper's MIQCP (L1, alpha 1.3, k 1)\n")
    print(HEAD.format("arctan"))
    for name, net in arctan_nets():
        for m in range(net.n_outputs):
            for mode in ("pwl", "miqcp"):
                t0 = time.perf_counter()
                r = phi(net, m, 1.3, 1, "l1", (-1.0, 1.0),
                        settings=DEFAULT.with_(arctan=mode), timeout=timeout)
                secs = time.perf_counter() - t0
                if not r.feasible:
                    break
                print(_row(name, m, mode, r, secs), flush=True)
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per query")
    ap.add_argument("--only", choices=("norms", "arctan"), default=None)
    args = ap.parse_args()
    if args.only in (None, "norms"):
        table_norms(args.timeout)
    if args.only in (None, "arctan"):
        table_arctan(args.timeout)


if __name__ == "__main__":
    main()
