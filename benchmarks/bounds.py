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

Two focused modes (each prints its own markdown table)::

    python benchmarks/bounds.py --widths --save benchmarks/out/bounds_widths.npz
    python benchmarks/bounds.py --widths --compare benchmarks/out/bounds_widths_before.npz
    python benchmarks/bounds.py --deadlines --deadline-T 5,10,30
    python benchmarks/bounds.py --mip-margin

``--widths``: ACAS Xu 1_1 prop 3 and MNIST 256x2 prop 0 (eps 0.03) with every method, and
MNIST 256x6 prop 0 with interval/symbolic (best of ``--repeat`` runs for the timing):
undecided units, summed widths, seconds. ``--save`` stores every box; ``--compare`` adds
the change against stored boxes (e.g. from before a change to the bounds code).
``--deadlines``: ``compute_bounds(timeout=T)`` on MNIST 256x4 / 256x6 prop 0 for
``--deadline-methods``; wall time of the call against the promise T + max(1 s, 5 % T).
``milp:1@lp`` is ``milp:1`` given ``lp`` bounds (60 s) as prior, so that the MIP stage
itself meets the deadline. ``--mip-margin``: per-neuron cost of the sound ``milp:W``
bound against HiGHS's raw dual bound (see :func:`_mip_margin_mode`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("NNRES_BENCHMARKS") or REPO.parent / "shared" / "benchmarks")


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


def _widths_mode(args) -> int:
    """Tightness and cost of every method on three fixed instances (see module doc)."""
    import numpy as np

    from nnresilience.bounds import compute_bounds
    from nnresilience.cli.bounds import vnnlib_input_box
    from nnresilience.loaders import load_network

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    cases = [("acasxu 1_1 prop_3", args.data / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx",
              args.data / "acasxu" / "prop_3.vnnlib", methods),
             ("mnist 256x2 prop_0_0.03", args.data / "mnistfc" / "mnist-net_256x2.onnx",
              args.data / "mnistfc" / "prop_0_0.03.vnnlib", methods),
             ("mnist 256x6 prop_0_0.03", args.data / "mnistfc" / "mnist-net_256x6.onnx",
              args.data / "mnistfc" / "prop_0_0.03.vnnlib", ["interval", "symbolic"])]
    ref = dict(np.load(args.compare)) if args.compare else None
    saved: dict[str, np.ndarray] = {}
    lines = ["# Bounds: widths and cost per method", "",
             f"timeout {args.timeout:g} s per call, {args.neuron_time_limit:g} s per MIP; "
             f"seconds = best of {args.repeat} runs. `sum width` = sum of `hi - lo` over every "
             "entry produced by an affine layer (pre-activations and outputs)."
             + (f" Change against `{args.compare}`: `max |d lo|, |d hi|` over all entries "
                "and the relative change of `sum width`." if ref else ""), "",
             "| instance | method | unstable | sum width | output width | seconds |"
             + (" ref unstable | max abs change | sum width change |" if ref else ""),
             "|---|---|---:|---:|---:|---:|" + ("---:|---:|---:|" if ref else "")]
    for name, model, prop, ms in cases:
        if not model.is_file() or not prop.is_file():
            continue
        net = load_network(model)
        lo, hi = vnnlib_input_box(prop, net.n_inputs)
        aff = [i for i in range(1, len(net.layers) + 1) if net.layers[i - 1].kind == "affine"]
        for m in ms:
            best, b = float("inf"), None
            for _ in range(max(1, args.repeat if not m.startswith(("lp", "milp")) else 1)):
                t0 = time.perf_counter()
                b = compute_bounds(net, (lo, hi), method=m, timeout=args.timeout,
                                   neuron_time_limit=args.neuron_time_limit)
                best = min(best, time.perf_counter() - t0)
            width = sum(float((b.hi[i] - b.lo[i]).sum()) for i in aff)
            out_w = float((b.hi[-1] - b.lo[-1]).sum())
            key = f"{name}|{m}"
            los, his = np.concatenate(b.lo), np.concatenate(b.hi)
            saved[key + "|lo"], saved[key + "|hi"] = los, his
            saved[key + "|unstable"] = np.array(b.stats["unstable"])
            row = (f"| {name} | {m} | {b.stats['unstable']} | {width:.9g} | {out_w:.9g} | "
                   f"{best:.3f}{'*' if b.stats.get('timed_out') else ''} |")
            if ref is not None and key + "|lo" in ref:
                rlo, rhi = ref[key + "|lo"], ref[key + "|hi"]
                change = max(float(np.max(np.abs(los - rlo))), float(np.max(np.abs(his - rhi))))
                rw = sum(float((rhi - rlo)[_entry_slice(b, i)].sum()) for i in aff)
                row += (f" {int(ref[key + '|unstable'])} | {change:.3g} | "
                        f"{(width - rw) / rw:+.3g} |")
            elif ref is not None:
                row += " | | |"
            lines.append(row)
            print(row, file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save, **saved)
    if args.out_given:
        args.out.write_text(text)
    return 0


def _entry_slice(b, i: int) -> slice:
    """Slice of entry ``i`` in the concatenation of ``b.lo``."""
    start = sum(int(v.size) for v in b.lo[:i])
    return slice(start, start + int(b.lo[i].size))


def _deadlines_mode(args) -> int:
    """Wall time of ``compute_bounds(timeout=T)`` against the promise T + max(1 s, 5 % T)."""
    from nnresilience.bounds import compute_bounds
    from nnresilience.cli.bounds import vnnlib_input_box
    from nnresilience.loaders import load_network

    Ts = [float(t) for t in args.deadline_T.split(",") if t.strip()]
    methods = [m.strip() for m in args.deadline_methods.split(",") if m.strip()]
    lines = ["# compute_bounds deadlines", "",
             "Wall time of one `compute_bounds(net, box, method, timeout=T)` call (measured "
             "around the call, network already loaded), default 1 s per MIP. Promise: "
             "T + max(1 s, 5 % T).", "",
             "| network | method | T (s) | wall (s) | over T (s) | kept | timed_out | "
             "unstable |", "|---|---|---:|---:|---:|---|---|---:|"]
    for size in ("256x4", "256x6"):
        model = args.data / "mnistfc" / f"mnist-net_{size}.onnx"
        prop = args.data / "mnistfc" / "prop_0_0.03.vnnlib"
        if not model.is_file():
            continue
        net = load_network(model)
        lo, hi = vnnlib_input_box(prop, net.n_inputs)
        prior = None
        for m in methods:
            base, _, pri = m.partition("@")
            if pri and prior is None:         # e.g. milp:1@lp: the MIP stage alone
                prior = compute_bounds(net, (lo, hi), method=pri, timeout=60.0)
            for T in Ts:
                t0 = time.perf_counter()
                b = compute_bounds(net, (lo, hi), method=base, timeout=T,
                                   neuron_time_limit=args.neuron_time_limit,
                                   prior=prior if pri else None)
                wall = time.perf_counter() - t0
                kept = wall <= T + max(1.0, 0.05 * T)
                row = (f"| {size} | {m} | {T:g} | {wall:.2f} | {wall - T:+.2f} | "
                       f"{'yes' if kept else 'NO'} | {bool(b.stats.get('timed_out'))} | "
                       f"{b.stats['unstable']} |")
                lines.append(row)
                print(row, file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out_given:
        args.out.write_text(text)
    return 0


def _mip_margin_mode(args) -> int:
    """What turning HiGHS's MIP dual bound into a sound bound costs, per neuron.

    For the first ``--mip-targets`` undecided units of a few entries, the bound of
    ``milp:1`` (rows loosened, scaling off, dual margin: ``tighten.solve_mip_chunk``) is
    compared with the raw HiGHS dual bound of the same window model solved as given
    with default options (what ``milp:W`` used before, up to a 1e-6 relative pad).
    """
    import numpy as np

    from nnresilience.bounds import compute_bounds
    from nnresilience.bounds import tighten as T
    from nnresilience.bounds.lp import lp_targets, make_highs
    from nnresilience.cli.bounds import vnnlib_input_box
    from nnresilience.loaders import load_network

    cases = [("acasxu 1_1 prop_3", args.data / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx",
              args.data / "acasxu" / "prop_3.vnnlib", (3, 5)),
             ("mnist 256x2 prop_0_0.03", args.data / "mnistfc" / "mnist-net_256x2.onnx",
              args.data / "mnistfc" / "prop_0_0.03.vnnlib", (3,))]
    lines = ["# milp:W: cost of the sound MIP bound", "",
             f"First {args.mip_targets} undecided units of each entry, window W = 1 over the "
             f"lp bounds; {args.neuron_time_limit:g} s per MIP. `raw` = HiGHS dual bound of "
             "the window model as given, default options; `sound` = `tighten.solve_mip_chunk` "
             "(rows loosened, scaling off, dual margin).", "",
             "| instance | entry | units | lp width | raw width | sound width | "
             "sound - raw (sum) | max per bound | raw s | sound s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, model, prop, entries in cases:
        if not model.is_file():
            continue
        net = load_network(model)
        lo, hi = vnnlib_input_box(prop, net.n_inputs)
        lp = compute_bounds(net, (lo, hi), method="lp", timeout=120.0)
        for i in entries:
            rows = lp_targets(net.layers, i, lp.lo[i], lp.hi[i])[:args.mip_targets]
            s0 = T.window_start(net.layers, i, 1)
            model_w, z = T.encode_window(net.layers, lp.lo, lp.hi, s0, i - 1, prefix=True)
            arr = model_w.arrays()
            W = net.layers[i - 1].W[rows]
            d = net.layers[i - 1].b[rows]
            t0 = time.perf_counter()
            h = make_highs(arr.A, arr.row_lo, arr.row_hi, arr.lb, arr.ub, integer=arr.integer)
            h.setOptionValue("mip_rel_gap", T.MIP_GAP)
            raw = np.zeros((rows.size, 2))
            for k in range(rows.size):
                for col, sense in ((0, 1.0), (1, -1.0)):
                    h.setOptionValue("time_limit", args.neuron_time_limit)
                    h.changeColsCost(z[-1].size, z[-1].astype(np.int32), sense * W[k])
                    h.run()
                    v = h.getInfo().mip_dual_bound
                    raw[k, col] = v + d[k] if sense > 0 else -v + d[k]
            t_raw = time.perf_counter() - t0
            t0 = time.perf_counter()
            lo_s, hi_s, _, _ = T.solve_mip_chunk(
                {"A": arr.A, "row_lo": arr.row_lo, "row_hi": arr.row_hi, "lb": arr.lb,
                 "ub": arr.ub, "integer": arr.integer, "cols": z[-1], "C": W, "d": d,
                 "time_limit": args.neuron_time_limit, "seconds": None})
            t_sound = time.perf_counter() - t0
            w_raw = float((raw[:, 1] - raw[:, 0]).sum())
            w_sound = float((hi_s - lo_s).sum())
            worst = float(max(np.max(raw[:, 0] - lo_s), np.max(hi_s - raw[:, 1])))
            lp_w = float((lp.hi[i][rows] - lp.lo[i][rows]).sum())
            row = (f"| {name} | {i} | {rows.size} | {lp_w:.6g} | {w_raw:.6g} | {w_sound:.6g} | "
                   f"{w_sound - w_raw:+.3g} | {worst:.3g} | {t_raw:.2f} | {t_sound:.2f} |")
            lines.append(row)
            print(row, file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out_given:
        args.out.write_text(text)
    return 0


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
    ap.add_argument("--widths", action="store_true", help="widths/cost on 3 fixed instances")
    ap.add_argument("--repeat", type=int, default=3, help="--widths: runs per cheap method")
    ap.add_argument("--save", type=Path, help="--widths: store every box (.npz)")
    ap.add_argument("--compare", type=Path, help="--widths: compare with stored boxes")
    ap.add_argument("--deadlines", action="store_true", help="deadline table (MNIST 256x4/6)")
    ap.add_argument("--deadline-T", default="5,10,30", help="--deadlines: timeouts (s)")
    ap.add_argument("--deadline-methods", default="interval,symbolic,lp,milp:1,milp:1@lp",
                    help="M@P: method M with the bounds of P (60 s) as prior")
    ap.add_argument("--mip-margin", action="store_true",
                    help="cost of the sound milp:W bound against HiGHS's raw dual bound")
    ap.add_argument("--mip-targets", type=int, default=10)
    args = ap.parse_args(argv)
    args.out_given = any(a == "--out" or a.startswith("--out=") for a in (argv or sys.argv[1:]))
    if (args.widths or args.deadlines or args.mip_margin) and not args.data.is_dir():
        print(f"benchmark data not found at {args.data}", file=sys.stderr)
        return 2
    if args.widths:
        return _widths_mode(args)
    if args.deadlines:
        return _deadlines_mode(args)
    if args.mip_margin:
        return _mip_margin_mode(args)

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
