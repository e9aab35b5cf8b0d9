"""Train the 18-36-36-3 Leaky-ReLU (k = 0.1) network of seed 004 §IV on Cardiotocography.

Reproduces the paper's training set-up as far as the paper states it, and fixes what it
leaves open (documented in ``examples/ctg/README.md``):

* data: UCI Cardiotocography, 2126 rows, 21 features, target NSP (1 normal, 2 suspect,
  3 pathologic -> labels 0, 1, 2);
* features: 18 of the 21, chosen by :func:`select_features` (drop the two features with the
  lowest spread after scaling, then the more redundant member of the most correlated pair);
* scaling: each feature mapped affinely to [-1, 1] by its min/max over the *whole* data set
  (the paper normalises before splitting), so every real sample lies in the verification
  domain [-1, 1]^18;
* split: 80/20 by a seeded random permutation; batch 24; 50 epochs; Adam (lr 1e-3);
  cross-entropy on logits;
* determinism: fixed numpy/torch seeds, one torch thread, deterministic algorithms.

Outputs (``--out``, default ``src/nnresilience/data``): ``ctg_leaky.onnx`` (Gemm +
LeakyRelu, built with ``onnx.helper``; float32 weights as trained) and ``ctg_samples.npz``
(the 9 table samples, their labels, feature names and the scaling min/max). Run::

    python examples/ctg/train.py            # ~10-20 s on one CPU core
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CSV = REPO / ".." / "shared" / "benchmarks" / "ctg" / "CTG.csv"
DEFAULT_OUT = REPO / "src" / "nnresilience" / "data"

N_FEATURES_ALL = 21
CLASS_NAMES = ("normal", "suspect", "pathologic")
SLOPE = 0.1
HIDDEN = (36, 36)
SEED = 2020            # split + initialisation seed
LR = 1e-3
BATCH = 24
EPOCHS = 50
TEST_FRACTION = 0.2
PER_CLASS = 3          # table samples per class


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All 21 raw features (float64), NSP labels 0..2, and the 21 feature names."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    if header[-1] != "NSP" or len(header) != N_FEATURES_ALL + 2:
        raise ValueError(f"{path}: expected 21 features + CLASS + NSP, got header {header}")
    data = np.array(rows[1:], dtype=np.float64)
    X = data[:, :N_FEATURES_ALL]
    y = data[:, -1].astype(np.int64) - 1
    return X, y, header[:N_FEATURES_ALL]


def scale(X: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Affine map of each column from [lo, hi] to [-1, 1]."""
    return 2.0 * (X - lo) / (hi - lo) - 1.0


def select_features(X: np.ndarray, names: list[str]) -> tuple[list[int], dict]:
    """Pick 18 of the 21 features by a fixed, data-driven rule; return kept indices + why.

    1. Scale every feature to [-1, 1] by its min/max; drop the two with the smallest
       standard deviation (near-constant columns carry almost no signal, and a column that
       is constant on most samples makes a box perturbation of radius delta mostly leave
       the data manifold).
    2. Among the rest, find the pair with the largest |Pearson correlation| and drop the
       member whose mean |correlation| with all remaining features is larger (the more
       redundant of the two).
    """
    lo, hi = X.min(axis=0), X.max(axis=0)
    S = scale(X, lo, hi)
    std = S.std(axis=0)
    low = [int(i) for i in np.argsort(std, kind="stable")[:2]]
    rest = [i for i in range(X.shape[1]) if i not in low]
    C = np.abs(np.corrcoef(X[:, rest].T))
    np.fill_diagonal(C, 0.0)
    a, b = np.unravel_index(int(np.argmax(C)), C.shape)
    mean_corr = C.sum(axis=1) / (len(rest) - 1)
    drop_red = rest[a] if mean_corr[a] >= mean_corr[b] else rest[b]
    kept = [i for i in rest if i != drop_red]
    why = {
        "lowest_std_after_scaling": {names[i]: round(float(std[i]), 4) for i in low},
        "most_correlated_pair": [names[rest[a]], names[rest[b]], round(float(C[a, b]), 4)],
        "mean_abs_corr": {names[rest[a]]: round(float(mean_corr[a]), 4),
                          names[rest[b]]: round(float(mean_corr[b]), 4)},
        "dropped": [names[i] for i in low] + [names[drop_red]],
    }
    return kept, why


def split(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random 80/20 split of row indices (train sorted, test in permutation order)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(TEST_FRACTION * n))
    return np.sort(perm[n_test:]), perm[:n_test]


def train(Xtr: np.ndarray, ytr: np.ndarray, seed: int = SEED):
    """Adam + cross-entropy, batch 24, 50 epochs; returns the trained torch module."""
    import torch
    from torch import nn

    threads, determ = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(torch, nn, Xtr, ytr, seed)
    finally:   # leave the caller's torch settings as they were (tests share a process)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(determ)


def _fit(torch, nn, Xtr: np.ndarray, ytr: np.ndarray, seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(Xtr.shape[1], HIDDEN[0]), nn.LeakyReLU(SLOPE),
        nn.Linear(HIDDEN[0], HIDDEN[1]), nn.LeakyReLU(SLOPE),
        nn.Linear(HIDDEN[1], len(CLASS_NAMES)),
    )
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    xt = torch.tensor(Xtr, dtype=torch.float32)
    yt = torch.tensor(ytr, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), BATCH):
            idx = order[s:s + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model


def weights_of(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W (out, in), b) float32 pairs of the three Linear layers, in order."""
    from torch import nn

    return [(m.weight.detach().numpy().astype(np.float32).copy(),
             m.bias.detach().numpy().astype(np.float32).copy())
            for m in model if isinstance(m, nn.Linear)]


def to_onnx(weights: list[tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Write Gemm(transB=1) / LeakyRelu(alpha=0.1) / ... as ONNX (IR 8, opset 13).

    Built with ``onnx.helper`` rather than ``torch.onnx.export`` so the graph is exactly
    the five nodes the loader must map (no Identity/Constant noise) and the file is
    reproducible byte for byte. Input ``input`` is ``[N, 18]``, output ``logits`` ``[N, 3]``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    prev = "input"
    for i, (W, b) in enumerate(weights):
        inits += [numpy_helper.from_array(W, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "logits" if i == len(weights) - 1 else f"z{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [out],
                                      name=f"gemm{i}", transB=1))
        prev = out
        if i < len(weights) - 1:
            nodes.append(helper.make_node("LeakyRelu", [out], [f"h{i}"],
                                          name=f"leaky{i}", alpha=SLOPE))
            prev = f"h{i}"
    graph = helper.make_graph(
        nodes, "ctg_leaky",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", weights[0][0].shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["N", weights[-1][0].shape[0]])],
        inits)
    model = helper.make_model(graph, producer_name="nnresilience-examples-ctg",
                              opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    model.doc_string = ("18-36-36-3 Leaky-ReLU (k=0.1) classifier of UCI Cardiotocography "
                        "NSP (0 normal, 1 suspect, 2 pathologic); inputs scaled to [-1,1]; "
                        "see nnresilience/data/README.md")
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def forward64(weights, X: np.ndarray) -> np.ndarray:
    """Float64 forward pass of the trained weights (same arithmetic as Network.forward)."""
    h = np.asarray(X, dtype=np.float64)
    for i, (W, b) in enumerate(weights):
        h = h @ W.astype(np.float64).T + b.astype(np.float64)
        if i < len(weights) - 1:
            h = np.where(h >= 0.0, h, SLOPE * h)
    return h


def pick_samples(logits: np.ndarray, y: np.ndarray, test_idx: np.ndarray
                 ) -> np.ndarray:
    """Positions (into the test arrays) of the first 3 correctly classified per class.

    "First" is test order (the seeded permutation order): a rule that looks neither at the
    margins nor at the verification results, so the tables are not cherry-picked.
    """
    pred = logits.argmax(axis=1)
    chosen = []
    for c in range(len(CLASS_NAMES)):
        ok = np.flatnonzero((y == c) & (pred == c))
        if ok.size < PER_CLASS:
            raise RuntimeError(f"only {ok.size} correctly classified test samples of class {c}")
        chosen.extend(ok[:PER_CLASS].tolist())
    return np.asarray(chosen, dtype=np.int64)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="path of CTG.csv")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="folder for ctg_leaky.onnx and ctg_samples.npz")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if not args.csv.is_file():
        raise SystemExit(f"error: {args.csv} not found (pass --csv PATH/TO/CTG.csv)")
    X_all, y, names_all = load_csv(args.csv)
    kept, why = select_features(X_all, names_all)
    names = [names_all[i] for i in kept]
    X = X_all[:, kept]
    lo, hi = X.min(axis=0), X.max(axis=0)
    Xs = scale(X, lo, hi)
    tr, te = split(len(y))
    model = train(Xs[tr], y[tr])
    W = weights_of(model)
    logits_te = forward64(W, Xs[te])
    logits_tr = forward64(W, Xs[tr])
    acc_te = float((logits_te.argmax(1) == y[te]).mean())
    acc_tr = float((logits_tr.argmax(1) == y[tr]).mean())
    z = logits_te - logits_te.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss_te = float(-logp[np.arange(len(te)), y[te]].mean())
    per_class = {CLASS_NAMES[c]: float((logits_te.argmax(1)[y[te] == c] == c).mean())
                 for c in range(3)}
    pos = pick_samples(logits_te, y[te], te)
    samples = Xs[te][pos]
    args.out.mkdir(parents=True, exist_ok=True)
    to_onnx(W, args.out / "ctg_leaky.onnx")
    np.savez(args.out / "ctg_samples.npz",
             x=samples, labels=y[te][pos], rows=te[pos] + 2,  # +2: 1-based, after header
             ids=np.array([f"{'ABC'[c]}{k + 1}" for c in range(3) for k in range(PER_CLASS)]),
             feature_names=np.array(names), dropped=np.array(why["dropped"]),
             feature_min=lo, feature_max=hi, class_names=np.array(CLASS_NAMES),
             slope=np.float64(SLOPE))
    info = {
        "features": names, "feature_selection": why, "n_train": int(len(tr)),
        "n_test": int(len(te)), "test_accuracy": round(acc_te, 4),
        "train_accuracy": round(acc_tr, 4), "test_loss": round(loss_te, 4),
        "test_accuracy_per_class": {k: round(v, 4) for k, v in per_class.items()},
        "samples_csv_rows": (te[pos] + 2).tolist(),
        "seconds": round(time.perf_counter() - t0, 2),
        "onnx_bytes": (args.out / "ctg_leaky.onnx").stat().st_size,
    }
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
