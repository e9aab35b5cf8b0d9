"""The figures quoted in ``docs/contracts.md``: its CTG examples with longer time limits.

Usage (from the repository root)::

    python benchmarks/contracts_docs.py                    # 60 s contract and check, 120 s compare
    python benchmarks/contracts_docs.py --contract-timeout 20 --compare-timeout 40

Runs, in a temporary folder, as separate ``nnres`` processes (what a user types):

1. ``nnres contract`` on the shipped Leaky-ReLU CTG network (α = 2, L∞, [-1, 1]^18) with
   its page and witnesses;
2. ``nnres contract check`` of that contract on the ReLU twin
   (``examples/contracts/ctg_relu.onnx``);
3. ``nnres compare`` of the two networks over the nine shipped CTG samples.

It prints markdown tables: per command the wall time from before ``Popen`` to exit
against the deadline promise T + max(1 s, 5 % of T), the exit code and the load average;
then the contract's clauses, the check's verdicts and the comparison's per-model figures.
The machine load is printed with each command: on the shared 2-core development machine
every figure moves with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NNRES = [sys.executable, "-m", "nnresilience"]
LEAKY = REPO / "src" / "nnresilience" / "data" / "ctg_leaky.onnx"
RELU = REPO / "examples" / "contracts" / "ctg_relu.onnx"
SAMPLES = REPO / "src" / "nnresilience" / "data" / "ctg_samples.npz"


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _run(label: str, args: list, timeout: float) -> dict:
    load = _load()
    t0 = time.monotonic()
    res = subprocess.run(NNRES + [str(a) for a in args], capture_output=True, text=True,
                         timeout=timeout * 2 + 60)
    wall = time.monotonic() - t0
    return {"command": label, "T": timeout, "wall": wall,
            "promise": timeout + max(1.0, 0.05 * timeout), "exit": res.returncode,
            "load": load, "stderr": res.stderr}


def _f(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contract-timeout", type=float, default=60.0)
    ap.add_argument("--compare-timeout", type=float, default=120.0)
    a = ap.parse_args()
    tc, tm = a.contract_timeout, a.compare_timeout
    with tempfile.TemporaryDirectory() as d:
        w = Path(d)
        runs = [
            _run("contract", ["contract", LEAKY, "--alpha", "2", "--norm", "linf",
                              "--domain", "-1:1", "--timeout", tc, "-o", w / "c.json",
                              "--html", w / "c.html", "--witnesses", w / "c.npz",
                              "--quiet"], tc),
            _run("contract check", ["contract", "check", RELU, w / "c.json", "--timeout", tc,
                                    "--json", w / "k.json", "--html", w / "k.html",
                                    "--quiet"], tc),
            _run("compare", ["compare", LEAKY, RELU, "--domain", "-1:1", "--norm", "linf",
                             "--data", SAMPLES, "--timeout", tm, "-o", w / "m.html",
                             "--json", w / "m.json", "--quiet"], tm),
        ]
        print("| command | --timeout | wall s | promise s | exit | load (1/5/15 min) |")
        print("|---|---:|---:|---:|---:|---|")
        for r in runs:
            print(f"| {r['command']} | {r['T']:g} | {r['wall']:.1f} | {r['promise']:.1f} | "
                  f"{r['exit']} | {r['load']} |")
            if r["exit"] not in (0, 1, 4):
                print(f"\n{r['command']} failed:\n{r['stderr'][-2000:]}", file=sys.stderr)
        c = json.loads((w / "c.json").read_text())
        print(f"\ncontract (compute budget {c['run']['timeout']:.1f} s, killed: "
              f"{c['run']['killed']})\n")
        print("| class | tolerance | Φ lower | Φ upper | status | seconds |")
        print("|---:|---:|---:|---:|---|---:|")
        for cl in c["clauses"]:
            print(f"| {cl['class']} | {_f(cl['tolerance'])} | {_f(cl['phi']['lower'])} | "
                  f"{_f(cl['phi']['upper'])} | {cl['status']} | "
                  f"{cl['proof']['seconds']:.1f} |")
        k = json.loads((w / "k.json").read_text())
        print(f"\ncheck on the ReLU twin: {k['verdict']} {k['summary']}\n")
        print("| clause | tolerance | verdict | new Φ lower | new Φ upper |")
        print("|---|---:|---|---:|---:|")
        for cl in k["clauses"]:
            phi = cl["phi"] or {}
            print(f"| {cl['id']} | {_f(cl['tolerance'])} | {cl['verdict']} | "
                  f"{_f(phi.get('lower'))} | {_f(phi.get('upper'))} |")
        m = json.loads((w / "m.json").read_text())
        print("\ncompare\n")
        print("| model | seconds | Ξ lower | Φ_m s per class | samples optimal | median min-pert. "
              "proven | witnessed | per sample (upper) |")
        print("|---|---:|---:|---|---:|---:|---:|---|")
        for e in m["models"]:
            s = e["summary"]
            per = ", ".join(_f(r["upper"]) for r in e["min_perturbation"])
            secs = ", ".join(f"{r['seconds']:.1f}" for r in e["phi"])
            print(f"| {e['name']} | {e['seconds']:.0f} | {_f(e['xi']['lower'])} | {secs} | "
                  f"{s.get('optimal', 0)}/{s.get('samples', 0)} | {_f(s.get('median_lower'))} "
                  f"| {_f(s.get('median_upper'))} | {per} |")


if __name__ == "__main__":
    main()
