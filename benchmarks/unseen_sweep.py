"""Wrong-answer sweep on ONNX networks of shapes the other sweeps do not build.

Instances: :mod:`nnresilience.testing.unseen` (Conv + MaxPool / AveragePool, deep narrow
ReLU nets, Sigmoid/Tanh/Atan mixed with ReLU, LeakyRelu slopes 0.01/0.3/0.9, MatMul + Add
with Sub/Div normalisation, first layers of 1e6..1e12; random, near-tie violated and
near-tie held properties). Each instance is written as an ONNX file, loaded through the
loader and checked against onnxruntime on 64 inputs; each query goes through
``verify`` with every engine (``milp``, ``bab``, ``reluplex``, ``none`` = bounds +
search, ``auto``), falsifier off and on, and ``alpha_max`` of every class is checked
against 4,000 samples (upper bound not below a sampled ratio, witness reaching the lower
bound, ``optimal`` tight; the holds/violated columns stay empty for it). ``--cli N`` also
runs N queries through
``nnres verify`` (every engine) and ``nnres vnncomp`` and checks the wall clock against
the timeout (T + 1 s).

A **wrong answer**: ``holds`` where a float64 witness is known, ``violated`` whose
counterexample does not replay (or leaves the box), ``violated`` where brute force proves
the property with a margin of 1e-6 of the logits; an **overrun**: a query longer than
its timeout + max(1 s, 5 %). Prints markdown tables.

    python benchmarks/unseen_sweep.py                  # 48 instances + 10 CLI queries, ~6 min
    python benchmarks/unseen_sweep.py --n 8 --cli 2    # quick look
    python benchmarks/unseen_sweep.py --n 6 --families smooth conv_smooth   # s-shaped only
    python benchmarks/unseen_sweep.py --n 8 --families leaky --leaky-slopes 1e-6 0.999

Beyond the recorded runs (helper ``sweep8``): ``--families conv_ops reshape_ops pinned far``
(Conv stride / padding / dilation / groups, BatchNormalization, overlapping and padded
pools, shape operators, degenerate boxes, inputs at 1e6 with widths down to 1e-9) and
``ulp`` (boxes one float64 step wide: the search cannot cut them);
``--multi-case`` adds a two-box query (two VNN-LIB cases); ``--engines`` takes any engine
name ``verify`` takes (``milp:scip``, ``bab:reluplex``, ``bab:milp:scip`` ...); ``--bounds``
sweeps the bounds methods (``interval symbolic alpha lp milp:1``); ``--input-split on|off``
forces the input-splitting search; ``--workers N`` shares each search between N
processes; ``--formats nnet torch`` re-writes each dense network
as an NNet / PyTorch file (where the format can hold it), loads that and verifies it
(CLI runs too):

    python benchmarks/unseen_sweep.py --n 8 --seed 1100 --multi-case --cli 3 \\
        --families conv_ops reshape_ops pinned far
    python benchmarks/unseen_sweep.py --n 8 --seed 1300 --cli 0 \\
        --engines milp:scip bab:reluplex bab:milp:scip --bounds interval alpha lp
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENGINES = ("milp", "bab", "reluplex", "none", "auto")
FALSIFY = (0.0, 0.2)
ORT_REL = 1e-5


class _BFTimeout(Exception):
    pass


def _bruteforce(network, seconds: float):
    """``case -> (max margin, maximiser)`` by pattern enumeration, ``None`` when the net
    is too large or the enumeration takes longer than ``seconds``."""
    from nnresilience.testing.bruteforce import BruteForceTooLarge, brute_force_max_margin

    def run(case):
        if not hasattr(signal, "SIGALRM"):
            return None

        def stop(*_):
            raise _BFTimeout

        old = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return brute_force_max_margin(network, case)
        except (BruteForceTooLarge, _BFTimeout):
            return None
        except RuntimeError:    # an LP status HiGHS did not classify: no ground truth
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
            signal.signal(signal.SIGALRM, old)
    return run


def _ort_gap(network, inst) -> float:
    """Largest loader-vs-onnxruntime difference on 64 inputs, relative to the largest
    hidden value (float32 rounding of onnxruntime grows with it)."""
    from nnresilience.loaders.onnx import onnxruntime_forward

    X = np.random.default_rng(inst.seed).uniform(inst.lo, inst.hi, (64, inst.n_inputs))
    y = network.forward(X)
    yo = onnxruntime_forward(network, X)
    scale = max(float(np.abs(a).max()) for a in network.forward_all(X))
    return float(np.abs(y - yo).max()) / max(1.0, scale)


def _convert(net, inst, fmt: str, work: Path, stem: str):
    """``(path, network)`` of ``net`` re-written as an NNet (dense ReLU nets) or PyTorch
    (dense nets of affine / ReLU / LeakyReLU / Sigmoid / Tanh layers) file and loaded
    back, or ``None`` when the format cannot hold the net. NNet gets a random input
    normalisation, so the reloaded net differs from the ONNX one by rounding: the queries
    are built on the reloaded net."""
    from nnresilience.loaders import load_network
    from nnresilience.network.layers import Affine

    kinds = [la.kind for la in net.layers]
    if fmt == "nnet":
        pairs = list(zip(net.layers[::2], net.layers[1::2], strict=False))
        if not (isinstance(net.layers[-1], Affine) and len(net.layers) % 2 == 1 and all(
                isinstance(a, Affine) and r.kind == "relu" for a, r in pairs)):
            return None
        from nnresilience.loaders.nnet import write_nnet

        rng = np.random.default_rng(inst.seed + 30_000)
        n = net.n_inputs
        mean = np.append(rng.uniform(-0.5, 0.5, n), rng.uniform(-1.0, 1.0))
        rg = np.append(rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0))
        weights = []
        for k, la in enumerate(net.layers[::2]):
            W, b = np.asarray(la.dense_W(), float), np.asarray(la.b, float)
            if k == 0:              # the loader folds (x - mean) / range into W0, b0
                b = b + W @ mean[:n]
                W = W * rg[None, :n]
            if k == len(net.layers) // 2:   # and y * range + mean into the last layer
                W, b = W / rg[n], (b - mean[n]) / rg[n]
            weights.append((W, b))
        path = work / f"{stem}.nnet"
        pad = np.maximum(1.0, np.abs(inst.hi - inst.lo))
        write_nnet(path, weights, inst.lo - pad, inst.hi + pad, mean, rg)
        return path, load_network(path)
    if fmt == "torch":
        if kinds[0] != "affine" or any(k not in ("affine", "relu", "leaky_relu", "sigmoid",
                                                 "tanh") for k in kinds):
            return None
        import torch

        mods = []
        for la in net.layers:
            if la.kind == "affine":
                W = torch.tensor(np.asarray(la.dense_W(), float))
                m = torch.nn.Linear(W.shape[1], W.shape[0]).double()
                with torch.no_grad():
                    m.weight.copy_(W)
                    m.bias.copy_(torch.tensor(np.asarray(la.b, float)))
                mods.append(m)
            elif la.kind == "leaky_relu":
                mods.append(torch.nn.LeakyReLU(la.slope))
            else:
                mods.append({"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid,
                             "tanh": torch.nn.Tanh}[la.kind]())
        path = work / f"{stem}.pt"
        torch.save(torch.nn.Sequential(*mods), str(path))
        return path, load_network(path)
    raise ValueError(f"unknown format {fmt!r}")


def _cli(nnres: str, model: Path, prop: Path, engine: str, timeout: float, seed: int,
         work: Path) -> tuple[str, np.ndarray | None, float, str]:
    """(status, counterexample, seconds, stderr tail) of one CLI run."""
    t0 = time.monotonic()
    if engine == "vnncomp":
        out = work / "vnncomp.txt"
        p = subprocess.run([nnres, "vnncomp", str(model), str(prop), str(out), str(timeout),
                            "-q"], capture_output=True, text=True)
        dt = time.monotonic() - t0
        txt = out.read_text() if out.exists() else ""
        first = txt.strip().split("\n")[0] if txt.strip() else "missing"
        status = {"sat": "violated", "unsat": "holds"}.get(first, first)
        x = _vnncomp_x(txt) if status == "violated" else None
        return status, x, dt, p.stderr[-300:]
    js = work / "verify.json"
    js.unlink(missing_ok=True)
    p = subprocess.run([nnres, "verify", str(model), str(prop), "--engine", engine,
                        "--timeout", str(timeout), "--json", str(js), "-q", "--seed",
                        str(seed)], capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode == 2 and ("engine" in p.stderr and "supports" in p.stderr
                              or "--engine must be one of" in p.stderr):
        return "unsupported", None, dt, ""
    if not js.exists():
        return f"exit {p.returncode}", None, dt, p.stderr[-300:]
    d = json.loads(js.read_text())
    cex = d.get("counterexample") or {}
    x = np.array(cex["x"], float) if "x" in cex else None
    return d.get("status", "?"), x, dt, p.stderr[-300:]


def _vnncomp_x(txt: str) -> np.ndarray | None:
    """The ``X_i`` values of a VNN-COMP ``sat`` assignment (``None`` without any)."""
    vals = {int(m.group(1)): float(m.group(2))
            for m in re.finditer(r"\(X_(\d+) ([^)]+)\)", txt)}
    return np.array([vals[i] for i in range(len(vals))]) if vals else None


def _campaign(nnres: str, entries: list, timeout: float, work: Path
              ) -> list[tuple[int, str, np.ndarray | None, float, str]]:
    """Run ``entries`` (``(model, vnnlib)`` paths) as one ``nnres campaign run``, export
    the VNN-COMP ``results.csv`` and counterexample files and read them back:
    ``(entry index, status, x, seconds, problem)`` per exported row."""
    import csv

    d = work / "campaign"
    d.mkdir(exist_ok=True)
    for f in d.glob("*"):
        if f.is_file():
            f.unlink()
    inst = d / "instances.csv"
    inst.write_text("".join(f"{m.resolve()},{p.resolve()},{timeout:g}\n" for m, p in entries))
    store, res = d / "store.db", d / "results.csv"
    budget = len(entries) * (timeout + max(1.0, 0.05 * timeout)) + 30.0
    run = subprocess.run([nnres, "campaign", "run", str(inst), "-s", str(store), "-q"],
                         capture_output=True, text=True, timeout=budget)
    out = []
    if run.returncode != 0 or "Traceback" in run.stderr:
        return [(-1, f"exit {run.returncode}", None, 0.0, run.stderr.strip()[-150:])]
    exp = subprocess.run([nnres, "campaign", "export", str(store), "-o", str(res)],
                         capture_output=True, text=True, timeout=60)
    if exp.returncode != 0:
        return [(-1, f"export exit {exp.returncode}", None, 0.0, exp.stderr.strip()[-150:])]
    cex_dir = d / "results_counterexamples"
    index = {str(p.resolve()): k for k, (_, p) in enumerate(entries)}
    for row in csv.reader(res.read_text().splitlines()):
        _, model, prop, word, secs = row
        k = index.get(prop, -1)
        status = {"sat": "violated", "unsat": "holds"}.get(word, word)
        x, problem = None, ""
        if status == "violated":
            base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(model).stem}_{Path(prop).stem}")
            f = cex_dir / f"{base.strip('_')}.counterexample"
            if not f.exists():
                problem = f"no counterexample file {f.name}"
            else:
                txt = f.read_text()
                if txt.strip().split("\n")[0].strip("() ") != "sat":
                    problem = "counterexample file does not start with sat"
                x = _vnncomp_x(txt)
        out.append((k, status, x, float(secs or 0.0), problem))
    if len(out) != len(entries):
        out.append((-1, "missing rows", None, 0.0,
                    f"{len(out)} exported rows for {len(entries)} instances"))
    return out


def _alpha_max_check(network, inst, timeout: float) -> list[str]:
    """α_max of every class against 4,000 samples (in log space: the nets with 1e12
    weights reach ratios far beyond float64): the proven upper bound must not be below a
    sampled ratio, the witness must reach the lower bound, ``optimal`` must be tight."""
    import math

    from nnresilience.resilience import alpha_max

    X = np.random.default_rng(inst.seed + 1).uniform(inst.lo, inst.hi, (4000, inst.n_inputs))
    Y = network.forward(X)
    out = []
    for m in range(network.n_outputs):
        best = float((Y[:, m] - np.delete(Y, m, axis=1).max(axis=1)).max())
        r = alpha_max(network, m, domain=(inst.lo, inst.hi), timeout=timeout)
        slack = 1e-9 * max(1.0, abs(best))
        if r.upper is not None and r.upper < math.inf and (
                r.upper <= 0.0 or math.log(r.upper) < best - slack):
            out.append(f"class {m}: upper {r.upper!r} below a sampled ratio e^{best!r}")
        if r.a is not None and r.lower is not None and r.lower > 0.0:
            y = network.forward(np.asarray(r.a))
            got = float(y[m] - np.delete(y, m).max())
            if got < math.log(r.lower) - 1e-9 * max(1.0, abs(got)):
                out.append(f"class {m}: witness reaches e^{got!r} < lower {r.lower!r}")
        if r.optimal and (r.upper is None or r.lower is None
                          or r.upper - r.lower > 1e-3 * max(1.0, r.upper)):
            out.append(f"class {m}: optimal but [{r.lower!r}, {r.upper!r}]")
    return out


def main(argv: list[str] | None = None) -> int:
    from nnresilience.errors import EngineUnsupportedError
    from nnresilience.loaders import load_network
    from nnresilience.spec.vnnlib import read_vnnlib
    from nnresilience.testing.unseen import (
        ALL_FAMILIES,
        FAMILIES,
        PIECEWISE_LINEAR,
        instance,
        judge_property,
        variants,
    )
    from nnresilience.verify import verify

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=48, help="instances (families in turn)")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per API query")
    ap.add_argument("--cli", type=int, default=10, help="queries also run through the CLI")
    ap.add_argument("--cli-timeout", type=float, default=3.0)
    ap.add_argument("--keep", type=Path, help="keep the ONNX / VNN-LIB files here")
    ap.add_argument("--families", nargs="+", choices=ALL_FAMILIES, default=list(FAMILIES),
                    help="only these families (seeds of other families are skipped)")
    ap.add_argument("--engines", nargs="+", default=list(ENGINES),
                    help="engine names passed to verify (e.g. milp:scip bab:reluplex)")
    ap.add_argument("--bounds", nargs="+", default=["symbolic"],
                    help="bounds methods, each a separate query (interval symbolic alpha "
                         "lp milp:1)")
    ap.add_argument("--input-split", choices=("default", "on", "off"), default="default",
                    help="force the input-splitting search on or off")
    ap.add_argument("--multi-case", action="store_true",
                    help="add the two-box query (two VNN-LIB cases) to every instance")
    ap.add_argument("--formats", nargs="+", choices=("onnx", "nnet", "torch"),
                    default=["onnx"], help="also verify each net re-written in these "
                                           "formats (where the format can hold it)")
    ap.add_argument("--workers", type=int, default=1,
                    help="verify(executor=N): N worker processes share the search")
    ap.add_argument("--no-alpha-max", action="store_true", help="skip the alpha_max check")
    ap.add_argument("--campaign", type=int, default=0, metavar="N",
                    help="also run N queries as one `nnres campaign run` and judge its "
                         "exported results.csv and counterexample files")
    ap.add_argument("--leaky-slopes", type=float, nargs="+", metavar="K",
                    help="slopes the leaky family draws from (default 0.01 0.3 0.9)")
    args = ap.parse_args(argv)
    if args.leaky_slopes:
        from nnresilience.testing import unseen

        if not all(0.0 <= k < 1.0 for k in args.leaky_slopes):
            ap.error("--leaky-slopes: every slope must be in [0, 1)")
        unseen.LEAKY_SLOPES = tuple(args.leaky_slopes)
    import onnx

    work = args.keep or Path(tempfile.mkdtemp(prefix="unseen_"))
    work.mkdir(parents=True, exist_ok=True)
    nnres = str(Path(sys.executable).with_name("nnres"))
    counts: dict = collections.defaultdict(collections.Counter)
    wrong: list[str] = []
    ort = collections.defaultdict(float)
    cli_queue = []
    t_start = time.monotonic()
    limit = args.timeout + max(1.0, 0.05 * args.timeout)
    # the recorded runs map seeds to FAMILIES; the extra families use ALL_FAMILIES
    pool = FAMILIES if set(args.families) <= set(FAMILIES) else ALL_FAMILIES
    seeds = [s for s in range(args.seed, args.seed + args.n * len(pool))
             if pool[s % len(pool)] in args.families][: args.n]
    split = {"default": None, "on": True, "off": False}[args.input_split]
    per_bounds = args.bounds != ["symbolic"]
    for seed in seeds:
        fam = pool[seed % len(pool)]
        inst = instance(fam, seed)
        mp = work / f"{fam}_{seed}.onnx"
        onnx.save(inst.model, str(mp))
        onnx_net = load_network(mp)
        if fam != "far":    # float32 inputs cannot resolve boxes 1e-9 wide at 1e6
            ort[fam] = max(ort[fam], _ort_gap(onnx_net, inst))
        for fmt in args.formats:
            if fmt == "onnx":
                mp, net = work / f"{fam}_{seed}.onnx", onnx_net
            else:
                got = _convert(onnx_net, inst, fmt, work, f"{fam}_{seed}")
                if got is None:
                    continue
                mp, net = got
                X = np.random.default_rng(seed).uniform(inst.lo, inst.hi, (64, net.n_inputs))
                scale = max(float(np.abs(a).max()) for a in onnx_net.forward_all(X))
                gap = float(np.abs(net.forward(X) - onnx_net.forward(X)).max())
                ort[f"{fam}[{fmt}] vs onnx"] = max(ort[f"{fam}[{fmt}] vs onnx"],
                                                   gap / max(1.0, scale))
            tag = "" if fmt == "onnx" else f"[{fmt}]"
            ffam = fam + tag
            if fmt == "onnx" and not args.no_alpha_max:
                for why in _alpha_max_check(net, inst, args.timeout):
                    counts[(fam, "alpha_max")]["wrong"] += 1
                    wrong.append(f"| {fam} | {seed} | alpha_max | - | - | - | {why} |")
                counts[(fam, "alpha_max")]["queries"] += inst.n_outputs
            bf = _bruteforce(net, 10.0) if fam in PIECEWISE_LINEAR else None
            for q in variants(inst, net, bf, multi_case=args.multi_case):
                pp = work / f"{fam}_{seed}_{q.name}{tag}.vnnlib"
                pp.write_text(q.text)
                prop = read_vnnlib(pp, n_inputs=net.n_inputs, n_outputs=net.n_outputs)
                cli_queue.append((ffam, seed, mp, pp, prop, q, net))
                for eng in args.engines:
                    for bm in args.bounds:
                        for fb in FALSIFY:
                            c = counts[(ffam, eng + (f"/{bm}" if per_bounds else ""))]
                            t0 = time.monotonic()
                            try:
                                res = verify(net, prop, engine=eng, timeout=args.timeout,
                                             falsify_budget=fb, seed=seed, bounds_method=bm,
                                             input_split=split,
                                             executor=args.workers if args.workers > 1
                                             else None)
                            except EngineUnsupportedError:
                                c["unsupported"] += 1
                                continue
                            except Exception as exc:  # a crash is a finding, not the end
                                c["queries"] += 1
                                c["wrong"] += 1
                                wrong.append(f"| {ffam} | {seed} | {q.name} | {eng}/{bm} | "
                                             f"{fb:g} | crash | {type(exc).__name__}: "
                                             f"{str(exc)[:100]} |")
                                continue
                            dt = time.monotonic() - t0
                            st = res.status.value
                            x = (None if res.counterexample is None
                                 else res.counterexample.x_array)
                            why = judge_property(net, prop, st, x, q.truth)
                            c["queries"] += 1
                            c[st] += 1
                            row = f"| {ffam} | {seed} | {q.name} | {eng}/{bm} | {fb:g} | {st} | "
                            if why:
                                c["wrong"] += 1
                                wrong.append(row + f"{why} |")
                            if dt > limit:
                                c["overrun"] += 1
                                wrong.append(row + f"overrun {dt:.2f} s |")
    api_seconds = time.monotonic() - t_start
    rng = np.random.default_rng(args.seed)
    picks = rng.permutation(len(cli_queue))[:args.cli] if cli_queue else []
    cli_limit = args.cli_timeout + max(1.0, 0.05 * args.cli_timeout)
    for k in picks:
        fam, seed, mp, pp, prop, q, net = cli_queue[int(k)]
        for eng in tuple(args.engines) + ("vnncomp",):
            st, x, dt, err = _cli(nnres, mp, pp, eng, args.cli_timeout, seed, work)
            c = counts[(fam, "cli:" + eng)]
            if st == "unsupported":
                c["unsupported"] += 1
                continue
            c["queries"] += 1
            c[st] += 1
            why = judge_property(net, prop, st, x, q.truth)
            if "Traceback" in err or st.startswith("exit") or st == "error":
                why = (why + "; " if why else "") + f"{st}: {err.strip()[-120:]}"
            if why:
                c["wrong"] += 1
                wrong.append(f"| {fam} | {seed} | {q.name} | cli:{eng} | - | {st} | {why} |")
            if dt > cli_limit:
                c["overrun"] += 1
                wrong.append(f"| {fam} | {seed} | {q.name} | cli:{eng} | - | {st} | "
                             f"overrun {dt:.2f} s |")

    if args.campaign and cli_queue:
        sel = [cli_queue[int(k)] for k in rng.permutation(len(cli_queue))[:args.campaign]]
        got = _campaign(nnres, [(e[2], e[3]) for e in sel], args.cli_timeout, work)
        for k, st, x, dt, problem in got:
            if k < 0:
                counts[("campaign", "campaign")]["wrong"] += 1
                wrong.append(f"| - | - | - | campaign | - | {st} | {problem} |")
                continue
            fam, seed, mp, pp, prop, q, net = sel[k]
            c = counts[(fam, "campaign")]
            c["queries"] += 1
            c[{"timeout": "unknown"}.get(st, st)] += 1
            why = problem or judge_property(net, prop, st, x, q.truth)
            if why:
                c["wrong"] += 1
                wrong.append(f"| {fam} | {seed} | {q.name} | campaign | - | {st} | {why} |")
            if dt > cli_limit:
                c["overrun"] += 1
                wrong.append(f"| {fam} | {seed} | {q.name} | campaign | - | {st} | "
                             f"overrun {dt:.2f} s |")

    fams = "" if args.families == list(FAMILIES) else f" ({', '.join(args.families)})"
    for flag, val, default in (("engines", args.engines, list(ENGINES)),
                               ("bounds", args.bounds, ["symbolic"]),
                               ("formats", args.formats, ["onnx"])):
        if val != default:
            fams += f", {flag} {' '.join(val)}"
    if split is not None:
        fams += f", input split {args.input_split}"
    if args.multi_case:
        fams += ", two-box queries"
    if args.workers > 1:
        fams += f", {args.workers} workers"
    if args.leaky_slopes:
        fams += f", leaky slopes {' / '.join(f'{k:g}' for k in args.leaky_slopes)}"
    print(f"# Unseen-shape sweep: {len(seeds)} instances{fams} from seed {args.seed}, API timeout "
          f"{args.timeout:g} s, {len(picks)} CLI queries at {args.cli_timeout:g} s; "
          f"{api_seconds:.0f} s for the API part, {time.monotonic() - t_start:.0f} s in all\n")
    print("| family | engine | queries | holds | violated | unknown | wrong | overrun | "
          "unsupported |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (fam, eng), c in sorted(counts.items()):
        print(f"| {fam} | {eng} | {c['queries']} | {c['holds']} | {c['violated']} | "
              f"{c['unknown']} | {c['wrong']} | {c['overrun']} | {c['unsupported']} |")
    tot = collections.Counter()
    for c in counts.values():
        tot.update(c)
    print(f"| **all** | | {tot['queries']} | {tot['holds']} | {tot['violated']} | "
          f"{tot['unknown']} | {tot['wrong']} | {tot['overrun']} | {tot['unsupported']} |")
    print("\n| family | loader vs onnxruntime (max difference / max(1, largest hidden value)) |")
    print("|---|---:|")
    for fam, gap in sorted(ort.items()):
        flag = "" if gap <= ORT_REL else " **mismatch**"
        print(f"| {fam} | {gap:.2e}{flag} |")
    if wrong:
        print("\n| family | seed | query | engine | falsify | answer | problem |")
        print("|---|---:|---|---|---:|---|---|")
        print("\n".join(wrong))
    else:
        print("\nNo wrong answers, no overruns.")
    bad = tot["wrong"] + tot["overrun"] + sum(g > ORT_REL for g in ort.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
