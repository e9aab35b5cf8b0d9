"""Pick the default MILP backend by measurement; writes ``benchmarks/results_backends.md``.

Instances:

1. random ReLU verification MILPs of growing size (the engine's decision query: is there an
   input of an L-inf ball whose top class changes?), two seeds per size;
2. random ReLU *optimisation* MILPs (minimise the margin ``y_label - y_j`` over the ball, the
   shape of the resilience queries), same sizes;
3. a few ACAS Xu and MNIST instances from ``../shared/benchmarks`` (skipped when absent),
   with symbolic bounds;
4. the time to build the MNIST 256x6 encoding (no solve).

Every solve has a time limit (``--timeout``, default 20 s), so the whole run is bounded.
Usage: ``python benchmarks/backends.py [--timeout 20] [--quick]``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from nnresilience.backends.base import SolveLimits
from nnresilience.backends.registry import AUTO_ORDER, available_backends, get_backend
from nnresilience.bounds.interval import interval_bounds
from nnresilience.encode.milp import encode_network, encode_region
from nnresilience.encode.model import MilpModel
from nnresilience.engines.milp import MilpEngine
from nnresilience.spec.condition import misclassification
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import random_network

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent.parent / "shared" / "benchmarks"
SIZES = [(5, [20, 20]), (5, [30, 30, 30]), (8, [40, 40, 40]), (10, [50, 50, 50, 50]),
         (10, [60, 60, 60, 60, 60])]


def _random_case(seed: int, n_in: int, hidden: list[int]):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [n_in, *hidden, 5], scale=1.0)
    c = rng.uniform(-0.5, 0.5, n_in)
    label = int(net.predict(c))
    reg = InputRegion.ball(c, 0.15, norm="linf")
    return net, Case(reg, misclassification(label, 5)), label


def decision_rows(backends, timeout, sizes):
    rows = []
    for n_in, hidden in sizes:
        for seed in (0, 1):
            net, case, _ = _random_case(seed, n_in, hidden)
            b = interval_bounds(net, case.region.lo, case.region.hi)
            for be in backends:
                ans = MilpEngine(backend=be).check(net, case, b, timeout=timeout)
                rows.append(("decide", f"{n_in}-{'-'.join(map(str, hidden))}-5 s{seed}", be,
                             ans.status.value, ans.seconds, ans.stats.get("n_binaries"),
                             ans.stats.get("nodes", 0), ""))
                print(*rows[-1], flush=True)
    return rows


def optimisation_rows(backends, timeout, sizes):
    rows = []
    for n_in, hidden in sizes:
        for seed in (0, 1):
            net, case, label = _random_case(seed, n_in, hidden)
            b = interval_bounds(net, case.region.lo, case.region.hi)
            model = MilpModel()
            enc = encode_network(model, net, b)
            encode_region(model, enc.inputs, case.region)
            j = (label + 1) % 5
            model.set_objective(enc.outputs[[label, j]], [1.0, -1.0])
            arrays = model.arrays()
            for be in backends:
                res = get_backend(be).solve(arrays, SolveLimits(time_limit=timeout))
                gap = "" if res.objective is None else f"obj {res.objective:.4f} "
                rows.append(("minimise", f"{n_in}-{'-'.join(map(str, hidden))}-5 s{seed}", be,
                             res.status.value, res.seconds, arrays.n_integer,
                             res.stats.get("nodes", 0),
                             gap + f"dual {res.dual_bound:.4f}"))
                print(*rows[-1], flush=True)
    return rows


def benchmark_rows(backends, timeout):
    if not BENCH.is_dir():
        return []
    from nnresilience.bounds import compute_bounds
    from nnresilience.loaders import load_network
    from nnresilience.spec.vnnlib import read_vnnlib

    cases = [("acasxu", "ACASXU_run2a_1_1_batch_2000.onnx", "prop_3.vnnlib", "holds"),
             ("acasxu", "ACASXU_run2a_1_1_batch_2000.onnx", "prop_4.vnnlib", "holds"),
             ("acasxu", "ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib", "violated"),
             ("acasxu", "ACASXU_run2a_1_9_batch_2000.onnx", "prop_4.vnnlib", "violated"),
             ("mnistfc", "mnist-net_256x2.onnx", "prop_0_0.03.vnnlib", "holds")]
    rows = []
    for folder, onnx, spec, expected in cases:
        path = BENCH / folder / onnx
        if not path.exists():
            continue
        net = load_network(path).merged()
        prop = read_vnnlib(BENCH / folder / spec, net.n_inputs, net.n_outputs)
        for be in backends:
            t0 = time.perf_counter()
            status = "holds"
            nb = 0
            nodes = 0
            for case in prop.cases:
                left = timeout - (time.perf_counter() - t0)
                bounds = compute_bounds(net, case.region, method="symbolic")
                ans = MilpEngine(backend=be).check(net, case, bounds, timeout=max(left, 0.0))
                nb += int(ans.stats.get("n_binaries") or 0)
                nodes += int(ans.stats.get("nodes", 0))
                if ans.status.value != "holds":
                    status = ans.status.value
                    break
            rows.append((folder, f"{onnx.split('_batch')[0]} {spec}", be, status,
                         time.perf_counter() - t0, nb, nodes, f"expected {expected}"))
            print(*rows[-1], flush=True)
    return rows


def mnist_build_row():
    path = BENCH / "mnistfc" / "mnist-net_256x6.onnx"
    if not path.exists():
        return None
    from nnresilience.loaders import load_network
    from nnresilience.spec.vnnlib import read_vnnlib

    net = load_network(path).merged()
    prop = read_vnnlib(BENCH / "mnistfc" / "prop_0_0.03.vnnlib", net.n_inputs, net.n_outputs)
    case = prop.cases[0]
    b = interval_bounds(net, case.region.lo, case.region.hi)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        model, _enc, _margin = MilpEngine().build(net, case, b)
        arrays = model.arrays()
        times.append(time.perf_counter() - t0)
    return (min(times), float(np.median(times)), arrays.n_vars, arrays.n_rows,
            arrays.n_integer, arrays.A.nnz)


def summarise(rows, backends):
    """One table row per backend: solved/total per query kind, and total wall seconds."""
    kinds = sorted({r[0] for r in rows})
    out = ["| backend | " + " | ".join(kinds) + " | all | seconds |",
           "|---|" + "---|" * (len(kinds) + 2)]
    for be in backends:
        cells = []
        for kind in [*kinds, None]:
            mine = [r for r in rows if r[2] == be and (kind is None or r[0] == kind)]
            solved = [r for r in mine if r[3] in ("holds", "violated", "optimal")]
            cells.append(f"{len(solved)}/{len(mine)}")
        t = sum(r[4] for r in rows if r[2] == be)
        out.append(f"| {be} | " + " | ".join(cells) + f" | {t:.1f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="only the two smallest sizes")
    ap.add_argument("--out", default=str(HERE / "results_backends.md"))
    args = ap.parse_args()
    backends = [b for b in ("highs", "scip", "gurobi") if b in available_backends()]
    sizes = SIZES[:2] if args.quick else SIZES
    rows = decision_rows(backends, args.timeout, sizes)
    rows += optimisation_rows(backends, args.timeout, sizes)
    rows += benchmark_rows(backends, args.timeout)
    build = mnist_build_row()
    lines = ["# MILP backend benchmark", "",
             f"Generated by `python benchmarks/backends.py --timeout {args.timeout:g}` on "
             f"{platform.node()} ({platform.processor() or platform.machine()}), one thread "
             f"per solve, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "## Summary (solved within the limit, per query kind; total wall seconds)", "",
             *summarise(rows, backends), "",
             f"`auto` order in `nnresilience.backends.registry`: {', '.join(AUTO_ORDER)} "
             "(see docs/milp.md for the reasoning).", "",
             "## All runs", "",
             "| query | instance | backend | status | seconds | binaries | nodes | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2f} | {r[5]} | {r[6]} | "
                     f"{r[7]} |")
    if build:
        lines += ["", "## Building the MNIST 256x6 encoding (784 inputs, 1536 ReLUs)", "",
                  f"min {build[0] * 1000:.0f} ms, median {build[1] * 1000:.0f} ms over 5 builds "
                  f"(encode network + region + condition + stack arrays); {build[2]} variables,"
                  f" {build[3]} rows, {build[4]} binaries, {build[5]} non-zeros "
                  "(interval bounds, prop_0_0.03)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
