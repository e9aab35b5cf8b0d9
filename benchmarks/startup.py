"""Start-up of ``nnres verify`` on an ACAS Xu instance the root bounds decide.

Usage (from the repository root)::

    python benchmarks/startup.py                       # this checkout
    python benchmarks/startup.py --src /path/to/other/src   # another checkout, same runs

Runs ``python -m nnresilience.cli verify ACASXU_run2a_1_6_batch_2000.onnx prop_3.vnnlib``
(decided by the root bounds in a few milliseconds, so the process is almost all
start-up) ``--runs`` times as a whole subprocess and prints the median / min / max wall
seconds, then one run under ``python -X importtime`` and the cumulative import time of
the top-level packages, and whether torch, dask, matplotlib or scipy.optimize were
imported at all (they must not be for such a query).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("NNRES_BENCHMARKS") or
              Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks")
HEAVY = ("torch", "dask", "distributed", "matplotlib", "scipy.optimize")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--src", type=Path, default=None, help="src folder of the checkout "
                    "to measure (default: this one)")
    ap.add_argument("--benchmarks", type=Path, default=SHARED)
    args = ap.parse_args(argv)
    model = args.benchmarks / "acasxu" / "ACASXU_run2a_1_6_batch_2000.onnx"
    prop = args.benchmarks / "acasxu" / "prop_3.vnnlib"
    if not model.is_file():
        print(f"{model} is absent")
        return 1
    env = dict(os.environ)
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    cmd = [sys.executable, "-m", "nnresilience.cli", "verify", str(model), str(prop)]
    walls = []
    for _ in range(args.runs + 1):                  # the first run warms the file cache
        t = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        walls.append(time.monotonic() - t)
        if out.returncode != 0 or "holds" not in out.stdout:
            print(out.stdout, out.stderr)
            return 1
    walls = walls[1:]
    imp = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], capture_output=True,
                         text=True, env=env).stderr
    top = {}
    for line in imp.splitlines():
        m = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
        if m and len(m.group(2)) == 1:
            top[m.group(3)] = int(m.group(1)) / 1e6
    heavy = sorted({h for h in HEAVY for line in imp.splitlines()
                    if re.search(rf"\|\s+{re.escape(h)}$", line)})
    print(f"load average: {os.getloadavg()[0]:.1f}")
    print(f"| wall s, median of {args.runs} (min-max) | top-level imports s | "
          "heavy modules imported |")
    print("|---:|---|---|")
    tops = ", ".join(f"{k} {v:.2f}" for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:5])
    print(f"| {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) | {tops} | "
          f"{', '.join(heavy) or 'none'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
