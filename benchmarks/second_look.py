"""δ-checks on planted near ties with and without reluplex's second look.

For every relu / leaky resilience instance of the seed range and every planted near-tie
sample with a brute-force L∞ minimum perturbation, the δ-check runs at 0.999 and 1.001
times that minimum, first with ``exact_seconds = 0`` (the MILP alone); each ``unknown``
is run again with the default settings (the second look). The table counts the queries,
the ``unknown`` answers without the look, those decided with it, and how many of those
agree with brute force (every one must).

    python benchmarks/second_look.py --seeds 2100 2140 --timeout 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from nnresilience.resilience import delta_check
    from nnresilience.resilience.settings import DEFAULT
    from nnresilience.testing import resilience_instances as ri

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs=2, default=(2100, 2140), metavar=("FIRST", "END"))
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per δ-check")
    args = ap.parse_args(argv)
    off = DEFAULT.with_(exact_seconds=0.0)
    rows: dict[str, list[float]] = {}
    for seed in range(*args.seeds):
        fam = "leaky" if seed % 2 else "relu"
        inst = ri.res_instance(fam, seed)
        r = rows.setdefault(fam, [0, 0, 0, 0, 0.0])
        for x, label, _ in ri.tie_samples(inst, np.random.default_rng(seed + 7)):
            truth = ri.true_min_perturbation(inst, x, label, 1, "linf")
            if truth is None or not 0.0 < truth < np.inf:
                continue
            for f in (1 - 1e-3, 1 + 1e-3):
                d = truth * f
                dom = (inst.lo, inst.hi)
                a = delta_check(inst.network, x, label, d, "linf", 1, dom, settings=off,
                                timeout=args.timeout)
                r[0] += 1
                if a.status.value != "unknown":
                    continue
                r[1] += 1
                t0 = time.monotonic()
                b = delta_check(inst.network, x, label, d, "linf", 1, dom, timeout=args.timeout)
                r[4] = max(r[4], time.monotonic() - t0)
                r[2] += b.status.value != "unknown"
                r[3] += b.status.value == ("holds" if f < 1 else "violated")
    print(f"# δ-check at 0.999 / 1.001 x the brute-force L∞ minimum, planted near ties, "
          f"seeds {args.seeds[0]}-{args.seeds[1] - 1}, {args.timeout:g} s per query\n")
    print("| family | queries | unknown without the look | decided with it | "
          "as brute force | slowest with it (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for fam, (n, u, d, ok, slow) in sorted(rows.items()):
        print(f"| {fam} | {n} | {u} | {d} | {ok} | {slow:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
