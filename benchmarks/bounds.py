"""Bounds benchmark: undecided units and seconds per method on ACAS Xu and MNIST-FC.

Usage::

    python benchmarks/bounds.py --out benchmarks/results_bounds.md \
        --methods interval,symbolic,lp,milp:1 --timeout 60 --milp-instances 4

Instances: ACAS Xu props 1-4 on networks 1_1..1_9 (36) and the 15 MNIST-FC eps=0.03
properties on 256x2 (every method) and on 256x4 / 256x6 (only ``--deep-methods``, default
interval and symbolic). ``milp:W`` is slow (one MIP per undecided unit), so it runs on the
first ``--milp-instances`` instances of each group only. Every call has ``--timeout``
seconds; a call that hits it still returns sound bounds (the cheaper ones for what was not
finished) and is marked ``*``.

Prints a markdown table (per-instance rows and a per-group summary) and writes it to
``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "benchmarks"


def _instances(data: Path, acas_nets: list[str], mnist_props: int):
    acas = data / "acasxu"
    for net in acas_nets:
        for p in (1, 2, 3, 4):
            yield ("acasxu", acas / f"ACASXU_run2a_{net}_batch_2000.onnx",
                   acas / f"prop_{p}.vnnlib", f"{net}", f"prop_{p}")
    mn = data / "mnistfc"
    for size in ("256x2", "256x4", "256x6"):
        for k in range(mnist_props):
            yield (f"mnist-{size}", mn / f"mnist-net_{size}.onnx", mn / f"prop_{k}_0.03.vnnlib",
                   size, f"prop_{k}_0.03")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_bounds.md")
    ap.add_argument("--methods", default="interval,symbolic,lp,milp:1")
    ap.add_argument("--deep-methods", default="interval,symbolic",
                    help="methods for MNIST 256x4 / 256x6")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    ap.add_argument("--neuron-time-limit", type=float, default=1.0, help="seconds per MIP")
    ap.add_argument("--milp-instances", type=int, default=4,
                    help="run milp:W on this many instances per group")
    ap.add_argument("--acas-nets", default=",".join(f"1_{j}" for j in range(1, 10)))
    ap.add_argument("--mnist-props", type=int, default=15)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)

    from nnresilience.bounds import compute_bounds
    from nnresilience.cli.bounds import vnnlib_input_box
    from nnresilience.loaders import load_network

    if not args.data.is_dir():
        print(f"benchmark data not found at {args.data}", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    deep = {m.strip() for m in args.deep_methods.split(",") if m.strip()}
    rows: list[list[str]] = []
    summary: dict[tuple[str, str], list[tuple[int, float, bool]]] = {}
    nets: dict[Path, object] = {}
    milp_done: dict[str, int] = {}
    for group, model, prop, net_name, prop_name in _instances(
            args.data, args.acas_nets.split(","), args.mnist_props):
        if not model.is_file() or not prop.is_file():
            continue
        if model not in nets:
            nets[model] = load_network(model)
        net = nets[model]
        lo, hi = vnnlib_input_box(prop, net.n_inputs)
        cells = [group, net_name, prop_name]
        for m in methods:
            if group in ("mnist-256x4", "mnist-256x6") and m not in deep:
                cells.append("")
                continue
            if m.startswith("milp") and milp_done.get(group, 0) >= args.milp_instances:
                cells.append("")
                continue
            t0 = time.perf_counter()
            b = compute_bounds(net, (lo, hi), method=m, timeout=args.timeout,
                               neuron_time_limit=args.neuron_time_limit)
            sec = time.perf_counter() - t0
            late = bool(b.stats.get("timed_out"))
            unstable = int(b.stats["unstable"])
            cells.append(f"{unstable} / {sec:.2f}s{'*' if late else ''}")
            summary.setdefault((group, m), []).append((unstable, sec, late))
            print(f"{group} {net_name} {prop_name} {m}: {unstable} unstable, {sec:.2f}s"
                  f"{' (timeout)' if late else ''}", file=sys.stderr, flush=True)
        if any(m.startswith("milp") for m in methods):
            milp_done[group] = milp_done.get(group, 0) + 1
        rows.append(cells)

    lines = ["# Bounds benchmark", "",
             f"Methods: {', '.join(methods)}; timeout {args.timeout:g} s per call; "
             f"{args.neuron_time_limit:g} s per MIP; milp on the first "
             f"{args.milp_instances} instances of each group. Cells: undecided units "
             "(unstable ReLUs) / wall seconds; `*` = the call hit its timeout (bounds still "
             "sound, partly from the cheaper method).", "",
             "## Summary (per group and method)", "",
             "`lp same` = mean unstable of `lp` on the instances the row covers (milp runs "
             "on a subset).", "",
             "| group | method | instances | mean unstable | lp same | mean s | max s | "
             "timeouts |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (group, m), vals in summary.items():
        n = len(vals)
        lp_vals = summary.get((group, "lp"), [])[:n]
        lp_same = (f"{sum(v[0] for v in lp_vals) / len(lp_vals):.1f}"
                   if len(lp_vals) == n else "")
        lines.append(f"| {group} | {m} | {n} | {sum(v[0] for v in vals) / n:.1f} | "
                     f"{lp_same} | {sum(v[1] for v in vals) / n:.2f} | "
                     f"{max(v[1] for v in vals):.2f} | {sum(v[2] for v in vals)} |")
    lines += ["", "## Per instance", "",
              "| group | net | property | " + " | ".join(methods) + " |",
              "|---|---|---|" + "---:|" * len(methods)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
