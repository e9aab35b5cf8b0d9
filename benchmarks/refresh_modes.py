"""Where the search spends ``refresh``: domains and seconds per bounder mode in one term.

Runs :func:`bab_profile.run_one` (one term of a MNIST-FC case, neuron rule) with the
bounder's chunks counted: how many domains were bounded with the parent's boxes
(``reuse``) and how many re-bounded the layers after their new split (``refresh``), the
seconds of each, the entry of the first new split of the refreshed domains, and the
unstable rows after the refresh per domain against the union over each chunk (what
per-domain rows could save)::

    NNRES_BENCHMARKS=../shared/benchmarks python benchmarks/refresh_modes.py \\
        --seconds 40 --config refresh=alpha
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="mnist-net_256x4.onnx")
    ap.add_argument("--prop", default="prop_0_0.03.vnnlib")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--config", default="refresh=alpha")
    a = ap.parse_args()

    import bab_profile

    import nnresilience.bounds.crown as crown

    doms: collections.Counter = collections.Counter()
    secs: collections.Counter = collections.Counter()
    first: collections.Counter = collections.Counter()
    urows: collections.Counter = collections.Counter()
    chunk = crown.CrownBounder._bound_chunk
    prop = crown.CrownBounder._propagate

    def counted_chunk(self, lo, hi, clamps, iters, warm, deadline, mode):
        t = time.perf_counter()
        out = chunk(self, lo, hi, clamps, iters, warm, deadline, mode)
        doms[mode] += lo.shape[0]
        secs[mode] += time.perf_counter() - t
        if mode == "refresh":
            for f in crown._first_new_rows(clamps, warm, lo.shape[0]):
                first[int(f)] += 1
        return out

    def counted_prop(self, T, ctx, mode, alpha_int, *, sound, rows=None, collect=False):
        out = prop(self, T, ctx, mode, alpha_int, sound=sound, rows=rows, collect=collect)
        if mode == "refresh" and sound:
            for i in self.targets:
                if i > ctx.get("refresh_after", -1):
                    lo, hi = out[0][i]
                    un = (lo < 0) & (hi > 0)
                    urows[(i, "per domain")] += int(un.sum())
                    urows[(i, "chunk union")] += int(un.any(0).sum()) * lo.shape[0]
        return out

    crown.CrownBounder._bound_chunk = counted_chunk
    crown.CrownBounder._propagate = counted_prop
    res = bab_profile.run_one(a.net, a.prop, a.seconds, a.config, 0, 10.0)
    print(f"{a.net} {a.prop}, term 0, {a.seconds:.0f} s, config {a.config!r}: "
          f"{json.dumps(res['rows'][-1])}\n")
    print("| mode | domains | seconds | ms / domain |")
    print("|---|---:|---:|---:|")
    for m in doms:
        print(f"| {m} | {doms[m]} | {secs[m]:.1f} | {1000 * secs[m] / doms[m]:.1f} |")
    print("\nrefreshed domains by entry of the first new split:", dict(sorted(first.items())))
    print("unstable rows after refresh, summed over domains:",
          {f"{i} {k}": v for (i, k), v in sorted(urows.items())})


if __name__ == "__main__":
    main()
