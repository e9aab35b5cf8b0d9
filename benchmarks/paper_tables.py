"""Seed 000's experiments on networks we can train here (CPU, minutes, no download).

Subcommands (each prints markdown tables and appends them to
``benchmarks/results_resilience.md`` unless ``--no-write``):

``train``       train the MNIST-like digits networks (scikit-learn's bundled 8x8 digits,
                64 inputs in [0, 1], MLP 2x50 and 4x50 ReLU) and the 27-15 agent-like network
                (synthetic sensor data), saved as ONNX under ``examples/``.
``table1``      Table 1 style: local δ-robustness of single inputs (is some point of the
                L∞ δ-ball, inside [0, 1]^64, out of the label's top-1?), solved under the
                uniform M = 1e4, dataflow (interval) and heuristics 1+2 settings;
                seconds per cell and the answer (inf = robust, feas = counterexample).
``table2``      Table 2 style: Φ_m for a sweep of α on the agent-like net, with α_max and
                an α above it (infeasible premise).
``heuristics``  time of Φ_m / per-sample queries under each heuristic switched on alone.
``paper2``      Table 2 row by row, at the paper's α, on nets shaped like the paper's
                (27;15 agent net, 30/45/60;70 deeptraffic-like nets of
                ``examples/table2/train.py``): Φ_m (L1, k=1, D=[0,1]^n) with one worker
                (``phi``) and two (``phi_divided`` on a 2-process pool, pool start-up
                included), next to the paper's Φ_m and its 12-/360-core times. Writes
                ``benchmarks/results_table2.md`` unless ``--no-write``.

Choice for Table 1 (the paper does not state the norm of δ): L∞. Its δ values (0.025-0.1
on pixels in [0, 1]) are only meaningful per pixel; as an L1 total over 576 pixels they
would be a tiny fraction of one pixel. The CPU is shared: keep ``--timeout`` modest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "examples" / "digits"
AGENT = REPO / "examples" / "agent"
TABLE2 = REPO / "examples" / "table2"
RESULTS = REPO / "benchmarks" / "results_resilience.md"
RESULTS_TABLE2 = REPO / "benchmarks" / "results_table2.md"

# Seed 000, Table 2, quoted exactly: (network, inputs;hidden, m, α, Φ_m, cores, time s).
# Our stand-ins: the agent-like net for I_RL, examples/table2 nets for I_deeptraffic.
PAPER_TABLE2 = (
    ("I_RL", "27;15", 0, 1.1, 0.1537, 12, 0.4),
    ("I_RL", "27;15", 0, 1.2, 0.3006, 12, 0.3),
    ("I_RL", "27;15", 0, 1.5, 0.7666, 12, 0.1),
    ("I_RL", "27;15", 0, 1.7, 1.2730, 12, 0.1),
    ("I_RL", "27;15", 3, 1.3, 0.6904, 12, 1.5),
    ("I_deeptraffic", "30;70", 0, 4.022, 11.3475, 360, 421.58),
    ("I_deeptraffic", "30;70", 3, 78.0305, 69.9109, 360, 86.40),
    ("I_deeptraffic", "45;70", 2, 13.5258, 7.6226, 360, 124.46),
    ("I_deeptraffic", "60;70", 2, 2.2704, 0.8089, 360, 2246.8),
)


# ---------------------------------------------------------------------------- networks
def mlp_to_onnx(clf, path: Path, name: str) -> None:
    """Write a scikit-learn MLPClassifier (ReLU hidden layers) as an ONNX Gemm/Relu chain.

    The output is the logits (no softmax node): resilience reasons on logits anyway
    (Proposition 2), and for binary classifiers scikit-learn's single logit is expanded
    to the two logits ``(0, z)``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    Ws = [np.asarray(w, np.float32).T for w in clf.coefs_]
    bs = [np.asarray(b, np.float32) for b in clf.intercepts_]
    if Ws[-1].shape[0] == 1:
        Ws[-1] = np.vstack([np.zeros_like(Ws[-1]), Ws[-1]])
        bs[-1] = np.r_[np.float32(0.0), bs[-1]]
    nodes, inits = [], []
    cur = "input"
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        inits += [numpy_helper.from_array(W, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = f"z{i}" if i < len(Ws) - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [out], transB=1))
        cur = out
        if i < len(Ws) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i}"]))
            cur = f"h{i}"
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                    [1, Ws[0].shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, Ws[-1].shape[0]])],
        inits)
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def agent_data(rng: np.random.Generator, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 'agent game' sensors: 9 directions x (apple, poison, wall) distances in
    [0, 1]; the action (4 classes) heads towards the closest apple unless poison is
    closer in that sector. A stand-in for the paper's I_RL data, which is not public."""
    X = rng.uniform(0.0, 1.0, size=(n, 27))
    apple, poison = X[:, 0:9], X[:, 9:18]
    score = (1 - apple) - 1.5 * (1 - poison) * (poison < apple)
    sector = np.argmax(score, axis=1)
    y = np.minimum(sector * 4 // 9, 3)
    return X, y


def cmd_train(args) -> None:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    d = load_digits()
    X = d.data / 16.0
    y = d.target
    n_train = 1500
    for hidden, tag in (((50, 50), "2x50"), ((50, 50, 50, 50), "4x50")):
        clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", max_iter=400,
                            random_state=0)
        clf.fit(X[:n_train], y[:n_train])
        acc = clf.score(X[n_train:], y[n_train:])
        mlp_to_onnx(clf, DIGITS / f"digits_{tag}.onnx", f"digits_{tag}")
        print(f"digits {tag}: test accuracy {acc:.3f} -> {DIGITS / f'digits_{tag}.onnx'}")
    np.savez(DIGITS / "digits_test.npz", X=X[n_train:].astype(np.float32), y=y[n_train:])
    rng = np.random.default_rng(0)
    Xa, ya = agent_data(rng)
    clf = MLPClassifier(hidden_layer_sizes=(15,), activation="relu", max_iter=600,
                        random_state=0)
    clf.fit(Xa[:3000], ya[:3000])
    print(f"agent 27-15-4: test accuracy {clf.score(Xa[3000:], ya[3000:]):.3f}")
    mlp_to_onnx(clf, AGENT / "agent_27x15.onnx", "agent_27x15")
    np.savez(AGENT / "agent_samples.npz", X=Xa[3000:3300], y=ya[3000:3300])


# ------------------------------------------------------------------------------ tables
def _settings():
    from nnresilience.resilience import DATAFLOW, PAPER_BASELINE, ResilienceSettings

    return {
        "M=1e4": PAPER_BASELINE,
        "dataflow": DATAFLOW,
        "heur. 1+2": ResilienceSettings(big_m="interval", lookback=2, priorities=True,
                                        coupling=False),
        "default (ours)": ResilienceSettings(),
    }


def _emit(text: str, args) -> None:
    print(text)
    sys.stdout.flush()
    if not args.no_write:
        with RESULTS.open("a") as f:
            f.write(text + "\n")


def _load(name: str):
    from nnresilience.loaders import load_network

    return load_network(name)


def cmd_table1(args) -> None:
    from nnresilience.resilience import delta_check

    d = np.load(DIGITS / "digits_test.npz")
    X, y = d["X"], d["y"]
    configs = _settings()
    rows = []
    for tag in args.nets:
        net = _load(DIGITS / f"digits_{tag}.onnx")
        for m in args.classes:
            idx = [i for i in range(len(y)) if y[i] == m and net.predict(X[i]) == m][0]
            for delta in args.deltas:
                cells = []
                status = None
                for s in configs.values():
                    s = s.with_(backend=args.backend)
                    t0 = time.perf_counter()
                    r = delta_check(net, X[idx], m, delta, "linf", 1, (0.0, 1.0), settings=s,
                                    timeout=args.timeout)
                    dt = time.perf_counter() - t0
                    word = {"holds": "inf", "violated": "feas", "unknown": "t.o."}[
                        r.status.value]
                    if word != "t.o.":
                        # answers of different settings must agree (flag it if not)
                        status = word if status in (None, word) else "CONFLICT"
                    cells.append(f"{dt:.1f}" if word != "t.o." else "t.o.")
                rows.append((f"digits {tag}", m, idx, delta, status or "unknown", cells))
                print(rows[-1], flush=True)
    head = ("| instance | m | sample | δ (L∞) | status | " + " | ".join(
        f"time (s) {n}" for n in configs) + " |")
    lines = [f"### Table 1 style: local δ-robustness (timeout {args.timeout:g} s, "
             f"backend {args.backend})", "", head,
             "|" + "---|" * (5 + len(configs))]
    for inst, m, idx, delta, status, cells in rows:
        lines.append(f"| {inst} | {m} | {idx} | {delta:g} | {status} | " + " | ".join(cells)
                     + " |")
    _emit("\n".join(lines) + "\n", args)


def cmd_table2(args) -> None:
    from nnresilience.resilience import DEFAULT, alpha_max, phi

    net = _load(AGENT / "agent_27x15.onnx")
    dom = (0.0, 1.0)
    s = DEFAULT.with_(backend=args.backend)
    lines = [f"### Table 2 style: Φ_m on the agent-like 27-15-4 network (L1, k={args.k}, "
             f"D = [0,1]^27, timeout {args.timeout:g} s)", "",
             "| m | α | Φ_m | lower | upper | optimal | time (s) |",
             "|---|---|---|---|---|---|---|"]
    for m in args.classes:
        am = alpha_max(net, m, dom, settings=s, timeout=args.timeout)
        alphas = list(args.alphas) + [round(am.upper * 1.05, 4)]
        for a in alphas:
            if a < 1.0:
                continue
            r = phi(net, m, a, args.k, "l1", dom, settings=s, timeout=args.timeout)
            val = ("infeasible" if not r.feasible else
                   f"{r.upper:.4f}" if r.optimal else f"[{r.lower:.4f}, {r.upper}]")
            lines.append(f"| {m} | {a:g} | {val} | {r.lower} | {r.upper} | {r.optimal} | "
                         f"{r.seconds:.2f} |")
            print(lines[-1], flush=True)
        lines.append(f"| {m} | α_max | [{am.lower:.4f}, {am.upper:.4f}] | | | {am.optimal} | "
                     f"{am.seconds:.2f} |")
    _emit("\n".join(lines) + "\n", args)


def cmd_heuristics(args) -> None:
    from nnresilience.resilience import DEFAULT, phi

    plain = DEFAULT.with_(backend=args.backend, coupling=False, priorities=False)
    configs = {
        "M=1e4 (uniform)": plain.with_(big_m="uniform"),
        "dataflow (interval)": plain.with_(big_m="interval"),
        "symbolic": plain,
        "sym + h1 (milp:2)": plain.with_(lookback=2),
        "sym + h2 (priorities)": plain.with_(priorities=True),
        "sym + h3 (warm start)": plain.with_(warm_start=True),
        "sym + coupling = default": DEFAULT.with_(backend=args.backend),
        "default, HiGHS": DEFAULT.with_(backend="highs"),
    }
    cases = []
    agent = _load(AGENT / "agent_27x15.onnx")
    ad = np.load(AGENT / "agent_samples.npz")
    for m, a in ((0, 1.5), (3, 1.3)):
        cases.append((f"agent 27-15 Φ_{m} α={a}", agent, m, a, ad["X"]))
    dig = _load(DIGITS / "digits_2x50.onnx")
    dd = np.load(DIGITS / "digits_test.npz")
    for m, a in args.digit_cases:
        m = int(m)
        cases.append((f"digits 2x50 Φ_{m} α={a}", dig, m, a, dd["X"]))
    head = "| query | " + " | ".join(configs) + " |"
    lines = [f"### Heuristics: seconds (Φ_m, L1, k=1; solver nodes; timeout {args.timeout:g} s)",
             "", head, "|---|" + "---|" * len(configs)]
    for label, net, m, a, X in cases:
        cells = []
        for s in configs.values():
            r = phi(net, m, a, 1, "l1", (0.0, 1.0), settings=s, timeout=args.timeout, data=X)
            nodes = r.stats.get("solver_nodes", "?")
            val = "inf" if not r.feasible else (f"{r.upper:.4f}" if r.optimal else
                                                f"[{r.lower:.3f},{r.upper}]")
            cells.append(f"{r.seconds:.1f} ({nodes}) {val}")
            print(label, cells[-1], flush=True)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    _emit("\n".join(lines) + "\n", args)


def _table2_net(shape: str) -> Path:
    if shape == "27;15":
        return AGENT / "agent_27x15.onnx"
    n, h = shape.split(";")
    return TABLE2 / f"deeptraffic_{n}x{h}.onnx"


def _phi_run(net, m: int, alpha: float, workers: int, timeout: float):
    """Φ_m with ``workers`` processes: 1 → ``phi``; more → ``phi_divided`` on a pool."""
    from nnresilience.divide import phi_divided
    from nnresilience.resilience import DEFAULT, phi

    t0 = time.perf_counter()
    if workers == 1:
        r = phi(net, m, alpha, 1, "l1", (0.0, 1.0), settings=DEFAULT, timeout=timeout)
    else:
        r = phi_divided(net, m, alpha, 1, "l1", (0.0, 1.0), executor=workers,
                        settings=DEFAULT, timeout=timeout)
    return r, time.perf_counter() - t0


def _phi_cell(r) -> str:
    if not r.feasible:
        return "infeasible (α > α_max)"
    if r.optimal:
        return f"{r.upper:.4f}"
    up = "–" if r.upper is None else f"{r.upper:.4f}"
    return f"[{r.lower or 0.0:.4f}, {up}]"


def _phi_joint(results) -> str:
    """Both runs' intervals are valid: their intersection [max lower, min upper]."""
    lower = max((r.lower or 0.0) for r in results)
    ups = [r.upper for r in results if r.upper is not None]
    return f"[{lower:.4f}, {min(ups):.4f}]" if ups else f"[{lower:.4f}, –]"


def cmd_paper2(args) -> None:
    from nnresilience.resilience import alpha_max

    rows = [r for i, r in enumerate(PAPER_TABLE2)
            if (args.rows == "all" or (args.rows == "rl" and r[0] == "I_RL")
                or (args.rows == "deeptraffic" and r[0] == "I_deeptraffic")
                or (args.rows.replace(",", "").isdigit()
                    and str(i) in args.rows.split(",")))]
    head = ("| net (inputs;hidden) | m | α | paper Φ_m | paper time (s) | ours: Φ_m | optimal | "
            + " | ".join(f"time (s), {w} worker{'s' if w > 1 else ''}" for w in args.workers)
            + " | ours: α_max |")
    lines = [f"### Table 2 at the paper's α (L1, k=1, D=[0,1]^n, timeout {args.timeout:g} s "
             "per run)", "", head, "|" + "---|" * (8 + len(args.workers))]
    amax: dict[tuple, Any] = {}
    for name, shape, m, alpha, p_phi, p_cores, p_time in rows:
        net = _load(_table2_net(shape))
        if (shape, m) not in amax:
            amax[(shape, m)] = alpha_max(net, m, (0.0, 1.0), timeout=args.timeout)
        am = amax[(shape, m)]
        results = [_phi_run(net, m, alpha, w, args.timeout) for w in args.workers]
        best = next((r for r, _ in results if r.optimal), results[0][0])
        agree = all(abs((r.upper or 0) - (best.upper or 0)) <= 1e-4 * max(1.0, best.upper or 0)
                    for r, _ in results if r.optimal)
        cell = _phi_cell(best) if best.optimal or not best.feasible else \
            _phi_joint([r for r, _ in results])
        times = [f"{dt:.1f}" + ("" if r.optimal else " (t.o.)") for r, dt in results]
        am_txt = (f"{am.upper:.4g}" if am.optimal else
                  f"[{am.lower or 0:.4g}, {am.upper:.4g}]")
        lines.append(f"| {name} {shape} | {m} | {alpha:g} | {p_phi:g} | {p_time:g} "
                     f"({p_cores} cores) | {cell}{'' if agree else ' (MISMATCH)'} "
                     f"| {'yes' if best.optimal else 'no'} | " + " | ".join(times)
                     + f" | {am_txt} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        with RESULTS_TABLE2.open("a") as f:
            f.write(text + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--no-write", action="store_true", help="do not append to the results file")
    p.add_argument("--backend", default="auto")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per query")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train")
    t1 = sub.add_parser("table1")
    t1.add_argument("--nets", nargs="+", default=["2x50", "4x50"])
    t1.add_argument("--classes", nargs="+", type=int, default=[0, 1, 3, 8])
    t1.add_argument("--deltas", nargs="+", type=float, default=[0.025, 0.05, 0.075])
    t2 = sub.add_parser("table2")
    t2.add_argument("--classes", nargs="+", type=int, default=[0, 3])
    t2.add_argument("--alphas", nargs="+", type=float, default=[1.1, 1.2, 1.5, 1.7])
    t2.add_argument("--k", type=int, default=1)
    p2 = sub.add_parser("paper2")
    p2.add_argument("--rows", default="rl", help="rl (the 27;15 rows), deeptraffic, all, "
                    "or row indices 0..8 as 0,5,6")
    p2.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    h = sub.add_parser("heuristics")
    h.add_argument("--digit-cases", nargs="*", type=lambda s: tuple(map(float, s.split(":"))),
                   default=[], help="extra digits Φ_m cases as m:alpha")
    args = p.parse_args(argv)
    {"train": cmd_train, "table1": cmd_table1, "table2": cmd_table2,
     "heuristics": cmd_heuristics, "paper2": cmd_paper2}[args.cmd](args)


if __name__ == "__main__":
    main()
