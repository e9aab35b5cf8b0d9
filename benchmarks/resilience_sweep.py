"""Wrong-answer sweep of the resilience queries (Φ_m, Ξ, α_max, minimum perturbation,
δ-check) on small unseen instances.

Instances: :mod:`nnresilience.testing.resilience_instances` (ReLU, LeakyReLU 0.01/0.3/0.9,
max-pool, ONNX conv + max/average pool, first layers of 1e4..1e8, 1-input nets; domains
of width 2, 20..2000 and 2e-4..2e-2 around a tie). Queries: Φ_m with α = 1, 1 + 1e-6,
1.5, 20, α_max·e^-rel and α_max·e^+rel (rel 1e-9..1e-3), k = 1 and 2, norms L1/L∞/L2,
each with the pair attack on (default) and off (``pair_attack=0``); Ξ once per instance;
α_max of every class; the minimum perturbation of planted near-tie samples (top two
logits 1e-9..1e-3 apart) and one random sample, ``shrink`` (attack + bisection) on and
off; the δ-check just below and above the true minimum; a robustness table.

Ground truth: brute force over activation-pattern pairs (L1/L∞, nets with at most 60
patterns), the 1-input interval reference (every norm), float64-replayed pairs from
sampling and bisection (every net: a certified lower bound must not exceed them). Checks:
lower <= upper; the witness replays exactly in float64 (premise at ``a``, flip at ``b``,
both in D, norm <= upper); ``optimal`` only when the interval is within ``opt_tol`` and
contains the brute-force value (within the LP tolerance of
:func:`~nnresilience.testing.resilience_instances.tolerance`); ``infeasible`` / ``+inf``
only when no input / pair exists; the call ends by T + max(1 s, 5 %). ``--cli N`` runs
N queries also through ``nnres resilience`` / ``alpha-max`` / ``min-perturbation``
(the whole command's wall clock against the same limit).

S-shaped nets (``--families smooth smooth1``: sigmoid / tanh / arctan, some with first
layers of 1e2..1e5 or logits of 1e4..1e8) have no pattern brute force: their truth is
one-sided, the shortest float64-replayed pair / flipped point over a dense grid (301² or
200,001 points) plus samples, which a reported ``lower`` (``optimal`` included) must not
exceed; arctan nets also run Φ_m with ``arctan="miqcp"``. Where no exact minimum
perturbation is known, the δ-check runs at half and just above the replayed one (only
``holds`` above it is judged; a ``violated`` point is replayed). ``edge``: LeakyReLU
slopes 1e-6 / 0.999, ReLU nets with outputs 0 and 1 tied to 1e-9..1e-6 (``smooth`` has
such ties too; ``--only tie_net`` picks them) and ReLU nets on inputs around 1e3..1e6,
down to domains of a few ulps (no brute force there: its LP tolerance is wider).
``deep``: 5-7 narrow ReLU / LeakyReLU layers. The six default families keep their
seeds; extra families are run in turn.

    python benchmarks/resilience_sweep.py                 # 18 instances + 12 CLI runs
    python benchmarks/resilience_sweep.py --n 6 --cli 3   # quick look
    python benchmarks/resilience_sweep.py --n 12 --families smooth smooth1 edge
    python benchmarks/resilience_sweep.py --n 6 --families edge smooth --only tie_net
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

NORMS = ("l1", "linf", "l2")


def _alphas(rng, ln_amax: float | None) -> list[tuple[str, float]]:
    """(kind, α) candidates for one instance and class."""
    out = [("one", 1.0), ("near1", 1.0 + 1e-6), ("mid", 1.5), ("large", 20.0)]
    if ln_amax is not None and 0.0 < ln_amax < 700.0:
        rel = float(rng.choice([1e-9, 1e-6, 1e-3]))
        d = rel * max(1.0, ln_amax)
        if ln_amax - d > 0:
            out.append((f"tie-{rel:g}", math.exp(ln_amax - d)))
        out.append((f"past+{rel:g}", math.exp(ln_amax + d)))
    return out


class Sweep:
    def __init__(self, args) -> None:
        self.args = args
        self.counts: dict = collections.defaultdict(collections.Counter)
        self.problems: list[str] = []
        self.limit = args.timeout + max(1.0, 0.05 * args.timeout)
        self.cli_queue: list = []

    def record(self, fam: str, query: str, res, dt: float, why: list[str], where: str,
               limit: float | None = None) -> None:
        c = self.counts[(fam, query)]
        c["queries"] += 1
        if getattr(res, "optimal", False):
            c["optimal"] += 1
        elif getattr(res, "feasible", True) is False:
            c["infeasible"] += 1
        elif getattr(res, "upper", None) is not None:
            c["bounded"] += 1
        else:
            c["other"] += 1
        if why:
            c["wrong"] += 1
            self.problems.append(f"| {fam} | {query} | {where} | {'; '.join(why)} |")
        if dt > (limit or self.limit):
            c["overrun"] += 1
            self.problems.append(f"| {fam} | {query} | {where} | overrun {dt:.2f} s |")

    # ------------------------------------------------------------------ one instance
    def instance(self, seed: int, fam: str) -> None:
        from nnresilience.resilience import (
            DEFAULT,
            alpha_max,
            delta_check,
            min_perturbation,
            phi,
            robustness_table,
            xi,
        )
        from nnresilience.testing import resilience_instances as ri

        T = self.args.timeout
        inst = ri.res_instance(fam, seed)
        net, lo, hi = inst.network, inst.lo, inst.hi
        dom = (lo, hi)
        rng = np.random.default_rng(seed + 7)
        tag = inst.describe()
        n_out = net.n_outputs
        X = rng.uniform(lo, hi, (3000, lo.size))
        Y = net.forward(X)
        YG = np.vstack([Y, net.forward(ri.dense_grid(inst))])   # S-shaped nets: + a grid

        # α_max of every class
        ln_amax: dict[int, float | None] = {}
        for m in range(n_out):
            sampled = float((YG[:, m] - np.delete(YG, m, axis=1).max(axis=1)).max())
            truth = ri.true_ln_alpha_max(inst, m)
            ln_amax[m] = truth
            t0 = time.monotonic()
            r = alpha_max(net, m, dom, timeout=T)
            dt = time.monotonic() - t0
            self.record(fam, "alpha_max", r, dt, ri.check_alpha_max(r, inst, m, truth, sampled),
                        f"{tag} m={m}")
            if truth is None and r.lower is not None and 0.0 < r.lower < math.inf:
                ln_amax[m] = math.log(r.lower)   # a replayed margin: a knob, not a truth
        # Φ_m
        attacks = (("attack", DEFAULT), ("no-attack", DEFAULT.with_(pair_attack=0.0)))
        if any(la.kind == "arctan" for la in net.layers):
            # the paper's MIQCP (+ its error band): lower <= Φ rests on SCIP and the band
            attacks += (("miqcp", DEFAULT.with_(arctan="miqcp")),)
        truths: dict = {}
        for _ in range(self.args.phi):
            m = int(rng.integers(n_out))
            k = int(rng.integers(1, min(2, n_out - 1) + 1))
            norm = str(rng.choice(NORMS, p=[0.4, 0.4, 0.2]))
            choices = _alphas(rng, ln_amax[m])
            kind, alpha = choices[int(rng.integers(len(choices)))]
            key = (m, alpha, k, norm)
            if key not in truths:
                truths[key] = ri.true_phi(inst, m, alpha, k, norm)
            truth = truths[key]
            extra = [np.asarray(p, float)[None, :] for p in (truth.pair or ())]
            sampled = ri.sample_pairs(inst, m, alpha, k, norm, rng, extra=extra)
            for aname, st in attacks:
                t0 = time.monotonic()
                r = phi(net, m, alpha, k, norm, dom, settings=st, timeout=T)
                dt = time.monotonic() - t0
                q = f"phi {norm} k={k} α={kind}"
                self.record(fam, f"phi/{aname}", r, dt,
                            ri.check_phi(r, inst, m, alpha, k, norm, truth, sampled),
                            f"{tag} {q} m={m} α={alpha!r} truth={truth.phi}")
            if inst.exportable or inst.model is not None:
                self.cli_queue.append(("phi", inst, dict(m=m, alpha=alpha, k=k, norm=norm),
                                       truth, sampled))
        # Ξ
        alpha = float(rng.choice([1.0, 1.5]))
        k = int(rng.integers(1, 3))
        norm = str(rng.choice(NORMS[:2]))
        per = [truths.get((m, alpha, k, norm)) or ri.true_phi(inst, m, alpha, k, norm)
               for m in range(n_out)]
        vals = [t.phi for t in per if t.phi is not None]
        xtruth = ri.Truth(min(vals) if vals else None,
                          any(t.feasible for t in per) if all(t.feasible is not None
                                                              for t in per) else None)
        t0 = time.monotonic()
        r = xi(net, alpha, k, norm, dom, timeout=T * n_out)
        dt = time.monotonic() - t0
        why = ri.check_interval(r, inst, norm)
        if r.cls is not None and r.feasible:
            samp = min(ri.sample_pairs(inst, m, alpha, k, norm, rng)[0] for m in range(n_out))
            why += ri.check_phi(r, inst, int(r.cls), alpha, k, norm, ri.Truth(), (samp, True, True))
            if xtruth.phi is not None:
                tol = ri.tolerance(xtruth.phi, inst)
                if r.lower is not None and r.lower > xtruth.phi + tol:
                    why.append(f"Ξ lower {r.lower!r} above the true Ξ {xtruth.phi!r}")
                if r.optimal and not (r.lower - tol <= xtruth.phi <= r.upper + tol):
                    why.append(f"Ξ optimal [{r.lower!r}, {r.upper!r}] misses {xtruth.phi!r}")
        self.record(fam, "xi", r, dt, why, f"{tag} xi {norm} k={k} α={alpha}",
                    limit=T * n_out + max(1.0, 0.05 * T * n_out))
        # minimum perturbation: planted near ties and one random sample
        samples = ri.tie_samples(inst, rng) + [(X[0], int(np.argmax(Y[0])), None)]
        table_rows = []
        for x, label, rel in samples:
            k = int(rng.integers(1, min(2, n_out - 1) + 1))
            norm = str(rng.choice(NORMS, p=[0.4, 0.4, 0.2]))
            truth = ri.true_min_perturbation(inst, x, label, k, norm)
            sampled = ri.sample_flip(inst, x, label, k, norm, rng)
            for sname, st in (("shrink", DEFAULT), ("no-shrink", DEFAULT.with_(shrink=False))):
                t0 = time.monotonic()
                r = min_perturbation(net, x, label, norm, k, dom, settings=st, timeout=T)
                dt = time.monotonic() - t0
                where = f"{tag} x={x.tolist()} label={label} tie={rel} {norm} k={k} truth={truth}"
                self.record(fam, f"min_pert/{sname}", r, dt,
                            ri.check_min_perturbation(r, inst, x, label, k, norm, truth, sampled),
                            where)
            table_rows.append((x, label, k, norm, truth, sampled))
            # no exact truth (S-shaped, conv, many patterns): the replayed sampled point is
            # an upper bound, so only "holds" above it is checkable; below it, the replay
            exact = truth is not None
            ref = truth if exact else sampled
            if ref is not None and 0 < ref < math.inf:
                for f in ((1 - 1e-3, 1 + 1e-3) if exact else (0.5, 1 + 1e-3)):
                    delta = ref * f
                    t0 = time.monotonic()
                    v = delta_check(net, x, label, delta, norm, k, dom, timeout=T)
                    dt = time.monotonic() - t0
                    why = []
                    tol = ri.tolerance(ref, inst) if exact else 0.0
                    st_ = v.status.value
                    if st_ == "holds" and delta > ref + tol:
                        why.append(f"holds at δ={delta!r} > {'true' if exact else 'a replayed'}"
                                   f" minimum {ref!r}")
                    if st_ == "violated":
                        b = v.counterexample.x_array
                        from nnresilience.resilience.replay import flip_count, norm_of
                        # the ball is the box [x - δ, x + δ] rounded: x's ulps are allowed
                        if flip_count(net.forward(b), label) < k:
                            why.append("violated point does not flip")
                        if norm_of(b - x, norm) > delta + 2 * float(np.spacing(np.abs(x).max())):
                            why.append(f"violated point at {norm_of(b - x, norm)!r} > δ")
                        if np.any(b < lo) or np.any(b > hi):
                            why.append("violated point outside the domain")
                        if not why and exact and delta < truth - tol:
                            why.append(f"violated at δ={delta!r} < true minimum {truth!r}")
                    res = SimpleNamespace(optimal=st_ != "unknown", upper=None)
                    self.record(fam, "delta_check", res, dt, why,
                                f"{tag} x={x.tolist()} label={label} δ={delta!r} {norm} k={k}")
            if inst.exportable and inst.domain_kind != "tiny" and len(set(lo)) == 1 \
                    and len(set(hi)) == 1:
                self.cli_queue.append(("minpert", inst, dict(x=x, label=label, k=k, norm=norm),
                                       truth, sampled))
        # robustness table: the per-unit time share
        norm = str(rng.choice(NORMS[:2]))
        XS = np.array([s[0] for s in samples])
        t0 = time.monotonic()
        rows = robustness_table(net, XS, None, norm, 1, dom, timeout=T * len(XS))
        dt = time.monotonic() - t0
        lim = T * len(XS) + max(1.0, 0.05 * T * len(XS))
        for x, r in zip(XS, rows, strict=True):
            lab = int(np.argmax(net.forward(x)))
            truth = ri.true_min_perturbation(inst, x, lab, 1, norm)
            self.record(fam, "robustness_table", r, dt,
                        ri.check_min_perturbation(r, inst, x, lab, 1, norm, truth,
                                                  ri.sample_flip(inst, x, lab, 1, norm, rng)),
                        f"{tag} table {norm}", limit=lim)
            dt = 0.0
        self.counts[(fam, "instances")]["queries"] += 1

    # ------------------------------------------------------------------------- CLI
    def cli(self, work: Path) -> None:
        from nnresilience.loaders.export import save_onnx
        from nnresilience.testing import resilience_instances as ri
        from nnresilience.testing.unseen import vnnlib_text

        if not self.cli_queue:
            return
        nnres = str(Path(sys.executable).with_name("nnres"))
        T = self.args.cli_timeout
        limit = T + max(1.0, 0.05 * T)
        rng = np.random.default_rng(self.args.seed)
        for i in rng.permutation(len(self.cli_queue))[: self.args.cli]:
            what, inst, q, truth, sampled = self.cli_queue[int(i)]
            model = work / f"m{i}.onnx"
            if inst.model is not None:
                import onnx
                onnx.save(inst.model, str(model))
            else:
                save_onnx(inst.network, model)
            out = work / f"r{i}.json"
            out.unlink(missing_ok=True)
            if what == "phi":
                box = work / f"d{i}.vnnlib"
                box.write_text(vnnlib_text(inst.lo, inst.hi, inst.network.n_outputs,
                                           [[("ge", 0, 1, 0.0)]]))
                cmds = [("cli:phi", [nnres, "resilience", str(model), "--class", str(q["m"]),
                                     "--alpha", repr(q["alpha"]), "--k", str(q["k"]),
                                     "--norm", q["norm"], "--domain-from", str(box),
                                     "--timeout", str(T), "--json", str(out), "-q"]),
                        ("cli:alpha-max", [nnres, "alpha-max", str(model), "--class",
                                           str(q["m"]), "--domain-from", str(box),
                                           "--timeout", str(T), "--json", str(out), "-q"])]
            else:
                data = work / f"x{i}.npy"
                labs = work / f"l{i}.npy"
                np.save(data, q["x"][None, :])
                np.save(labs, np.array([q["label"]]))
                cmds = [("cli:min-perturbation",
                         [nnres, "min-perturbation", str(model), "--data", str(data),
                          "--labels", str(labs), "--norm", q["norm"], "--k", str(q["k"]),
                          f"--domain={float(inst.lo[0])!r}:{float(inst.hi[0])!r}",
                          "--timeout", str(T), "--json", str(out), "-q"])]
            for name, cmd in cmds:
                out.unlink(missing_ok=True)
                t0 = time.monotonic()
                p = subprocess.run(cmd, capture_output=True, text=True)
                dt = time.monotonic() - t0
                where = f"{inst.describe()} {' '.join(cmd[2:])}"
                if p.returncode != 0 or not out.exists():
                    self.record(inst.family, name, SimpleNamespace(), dt,
                                [f"exit {p.returncode}: {p.stderr.strip()[-200:]}"], where, limit)
                    continue
                d = json.loads(out.read_text())["results"][0]
                w = d.get("witness") or {}
                # JSON writes +inf as null: an optimal null is +inf (docs/cli.md)
                if d["optimal"] and d["lower"] is None:
                    d["lower"] = math.inf
                if d["optimal"] and d["upper"] is None and name == "cli:phi":
                    d["upper"] = math.inf
                res = SimpleNamespace(lower=d["lower"], upper=d["upper"], optimal=d["optimal"],
                                      feasible=d["feasible"], a=w.get("a"),
                                      a_perturbed=w.get("a_perturbed"), cls=d.get("class"))
                if name == "cli:phi":
                    why = ri.check_phi(res, inst, q["m"], q["alpha"], q["k"], q["norm"], truth,
                                       sampled)
                elif name == "cli:alpha-max":
                    m = q["m"]
                    Y = inst.network.forward(np.random.default_rng(0).uniform(
                        inst.lo, inst.hi, (3000, inst.lo.size)))
                    samp = float((Y[:, m] - np.delete(Y, m, axis=1).max(axis=1)).max())
                    why = ri.check_alpha_max(res, inst, m, None, samp)
                else:
                    why = ri.check_min_perturbation(res, inst, q["x"], q["label"], q["k"],
                                                    q["norm"], truth, sampled)
                self.record(inst.family, name, res, dt, why, where, limit)


def main(argv: list[str] | None = None) -> int:
    from nnresilience.testing.resilience_instances import ALL_FAMILIES, FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=18, help="instances (families in turn)")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per API query")
    ap.add_argument("--phi", type=int, default=5, help="Φ_m queries per instance")
    ap.add_argument("--cli", type=int, default=12, help="queries also run through the CLI")
    ap.add_argument("--cli-timeout", type=float, default=3.0)
    ap.add_argument("--families", nargs="+", choices=ALL_FAMILIES, default=list(FAMILIES),
                    help="default: the six piecewise-linear families; smooth, smooth1, edge "
                         "and deep by name")
    ap.add_argument("--only", metavar="KEY",
                    help="only instances whose generator info has KEY (e.g. tie_net, center, "
                         "last_layer, slope)")
    args = ap.parse_args(argv)
    sw = Sweep(args)
    t_start = time.monotonic()
    if set(args.families) <= set(FAMILIES):
        # the original rule: seed s is family FAMILIES[s % 6] (earlier tables re-run)
        seeds = [(s, FAMILIES[s % len(FAMILIES)])
                 for s in range(args.seed, args.seed + args.n * len(FAMILIES))
                 if FAMILIES[s % len(FAMILIES)] in args.families][: args.n]
    else:
        seeds = [(args.seed + i, args.families[i % len(args.families)]) for i in range(args.n)]
    if args.only:
        # crafted cases only: walk the seeds on until n instances carry the generator key
        from nnresilience.testing.resilience_instances import res_instance

        fams = args.families
        seeds, s = [], args.seed
        while len(seeds) < args.n and s < args.seed + 1000 * args.n:
            fam = fams[(s - args.seed) % len(fams)]
            if res_instance(fam, s).info.get(args.only) is not None:
                seeds.append((s, fam))
            s += 1
    for seed, fam in seeds:
        sw.instance(seed, fam)
    api = time.monotonic() - t_start
    with tempfile.TemporaryDirectory(prefix="ressweep_") as tmp:
        sw.cli(Path(tmp))
    fams = "" if args.families == list(FAMILIES) else f" ({', '.join(args.families)})"
    if args.only:
        fams += f" with {args.only}"
    print(f"# Resilience sweep: {len(seeds)} instances{fams} from seed {args.seed}, API timeout "
          f"{args.timeout:g} s, CLI {args.cli} x {args.cli_timeout:g} s; {api:.0f} s for the "
          f"API part, {time.monotonic() - t_start:.0f} s in all\n")
    print("| family | query | queries | optimal/decided | bounded | infeasible | other | "
          "wrong | overrun |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    tot = collections.Counter()
    for (fam, q), c in sorted(sw.counts.items()):
        if q == "instances":
            continue
        tot.update(c)
        print(f"| {fam} | {q} | {c['queries']} | {c['optimal']} | {c['bounded']} | "
              f"{c['infeasible']} | {c['other']} | {c['wrong']} | {c['overrun']} |")
    print(f"| **all** | | {tot['queries']} | {tot['optimal']} | {tot['bounded']} | "
          f"{tot['infeasible']} | {tot['other']} | {tot['wrong']} | {tot['overrun']} |")
    if sw.problems:
        print("\n| family | query | instance / call | problem |\n|---|---|---|---|")
        print("\n".join(sw.problems))
    else:
        print("\nNo wrong answers, no overruns.")
    return 1 if tot["wrong"] + tot["overrun"] else 0


if __name__ == "__main__":
    sys.exit(main())
