"""The shipped CTG Leaky-ReLU network (seed 004 §IV) and its example scripts.

Cheap checks only: the full 54-cell, two-engine table is produced by
``examples/ctg/robustness_table.py`` and recorded in ``examples/ctg/RESULTS.md``; here
both engines decide 2 samples x 2 radii and must agree with each other and with verdicts
computed independently (scipy MILP, see ``EXPECTED``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from nnresilience.data import CTG_ONNX, ctg_network, ctg_samples

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "ctg"

# (sample, delta) -> verdict, from an independent scipy.optimize.milp encoding of the
# shipped weights (max of y_j - y_label over the box, per j) written while preparing the
# example; the engines must reproduce them.
EXPECTED = {("A1", 0.01): "holds", ("A1", 0.035): "violated",
            ("B3", 0.01): "holds", ("B3", 0.035): "violated"}


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"ctg_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def net():
    return ctg_network()


@pytest.fixture(scope="module")
def samples():
    return ctg_samples()


def test_shipped_onnx_structure(net):
    assert CTG_ONNX.stat().st_size < 20_000
    kinds = [layer.kind for layer in net.layers]
    assert kinds == ["affine", "leaky_relu", "affine", "leaky_relu", "affine"]
    assert net.layer_sizes() == [18, 36, 36, 36, 36, 3]
    assert all(layer.slope == pytest.approx(0.1) for layer in net.layers
               if layer.kind == "leaky_relu")
    assert net.source_format == "onnx"
    assert np.array_equal(net.input_lo, -np.ones(18))
    assert np.array_equal(net.input_hi, np.ones(18))


def test_onnxruntime_agrees_with_forward(net, samples):
    from nnresilience.loaders.onnx import onnxruntime_forward

    rng = np.random.default_rng(4)
    X = np.vstack([samples.x, rng.uniform(-1, 1, size=(64, 18))])
    ours = net.forward(X)
    ort = np.asarray(onnxruntime_forward(net, X), dtype=np.float64).reshape(ours.shape)
    # onnxruntime computes in float32: agreement to float32 rounding of logits ~ 10.
    np.testing.assert_allclose(ort, ours, atol=1e-4, rtol=1e-5)


def test_shipped_samples_are_correct_and_in_domain(net, samples):
    assert samples.x.shape == (9, 18)
    assert samples.ids == ("A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3")
    assert samples.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.all(np.abs(samples.x) <= 1.0)
    assert np.array_equal(net.predict(samples.x), samples.labels)
    assert len(samples.feature_names) == 18
    assert set(samples.dropped).isdisjoint(samples.feature_names)
    # unscale is the inverse of the [-1, 1] map
    lo, hi = samples.feature_min, samples.feature_max
    assert np.allclose(samples.unscale(-np.ones(18)), lo)
    assert np.allclose(samples.unscale(np.ones(18)), hi)


def test_samples_are_the_csv_rows(samples, shared_benchmarks):
    csv = shared_benchmarks / "ctg" / "CTG.csv"
    if not csv.is_file():
        pytest.skip("CTG.csv absent")
    train = _load_example("train")
    X, y, names = train.load_csv(csv)
    kept, why = train.select_features(X, names)
    assert why["dropped"] == list(samples.dropped) == ["DS", "Nzeros", "Mean"]
    assert [names[i] for i in kept] == list(samples.feature_names)
    rows = samples.rows - 2                      # line number -> data row index
    np.testing.assert_allclose(samples.unscale(samples.x), X[rows][:, kept], atol=1e-9)
    assert np.array_equal(y[rows], samples.labels)


@pytest.mark.slow
def test_training_script_reproduces_a_good_model(tmp_path, shared_benchmarks):
    csv = shared_benchmarks / "ctg" / "CTG.csv"
    if not csv.is_file():
        pytest.skip("CTG.csv absent")
    pytest.importorskip("torch")
    train = _load_example("train")
    info = train.main(["--csv", str(csv), "--out", str(tmp_path)])
    assert 0.85 <= info["test_accuracy"] <= 1.0
    assert info["n_train"] + info["n_test"] == 2126
    assert (tmp_path / "ctg_leaky.onnx").stat().st_size < 20_000
    z = np.load(tmp_path / "ctg_samples.npz")
    assert z["x"].shape == (9, 18)


def _engine_verdict(net, samples, sid: str, delta: float, engine: str) -> str:
    """The engine alone (no falsifier, no bound short-cut), witness replayed."""
    from nnresilience.bounds import compute_bounds
    from nnresilience.engines import get_engine
    from nnresilience.results import Status
    from nnresilience.spec.property import robustness
    from nnresilience.verify import confirm

    i = samples.ids.index(sid)
    prop = robustness(samples.x[i], int(samples.labels[i]), delta, 3, norm="linf",
                      domain_lo=-1.0, domain_hi=1.0)
    case = prop.cases[0]
    eng = get_engine(engine)
    eng = eng() if isinstance(eng, type) else eng
    bounds = compute_bounds(net, case.region, method="interval")
    ans = eng.check(net, case, bounds, timeout=60.0)
    if ans.status is Status.VIOLATED:
        assert confirm(net, case, ans.x) is not None, f"{engine} witness fails replay"
    return ans.status.value


@pytest.mark.parametrize("cell", sorted(EXPECTED))
def test_engines_agree_on_cells(net, samples, cell):
    sid, delta = cell
    verdicts = {e: _engine_verdict(net, samples, sid, delta, e) for e in ("milp", "reluplex")}
    assert verdicts == {"milp": EXPECTED[cell], "reluplex": EXPECTED[cell]}


def test_robustness_table_script_small(capsys):
    mod = _load_example("robustness_table")
    rc = mod.main(["--samples", "A1", "--deltas", "0.01,0.035", "--no-write",
                   "--timeout", "60"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "normal sample A1 | ✓ | Fail |" in out
    assert "all 2 cells agree" in out
    assert "A1 δ=0.035" in out and "→ **" in out     # the counterexample line
