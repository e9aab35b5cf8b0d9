"""Leaky-Reluplex on the shipped CTG network: effect of bounds preprocessing, and MILP agreement.

Runs the 54 seed-004 queries (9 samples x 6 deltas) under four engine configurations and
prints a markdown table (total wall / CPU / max / median seconds, splits, nodes), then
checks that the MILP engine returns the same 54 verdicts.

    python benchmarks/reluplex_ablation.py
"""

from __future__ import annotations

import time

import numpy as np

from nnresilience.data import ctg_network, ctg_samples
from nnresilience.engines.milp import MilpEngine
from nnresilience.engines.reluplex import ReluplexEngine
from nnresilience.spec.property import robustness

DELTAS = [0.01, 0.015, 0.02, 0.025, 0.03, 0.035]
CONFIGS = {
    "preprocess + node bounds (default)": dict(preprocess=True, node_bounds=True),
    "preprocess only": dict(preprocess=True, node_bounds=False),
    "node bounds only": dict(preprocess=False, node_bounds=True),
    "plain calculus": dict(preprocess=False, node_bounds=False),
}


def main() -> None:
    net, smp = ctg_network(), ctg_samples()
    props = {(s, d): robustness(smp.x[s], int(smp.labels[s]), d, 3, domain_lo=-1, domain_hi=1)
             for s in range(len(smp.x)) for d in DELTAS}
    eng = ReluplexEngine()
    verdicts = {}
    print("| configuration | total s | CPU s | max s | median s | splits | nodes |")
    print("|---|---|---|---|---|---|---|")
    for name, cfg in CONFIGS.items():
        times, splits, nodes, table = [], 0, 0, {}
        cpu0 = time.process_time()
        for key, prop in props.items():
            t = time.perf_counter()
            a = eng.check(net, prop.cases[0], None, timeout=120, **cfg)
            times.append(time.perf_counter() - t)
            splits += a.stats["splits"]
            nodes += a.stats["nodes"]
            table[key] = a.status.value
        verdicts[name] = table
        cpu = time.process_time() - cpu0    # on a loaded machine wall time can be 8x this
        print(f"| {name} | {sum(times):.2f} | {cpu:.2f} | {max(times):.2f} "
              f"| {np.median(times):.3f} | {splits} | {nodes} |", flush=True)
    ref = next(iter(verdicts.values()))
    print("\nall configurations agree:", all(v == ref for v in verdicts.values()))
    milp, t_milp = MilpEngine(), 0.0
    agree = True
    for key, prop in props.items():
        t = time.perf_counter()
        agree &= milp.check(net, prop.cases[0], None, timeout=120).status.value == ref[key]
        t_milp += time.perf_counter() - t
    print(f"MILP engine agrees on all {len(props)} queries: {agree} (MILP total {t_milp:.2f} s)")


if __name__ == "__main__":
    main()
