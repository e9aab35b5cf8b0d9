"""Parallel speed-up: campaigns through the executor and one hard query divided and conquered.

Usage (from the repository root)::

    python benchmarks/parallel.py                       # everything, 1 and 2 workers
    python benchmarks/parallel.py --tasks divide --workers 1 2 4
    python benchmarks/parallel.py --no-write            # print only

Tasks:

* ``xi``     -- Ξ of a small network (one Φ_m task per class through the resilience API's
  ``workers`` parameter): the agent-like 27-15-4 net of ``examples/agent`` (α = 1.2, L1,
  D = [0,1]^27), or the shipped CTG net when that example is absent.
* ``table``  -- a robustness table: per-sample minimum L∞ perturbation of the 9 shipped
  CTG samples (``robustness_table(..., workers=N)``, D = [-1,1]^18).
* ``minpert`` -- minimum L∞ perturbation of CTG sample 1: one serial MIP, then
  ``min_perturbation_divided`` with N workers (attack, then split of the neighbourhood).
* ``divide`` -- ACAS Xu network 1_1 with properties 3 and 4 (``../shared/benchmarks``):
  ``verify`` serially, then ``verify_divided`` (now ``verify`` with the executor) with N
  workers (1 = in-process).
* ``split``  -- ACAS Xu ``net:prop`` instances (``--instances``, default 1_1:3 1_1:5):
  ``verify`` serially (1 worker), then ``verify(..., executor=ProcessExecutor(N))``, whose
  search frontier is shared by the N workers.

Each row: task, workers, wall seconds (process start-up of the pool included) and the
speed-up against the 1-worker row of the same task (for ``divide``: against plain
``verify``). Verdicts / values are printed so a faster wrong answer cannot pass
unnoticed. The machine load (``os.getloadavg``) at start and end is recorded, because
the 2-core machine is shared and the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# one BLAS thread in this process too (workers get it from ProcessExecutor), so the serial
# reference and the workers compute alike; set before numpy is imported
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results_parallel.md"
SHARED = REPO.parent / "shared" / "benchmarks"
AGENT = REPO / "examples" / "agent" / "agent_27x15.onnx"
DATA = REPO / "src" / "nnresilience" / "data"


def _load(path: Path):
    from nnresilience.loaders import load_network

    return load_network(str(path))


def _executor(workers: int):
    from nnresilience.parallel import InlineExecutor, ProcessExecutor

    return InlineExecutor() if workers == 1 else ProcessExecutor(workers)


def run_xi(workers: int, timeout: float) -> tuple[float, str]:
    from nnresilience.resilience import xi

    if AGENT.is_file():
        net, alpha, dom, name = _load(AGENT), 1.2, (0.0, 1.0), "agent 27-15-4"
    else:
        net, alpha, dom, name = _load(DATA / "ctg_leaky.onnx"), 1.2, (-1.0, 1.0), "CTG"
    t = time.perf_counter()
    r = xi(net, alpha=alpha, norm="l1", domain=dom, timeout=timeout,
           workers=workers if workers > 1 else None)
    sec = time.perf_counter() - t
    return sec, f"{name}: Ξ in [{r.lower:.6g}, {r.upper:.6g}] (class {r.cls})"


def run_table(workers: int, timeout: float) -> tuple[float, str]:
    from nnresilience.resilience import robustness_table

    net = _load(DATA / "ctg_leaky.onnx")
    d = np.load(DATA / "ctg_samples.npz")
    t = time.perf_counter()
    rows = robustness_table(net, d["x"], d["labels"], norm="linf", domain=(-1.0, 1.0),
                            timeout=timeout, workers=workers if workers > 1 else None)
    sec = time.perf_counter() - t
    vals = ", ".join("-" if r.upper is None else f"{r.upper:.4f}" for r in rows)
    return sec, f"CTG 9 samples, min L∞ ε: {vals}"


def run_minpert(workers: int | None, timeout: float, sample: int = 1) -> tuple[float, str]:
    """Minimum L∞ perturbation of one CTG sample: serial MIP (``workers=None``) or
    ``min_perturbation_divided`` with N workers."""
    from nnresilience.divide import min_perturbation_divided
    from nnresilience.resilience import min_perturbation

    net = _load(DATA / "ctg_leaky.onnx")
    d = np.load(DATA / "ctg_samples.npz")
    x, lab = d["x"][sample], int(d["labels"][sample])
    t = time.perf_counter()
    if workers is None:
        r = min_perturbation(net, x, lab, norm="linf", domain=(-1.0, 1.0), timeout=timeout)
    else:
        with _executor(workers) as ex:
            r = min_perturbation_divided(net, x, lab, norm="linf", domain=(-1.0, 1.0),
                                         executor=ex, timeout=timeout)
    sec = time.perf_counter() - t
    up = "-" if r.upper is None else f"{r.upper:.6f}"
    return sec, f"sample {sample}: [{r.lower:.6f}, {up}], optimal={r.optimal}"


def run_divide(prop_id: int, workers: int | None, timeout: float) -> tuple[float, str]:
    """``workers=None``: plain serial ``verify`` (the reference)."""
    from nnresilience.divide import verify_divided
    from nnresilience.spec.vnnlib import read_vnnlib
    from nnresilience.verify import verify

    net = _load(SHARED / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx")
    prop = read_vnnlib(str(SHARED / "acasxu" / f"prop_{prop_id}.vnnlib"), net.n_inputs,
                       net.n_outputs)
    t = time.perf_counter()
    if workers is None:
        r = verify(net, prop, timeout=timeout)
        extra = ""
    else:
        with _executor(workers) as ex:
            r = verify_divided(net, prop, ex, timeout=timeout)
        extra = f", {r.engine}"
    sec = time.perf_counter() - t
    return sec, f"{r.status.value}{extra}"


def run_split(instance: str, workers: int | None, timeout: float) -> tuple[float, str]:
    """``verify`` on ACAS Xu ``net:prop`` (e.g. ``1_1:3``): serial (``workers=None``) or
    with the input-splitting search shared by N worker processes (``executor=``)."""
    from nnresilience.parallel import ProcessExecutor
    from nnresilience.spec.vnnlib import read_vnnlib
    from nnresilience.verify import verify

    net_id, prop_id = instance.split(":")
    net = _load(SHARED / "acasxu" / f"ACASXU_run2a_{net_id}_batch_2000.onnx")
    prop = read_vnnlib(str(SHARED / "acasxu" / f"prop_{prop_id}.vnnlib"), net.n_inputs,
                       net.n_outputs)
    t, cpu = time.perf_counter(), time.process_time()
    if workers is None:
        r = verify(net, prop, timeout=timeout)
    else:  # pool start-up is inside the timed region
        with ProcessExecutor(workers) as ex:
            r = verify(net, prop, timeout=timeout, executor=ex)
    sec = time.perf_counter() - t
    cpu = time.process_time() - cpu  # this process only (the parent, for N workers)
    st = next((c for c in r.stats["cases"] if "domains" in c), {})
    note = f"{r.status.value}, {st.get('domains', '-')} boxes"
    if workers is None:
        note += f", {cpu:.1f} s CPU"
    if "units" in st:
        note += (f", {st['units']} units, search {st['wall_seconds']:.1f} s "
                 f"wall / {st['unit_seconds']:.1f} s in units / "
                 f"{st['unit_cpu_seconds']:.1f} s CPU in units")
    return sec, note


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["xi", "table", "minpert", "divide", "split"],
                    choices=["xi", "table", "minpert", "divide", "split"])
    ap.add_argument("--instances", nargs="+", default=["1_1:3", "1_1:5"],
                    help="ACAS Xu net:prop pairs for the split task (parallel split search)")
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds per query (per Φ_m / per sample / per ACAS property)")
    ap.add_argument("--table-timeout", type=float, default=30.0,
                    help="seconds per sample of the robustness table")
    ap.add_argument("--props", nargs="+", type=int, default=[3, 4],
                    help="ACAS Xu properties on network 1_1 for the divide task")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()
    rows: list[tuple[str, str, float, float | None, str]] = []

    def record(task: str, w: str, sec: float, base: float | None, note: str) -> None:
        sp = None if base is None else base / sec
        rows.append((task, w, sec, sp, note))
        print(f"{task:28s} {w:>8s} {sec:8.2f} s  "
              f"{'' if sp is None else f'x{sp:.2f}':6s} {note}", flush=True)

    if "xi" in args.tasks:
        base = None
        for w in args.workers:
            sec, note = run_xi(w, args.timeout)
            base = base if base is not None else (sec if w == 1 else None)
            record("Ξ (one task per class)", str(w), sec, base, note)
    if "table" in args.tasks:
        base = None
        for w in args.workers:
            sec, note = run_table(w, args.table_timeout)
            base = base if base is not None else (sec if w == 1 else None)
            record("robustness table", str(w), sec, base, note)
    if "minpert" in args.tasks:
        task = "CTG min. perturbation (1 sample)"
        base, note = run_minpert(None, args.timeout)
        record(task, "serial", base, base, note)
        for w in args.workers:
            sec, note = run_minpert(w, args.timeout)
            record(task, f"div {w}", sec, base, note)
    if "divide" in args.tasks:
        if not (SHARED / "acasxu").is_dir():
            print("../shared/benchmarks/acasxu is absent: divide task skipped")
        else:
            for p in args.props:
                task = f"ACAS Xu 1_1 prop_{p}"
                base, note = run_divide(p, None, args.timeout)
                record(task, "verify", base, base, note)
                for w in args.workers:
                    sec, note = run_divide(p, w, args.timeout)
                    record(task, f"div {w}", sec, base, note)
    if "split" in args.tasks:
        if not (SHARED / "acasxu").is_dir():
            print("../shared/benchmarks/acasxu is absent: split task skipped")
        else:
            for inst in args.instances:
                task = f"ACAS Xu {inst.replace(':', ' prop_')} (shared split tree)"
                base = None
                for w in args.workers:
                    sec, note = run_split(inst, None if w == 1 else w, args.timeout)
                    base = base if base is not None else (sec if w == 1 else None)
                    record(task, "verify" if w == 1 else f"split {w}", sec, base, note)
    load1 = os.getloadavg()

    lines = [f"## Parallel speed-up ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "",
             f"`python benchmarks/parallel.py {' '.join(argv or sys.argv[1:])}`".rstrip()
             .replace(" `", "`"),
             f"Machine: {os.cpu_count()} cores, shared; load average (1/5/15 min) "
             f"{load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f} at start, "
             f"{load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} at end.", "",
             "| task | workers | seconds | speed-up | answer |", "|---|---|---|---|---|"]
    for task, w, sec, sp, note in rows:
        lines.append(f"| {task} | {w} | {sec:.2f} | {'' if sp is None else f'{sp:.2f}'} | "
                     f"{note} |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if not args.no_write:
        with RESULTS.open("a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
