"""Witness pairs as training data: a real campaign (Φ_m, minimum perturbation, robustness)
exported to ``.npz``; every row is checked against the network, not against the store."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nnresilience.campaign import load_campaign, run_campaign
from nnresilience.errors import InputDataError
from nnresilience.export_witnesses import (
    KEYS,
    export_store_witnesses,
    pairs_from_contract,
    pairs_from_store,
    witness_arrays,
    write_witnesses_npz,
)
from nnresilience.network import Network
from nnresilience.network.layers import Affine, ReLU
from nnresilience.parallel import InlineExecutor
from nnresilience.store import CampaignStore


def _net():
    # 2 inputs, 3 classes; y0 = x0 - x1, y1 = x1 - x0, y2 = relu(x0 + x1) - 1.2
    W1 = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    return Network([Affine(W1, np.zeros(3)), ReLU(3),
                    Affine(np.eye(3), np.array([0.0, 0.0, -1.2]))], name="toy")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from nnresilience.loaders.export import save_onnx

    d = tmp_path_factory.mktemp("camp")
    save_onnx(_net(), d / "toy.onnx")
    np.save(d / "x.npy", np.array([[0.6, 0.1], [0.2, 0.7], [0.3, 0.25]]))
    cfg = {"name": "toy", "defaults": {"timeout": 30, "domain": [[0, 0], [1, 1]]},
           "units": [
               {"kind": "phi", "network": "toy.onnx", "classes": [0, 1], "alpha": 1.2},
               {"kind": "min_perturbation", "network": "toy.onnx", "inputs": "x.npy",
                "samples": 2, "norm": "linf"},
               {"kind": "robustness", "network": "toy.onnx", "inputs": "x.npy",
                "samples": 2, "deltas": [0.01, 0.4], "norm": "linf"}]}
    (d / "c.json").write_text(json.dumps(cfg))
    path = d / "store.sqlite"
    with CampaignStore(path) as st:
        s = run_campaign(load_campaign(d / "c.json").units, st, InlineExecutor())
    assert not s.errors, s.errors
    return path


def test_store_export_rows_are_real_witnesses(store, tmp_path):
    from nnresilience.loaders import load_network

    # the network the campaign ran: the ONNX file (float32 weights; a witness can sit on
    # a near-tie where the float64 twin _net() ranks the classes the other way)
    net = load_network(store.parent / "toy.onnx")
    out = tmp_path / "w.npz"
    n = export_store_witnesses(store, out)
    with np.load(out, allow_pickle=False) as z:
        assert set(z.files) == set(KEYS)
        a, b = z["a"], z["a_perturbed"]
        assert a.shape == b.shape == (n, 2)
        src = [str(s) for s in z["source"]]
        kinds = [s.split(":")[1] for s in src]
        # 2 Φ classes + 2 samples + the violated robustness cells (δ = 0.4 on both)
        assert kinds.count("phi") == 2 and kinds.count("min_perturbation") == 2
        assert kinds.count("robustness") >= 2
        for i in range(n):
            m = int(z["label"][i])
            y = net.forward(b[i])
            assert np.sum(np.delete(y, m) >= y[m]) >= 1          # the flip replays
            assert int(z["perturbed_label"][i]) == int(np.argmax(y))
            eps = np.abs(b[i] - a[i])
            norm = str(z["norm"][i])
            want = eps.sum() if norm == "l1" else eps.max()
            assert z["epsilon"][i] == pytest.approx(want, abs=1e-12)
            if kinds[i] == "phi":
                ya = net.forward(a[i])
                assert ya[m] - np.delete(ya, m).max() >= math.log(1.2) - 1e-6
            if kinds[i] == "robustness":
                assert z["epsilon"][i] <= 0.4 + 1e-9
        assert set(str(s) for s in z["model"]) == {"toy"}


def test_store_export_filters_and_refuses_mixed_sizes(store):
    assert pairs_from_store(store, network="other") == []
    assert len(pairs_from_store(store, network="toy")) >= 6
    mixed = [{"a": np.zeros(2), "a_perturbed": np.zeros(2), "model": "a"},
             {"a": np.zeros(3), "a_perturbed": np.zeros(3), "model": "b"}]
    with pytest.raises(InputDataError, match="different input sizes"):
        witness_arrays(mixed)


def test_empty_and_contract_exports(tmp_path):
    n = write_witnesses_npz([], tmp_path / "e.npz")
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert n == 0 and z["a"].shape[0] == 0 and set(z.files) == set(KEYS)
    from nnresilience.contract import make_contract

    c = make_contract(_net(), 1.2, 1, "l1", ((0, 0), (1, 1)), scale=[1.0, 0.5])
    pairs = pairs_from_contract(c)
    assert len(pairs) == sum(1 for cl in c["clauses"] if cl["witness"]) >= 1
    for p, cl in zip(pairs, [cl for cl in c["clauses"] if cl["witness"]], strict=True):
        assert p["epsilon"] == pytest.approx(cl["witness"]["epsilon_norm"], abs=1e-12)
        assert p["epsilon"] == pytest.approx(
            float(np.abs((p["a_perturbed"] - p["a"]) / np.array([1.0, 0.5])).sum()))


def test_campaign_export_witnesses_npz_cli(store, tmp_path, capsys):
    """``nnres campaign export --format witnesses-npz`` writes what
    export_store_witnesses writes (replacing an older file), honours --kind and
    --network, and needs a file name."""
    from nnresilience.cli import main

    out = tmp_path / "w.npz"
    out.write_text("an older export\n")
    assert main(["campaign", "export", str(store), "--format", "witnesses-npz", "-o",
                 str(out)]) == 0
    want = pairs_from_store(store)
    assert f"{len(want)} witness pair(s)" in capsys.readouterr().err
    with np.load(out, allow_pickle=False) as z:
        assert set(z.files) == set(KEYS) and z["a"].shape == (len(want), 2)
        np.testing.assert_array_equal(z["a_perturbed"], [p["a_perturbed"] for p in want])
        np.testing.assert_array_equal(z["label"], [p["label"] for p in want])
        assert [str(s) for s in z["source"]] == [p["source"] for p in want]
    assert main(["campaign", "export", str(store), "--format", "witnesses-npz", "--kind",
                 "phi", "-o", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["a"].shape[0] == 2 and {s.split(":")[1] for s in map(str, z["source"])} \
            == {"phi"}
    assert main(["campaign", "export", str(store), "--format", "witnesses-npz",
                 "--network", "other", "-o", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["a"].shape == (0, 0)
    capsys.readouterr()
    assert main(["campaign", "export", str(store), "--format", "witnesses-npz"]) == 2
    assert "give -o FILE.npz" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp"))
