"""How well the CLI keeps its time promises, measured from outside the process.

Usage (from the repository root)::

    python benchmarks/cli_latency.py                 # all sections, prints markdown
    python benchmarks/cli_latency.py --timeouts 2 5 --repeat 1

Sections:

* start-up: wall seconds of ``nnres version`` (interpreter, imports, exit), median;
* deadlines: ``--timeout T`` on a query that never finishes on its own
  (:mod:`nnresilience.testing.slow`) for ``verify``, ``vnncomp``, ``resilience`` (Φ_0),
  ``bounds`` (``milp:3``) and ``campaign run`` (one unit, ``--timeout T``): wall seconds
  from before ``Popen`` to exit, against the promise T + max(1 s, 5 % of T);
* Ctrl-C: SIGINT to the process group 2 s after the worker child appeared; seconds until
  the process exited, its exit code, and whether any process of its session was left;
* killable child: the cost of running one trivial function through
  :func:`nnresilience.killable.run_killable` (fork, pipe, reap), which every campaign
  unit run in the main process pays, against a direct call.

The machine load (``os.getloadavg``) is printed first and last: on a shared 2-core
machine every wall time here moves with it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NNRES = [sys.executable, "-m", "nnresilience"]


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def startup(repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.monotonic()
        subprocess.run(NNRES + ["version"], capture_output=True, check=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def deadline_rows(model: Path, prop: Path, work: Path, timeouts, repeat: int):
    rows = []
    csv = work / "one.csv"
    for T in timeouts:
        csv.write_text(f"{model},{prop},{T}\n")
        cmds = {
            "verify": ["verify", model, prop, "--timeout", T],
            "vnncomp": ["vnncomp", model, prop, work / "r.txt", T],
            "resilience": ["resilience", model, "--class", "0", "--domain", "-1:1",
                           "--timeout", T],
            "bounds": ["bounds", model, prop, "--method", "milp:3", "--timeout", T],
            "campaign run": ["campaign", "run", csv, "--store", work / f"s{T}.sqlite",
                             "--timeout", T, "--quiet"],
        }
        for name, args in cmds.items():
            walls = []
            for _ in range(repeat):
                store = work / f"s{T}.sqlite"
                if store.exists():
                    store.unlink()
                t0 = time.monotonic()
                res = subprocess.run(NNRES + [str(a) for a in args], capture_output=True,
                                     text=True)
                walls.append(time.monotonic() - t0)
            promise = T + max(1.0, 0.05 * T)
            rows.append((name, T, max(walls), promise, res.returncode))
    return rows


def _members(sid: int) -> list[int]:
    from nnresilience.testing.slow import session_members

    return session_members(sid)


def ctrl_c_rows(model: Path, prop: Path, repeat: int):
    rows = []
    cmds = {"verify": ["verify", model, prop],
            "resilience": ["resilience", model, "--class", "0", "--domain", "-1:1"],
            "bounds": ["bounds", model, prop, "--method", "milp:3"]}
    for name, args in cmds.items():
        lat, codes, left = [], set(), 0
        for _ in range(repeat):
            p = subprocess.Popen(NNRES + [str(a) for a in args], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while len(_members(p.pid)) < 2 and p.poll() is None:
                time.sleep(0.02)
            time.sleep(2.0)
            t0 = time.monotonic()
            os.killpg(p.pid, signal.SIGINT)
            p.wait()
            lat.append(time.monotonic() - t0)
            codes.add(p.returncode)
            time.sleep(0.2)
            left += len(_members(p.pid))
        rows.append((name, max(lat), sorted(codes), left))
    return rows


def _trivial(reporter, x):
    return x + 1


def child_overhead(n: int) -> tuple[float, float]:
    from nnresilience.killable import run_killable

    t0 = time.perf_counter()
    for i in range(n):
        _trivial(None, i)
    direct = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for i in range(n):
        assert run_killable(_trivial, i).value == i + 1
    return direct, (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeouts", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from nnresilience.testing.slow import write_slow_query

    print(f"load average at start: {_load()}\n")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        model, prop = write_slow_query(work)
        print("| measurement | seconds |\n|---|---:|")
        print(f"| `nnres version` wall (start-up + exit), median of {args.repeat + 1} "
              f"| {startup(args.repeat + 1):.2f} |")
        direct, child = child_overhead(30)
        print(f"| trivial call, direct | {direct * 1e3:.3f} ms |")
        print(f"| trivial call through run_killable (fork, pipe, reap) | "
              f"{child * 1e3:.1f} ms |\n")
        print(f"### --timeout T from outside (worst of {args.repeat})\n")
        print("| command | T | wall s | promise s | kept | exit |\n|---|---:|---:|---:|---|---:|")
        for name, T, wall, promise, rc in deadline_rows(model, prop, work, args.timeouts,
                                                        args.repeat):
            print(f"| {name} | {T:g} | {wall:.2f} | {promise:.2f} | "
                  f"{'yes' if wall <= promise else 'NO'} | {rc} |")
        print(f"\n### Ctrl-C (worst of {args.repeat})\n")
        print("| command | s to exit | exit codes | processes left |\n|---|---:|---|---:|")
        for name, lat, codes, left in ctrl_c_rows(model, prop, args.repeat):
            print(f"| {name} | {lat:.2f} | {codes} | {left} |")
    print(f"\nload average at end: {_load()}")


if __name__ == "__main__":
    main()
