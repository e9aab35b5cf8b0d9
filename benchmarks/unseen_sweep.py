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
        x = None
        if status == "violated":
            vals = {int(m.group(1)): float(m.group(2))
                    for m in re.finditer(r"\(X_(\d+) ([^)]+)\)", txt)}
            x = np.array([vals[i] for i in range(len(vals))])
        return status, x, dt, p.stderr[-300:]
    js = work / "verify.json"
    js.unlink(missing_ok=True)
    p = subprocess.run([nnres, "verify", str(model), str(prop), "--engine", engine,
                        "--timeout", str(timeout), "--json", str(js), "-q", "--seed",
                        str(seed)], capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode == 2 and "engine" in p.stderr and "supports" in p.stderr:
        return "unsupported", None, dt, ""
    if not js.exists():
        return f"exit {p.returncode}", None, dt, p.stderr[-300:]
    d = json.loads(js.read_text())
    cex = d.get("counterexample") or {}
    x = np.array(cex["x"], float) if "x" in cex else None
    return d.get("status", "?"), x, dt, p.stderr[-300:]


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
    from nnresilience.testing.unseen import FAMILIES, PIECEWISE_LINEAR, instance, judge, variants
    from nnresilience.verify import verify

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=48, help="instances (families in turn)")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per API query")
    ap.add_argument("--cli", type=int, default=10, help="queries also run through the CLI")
    ap.add_argument("--cli-timeout", type=float, default=3.0)
    ap.add_argument("--keep", type=Path, help="keep the ONNX / VNN-LIB files here")
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                    help="only these families (seeds of other families are skipped)")
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
    seeds = [s for s in range(args.seed, args.seed + args.n * len(FAMILIES))
             if FAMILIES[s % len(FAMILIES)] in args.families][: args.n]
    for seed in seeds:
        fam = FAMILIES[seed % len(FAMILIES)]
        inst = instance(fam, seed)
        mp = work / f"{fam}_{seed}.onnx"
        onnx.save(inst.model, str(mp))
        net = load_network(mp)
        ort[fam] = max(ort[fam], _ort_gap(net, inst))
        for why in _alpha_max_check(net, inst, args.timeout):
            counts[(fam, "alpha_max")]["wrong"] += 1
            wrong.append(f"| {fam} | {seed} | alpha_max | - | - | - | {why} |")
        counts[(fam, "alpha_max")]["queries"] += inst.n_outputs
        bf = _bruteforce(net, 10.0) if fam in PIECEWISE_LINEAR else None
        for q in variants(inst, net, bf):
            pp = work / f"{fam}_{seed}_{q.name}.vnnlib"
            pp.write_text(q.text)
            prop = read_vnnlib(pp, n_inputs=net.n_inputs, n_outputs=net.n_outputs)
            cli_queue.append((fam, seed, mp, pp, prop, q, net))
            for eng in ENGINES:
                for fb in FALSIFY:
                    c = counts[(fam, eng)]
                    t0 = time.monotonic()
                    try:
                        res = verify(net, prop, engine=eng, timeout=args.timeout,
                                     falsify_budget=fb, seed=seed)
                    except EngineUnsupportedError:
                        c["unsupported"] += 1
                        continue
                    dt = time.monotonic() - t0
                    st = res.status.value
                    x = None if res.counterexample is None else res.counterexample.x_array
                    why = judge(net, prop.cases[0], st, x, q.truth)
                    c["queries"] += 1
                    c[st] += 1
                    if why:
                        c["wrong"] += 1
                        wrong.append(f"| {fam} | {seed} | {q.name} | {eng} | {fb:g} | {st} | "
                                     f"{why} |")
                    if dt > limit:
                        c["overrun"] += 1
                        wrong.append(f"| {fam} | {seed} | {q.name} | {eng} | {fb:g} | {st} | "
                                     f"overrun {dt:.2f} s |")
    api_seconds = time.monotonic() - t_start
    rng = np.random.default_rng(args.seed)
    picks = rng.permutation(len(cli_queue))[:args.cli] if cli_queue else []
    cli_limit = args.cli_timeout + max(1.0, 0.05 * args.cli_timeout)
    for k in picks:
        fam, seed, mp, pp, prop, q, net = cli_queue[int(k)]
        for eng in ENGINES + ("vnncomp",):
            st, x, dt, err = _cli(nnres, mp, pp, eng, args.cli_timeout, seed, work)
            c = counts[(fam, "cli:" + eng)]
            if st == "unsupported":
                c["unsupported"] += 1
                continue
            c["queries"] += 1
            c[st] += 1
            why = judge(net, prop.cases[0], st, x, q.truth)
            if "Traceback" in err or st.startswith("exit") or st == "error":
                why = (why + "; " if why else "") + f"{st}: {err.strip()[-120:]}"
            if why:
                c["wrong"] += 1
                wrong.append(f"| {fam} | {seed} | {q.name} | cli:{eng} | - | {st} | {why} |")
            if dt > cli_limit:
                c["overrun"] += 1
                wrong.append(f"| {fam} | {seed} | {q.name} | cli:{eng} | - | {st} | "
                             f"overrun {dt:.2f} s |")

    fams = "" if len(args.families) == len(FAMILIES) else f" ({', '.join(args.families)})"
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
