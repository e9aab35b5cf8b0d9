"""S-shaped networks: the whole-case MILP (a relaxation) against the ``bab`` search.

Usage (from the repository root)::

    python benchmarks/sshape.py --timeout 30
    python benchmarks/sshape.py --timeout 20 --depth 6 --width 100 --engines auto
    python benchmarks/sshape.py --root-bounds --depth 6 --width 100 --radii 0.035
    NNRES_BENCHMARKS=../shared/benchmarks python benchmarks/sshape.py --relu-root

Trains (deterministically, scikit-learn's ``MLPClassifier``) a sigmoid and a tanh network
of ``--depth`` hidden layers of ``--width`` units (default 3 x 40) on the 8x8 digits of
scikit-learn, then asks local
robustness (L-infinity, radius 0.02, 0.035 and 0.05 of the [0, 1] pixel range) around the first
8 correctly classified test images with two engines:

* ``milp`` on the whole case (``input_split=False``): the MILP encodes each sigmoid by a
  linear relaxation, so a feasible point is only a candidate; when it fails the float64
  replay the answer is ``unknown (candidate failed replay)``;
* ``auto`` (``bab``): the search refines the neuron whose relaxation error explains the
  candidate and goes on.

Prints a Markdown table: per network and radius, decided (holds / violated) /
candidate-failed-replay / timeout counts and seconds per engine, and for ``bab`` the
terms of the disjunctions searched one by one and the seconds spent in bound calls.
Every ``violated`` is replayed in float64.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def train(activation: str, depth: int = 3, width: int = 40):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from nnresilience.network.layers import Affine, Sigmoid, Tanh
    from nnresilience.network.model import Network

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, ytr, Xte, yte = X[:1400], y[:1400], X[1400:], y[1400:]
    clf = MLPClassifier(hidden_layer_sizes=(width,) * depth, activation=activation,
                        max_iter=400, random_state=0)
    clf.fit(Xtr, ytr)
    act = {"logistic": Sigmoid, "tanh": Tanh}[activation]
    layers = []
    for k, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        layers.append(Affine(W.T, b))
        if k < len(clf.coefs_) - 1:
            layers.append(act(W.shape[1]))
    net = Network(layers, name=f"digits-{activation}-{depth}x{width}")
    acc = float(np.mean(net.predict(Xte) == yte))
    return net, Xte, yte, acc


def root_bounds(args) -> int:
    """Worst spec-row lower bound of each case at the root: ``CrownBounder`` with the fixed
    relaxation of the s-shaped neurons (``sshape_alpha=False``) and with their tangent
    points optimised (20 steps each), the wall seconds of each call and the CPU seconds
    of the optimised one (torch runs it on one thread: less noisy on a shared machine)."""
    import numpy as np

    from nnresilience.bounds.crown import CrownBounder

    print("| network | radius | case | fixed lines | s | optimised tangents | s | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for activation in args.activations:
        net, Xte, yte, _ = train(activation, args.depth, args.width)
        merged = net.merged()
        picks = [i for i in range(len(yte)) if net.predict(Xte[i]) == yte[i]][: args.samples]
        for radius in args.radii:
            for n, i in enumerate(picks):
                y = int(yte[i])
                C = np.eye(10)[[y] * 9] - np.eye(10)[[j for j in range(10) if j != y]]
                lo = np.clip(Xte[i] - radius, 0.0, 1.0)[None]
                hi = np.clip(Xte[i] + radius, 0.0, 1.0)[None]
                row = []
                for flag in (False, True):
                    t, cpu = time.monotonic(), time.process_time()
                    res = CrownBounder(merged, C, sshape_alpha=flag).bound(lo, hi, iters=20)
                    row += [f"{res.lower.min():.3f}", f"{time.monotonic() - t:.2f}"]
                row.append(f"{time.process_time() - cpu:.2f}")  # one thread: CPU s
                print(f"| {net.name} | {radius} | {n} | " + " | ".join(row) + " |", flush=True)
    return 0


RELU_ROOTS = (("acasxu", "ACASXU_run2a_1_1_batch_2000.onnx", "prop_2.vnnlib"),
              ("acasxu", "ACASXU_run2a_3_3_batch_2000.onnx", "prop_3.vnnlib"),
              ("mnistfc", "mnist-net_256x2.onnx", "prop_0_0.03.vnnlib"),
              ("mnistfc", "mnist-net_256x6.onnx", "prop_0_0.03.vnnlib"))


def relu_root(args) -> int:
    """ReLU nets must not notice the s-shaped tangents: the worst lower bound of the first
    term of the VNN-COMP property at the root (``CrownBounder`` defaults, 20 steps) and
    the median seconds of ``--runs`` calls. Runs against any tree (``PYTHONPATH``)."""
    import statistics

    import numpy as np

    from nnresilience.bounds.crown import CrownBounder
    from nnresilience.loaders import load_network
    from nnresilience.spec.vnnlib import read_vnnlib

    root = Path(os.environ.get("NNRES_BENCHMARKS", "../shared/benchmarks"))
    print("| network | property | worst lower bound (20 steps) | median s | runs |")
    print("|---|---|---:|---:|---:|")
    for folder, onnx_name, spec in RELU_ROOTS:
        net = load_network(root / folder / onnx_name)
        case = read_vnnlib(root / folder / spec, net.n_inputs, net.n_outputs).cases[0]
        C = np.asarray(case.unsafe.terms[0].A, dtype=float)
        lo, hi = case.region.lo[None], case.region.hi[None]
        merged = net.merged()
        CrownBounder(merged, C).bound(lo, hi, iters=1)            # torch import, warm-up
        secs, low = [], None
        for _ in range(args.runs):
            t = time.perf_counter()
            res = CrownBounder(merged, C).bound(lo, hi, iters=20)
            secs.append(time.perf_counter() - t)
            low = float(res.lower.min())
        print(f"| {onnx_name} | {spec} | {low!r} | {statistics.median(secs):.3f} | "
              f"{args.runs} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--radii", type=float, nargs="+", default=[0.02, 0.035, 0.05])
    ap.add_argument("--depth", type=int, default=3, help="hidden layers")
    ap.add_argument("--width", type=int, default=40, help="units per hidden layer")
    ap.add_argument("--engines", nargs="+", choices=["milp", "auto"], default=["milp", "auto"])
    ap.add_argument("--activations", nargs="+", choices=["logistic", "tanh"],
                    default=["logistic", "tanh"])
    ap.add_argument("--root-bounds", action="store_true",
                    help="instead: the worst spec-row lower bound at the root, fixed "
                         "s-shaped lines against optimised tangent points (20 steps)")
    ap.add_argument("--relu-root", action="store_true",
                    help="instead: root bound and seconds on ACAS Xu / MNIST-FC ReLU nets "
                         "(NNRES_BENCHMARKS), to show they are unaffected")
    ap.add_argument("--runs", type=int, default=3, help="calls per net for --relu-root")
    args = ap.parse_args(argv)
    if args.root_bounds:
        return root_bounds(args)
    if args.relu_root:
        return relu_root(args)

    from nnresilience.spec.property import robustness
    from nnresilience.verify import verify

    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    lines = ["| network (test accuracy) | radius | engine | holds | violated | "
             "candidate failed replay | other unknown | seconds | terms searched | "
             "bound s |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    bad = 0
    for activation in args.activations:
        net, Xte, yte, acc = train(activation, args.depth, args.width)
        picks = [i for i in range(len(yte)) if net.predict(Xte[i]) == yte[i]][: args.samples]
        for radius in args.radii:
            engines = (("milp", {"input_split": False}), ("auto", {}))
            for engine, kw in (e for e in engines if e[0] in args.engines):
                count = {"holds": 0, "violated": 0, "replay": 0, "other": 0}
                secs = 0.0
                terms = bound_s = 0.0
                for i in picks:
                    prop = robustness(Xte[i], int(yte[i]), radius, 10, domain_lo=0.0, domain_hi=1.0)
                    t = time.monotonic()
                    r = verify(net, prop, engine=engine, timeout=args.timeout, **kw)
                    secs += time.monotonic() - t
                    for st in r.stats.get("cases", []):
                        # per-term searches (bab): terms searched, seconds in bound calls
                        terms += st.get("terms_searched", 0)
                        bound_s += st.get("seconds_bound", 0.0) + st.get(
                            "joint_seconds_bound", 0.0)
                    if r.status.value == "violated":
                        x = r.counterexample.x_array
                        if not prop.violated_by(x, net.forward(x)):
                            bad += 1
                    if r.status.value in ("holds", "violated"):
                        count[r.status.value] += 1
                    elif r.message == "candidate failed replay":
                        count["replay"] += 1
                    else:
                        count["other"] += 1
                line = (f"| {net.name} ({acc:.3f}) | {radius} | {engine} | {count['holds']} | "
                        f"{count['violated']} | {count['replay']} | {count['other']} | "
                        f"{secs:.0f} | {terms:.0f} | {bound_s:.0f} |")
                lines.append(line)
                print(line, flush=True)
    print()
    print("\n".join(lines))
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
