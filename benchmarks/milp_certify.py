"""MILP answers that survive solver tolerances (issue 11, item 2): measurements.

Two tables, printed as markdown:

``planted``  planted near-ties: tiny ReLU nets with weights up to 40 (logits in the
             hundreds), one unsafe row whose exact maximum margin (found by enumerating
             activation patterns) is set to +1e-7 ... +3e-5 at its maximiser. Every
             instance is violated. Counted per backend: wrong ``holds`` of the *naive*
             feasibility form (what the engine did before: "infeasible" -> holds) and of the
             engine's certified margin form, plus its violated / unknown counts.
``real``     VNN-COMP instances decided by one engine call on the whole case (no
             falsifier, no splitting): verdict and seconds of the naive form and of the
             certified form, with the tolerance margin ``τ`` and the certified margin bound.

Usage (from the repository root; the machine is shared, so seconds are noisy)::

    python benchmarks/milp_certify.py planted --n 200
    python benchmarks/milp_certify.py real --timeout 60

``real`` needs the shared benchmarks (``NNRES_BENCHMARKS`` or ``../shared/benchmarks``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "engines"))


def naive_check(net, case, backend: str, timeout: float):
    """The pre-issue-11 decision: feasibility MILP, "infeasible" read as ``holds``."""
    from nnresilience.backends.base import SolveLimits, SolveStatus
    from nnresilience.backends.registry import get_backend
    from nnresilience.bounds import compute_bounds
    from nnresilience.encode.milp import encode_condition, encode_network, encode_region
    from nnresilience.encode.model import MilpModel

    bounds = compute_bounds(net, case.region)
    model = MilpModel()
    enc = encode_network(model, net, bounds)
    encode_region(model, enc.inputs, case.region)
    encode_condition(model, enc.outputs, case.unsafe, bounds.lo[-1], bounds.hi[-1])
    res = get_backend(backend).solve(model.arrays(), SolveLimits(time_limit=timeout,
                                                                  stop_at_first_solution=True))
    if res.status is SolveStatus.INFEASIBLE:
        return "holds"
    if res.x is not None:
        x = np.clip(res.x[enc.inputs], case.region.lo, case.region.hi)
        if case.unsafe.satisfied(net.forward(x)):
            return "violated"
    return "unknown"


def planted(n: int, timeout: float) -> str:
    from test_milp_certify import _planted

    from nnresilience.engines.milp import MilpEngine

    t0 = time.perf_counter()
    cases = _planted(n, 10_000)
    build = time.perf_counter() - t0
    lines = [f"Planted near-ties: {n} instances (margins 1e-7 ... 3e-5, weights up to 40), "
             f"built in {build:.0f} s.", "",
             "| backend | naive form: wrong holds | certified: wrong holds | certified: "
             "violated (replayed) | certified: unknown | band re-checks | seconds |",
             "|---|---|---|---|---|---|---|"]
    for backend in ("highs", "scip"):
        naive_wrong = wrong = viol = unk = band = 0
        t1 = time.perf_counter()
        for net, case, _ in cases:
            if naive_check(net, case, backend, timeout) == "holds":
                naive_wrong += 1
            ans = MilpEngine(backend=backend).check(net, case, None, timeout=timeout)
            wrong += ans.status.value == "holds"
            viol += ans.status.value == "violated" and bool(ans.stats.get("replayed"))
            unk += ans.status.value == "unknown" or (ans.status.value == "violated"
                                                    and not ans.stats.get("replayed"))
            band += bool(ans.stats.get("band"))
        lines.append(f"| {backend} | {naive_wrong} | {wrong} | {viol} | {unk} | {band} | "
                     f"{time.perf_counter() - t1:.0f} |")
    return "\n".join(lines)


REAL = [("mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_0_0.03.vnnlib"),
        ("mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_1_0.03.vnnlib"),
        ("mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_2_0.03.vnnlib"),
        ("mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_3_0.03.vnnlib"),
        ("acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/prop_3.vnnlib"),
        ("acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/prop_4.vnnlib"),
        ("acasxu/ACASXU_run2a_1_9_batch_2000.onnx", "acasxu/prop_1.vnnlib")]


def real(timeout: float, root: Path) -> str:
    from nnresilience.bounds import compute_bounds
    from nnresilience.engines.milp import MilpEngine
    from nnresilience.loaders import load_network
    from nnresilience.spec.vnnlib import read_vnnlib

    lines = [f"One MILP call per case (HiGHS, symbolic bounds, {timeout:g} s limit).", "",
             "| network | property | naive | s | certified | s | τ | margin bound |",
             "|---|---|---|---|---|---|---|---|"]
    for onnx, prop in REAL:
        net = load_network(root / onnx).merged()
        p = read_vnnlib(root / prop, net.n_inputs, net.n_outputs)
        case = p.cases[0]
        t0 = time.perf_counter()
        nv = naive_check(net, case, "highs", timeout)
        t1 = time.perf_counter()
        b = compute_bounds(net, case.region, method="symbolic")
        ans = MilpEngine(backend="highs").check(net, case, b, timeout=timeout)
        t2 = time.perf_counter()
        mb = ans.stats.get("margin_bound")
        lines.append(f"| {Path(onnx).stem} | {Path(prop).stem} | {nv} | {t1 - t0:.1f} | "
                     f"{ans.status.value} | {t2 - t1:.1f} | {ans.stats['tau']:.2e} | "
                     f"{'-' if mb is None or not np.isfinite(mb) else f'{mb:.3g}'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", choices=["planted", "real"])
    ap.add_argument("--n", type=int, default=200, help="planted instances")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per MILP call")
    args = ap.parse_args(argv)
    if args.table == "planted":
        print(planted(args.n, args.timeout))
        return 0
    root = Path(os.environ.get("NNRES_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))
    if not root.is_dir():
        print(f"shared benchmarks not found at {root}", file=sys.stderr)
        return 2
    print(real(args.timeout, root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
