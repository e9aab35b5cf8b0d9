"""Planted adversarial queries: every engine and bound method, falsifier on and off.

Generates ``--n`` planted instances (:mod:`nnresilience.testing.planted`: tiny ReLU /
LeakyReLU / max-pool nets with weights up to 1e3, cancelling biases, logits up to 1e4 and
a margin of 1e-7 ... 1e-4 of the logits at the maximiser) and asks ``verify`` about each
under every configuration of :func:`nnresilience.testing.adversarial.configs` (both engines
with symbolic bounds, every bound method with no engine; falsifier off and on; optionally
the input-splitting search). Prints markdown tables:

1. per configuration: answers on planted violations and planted holds, wrong answers
   (must be 0), seconds (total and slowest query);
2. wrong answers and bound escapes by magnitude (``unit`` / ``large`` / ``extreme``);
3. every wrong answer, with the seed to reproduce it (``planted_instance(seed)``).

With the default ``--n 460`` it runs more than 5,000 queries.

    python benchmarks/adversarial.py                    # full run (>= 5,000 queries)
    python benchmarks/adversarial.py --n 20 --seed 0    # quick look
    python benchmarks/adversarial.py --out benchmarks/out/adversarial.md
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

from nnresilience.results import Status
from nnresilience.testing.adversarial import BOUND_METHODS, bound_violations, configs, run
from nnresilience.testing.planted import planted_instance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=460, help="planted instances (default 460)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per query")
    ap.add_argument("--falsify", type=float, default=0.2,
                    help="falsifier budget when 'on' (seconds per case)")
    ap.add_argument("--split", action="store_true",
                    help="also run every configuration through input splitting")
    ap.add_argument("--no-bounds-check", action="store_true",
                    help="skip the compute_bounds containment check")
    ap.add_argument("--out", type=Path, help="also write the tables to this file")
    args = ap.parse_args(argv)

    cfgs = configs(args.falsify) + (configs(args.falsify, split=True) if args.split else [])
    t_start = time.perf_counter()
    counts = {c.name: collections.Counter() for c in cfgs}
    secs = {c.name: [] for c in cfgs}
    wrong: list[str] = []
    by_mag = collections.defaultdict(collections.Counter)
    gen_seconds, n_queries = 0.0, 0
    insts = collections.Counter()
    drel, corners = [], 0
    for seed in range(args.seed, args.seed + args.n):
        t = time.perf_counter()
        inst = planted_instance(seed)
        gen_seconds += time.perf_counter() - t
        insts[(inst.kind, inst.magnitude, inst.status.value)] += 1
        drel.append(inst.delta_rel)
        corners += inst.at_corner
        for c in cfgs:
            if not c.applies(inst):
                continue
            out = run(inst, c, timeout=args.timeout)
            n_queries += 1
            counts[c.name][(inst.status.value, out.status.value)] += 1
            secs[c.name].append(out.seconds)
            if out.wrong:
                counts[c.name]["wrong"] += 1
                by_mag[inst.magnitude][f"wrong {c.name}"] += 1
                wrong.append(f"| {seed} | {c.name} | {out.wrong} | {inst.describe()} | "
                             f"{out.decided_by} | {out.message} |")
        if not args.no_bounds_check:
            for m in BOUND_METHODS:
                if bound_violations(inst, m, timeout=args.timeout * 5):
                    by_mag[inst.magnitude][f"escape {m}"] += 1
        by_mag[inst.magnitude]["instances"] += 1
        if (seed - args.seed + 1) % 20 == 0:
            print(f"... {seed - args.seed + 1}/{args.n} instances, {n_queries} queries, "
                  f"{len(wrong)} wrong, {time.perf_counter() - t_start:.0f} s",
                  file=sys.stderr, flush=True)

    lines = _tables(args, cfgs, counts, secs, wrong, by_mag, insts, drel, corners,
                    gen_seconds, n_queries, time.perf_counter() - t_start)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


def _tables(args, cfgs, counts, secs, wrong, by_mag, insts, drel, corners, gen_seconds,
            n_queries, total) -> list[str]:
    V, H = Status.VIOLATED.value, Status.HOLDS.value
    U = Status.UNKNOWN.value
    out = [f"Planted adversarial queries: {args.n} instances (seeds {args.seed}.."
           f"{args.seed + args.n - 1}), {n_queries} queries, timeout {args.timeout:g} s per "
           f"query, falsifier 'on' = {args.falsify:g} s; {total:.0f} s in all "
           f"({gen_seconds:.0f} s generating).", "",
           "| configuration | queries | planted violated: violated / unknown / holds "
           "| planted holds: holds / unknown / violated | wrong | seconds | slowest s |",
           "|---|---|---|---|---|---|---|"]
    for c in cfgs:
        k = counts[c.name]
        n = sum(v for key, v in k.items() if key != "wrong")
        s = secs[c.name]
        out.append(f"| {c.name} | {n} | {k[(V, V)]} / {k[(V, U)]} / {k[(V, H)]} "
                   f"| {k[(H, H)]} / {k[(H, U)]} / {k[(H, V)]} | {k['wrong']} "
                   f"| {sum(s):.1f} | {max(s) if s else 0:.2f} |")
    out += ["", "Wrong answers and bound escapes (float64 forward value outside a "
            "`compute_bounds` box) by magnitude:", "",
            "| magnitude | instances | wrong answers | bound escapes (instances) |",
            "|---|---|---|---|"]
    for mag in sorted(by_mag):
        d = by_mag[mag]
        w = sum(v for key, v in d.items() if key.startswith("wrong"))
        esc = ", ".join(f"{key[7:]}: {v}" for key, v in sorted(d.items())
                        if key.startswith("escape")) or "none"
        out.append(f"| {mag} | {d['instances']} | {w} | {esc} |")
    kinds = collections.Counter()
    for (kind, mag, status), v in insts.items():
        kinds[kind] += v
        kinds[mag] += v
        kinds[status] += v
    out += ["", "Instances: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + f"; maximiser at a box corner in {corners}; delta/logits from "
            f"{min(drel):.2g} to {max(drel):.2g} (median {np.median(drel):.2g})."]
    if wrong:
        out += ["", "Wrong answers (reproduce with `planted_instance(seed)` and the "
                "configuration):", "",
                "| seed | configuration | what | instance | decided by | message |",
                "|---|---|---|---|---|---|"] + wrong[:50]
        if len(wrong) > 50:
            out.append(f"... and {len(wrong) - 50} more")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
