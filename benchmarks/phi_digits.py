"""Φ_m and Ξ on the digits networks, piece by piece of the two-copy analysis (issue 15).

For ``examples/digits/digits_2x50.onnx`` and ``digits_4x50.onnx`` over D = [0, 1]^64,
α = 20, k = 1, L1 and L∞: Φ_m of every class under each configuration below, at each
timeout, and Ξ (classes through the executor). Every cell prints ``[lower, upper]`` (a
single number when optimal) and the seconds; the last column names the first
configuration that closed the gap.

Configurations (each adds one piece; the order in which the pieces feed each other):

``before``     the defaults before issue 15: symbolic bounds + coupling cuts, no
               two-copy analysis (``pair_attack=0, diff_lower=False, diff_cut=False``);
``+attack``    the two-copy pair attack: incumbent, full MIP start (the warm start);
``+cert``      the certified lower bound from differential bounds (no MIP needed);
``+cut``       the certified bound as the cut ``objective >= lower``, the radius row of the
               pair and copy 2's bounds over the pair region (= today's ``DEFAULT``);
``+rows``      ``DEFAULT`` + the difference rows in MIP (6) (difference boxes / planes /
               scaled rows, per-class flip rows, linking rows; ``diff_rows=True``);
``+branch``    ``DEFAULT`` + branching on a's domain after the MIP (``branching=16``).

Usage (one command re-runs everything; the full table costs hours)::

    python benchmarks/phi_digits.py                        # everything
    python benchmarks/phi_digits.py --nets 2x50 --norms l1 --classes 0 3 \\
        --timeouts 60 --configs before +cut                # a subset
    python benchmarks/phi_digits.py --xi --timeouts 60     # Ξ only
    python benchmarks/phi_digits.py --quick                # no MIP: attack + certified
                                                           # bound, every class, seconds
    python benchmarks/phi_digits.py --quick --norms l1 --split 10   # + 10 s of splitting
    python benchmarks/phi_digits.py --quick --norms linf --linf-group 1   # L∞ bound per
                                                           # coordinate (before phi6)
    python benchmarks/phi_digits.py --quick --norms linf --refine 0   # L∞ groups without
                                                           # slope splitting (before phi7)

``--workers N`` runs independent cells in N processes (each cell itself single-threaded);
on a shared machine keep it at 1 so the seconds mean something. Raw results go to
``benchmarks/out/phi_digits.jsonl`` (one JSON object per cell, appended).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETS = {"2x50": REPO / "examples" / "digits" / "digits_2x50.onnx",
        "4x50": REPO / "examples" / "digits" / "digits_4x50.onnx"}
OUT = REPO / "benchmarks" / "out" / "phi_digits.jsonl"
CONFIGS = ("before", "+attack", "+cert", "+cut", "+rows", "+branch")
ALPHA = 20.0


def settings_for(name: str):
    """The configuration ``name`` (module docstring)."""
    from nnresilience.resilience import DEFAULT

    off = dict(pair_attack=0.0, diff_lower=False, diff_rows=False, diff_cut=False,
               branching=0)
    table = {
        "before": DEFAULT.with_(**off),
        "+attack": DEFAULT.with_(**{**off, "pair_attack": DEFAULT.pair_attack}),
        "+cert": DEFAULT.with_(**{**off, "pair_attack": DEFAULT.pair_attack,
                                  "diff_lower": True}),
        "+cut": DEFAULT.with_(diff_rows=False, diff_cut=True, branching=0),
        "+rows": DEFAULT.with_(diff_rows=True, diff_cut=True, branching=0),
        "+branch": DEFAULT.with_(diff_rows=False, branching=16),
    }
    return table[name]


def run_cell(item: tuple) -> dict:
    """One Φ_m (or Ξ when ``cls`` is None) query; picklable for the executor."""
    net_name, norm, cls, timeout, config, workers = item
    from nnresilience.loaders import load_network
    from nnresilience.resilience import phi, xi

    net = load_network(str(NETS[net_name]))
    s = settings_for(config)
    t0 = time.perf_counter()
    if cls is None:
        r = xi(net, ALPHA, 1, norm, (0.0, 1.0), settings=s, timeout=timeout, workers=workers)
    else:
        r = phi(net, cls, ALPHA, 1, norm, (0.0, 1.0), settings=s, timeout=timeout)
    wall = time.perf_counter() - t0
    keep = ("cert_lower", "attack_upper", "solver_status", "dual_bound", "n_binaries",
            "witness_from", "solver_nodes", "cert_seconds", "attack_seconds", "plan_seconds")
    return {"net": net_name, "norm": norm, "cls": cls, "timeout": timeout, "config": config,
            "lower": r.lower, "upper": r.upper, "optimal": r.optimal, "feasible": r.feasible,
            "seconds": wall, "argmin": r.cls if cls is None else None,
            "stats": {k: r.stats.get(k) for k in keep if k in r.stats},
            "branching": r.stats.get("branching")}


def quick_cell(item: tuple) -> dict:
    """The two MIP-free pieces alone: the pair attack (upper) and the certified lower
    bound (plain bisection, then ``optimise`` gradient steps per probe if asked)."""
    net_name, norm, cls, budget, optimise, split, refine = item
    from nnresilience.loaders import load_network
    from nnresilience.resilience.certify_diff import certified_lower_bound
    from nnresilience.resilience.pair_attack import attack_pair

    net = load_network(str(NETS[net_name])).merged()
    lo, hi = __import__("numpy").zeros(64), __import__("numpy").ones(64)
    la = math.log(ALPHA)
    t0 = time.perf_counter()
    pair = attack_pair(net, cls, la, 1, norm, lo, hi, budget=budget)
    t1 = time.perf_counter()
    c = certified_lower_bound(net, cls, la, 1, norm, lo, hi,
                              upper=None if pair is None else pair[2], optimise=optimise,
                              split_seconds=split, refine_seconds=refine)
    t2 = time.perf_counter()
    return {"net": net_name, "norm": norm, "cls": cls, "attack": None if pair is None
            else pair[2], "cert": c.lower, "vacuous": c.vacuous, "attack_s": t1 - t0,
            "cert_s": t2 - t1, "probes": c.probes, "optimise": optimise,
            "unsplit": c.stats.get("split_lower")}


def quick_table(recs: list[dict]) -> str:
    lines = ["| net | norm | class | certified lower | unsplit | attack upper | ratio | "
             "attack s | cert s (probes) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        up = r["attack"]
        ratio = "" if up is None or not r["cert"] else f"{up / r['cert']:.1f}"
        uns = r.get("unsplit")
        lines.append(f"| {r['net']} | {r['norm']} | {r['cls']} | {r['cert']:.4g} | "
                     f"{'–' if uns is None else f'{uns:.4g}'} | "
                     f"{'–' if up is None else f'{up:.4g}'} | {ratio} | {r['attack_s']:.1f} | "
                     f"{r['cert_s']:.1f} ({r['probes']}) |")
    return "\n".join(lines)


def fmt(rec: dict) -> str:
    if not rec["feasible"]:
        return "infeasible"
    lo, up = rec["lower"], rec["upper"]
    lo_s = "?" if lo is None else ("inf" if math.isinf(lo) else f"{lo:.4g}")
    up_s = "–" if up is None else ("inf" if math.isinf(up) else f"{up:.4g}")
    val = f"**{up_s}**" if rec["optimal"] else f"[{lo_s}, {up_s}]"
    return f"{val} ({rec['seconds']:.0f} s)"


def table(records: list[dict], configs: list[str]) -> str:
    rows = {}
    for r in records:
        key = (r["net"], r["norm"], r["timeout"], "Ξ" if r["cls"] is None else r["cls"])
        rows.setdefault(key, {})[r["config"]] = r
    head = "| net | norm | T (s) | class | " + " | ".join(configs) + " | closed by |"
    lines = [head, "|" + "---|" * (len(configs) + 5)]
    for key in sorted(rows, key=lambda k: (k[0], k[1], k[2], str(k[3]))):
        cells = rows[key]
        closed = next((c for c in configs if c in cells and cells[c]["optimal"]), "—")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]:g} | {key[3]} | "
                     + " | ".join(fmt(cells[c]) if c in cells else "" for c in configs)
                     + f" | {closed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--norms", nargs="+", default=["l1", "linf"], choices=["l1", "linf", "l2"])
    ap.add_argument("--classes", nargs="+", type=int, default=list(range(10)))
    ap.add_argument("--timeouts", nargs="+", type=float, default=[60.0, 300.0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--xi", action="store_true", help="Ξ only (classes through the executor)")
    ap.add_argument("--xi-workers", type=int, default=2, help="executor size for Ξ")
    ap.add_argument("--workers", type=int, default=1, help="cells in parallel (processes)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quick", action="store_true",
                    help="no MIP: attack + certified lower bound for every class")
    ap.add_argument("--attack", type=float, default=5.0, help="--quick: attack seconds")
    ap.add_argument("--optimise", type=int, default=0,
                    help="--quick: gradient steps per certification probe (torch)")
    ap.add_argument("--split", type=float, default=0.0,
                    help="--quick: seconds of segment splitting for the L1 vertex bound "
                         "(resilience/lipschitz_split.py; 0: the plain certificate)")
    ap.add_argument("--linf-group", type=int, default=None,
                    help="coordinates per group of the L∞ vertex bound "
                         "(bounds/vertex_difference.LINF_GROUP; 1: per coordinate, the "
                         "bound before follow-up phi6); in-process runs (--workers 1)")
    ap.add_argument("--refine", type=float, default=None,
                    help="--quick: seconds of slope-box splitting inside the L∞ vertex "
                         "bound (resilience/certify_diff.REFINE_SECONDS by default; 0: "
                         "the bound before follow-up phi7)")
    a = ap.parse_args(argv)
    if a.linf_group is not None:
        from nnresilience.bounds import vertex_difference

        vertex_difference.LINF_GROUP = a.linf_group
    if a.quick:
        recs = []
        for net in a.nets:
            for norm in a.norms:
                for m in a.classes:
                    recs.append(quick_cell((net, norm, m, a.attack, a.optimise, a.split,
                                            a.refine)))
                    print(recs[-1], file=sys.stderr, flush=True)
        print(f"\nMIP-free bounds of Φ_m on the digits nets, α = {ALPHA:g}, k = 1, "
              f"D = [0, 1]^64 (attack {a.attack:g} s; optimise = {a.optimise}; "
              f"split = {a.split:g} s; refine = "
              f"{'default' if a.refine is None else f'{a.refine:g} s'})\n")
        print(quick_table(recs))
        return 0

    items = []
    for net in a.nets:
        for norm in a.norms:
            for T in a.timeouts:
                for cfg in a.configs:
                    if a.xi:
                        items.append((net, norm, None, T, cfg, a.xi_workers))
                    else:
                        items += [(net, norm, m, T, cfg, 1) for m in a.classes]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    if a.workers > 1:
        from nnresilience.parallel import make_executor

        with make_executor(a.workers) as ex:
            results = (r for _, r in ex.map(run_cell, items))
            records = _collect(results, a.out)
    else:
        records = _collect((run_cell(it) for it in items), a.out)
    print(f"\nΦ_m / Ξ of the digits nets, α = {ALPHA:g}, k = 1, D = [0, 1]^64 "
          f"(bold: proven optimal; [proven lower, replayed upper]; wall seconds)\n")
    print(table(records, a.configs))
    return 0


def _collect(results, out: Path) -> list[dict]:
    records = []
    with out.open("a") as fh:
        for rec in results:
            fh.write(json.dumps(rec, default=str) + "\n")
            fh.flush()
            records.append(rec)
            print(f"{rec['net']} {rec['norm']} T={rec['timeout']:g} "
                  f"{'Ξ' if rec['cls'] is None else 'class ' + str(rec['cls'])} "
                  f"{rec['config']}: {fmt(rec)}", file=sys.stderr, flush=True)
    return records


if __name__ == "__main__":
    sys.exit(main())
