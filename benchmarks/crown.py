"""Optimised linear bounds benchmark: tightness and speed of ``CrownBounder`` on MNIST-FC.

Usage::

    python benchmarks/crown.py [--nets 256x2,256x4,256x6] [--props 0,1] [--eps 0.03,0.05]
                               [--batches 1,16,64,256] [--out benchmarks/results_crown.md]

Part 1, tightness: for each instance (network, ``prop_k_eps``), the spec rows ``C y`` of the
property (one row per wrong class, proven when its lower bound is > 0) bounded over the
whole input box by

* ``symbolic``: ``compute_bounds(..., "symbolic")`` on the network with ``C`` folded in;
* ``alpha-N``: ``CrownBounder`` with N optimisation steps, intermediate bounds optimised
  jointly (``intermediate="optimise"``), float32 optimisation (``f64``: float64);
* ``final-N``: the same with intermediate bounds from one CROWN pass, only the final
  layer's α optimised (``intermediate="crown"``): what optimising intermediate layers buys.

Columns: worst (smallest) row lower bound, rows proven, seconds (one call, after a warm-up
call that pays torch's import). Every bound is the sound float64 one.

Part 2, batched throughput: on ``prop_0_0.03``, a root call (α, 20 steps), then batches of
B child domains with 1-3 random ReLU phase splits each (what the branch-and-bound driver
sends), warm-started from the root, 20 steps (``reuse`` mode: the root's boxes ∩ clamps,
α and β of the final bound optimised), one and two torch threads. Domains per second =
B / seconds of the call (best of two calls).

Part 3, per-neuron boxes: ``compute_bounds(method="symbolic")`` against ``"alpha"`` (20
and 50 steps, every unstable unit's own bound optimised) on ACAS Xu 1_1 props 1-4 and
``prop_0_0.03`` of each MNIST net: undecided units, summed widths of the hidden layers'
inputs, width of the output box, seconds (what the MILP engines' big-M constants get).

Prints markdown tables and writes them to ``--out``. The machine may be shared: the table
header says so; re-run on a quiet machine for figures to quote.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("NNRES_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))


def _spec(prop_path: Path, net):
    from nnresilience.spec.vnnlib import read_vnnlib

    prop = read_vnnlib(prop_path, net.n_inputs, net.n_outputs)
    case = prop.cases[0]
    # unsafe: some term A y <= b holds; proven when every row has A y > b
    C = np.vstack([t.A for t in case.unsafe.terms])
    thr = np.concatenate([t.b for t in case.unsafe.terms])
    return case.region.lo, case.region.hi, C, thr


def _symbolic(net, lo, hi, C):
    from nnresilience.bounds import compute_bounds
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network

    last = net.layers[-1]
    folded = Network(net.layers[:-1] + [Affine(C @ last.W, C @ last.b)])
    t = time.perf_counter()
    b = compute_bounds(folded, (lo, hi), method="symbolic")
    return b.lo[-1], time.perf_counter() - t


METHODS = [  # name, iterations, intermediate, dtype
    ("alpha-0", 0, "optimise", "float32"),
    ("alpha-20", 20, "optimise", "float32"),
    ("alpha-20 f64", 20, "optimise", "float64"),
    ("alpha-50", 50, "optimise", "float32"),
    ("final-20", 20, "crown", "float32"),
    ("final-50", 50, "crown", "float32"),
]


def tightness(data: Path, nets: list[str], props: list[str], eps: list[str]) -> list[list[str]]:
    from nnresilience.bounds.crown import CrownBounder
    from nnresilience.loaders import load_network

    rows = []
    summary: dict[tuple[str, str, str], list] = {}
    warmed = False
    for size in nets:
        net = load_network(data / "mnistfc" / f"mnist-net_{size}.onnx").merged()
        if not warmed:          # torch's import and first-call costs are not the method's
            lo, hi, C, _ = _spec(data / "mnistfc" / f"prop_{props[0]}_{eps[0]}.vnnlib", net)
            CrownBounder(net, C).bound(lo[None], hi[None], iters=1)
            warmed = True
        for e in eps:
            for k in props:
                name = f"prop_{k}_{e}"
                lo, hi, C, thr = _spec(data / "mnistfc" / f"{name}.vnnlib", net)
                low, sec = _symbolic(net, lo, hi, C)
                cells = {"symbolic": (low, sec)}
                for m, iters, inter, dt in METHODS:
                    b = CrownBounder(net, C, intermediate=inter, dtype=dt)
                    t = time.perf_counter()
                    r = b.bound(lo[None], hi[None], iters=iters)
                    cells[m] = (r.lower[0], time.perf_counter() - t)
                for m, (low, sec) in cells.items():
                    worst = float(np.min(low - thr))
                    proven = int(np.sum(low > thr))
                    rows.append([size, name, m, f"{worst:.4f}", f"{proven}/{C.shape[0]}",
                                 f"{sec:.2f}"])
                    summary.setdefault((size, e, m), []).append((worst, proven, C.shape[0], sec))
                print(f"  {size} {name} done", file=sys.stderr)
    table = [["net", "eps", "method", "mean worst lower", "rows proven", "mean s"]]
    for (size, e, m), vals in summary.items():
        table.append([size, e, m, f"{np.mean([v[0] for v in vals]):.4f}",
                      f"{sum(v[1] for v in vals)}/{sum(v[2] for v in vals)}",
                      f"{np.mean([v[3] for v in vals]):.2f}"])
    return [["net", "property", "method", "worst lower", "rows proven", "s"]] + rows, table


def throughput(data: Path, nets: list[str], batches: list[int], threads: list[int],
               seed: int = 0) -> list[list[str]]:
    from nnresilience.bounds.crown import CrownBounder
    from nnresilience.loaders import load_network

    rng = np.random.default_rng(seed)
    table = [["net", "B", "threads", "iters", "s per call", "domains/s", "mode"]]
    for size in nets:
        net = load_network(data / "mnistfc" / f"mnist-net_{size}.onnx").merged()
        lo, hi, C, thr = _spec(data / "mnistfc" / "prop_0_0.03.vnnlib", net)
        for th in threads:
            b = CrownBounder(net, C, threshold=thr, threads=th)
            root = b.bound(lo[None], hi[None], iters=20)
            for B in batches:
                clamps = {}
                for i in b.nonlinear:
                    w = net.layers[i].in_size
                    clamps[i] = (np.full((B, w), -np.inf), np.full((B, w), np.inf))
                uns = [(i, u) for i in b.nonlinear
                       for u in np.nonzero((root.pre_lo[i][0] < 0) & (root.pre_hi[i][0] > 0))[0]]
                for d in range(B):
                    for q in rng.choice(len(uns), size=min(len(uns), int(rng.integers(1, 4))),
                                        replace=False):
                        i, u = uns[q]
                        if rng.random() < 0.5:
                            clamps[i][0][d, u] = 0.0
                        else:
                            clamps[i][1][d, u] = 0.0
                L, H = np.repeat(lo[None], B, 0), np.repeat(hi[None], B, 0)
                warm = root.state.select(np.zeros(B, dtype=int))
                best = np.inf
                mode = ""
                for _ in range(2):
                    t = time.perf_counter()
                    r = b.bound(L, H, clamps, iters=20, warm=warm)
                    best = min(best, time.perf_counter() - t)
                    mode = r.stats["mode"]
                table.append([size, str(B), str(th), "20", f"{best:.3f}", f"{B / best:.1f}",
                              mode])
                print(f"  {size} B={B} threads={th}: {B / best:.1f} domains/s", file=sys.stderr)
    return table


def boxes(data: Path, items: list[tuple[str, str]], iters: list[int]) -> list[list[str]]:
    """Per-neuron boxes for the MILP big-M: ``compute_bounds`` symbolic vs alpha."""
    import nnresilience.bounds.crown as crown
    from nnresilience.bounds import compute_bounds
    from nnresilience.cli.bounds import vnnlib_input_box
    from nnresilience.loaders import load_network

    table = [["network", "property", "method", "unstable", "sum of widths", "output width",
              "s"]]
    for model, prop in items:
        net = load_network(data / model)
        lo, hi = vnnlib_input_box(data / prop, net.n_inputs)
        runs = [("symbolic", "symbolic", None)] + [(f"alpha-{k}", "alpha", k) for k in iters]
        for name, method, k in runs:
            if k is not None:
                crown.ALPHA_ITERS = k
            t = time.perf_counter()
            b = compute_bounds(net, (lo, hi), method=method)
            sec = time.perf_counter() - t
            width = sum(float((h - lo_).sum()) for lo_, h in zip(b.lo[1:-1], b.hi[1:-1],
                                                                   strict=True))
            table.append([Path(model).name, Path(prop).stem, name, str(b.stats["unstable"]),
                          f"{width:.1f}", f"{float((b.hi[-1] - b.lo[-1]).sum()):.3f}",
                          f"{sec:.2f}"])
        print(f"  boxes {model} {prop} done", file=sys.stderr)
    crown.ALPHA_ITERS = 20
    return table


def _md(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="256x2,256x4,256x6")
    ap.add_argument("--props", default="0,1", help="property indices k of prop_k_eps")
    ap.add_argument("--eps", default="0.03,0.05")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--throughput-nets", default="256x2,256x6")
    ap.add_argument("--skip-tightness", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-boxes", action="store_true")
    ap.add_argument("--box-iters", default="20,50")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_crown.md")
    args = ap.parse_args(argv)
    if not (args.data / "mnistfc").is_dir():
        print(f"benchmark data not found at {args.data}", file=sys.stderr)
        return 2
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    parts = [f"# CrownBounder benchmark\n\n{time.strftime('%Y-%m-%d %H:%M')}, "
             f"{os.cpu_count()} cores, load average {load:.1f} at start "
             "(the machine may be shared: compare rows of one run, not across runs).\n"]
    if not args.skip_tightness:
        per, summ = tightness(args.data, split(args.nets), split(args.props), split(args.eps))
        parts += ["## Tightness (summary per net and eps)\n", _md(summ), "",
                  "## Tightness (per instance)\n", _md(per), ""]
    if not args.skip_throughput:
        tab = throughput(args.data, split(args.throughput_nets),
                         [int(b) for b in split(args.batches)],
                         [int(t) for t in split(args.threads)])
        parts += ["## Batched throughput (child domains with random ReLU splits)\n", _md(tab),
                  ""]
    if not args.skip_boxes:
        items = [("acasxu/ACASXU_run2a_1_1_batch_2000.onnx", f"acasxu/prop_{k}.vnnlib")
                 for k in (1, 2, 3, 4)]
        items += [(f"mnistfc/mnist-net_{n}.onnx", "mnistfc/prop_0_0.03.vnnlib")
                  for n in split(args.nets)]
        tab = boxes(args.data, items, [int(k) for k in split(args.box_iters)])
        parts += ["## Per-neuron boxes (compute_bounds; what the MILP big-M gets)\n",
                  _md(tab), ""]
    text = "\n".join(parts)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
