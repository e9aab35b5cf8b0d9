"""``--norm l2`` and ``--arctan`` on the resilience commands, end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nnresilience.network.layers import Affine, Arctan, ReLU
from nnresilience.network.model import Network

pytest.importorskip("onnx")


def _save(net, path):
    from nnresilience.loaders.export import save_onnx

    save_onnx(net, path)
    return path


def _halfplane(tmp_path):
    """Class 0 (alpha = e) confident on 3 x0 + 4 x1 <= -1, flipped on >= 0: Φ_L2 = 0.2."""
    w = np.array([[3.0, 4.0]])
    net = Network([Affine(np.vstack([w, -w]), np.zeros(2)), ReLU(2),
                   Affine(np.array([[0.0, 0.0], [1.0, -1.0]]), np.zeros(2))])
    return _save(net, tmp_path / "half.onnx")


def test_resilience_and_min_perturbation_l2_cli(tmp_path):
    from nnresilience.cli import main

    model = _halfplane(tmp_path)
    out = tmp_path / "phi.json"
    rc = main(["resilience", str(model), "--class", "0", "--alpha", str(math.e), "--norm",
               "l2", "--domain", "-1:1", "--json", str(out), "--quiet"])
    assert rc == 0
    d = json.loads(out.read_text())
    r = d["results"][0]
    assert d["query"]["norm"] == "l2" and r["status"] == "optimal"
    assert r["upper"] == pytest.approx(0.2, abs=1e-5) and r["backend"] == "scip"
    a, b = (np.asarray(r["witness"][k]) for k in ("a", "a_perturbed"))
    assert float(np.linalg.norm(b - a)) == r["upper"]
    data = tmp_path / "x.npy"
    np.save(data, np.array([[-0.3, -0.4]]))          # 0.5 from the flip half-plane
    out2 = tmp_path / "mp.json"
    rc = main(["min-perturbation", str(model), "--data", str(data), "--norm", "l2",
               "--domain", "-1:1", "--json", str(out2), "--quiet"])
    assert rc == 0
    r2 = json.loads(out2.read_text())["results"][0]
    assert r2["optimal"] and r2["upper"] == pytest.approx(0.5, abs=1e-5)


def test_l2_with_highs_and_bad_arctan_are_one_line_errors(tmp_path, capsys):
    from nnresilience.cli import main

    model = _halfplane(tmp_path)
    out = tmp_path / "never.json"
    rc = main(["resilience", str(model), "--class", "0", "--norm", "l2", "--domain", "-1:1",
               "--backend", "highs", "--json", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert err[-1].startswith("error: ") and "L2 norm" in err[-1] and "highs" in err[-1]
    assert "miqcp" not in err[-1]       # a ReLU net: the cone row is the only reason
    rc = main(["resilience", str(model), "--class", "0", "--domain", "-1:1",
               "--arctan", "spline", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "--arctan" in err[-1]


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_l2_with_highs_on_s_shaped_nets_names_the_norm_not_the_miqcp(act, tmp_path, capsys):
    """Sigmoid/tanh nets never use the MIQCP; the refusal said "(arctan 'miqcp'
    encoding)" for every quadratic row."""
    from nnresilience.cli import main
    from nnresilience.network.layers import Sigmoid, Tanh

    rng = np.random.default_rng(2)
    net = Network([Affine(rng.normal(size=(3, 2)), rng.normal(size=3)),
                   {"sigmoid": Sigmoid, "tanh": Tanh}[act](3),
                   Affine(rng.normal(size=(2, 3)), rng.normal(size=2))])
    model = _save(net, tmp_path / f"{act}.onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 2)))
    out = tmp_path / "never.json"
    for cmd in (["resilience", str(model), "--class", "0"],
                ["min-perturbation", str(model), "--data", str(tmp_path / "x.npy")]):
        rc = main(cmd + ["--norm", "l2", "--domain", "-1:1", "--backend", "highs",
                         "--arctan", "miqcp", "--json", str(out), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and not out.exists() and len(err) == 1
        assert err[0].startswith("error: ") and "L2 norm" in err[0]
        assert "miqcp" not in err[0] and "arctan" not in err[0]


def test_arctan_option_is_labelled_in_json(tmp_path):
    from nnresilience.cli import main

    rng = np.random.default_rng(1)
    net = Network([Affine(rng.normal(size=(4, 1)) * 2.0, rng.normal(size=4)), Arctan(4),
                   Affine(rng.normal(size=(3, 4)), rng.normal(size=3) * 0.3)])
    model = _save(net, tmp_path / "atan.onnx")
    m = int(net.predict(np.array([0.0])))
    for mode in ("pwl", "miqcp"):
        out = tmp_path / f"{mode}.json"
        rc = main(["resilience", str(model), "--class", str(m), "--alpha", "1.3",
                   "--domain", "-1:1", "--arctan", mode, "--json", str(out), "--quiet",
                   "--timeout", "60"])
        assert rc == 0
        d = json.loads(out.read_text())
        r = d["results"][0]
        assert d["query"]["arctan"] == mode and r["encoding"] == mode
        assert r["stats"]["lower_bound_basis"] and mode.upper()[:3] in r["message"].upper()
