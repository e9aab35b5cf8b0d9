"""Profile one term of a ``bab`` search: the lowest open key against domains and seconds.

Runs the neuron-rule search of one term (one other class) of a VNN-COMP MNIST-FC case for
a fixed time and prints a markdown table of the lowest open key (how far the least proved
domain is from being proved; the search closes the term when it reaches > 0), the domains
bounded and the closed count every few seconds (seconds from the start of the search,
root bound included). Each configuration runs in its
own process (``--config`` repeated; options as ``key=value`` for ``SearchSettings`` and
``bounder.key=value`` for the optimised bounder)::

    NNRES_BENCHMARKS=../shared/benchmarks python benchmarks/bab_profile.py \\
        --net mnist-net_256x4.onnx --prop prop_0_0.03.vnnlib --seconds 50 \\
        --config "" --config "branch_candidates=1"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def run_one(net: str, prop: str, seconds: float, config: str, term: int, every: float) -> dict:
    import numpy as np

    from nnresilience.loaders import load_network
    from nnresilience.search import decide
    from nnresilience.search.decide import SearchSettings
    from nnresilience.spec.condition import OutputCondition
    from nnresilience.spec.property import Case
    from nnresilience.spec.vnnlib import read_vnnlib

    root = Path(os.environ.get("NNRES_BENCHMARKS", "../shared/benchmarks")) / "mnistfc"
    network = load_network(root / net)
    case = read_vnnlib(root / prop, network.n_inputs, network.n_outputs).cases[0]
    opts: dict = {}
    bopts: dict = {}
    for item in filter(None, config.split(",")):
        k, v = item.split("=", 1)
        if k.startswith("bounder."):
            bopts[k[len("bounder."):]] = _value(v)
        else:
            opts[k] = _value(v)
    settings = SearchSettings(**opts)
    terms = decide._promising_first(network, case, settings.seed)
    sub = Case(case.region, OutputCondition((terms[term],), case.unsafe.n_outputs))
    if bopts:
        import nnresilience.bounds.crown as crown

        crown.DEFAULTS.update(bopts)
    rows: list[dict] = []
    nxt = [every]
    t0 = time.monotonic()

    def report(snap: dict) -> None:
        el = time.monotonic() - t0
        if el >= nxt[0]:
            nxt[0] += every
            rows.append({"s": round(el, 1), "domains": snap["domains"],
                         "closed": snap["closed"], "key": snap["best_lower"]})

    st: dict = {}
    problem, out = decide._search_once(network, sub, decide._engine(None), settings,
                                       time.monotonic() + seconds, report, st)
    el = time.monotonic() - t0
    if rows and rows[-1]["domains"] == st["domains"]:
        rows.pop()                        # the last report is the end of the search
    rows.append({"s": round(el, 1), "domains": st["domains"],
                 "closed": st["closed_bound"] + st["closed_leaf"],
                 "key": None if not np.isfinite(out.lower) else float(out.lower),
                 "status": out.status})
    return {"config": config, "rows": rows, "seconds_bound": st["seconds_bound"],
            "max_depth": st["max_depth"], "status": out.status}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="mnist-net_256x4.onnx")
    ap.add_argument("--prop", default="prop_0_0.03.vnnlib")
    ap.add_argument("--seconds", type=float, default=50.0)
    ap.add_argument("--term", type=int, default=0, help="index in the promising-first order")
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--config", action="append", default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        print(json.dumps(run_one(a.net, a.prop, a.seconds, a.one, a.term, a.every)))
        return
    configs = a.config or [""]
    print(f"{a.net} {a.prop}, term {a.term} (promising-first order), {a.seconds:.0f} s, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| config | s | domains | closed | lowest open key |")
    print("|---|---:|---:|---:|---:|")
    for cfg in configs:
        cmd = [sys.executable, __file__, "--net", a.net, "--prop", a.prop, "--seconds",
               str(a.seconds), "--term", str(a.term), "--every", str(a.every), "--one", cfg]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"| {cfg or 'default'} | failed: {out.stderr.strip().splitlines()[-1]} |")
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        for r in res["rows"]:
            key = "closed" if r.get("status") == "closed" else (
                "" if r["key"] is None else f"{r['key']:.3f}")
            print(f"| {cfg or 'default'} | {r['s']} | {r['domains']} | {r['closed']} | {key} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
