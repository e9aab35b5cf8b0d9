"""Train the ReLU twin of the shipped CTG network, for ``nnres compare``.

Same data, features, scaling, split, seed, architecture (18-36-36-3), optimiser and
epochs as ``examples/ctg/train.py`` (whose functions this script reuses); the only change
is the activation: ReLU instead of LeakyReLU(0.1). Comparing the two answers a question
seed 004 raises — does the leaky slope change how much perturbation the classifier
tolerates? — with proven numbers (``docs/contracts.md``).

Writes ``examples/contracts/ctg_relu.onnx`` (Gemm/Relu, float32 weights as trained). Needs
``../shared/benchmarks/ctg/CTG.csv`` (or ``--csv``) and torch; about 10 s on one core::

    python examples/contracts/train_ctg_relu.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _ctg_recipe():
    spec = importlib.util.spec_from_file_location("ctg_train", REPO / "examples" / "ctg" /
                                                  "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train_relu(ctg, Xtr: np.ndarray, ytr: np.ndarray):
    """The recipe of ``ctg.train`` with ``nn.ReLU`` in place of ``nn.LeakyReLU``."""
    import torch
    from torch import nn

    threads, determ = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(ctg.SEED)
        model = nn.Sequential(nn.Linear(Xtr.shape[1], ctg.HIDDEN[0]), nn.ReLU(),
                              nn.Linear(ctg.HIDDEN[0], ctg.HIDDEN[1]), nn.ReLU(),
                              nn.Linear(ctg.HIDDEN[1], len(ctg.CLASS_NAMES)))
        opt = torch.optim.Adam(model.parameters(), lr=ctg.LR)
        loss_fn = nn.CrossEntropyLoss()
        xt = torch.tensor(Xtr, dtype=torch.float32)
        yt = torch.tensor(ytr, dtype=torch.long)
        gen = torch.Generator().manual_seed(ctg.SEED)
        for _ in range(ctg.EPOCHS):
            order = torch.randperm(len(xt), generator=gen)
            for s in range(0, len(xt), ctg.BATCH):
                idx = order[s:s + ctg.BATCH]
                opt.zero_grad()
                loss_fn(model(xt[idx]), yt[idx]).backward()
                opt.step()
        return model
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(determ)


def main(argv: list[str] | None = None) -> dict:
    ctg = _ctg_recipe()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=ctg.DEFAULT_CSV)
    ap.add_argument("--out", type=Path, default=HERE / "ctg_relu.onnx")
    args = ap.parse_args(argv)
    if not args.csv.is_file():
        raise SystemExit(f"error: {args.csv} not found (pass --csv PATH/TO/CTG.csv)")
    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Network
    from nnresilience.network.layers import Affine, ReLU

    X_all, y, names_all = ctg.load_csv(args.csv)
    kept, _ = ctg.select_features(X_all, names_all)
    X = X_all[:, kept]
    Xs = ctg.scale(X, X.min(axis=0), X.max(axis=0))
    tr, te = ctg.split(len(y))
    model = train_relu(ctg, Xs[tr], y[tr])
    layers = []
    for i, (W, b) in enumerate(ctg.weights_of(model)):
        layers.append(Affine(W.astype(np.float64), b.astype(np.float64)))
        if i < 2:
            layers.append(ReLU(W.shape[0]))
    net = Network(layers, name="ctg_relu")
    save_onnx(net, args.out)
    acc = float((net.predict(Xs[te]) == y[te]).mean())
    info = {"out": str(args.out), "test_accuracy": round(acc, 4),
            "onnx_bytes": args.out.stat().st_size}
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
