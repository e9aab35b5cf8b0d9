"""Train the deeptraffic-shaped networks of seed 000's Table 2 on synthetic data.

The paper's ``I_deeptraffic`` networks (30, 45 and 60 inputs; 70 hidden neurons; trained
with ConvNetJS on MIT's DeepTraffic highway game) are not public, nor is their data. We
generate a task of the same shape: the car sees a grid of road cells — its own lane and
one lane on each side (3 lanes), ``P`` patches along the road (``P`` = 10, 15, 20 gives
30, 45, 60 inputs; two thirds of them ahead) — and each cell holds the speed available
there in [0, 1] (1 = free road, less = occupied by a slower car). A fixed driving rule
labels each grid with one of DeepTraffic's five actions:

    0 no action, 1 accelerate, 2 decelerate, 3 change lane left, 4 change lane right

(accelerate when the own lane ahead is free; change lane when the neighbouring lane
ahead is freer *and* the cells beside the car are free; decelerate when a slow car is
close ahead; otherwise keep going). Cells beyond the rule's view are distractors, as in a
real sensor grid. An MLP with one hidden layer of 70 ReLUs (scikit-learn, fixed seeds)
learns it; the weights are written as ONNX (``Gemm``/``Relu``, logits out):

    examples/table2/deeptraffic_30x70.onnx   (and _45x70, _60x70)

The 27-input, 15-hidden "agent game" network of Table 2's first rows is
``examples/agent/agent_27x15.onnx`` (``benchmarks/paper_tables.py train``). Run::

    python examples/table2/train.py          # a few minutes on one core
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PATCHES = (10, 15, 20)          # x 3 lanes = 30, 45, 60 inputs
HIDDEN = 70
ACTIONS = ("no action", "accelerate", "decelerate", "left", "right")
SEED = 2017


def road(rng: np.random.Generator, n: int, patches: int) -> np.ndarray:
    """``n`` grids of 3 lanes x ``patches`` cells, flattened lane by lane (left, own,
    right; within a lane from the back to the front). A cell is free (1.0) with
    probability 0.65, else it holds a slower car's speed, uniform in [0.1, 0.9]."""
    free = rng.random((n, 3, patches)) < 0.65
    speed = rng.uniform(0.1, 0.9, (n, 3, patches))
    return np.where(free, 1.0, speed).reshape(n, 3 * patches)


def rule(X: np.ndarray, patches: int) -> np.ndarray:
    """The driving rule: the action with the highest score."""
    G = X.reshape(-1, 3, patches)
    car = patches // 3                       # the car's patch: a third of the view behind
    ahead = G[:, :, car + 1:car + 5]         # the four patches in front of the car
    near = G[:, 1, car + 1:car + 3].min(axis=1)
    flow = ahead.mean(axis=2)                # (n, 3): left, own, right
    beside = G[:, :, car - 1:car + 2].min(axis=2)
    s = np.empty((X.shape[0], 5))
    s[:, 0] = 0.15
    s[:, 1] = 2.0 * flow[:, 1] - 1.55
    s[:, 2] = 1.6 * (1.0 - near) - 0.75
    s[:, 3] = 1.5 * (flow[:, 0] - flow[:, 1]) + 1.2 * beside[:, 0] - 1.0
    s[:, 4] = 1.5 * (flow[:, 2] - flow[:, 1]) + 1.2 * beside[:, 2] - 1.05
    return np.argmax(s, axis=1)


def _mlp_to_onnx():
    spec = importlib.util.spec_from_file_location("paper_tables",
                                                  REPO / "benchmarks" / "paper_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.mlp_to_onnx


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--n", type=int, default=8000, help="training grids per network")
    ap.add_argument("--patches", type=int, nargs="+", default=list(PATCHES),
                    help="which networks (patches per lane: 10, 15, 20)")
    args = ap.parse_args(argv)
    from sklearn.neural_network import MLPClassifier

    mlp_to_onnx = _mlp_to_onnx()
    info_path = args.out / "train_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    for patches in args.patches:
        rng = np.random.default_rng(SEED + patches)
        X = road(rng, args.n + 4000, patches)
        y = rule(X, patches)
        clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", alpha=1e-4,
                            max_iter=200, random_state=SEED)
        clf.fit(X[:args.n], y[:args.n])
        name = f"deeptraffic_{3 * patches}x{HIDDEN}"
        path = args.out / f"{name}.onnx"
        mlp_to_onnx(clf, path, name)
        info[name] = {"test_accuracy": round(float(clf.score(X[args.n:], y[args.n:])), 4),
                      "class_counts": np.bincount(y, minlength=5).tolist(),
                      "onnx_bytes": path.stat().st_size}
        print(name, info[name], flush=True)
        info_path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


if __name__ == "__main__":
    main()
