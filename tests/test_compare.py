"""``compare_models`` / ``nnres compare``: invariants two models must show side by side,
input checking, the time budget, the JSON and the page in headless Chromium.

The invariants do not trust the glue: doubling a ReLU net's logits (last layer × 2)
leaves every decision boundary where it is, so each sample's minimum perturbation is
unchanged, while every logit margin doubles, so ln α_max doubles exactly.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest

from nnresilience.compare import compare_models
from nnresilience.contract import dumps, flip_count
from nnresilience.errors import InputDataError, ShapeMismatchError
from nnresilience.network import Network
from nnresilience.network.layers import Affine
from nnresilience.testing.bruteforce import random_network

LO, HI = -1.0, 1.0


def _tiny(seed, sizes):
    for s in range(seed, seed + 1000):
        net = random_network(np.random.default_rng(s), sizes, kind="relu", scale=2.0)
        xs = np.linspace(LO, HI, 41)
        G = np.stack(np.meshgrid(*[xs] * sizes[0]), -1).reshape(-1, sizes[0])
        if np.unique(net.predict(G)).size >= 2:
            return net
    raise AssertionError("no interesting network")


def _doubled(net):
    layers = list(net.layers)
    layers[-1] = Affine(layers[-1].W * 2.0, layers[-1].b * 2.0)
    return Network(layers, name=f"{net.name}x2")


@pytest.fixture(scope="module")
def pair():
    net = _tiny(1, [2, 4, 3])
    X = np.random.default_rng(3).uniform(LO, HI, (3, 2))
    cmp = compare_models([("a", net, None), ("b", _doubled(net), None)], (LO, HI), 1.05, 1,
                         "l1", data=X)
    return net, X, cmp


def test_compare_invariants(pair):
    net, X, cmp = pair
    a, b = cmp["models"]
    assert [m["name"] for m in cmp["models"]] == ["a", "b"]
    assert cmp["parameters"]["samples"] == 3
    # same boundaries: the same minimum perturbation for every sample
    for ra, rb in zip(a["min_perturbation"], b["min_perturbation"], strict=True):
        assert ra["optimal"] and rb["optimal"]
        assert ra["label"] == rb["label"] == ra["predicted"]
        assert rb["upper"] == pytest.approx(ra["upper"], rel=1e-5, abs=1e-9)
        assert flip_count(net, np.asarray(ra["a_perturbed"]), ra["label"]) >= 1
    # doubled margins: ln alpha_max doubles
    checked = 0
    for qa, qb in zip(a["alpha_max"], b["alpha_max"], strict=True):
        if qa["optimal"] and qb["optimal"] and qa["upper"] > 1.0:
            assert math.log(qb["upper"]) == pytest.approx(2 * math.log(qa["upper"]), rel=1e-4)
            checked += 1
    assert checked >= 1
    # Xi is the minimum over the classes' Phi
    for m in (a, b):
        ups = [r["upper"] for r in m["phi"] if r["feasible"] and r["upper"] is not None]
        assert ups and m["xi"]["upper"] == min(ups)
        assert m["xi"]["lower"] <= m["xi"]["upper"]
        assert m["summary"]["samples"] == 3 and m["summary"]["optimal"] == 3


def test_compare_json_is_strict(pair):
    def no_constants(tok):
        raise AssertionError(f"non-strict token {tok}")

    d = json.loads(dumps(pair[2]), parse_constant=no_constants)
    assert d["schema"] == "nnresilience.compare" and d["schema_version"] == 1
    assert len(d["models"][0]["phi"]) == 3


def test_compare_refuses_mismatched_models_and_bad_samples():
    net = _tiny(1, [2, 4, 3])
    other = _tiny(3, [3, 5, 4])
    with pytest.raises(ShapeMismatchError, match="must share"):
        compare_models([("a", net, None), ("c", other, None)], (LO, HI))
    with pytest.raises(InputDataError, match="outside the domain"):
        compare_models([("a", net, None)], (LO, HI), data=np.array([[0.0, 3.0]]))
    with pytest.raises(InputDataError, match="labels"):
        compare_models([("a", net, None)], (LO, HI), labels=np.array([0]))


def test_compare_keeps_its_time_budget():
    from nnresilience.data import ctg_network, ctg_samples

    net = ctg_network()
    X = ctg_samples().x[:4]
    t0 = time.perf_counter()
    cmp = compare_models([("leaky", net, None), ("twice", _doubled(net), None)], (-1.0, 1.0),
                         2.0, 1, "linf", data=X, timeout=8.0)
    assert time.perf_counter() - t0 <= 8.0 + 1.0
    assert len(cmp["models"][1]["min_perturbation"]) == 4


def _onnx(net, path):
    from nnresilience.loaders.export import save_onnx

    return save_onnx(net, path)


def test_cli_compare(tmp_path, capsys):
    from nnresilience.cli import main

    net = _tiny(1, [2, 4, 3])
    a = _onnx(net, tmp_path / "a.onnx")
    b = _onnx(_doubled(net), tmp_path / "b.onnx")
    X = np.random.default_rng(3).uniform(LO, HI, (4, 2))
    np.savez(tmp_path / "s.npz", x=X, labels=net.predict(X))
    page, js = tmp_path / "cmp.html", tmp_path / "cmp.json"
    rc = main(["compare", str(a), str(b), "--domain", "-1:1", "--alpha", "1.05", "--data",
               str(tmp_path / "s.npz"), "--samples", "2", "--timeout", "8", "-o", str(page),
               "--json", str(js)])
    assert rc == 0
    d = json.loads(js.read_text())
    assert [m["name"] for m in d["models"]] == ["a", "b"]
    assert d["parameters"]["labels_from"] == "given" and d["parameters"]["samples"] == 2
    assert d["parameters"]["labels"] == net.predict(X[:2]).tolist()
    assert page.is_file() and "Resilience comparison" in page.read_text()
    assert "resilience comparison" in capsys.readouterr().out
    rc = main(["compare", str(a), str(b), "--domain", "-1:1", "--alpha", "1.05",
               "--no-alpha-max", "--json", "-"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["models"][0]["alpha_max"] == [] and d["models"][0]["min_perturbation"] == []


@pytest.mark.parametrize("extra,needle", [
    (["ONLYONE"], "at least two models"),
    (["OTHER"], "must share"),
    (["--labels", "LABELS"], "--labels needs --data"),
    (["--alpha", "0.2"], "alpha"),
    (["--data", "OUTSIDE"], "outside the domain"),
    (["--samples", "0", "--data", "SAMPLES"], "--samples"),
    (["--data", "MISSING"], "nope.npy: no such file"),
])
def test_cli_compare_bad_input(tmp_path, capsys, extra, needle):
    from nnresilience.cli import main

    net = _tiny(1, [2, 4, 3])
    a = _onnx(net, tmp_path / "a.onnx")
    b = _onnx(_doubled(net), tmp_path / "b.onnx")
    other = _onnx(_tiny(3, [3, 5, 4]), tmp_path / "o.onnx")
    np.save(tmp_path / "out.npy", np.array([[0.0, 5.0]]))
    np.save(tmp_path / "in.npy", np.array([[0.0, 0.5]]))
    np.save(tmp_path / "lab.npy", np.array([0]))
    models = [str(a), str(b)]
    if "ONLYONE" in extra:
        models, extra = [str(a)], []
    if "OTHER" in extra:
        models, extra = [str(a), str(other)], []
    sub = {"LABELS": str(tmp_path / "lab.npy"), "OUTSIDE": str(tmp_path / "out.npy"),
           "SAMPLES": str(tmp_path / "in.npy"), "MISSING": str(tmp_path / "nope.npy")}
    extra = [sub.get(x, x) for x in extra]
    page = tmp_path / "p.html"
    rc = main(["compare", *models, "--domain", "-1:1", *extra, "-o", str(page)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert not page.exists()


def test_compare_page_renders_in_chromium(pair, tmp_path):
    from nnresilience.contract import strict_json
    from nnresilience.report_compare import write_compare_page
    from nnresilience.testing.browser import chromium, render

    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI")
        pytest.skip("chromium not installed")
    page = write_compare_page(strict_json(pair[2]), tmp_path / "cmp.html")
    r = render(page, tmp_path / "chrome")
    assert r.images_expected == 3          # Φ_m, α_max, distribution
    assert r.images_loaded == 3
    assert r.scroll_width is not None and r.scroll_width <= 1400
    assert 'id="samples"' in r.dom and 'id="summary"' in r.dom
    assert r.screenshot[..., :3].std() > 0.05
