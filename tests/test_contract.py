"""Sensor contracts: per-input scale against the direct definition, clauses that hold and
fail on modified models, the JSON schema, the CLI (exit codes, bad input) and the page.

References that do not use the rescaled network: on 1-D inputs Φ is the distance between
the premise set P = {a: y_m - y_j >= ln α ∀ j != m} and the flip set F = {b: some
y_j >= y_m}, unions of intervals found on a grid with every crossing bisected, so the
scaled value is that distance divided by s; on 2-D inputs the direct definition
min_{a in P, b in F} Σ |b_i - a_i| / s_i (or max_i) is evaluated on grid points of P and F
(a nearest-neighbour search with the weighted metric) — grid points are real members, so
the grid value bounds Φ_s from above and is within a few weighted cells of it.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy.spatial import cKDTree

from nnresilience.contract import (
    SCHEMA,
    check_contract,
    class_phis,
    dumps,
    exact_pair,
    flip_count,
    json_number,
    load_contract,
    make_contract,
    premise_margin,
    scaled_network,
    weighted_norm,
    write_json,
)
from nnresilience.errors import InputDataError, InvalidArgumentError, ShapeMismatchError
from nnresilience.network import Network
from nnresilience.network.layers import Affine
from nnresilience.testing.phi_reference import (
    flip_slacks,
    intervals_1d,
    premise_margins,
    tiny_network,
)

LO, HI = -1.0, 1.0


def _tiny(seed, sizes):
    return tiny_network(seed, sizes, LO, HI)


def _margin(net, X, m):
    return premise_margins(net, X, m)


def _flip(net, X, m):
    return flip_slacks(net, X, m, 1)


def _intervals_1d(fn, n=4001):
    return intervals_1d(fn, LO, HI, n)


def _check_pair(net, c, m, alpha, k, norm, scale):
    """The witness replays exactly in the *original* net and its weighted norm is upper."""
    a, b = c["a"], c["b"]
    assert np.all(a >= LO) and np.all(a <= HI) and np.all(b >= LO) and np.all(b <= HI)
    assert premise_margin(net, a, m) >= math.log(alpha)
    assert flip_count(net, b, m) >= k
    assert weighted_norm(b - a, norm, scale) == pytest.approx(c["upper"], abs=1e-12)


# ------------------------------------------------------------------ per-input scale
def test_scaled_network_is_the_network_on_rescaled_inputs():
    net = _tiny(3, [3, 5, 4])
    s = np.array([0.25, 1.0, 3.0])
    U = np.random.default_rng(0).uniform(-2, 2, (50, 3))
    scaled = scaled_network(net, s)
    assert np.allclose(scaled.forward(U), net.forward(U * s), rtol=0, atol=1e-12)
    assert np.allclose(scaled.merged().forward(U), net.forward(U * s), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("s", [0.25, 4.0])
def test_scale_1d_is_the_direct_definition(seed, s):
    net = _tiny(seed, [1, 4, 3])
    alpha = 1.1
    checked = 0
    for m in range(3):
        P = _intervals_1d(lambda X, m=m: _margin(net, X, m) - math.log(alpha))
        F = _intervals_1d(lambda X, m=m: _flip(net, X, m))
        c = class_phis(net, [m], alpha, 1, "l1", np.full(1, LO), np.full(1, HI),
                       scale=np.array([s]))[0]
        if not P:
            assert not c["feasible"]
            continue
        if not F:
            assert c["lower"] == math.inf
            continue
        direct = min(max(0.0, b0 - a1, a0 - b1) for a0, a1 in P for b0, b1 in F) / s
        assert c["optimal"]
        assert c["lower"] <= c["upper"]
        assert c["upper"] == pytest.approx(direct, abs=1e-6 / s)
        _check_pair(net, c, m, alpha, 1, "l1", np.array([s]))
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("seed,norm", [(1, "l1"), (2, "linf"), (4, "l1")])
def test_scale_2d_matches_the_direct_definition_on_a_grid(seed, norm):
    net = _tiny(seed, [2, 4, 3])
    scale = np.array([0.5, 2.0])
    alpha, n = 1.05, 321
    xs = np.linspace(LO, HI, n)
    h = xs[1] - xs[0]
    G = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    checked = 0
    for m in range(3):
        P = G[_margin(net, G, m) >= math.log(alpha)]
        F = G[_flip(net, G, m) >= 0]
        c = class_phis(net, [m], alpha, 1, norm, np.full(2, LO), np.full(2, HI),
                       scale=scale)[0]
        if len(P) == 0 or len(F) == 0:
            assert (not c["feasible"]) or c["lower"] == math.inf
            continue
        # the direct definition on grid pairs: min over a in P, b in F of ||(b - a) / s||
        dist, _ = cKDTree(F / scale).query(P / scale, p=1 if norm == "l1" else np.inf)
        ref = float(dist.min())
        cell = float(np.sum(h / scale)) if norm == "l1" else float(np.max(h / scale))
        assert c["optimal"]
        assert c["upper"] <= ref + 1e-9
        assert c["upper"] >= ref - 2 * cell
        _check_pair(net, c, m, alpha, 1, norm, scale)
        checked += 1
    assert checked >= 1


def test_uniform_scale_divides_phi():
    net = _tiny(1, [2, 4, 3])
    lo, hi = np.full(2, LO), np.full(2, HI)
    plain = class_phis(net, [0, 1, 2], 1.05, 1, "l1", lo, hi)
    scaled = class_phis(net, [0, 1, 2], 1.05, 1, "l1", lo, hi, scale=np.full(2, 4.0))
    for p, q in zip(plain, scaled, strict=True):
        assert p["feasible"] == q["feasible"]
        if p["optimal"] and q["optimal"] and p["upper"] is not None:
            assert q["upper"] == pytest.approx(p["upper"] / 4.0, rel=1e-5)


def test_exact_pair_repairs_a_boundary_point_and_refuses_a_wrong_one():
    # y0 = x, y1 = -x: class 0 wins for x > 0; the flip set of class 0 is x <= 0.
    net = Network([Affine(np.array([[1.0], [-1.0]]), np.zeros(2))])
    lo, hi = np.array([-1.0]), np.array([1.0])
    la = math.log(1.5)                             # premise: 2x >= ln 1.5
    a, b = np.array([la / 2]), np.array([1e-17])    # b a hair on the wrong side
    pair = exact_pair(net, a, b, 0, la, 1, lo, hi)
    assert pair is not None
    assert flip_count(net, pair[1], 0) >= 1 and premise_margin(net, pair[0], 0) >= la
    assert abs(pair[1][0]) < 1e-6
    assert exact_pair(net, np.array([0.9]), np.array([0.5]), 0, la, 1, lo, hi) is None


# ------------------------------------------------------------------------ contracts
def _scaled_last(net, f):
    layers = list(net.layers)
    layers[-1] = Affine(layers[-1].W * f, layers[-1].b * f)
    return Network(layers)


@pytest.fixture(scope="module")
def tiny_contract():
    net = _tiny(1, [2, 4, 3])
    return net, make_contract(net, 1.05, 1, "l1", (LO, HI), scale=[0.5, 2.0])


def test_contract_schema_and_strict_json(tiny_contract, tmp_path):
    net, c = tiny_contract
    assert c["schema"] == SCHEMA and c["schema_version"] == 1
    assert c["model"]["content_hash"] == net.content_hash()
    assert c["assumption"]["per_input_scale"] == [0.5, 2.0]
    assert [cl["class"] for cl in c["clauses"]] == [0, 1, 2]
    statuses = {cl["status"] for cl in c["clauses"]}
    assert "optimal" in statuses
    for cl in c["clauses"]:
        tol = cl["tolerance"]
        if cl["status"] == "vacuous":
            assert tol == math.inf
        elif cl["phi"]["lower"] is not None and math.isfinite(cl["phi"]["lower"]):
            assert tol == pytest.approx(cl["phi"]["lower"] * (1 - c["margin"]))
            assert tol < cl["phi"]["lower"] <= cl["phi"]["upper"]
            w = cl["witness"]
            a, b = np.asarray(w["a"]), np.asarray(w["a_perturbed"])
            assert premise_margin(net, a, cl["class"]) >= math.log(1.05)
            assert flip_count(net, b, cl["class"]) >= 1
            assert w["epsilon_norm"] == pytest.approx(cl["phi"]["upper"], abs=1e-12)
            assert w["perturbed_label"] != cl["class"] or flip_count(net, b, cl["class"]) > 0
    assert c["network"]["tolerance"] == min(cl["tolerance"] for cl in c["clauses"])
    path = write_json(c, tmp_path / "c.json")

    def no_constants(tok):
        raise AssertionError(f"non-strict JSON token {tok}")

    raw = json.loads(path.read_text(), parse_constant=no_constants)
    assert raw == json.loads(dumps(c))
    back = load_contract(path)
    assert json_number(back["network"]["tolerance"]) == c["network"]["tolerance"]


def test_check_same_model_never_fails_and_sharper_model_fails(tiny_contract):
    net, c = tiny_contract
    same = check_contract(net, c)
    assert not same["model_changed"]
    assert same["summary"]["fails"] == 0          # soundness: the same model cannot fail
    assert same["verdict"] == "holds"             # tiny net: every Φ is solved exactly
    # doubling the logits halves every Φ_m (margins double): the finite clauses fail
    sharp = check_contract(_scaled_last(net, 2.0), c)
    assert sharp["model_changed"] and sharp["verdict"] == "fails"
    finite = [cl for cl in c["clauses"] if math.isfinite(cl["tolerance"])]
    failed = [cl for cl in sharp["clauses"] if cl["verdict"] == "fails"]
    assert {cl["class"] for cl in failed} == {cl["class"] for cl in finite}
    sharp_net = _scaled_last(net, 2.0)
    for cl in failed:
        w = cl["witness"]
        a, b = np.asarray(w["a"]), np.asarray(w["a_perturbed"])
        assert premise_margin(sharp_net, a, cl["class"]) >= math.log(1.05)
        assert flip_count(sharp_net, b, cl["class"]) >= 1
        assert weighted_norm(b - a, "l1", np.array([0.5, 2.0])) < cl["tolerance"]
    assert sharp["network"]["verdict"] == "fails"
    # halving the logits doubles Φ: everything still holds, proven
    soft = check_contract(_scaled_last(net, 0.5), c)
    assert soft["verdict"] == "holds" and soft["summary"]["holds"] == 3


def test_vacuous_clause_fails_once_the_class_becomes_confident():
    # y0 = x, y1 = -x, y2 = -0.5 + 0*x: class 2 never wins on [-1, 1] at alpha = 1.2 ...
    net = Network([Affine(np.array([[1.0], [-1.0], [0.0]]), np.array([0.0, 0.0, -2.0]))])
    c = make_contract(net, 1.2, 1, "l1", (LO, HI))
    cl2 = c["clauses"][2]
    assert cl2["status"] == "vacuous" and cl2["tolerance"] == math.inf
    # ... and after "retraining" it does, near x = 0: its clause breaks
    net2 = Network([Affine(np.array([[1.0], [-1.0], [0.0]]), np.array([0.0, 0.0, 0.5]))])
    chk = check_contract(net2, c)
    v = {cl["class"]: cl for cl in chk["clauses"]}
    assert v[2]["verdict"] == "fails"
    assert flip_count(net2, np.asarray(v[2]["witness"]["a_perturbed"]), 2) >= 1


def test_contract_validation_errors(tmp_path, tiny_contract):
    net, c = tiny_contract
    # alpha / k / norm / margin go through nnresilience.validate, as on the command line
    with pytest.raises(InvalidArgumentError, match="alpha must be >= 1"):
        make_contract(net, 0.5, 1, "l1", (LO, HI))
    with pytest.raises(InvalidArgumentError, match="norm must be one of l1, linf"):
        make_contract(net, 1.5, 1, "l3", (LO, HI))
    with pytest.raises(InvalidArgumentError, match="k must be in 1..2"):
        make_contract(net, 1.5, 3, "l1", (LO, HI))
    with pytest.raises(InvalidArgumentError, match=r"margin must be in \[0, 1\)"):
        make_contract(net, 1.5, 1, "l1", (LO, HI), margin=1.0)
    with pytest.raises(InvalidArgumentError, match="domain box D: empty"):
        make_contract(net, 1.5, 1, "l1", (HI, LO))
    with pytest.raises(InputDataError, match="scale of input 1"):
        make_contract(net, 1.5, 1, "l1", (LO, HI), scale=[1.0, -2.0])
    with pytest.raises(ShapeMismatchError):
        make_contract(net, 1.5, 1, "l1", (LO, HI), scale=[1.0, 2.0, 3.0])
    with pytest.raises(ShapeMismatchError):
        check_contract(_tiny(3, [3, 5, 4]), c)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(dumps(c)), "schema_version": 99}))
    with pytest.raises(InputDataError, match="schema version 99"):
        load_contract(bad)
    bad.write_text("{not json")
    with pytest.raises(InputDataError, match="not a JSON contract"):
        load_contract(bad)


def test_contract_keeps_its_time_budget():
    from nnresilience.data import ctg_network

    net = ctg_network()
    t0 = time.perf_counter()
    c = make_contract(net, 2.0, 1, "linf", (-1.0, 1.0), timeout=4.0)
    wall = time.perf_counter() - t0
    assert wall <= 4.0 + 1.0
    assert all(cl["tolerance"] >= 0.0 for cl in c["clauses"])


# ------------------------------------------------------------------------------- CLI
def _onnx(net, path):
    from nnresilience.loaders.export import save_onnx

    return save_onnx(net, path)


def test_cli_contract_and_check(tmp_path, capsys):
    from nnresilience.cli import main

    net = _tiny(1, [2, 4, 3])
    model = _onnx(net, tmp_path / "tiny.onnx")
    sharp = _onnx(_scaled_last(net, 2.0), tmp_path / "sharp.onnx")
    np.save(tmp_path / "scale.npy", np.array([0.5, 2.0]))
    out, page, wit = tmp_path / "c.json", tmp_path / "c.html", tmp_path / "w.npz"
    rc = main(["contract", str(model), "--alpha", "1.05", "--domain", "-1:1",
               "--per-input-scale", str(tmp_path / "scale.npy"), "-o", str(out),
               "--html", str(page), "--witnesses", str(wit)])
    assert rc == 0
    c = load_contract(out)
    assert c["assumption"]["scale_source"].endswith("scale.npy")
    assert c["model"]["file_sha256"] and c["model"]["path"].endswith("tiny.onnx")
    with np.load(wit, allow_pickle=False) as z:
        n_wit = sum(1 for cl in c["clauses"] if cl["witness"])
        assert z["a"].shape == (n_wit, 2) and z["epsilon"].shape == (n_wit,)
    assert "sensor contract" in capsys.readouterr().out
    assert main(["contract", "check", str(model), str(out)]) == 0
    assert main(["contract", "check", str(sharp), str(out), "--json",
                 str(tmp_path / "chk.json"), "--html", str(tmp_path / "chk.html")]) == 1
    chk = json.loads((tmp_path / "chk.json").read_text())
    assert chk["verdict"] == "fails" and chk["model_changed"]
    capsys.readouterr()
    assert main(["contract", "check", str(model), str(out), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "holds"


@pytest.mark.parametrize("args,needle", [
    (["--alpha", "0.5", "--domain", "-1:1"], "alpha"),
    (["--alpha", "1.5", "--domain", "-1:1", "--norm", "l7"], "norm"),
    (["--alpha", "1.5", "--domain", "-1:1", "--k", "5"], "k must be"),
    (["--alpha", "1.5"], "domain"),
    (["--alpha", "1.5", "--domain", "1:-1"], "--domain"),
    (["--alpha", "1.5", "--domain", "-1:1", "--timeout", "-3"], "--timeout"),
    (["--alpha", "1.5", "--domain", "-1:1", "--workers", "0"], "--workers"),
    (["--alpha", "1.5", "--domain", "-1:1", "--per-input-scale", "BADSCALE"], "scale"),
    (["--alpha", "1.5", "--domain", "-1:1", "--per-input-scale", "SHORTSCALE"], "3 values"),
    (["--alpha", "1.5", "--domain", "-1:1", "--margin", "1.5"], "margin"),
])
def test_cli_contract_bad_input(tmp_path, capsys, args, needle):
    from nnresilience.cli import main

    model = _onnx(_tiny(1, [2, 4, 3]), tmp_path / "tiny.onnx")
    np.save(tmp_path / "bad.npy", np.array([1.0, 0.0]))
    np.save(tmp_path / "short.npy", np.array([1.0, 1.0, 1.0]))
    args = [str(tmp_path / "bad.npy") if a == "BADSCALE" else
            str(tmp_path / "short.npy") if a == "SHORTSCALE" else a for a in args]
    out = tmp_path / "c.json"
    rc = main(["contract", str(model), *args, "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert not out.exists()


def test_cli_check_bad_contract_and_mismatched_model(tmp_path, capsys, tiny_contract):
    from nnresilience.cli import main

    net, c = tiny_contract
    other = _onnx(_tiny(3, [3, 5, 4]), tmp_path / "other.onnx")
    good = write_json(c, tmp_path / "c.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something-else"}))
    for contract, needle in ((bad, "not an nnresilience contract"),
                             (good, "2 inputs and 3 outputs"),
                             (tmp_path / "missing.json", "no such")):
        rc = main(["contract", "check", str(other), str(contract), "--json",
                   str(tmp_path / "r.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "r.json").exists()


def test_contract_pages_render_in_chromium(tmp_path, tiny_contract):
    from nnresilience.report_contract import write_contract_page
    from nnresilience.testing.browser import chromium, render

    if chromium() is None:
        if __import__("os").environ.get("CI"):
            pytest.fail("chromium is required in CI")
        pytest.skip("chromium not installed")
    net, c = tiny_contract
    c = json.loads(dumps(c))
    chk = json.loads(dumps(check_contract(_scaled_last(net, 2.0), c)))
    for name, page in (("contract", write_contract_page(c, tmp_path / "c.html")),
                       ("check", write_contract_page(c, tmp_path / "k.html", check=chk))):
        r = render(page, tmp_path / name)
        n_wit = sum(1 for cl in c["clauses"] if cl["witness"])
        n_fail = sum(1 for cl in chk["clauses"] if cl["witness"]) if name == "check" else 0
        assert r.images_expected == 1 + n_wit + n_fail
        assert r.images_loaded == r.images_expected
        assert r.scroll_width is not None and r.scroll_width <= 1400
        assert "tolerance" in r.dom and ('id="verdicts"' in r.dom) == (name == "check")
        assert r.screenshot[..., :3].std() > 0.05


def test_zero_tolerance_promises_nothing_and_holds_without_a_solve(tiny_contract):
    net, c = tiny_contract
    c0 = json.loads(dumps(c))
    for cl in c0["clauses"]:
        cl["tolerance"] = 0.0
    c0["network"]["tolerance"] = 0.0
    chk = check_contract(_scaled_last(net, 2.0), c0)
    assert chk["verdict"] == "holds" and chk["network"]["verdict"] == "holds"
    assert all(cl["proof"] is None and cl["phi"] is None for cl in chk["clauses"])
    # the network clause still needs every class when it promises something
    c0["network"]["tolerance"] = c["network"]["tolerance"]
    chk = check_contract(_scaled_last(net, 2.0), c0)
    assert chk["network"]["verdict"] == "fails"
    assert all(cl["verdict"] == "holds" for cl in chk["clauses"])


def test_workers_spec_goes_to_the_executor(monkeypatch):
    """A scheduler address must reach phi_many (one call, all classes), never run here."""
    import nnresilience.resilience as res

    seen = []
    real = res.phi_many

    def spy(net, classes, *a, workers=None, **kw):
        seen.append((list(classes), workers, kw.get("timeout")))
        return real(net, classes, *a, workers=None, **kw)

    monkeypatch.setattr(res, "phi_many", spy)
    net = _tiny(1, [2, 4, 3])
    lo, hi = np.full(2, LO), np.full(2, HI)
    class_phis(net, [0, 1, 2], 1.05, 1, "l1", lo, hi, workers="tcp://127.0.0.1:1",
               timeout=30.0)
    assert seen == [([0, 1, 2], "tcp://127.0.0.1:1", pytest.approx((30.0 - 0.3) / 3 - 1.0))]
    seen.clear()
    class_phis(net, [0, 1, 2], 1.05, 1, "l1", lo, hi, timeout=30.0)
    assert [s[0] for s in seen] == [[0], [1], [2]] and all(s[1] is None for s in seen)


def test_page_under_a_deadline_drops_witness_pictures_not_tables(tiny_contract):
    """A page drawn at the end of a command's time: past the deadline only the chart is
    drawn, the witness pictures are left out (and the page says how many); every table
    row is still there."""
    import re

    from nnresilience.report_contract import render_contract

    net, c = tiny_contract
    c = json.loads(dumps(c))
    n_wit = sum(1 for cl in c["clauses"] if cl["witness"])
    assert n_wit >= 1
    full = render_contract(c)
    late = render_contract(c, deadline=time.monotonic() - 1.0)

    def imgs(html):
        return int(re.search(r"data-images-expected='(\d+)'", html).group(1))

    assert imgs(full) == 1 + n_wit and full.count("<img") == imgs(full)
    assert imgs(late) == 1 and late.count("<img") == 1
    assert f"{n_wit} witness pair picture(s) not drawn" in late
    assert late.count("<tr>") == full.count("<tr>")
    assert render_contract(c, deadline=time.monotonic() + 600).count("<img") == 1 + n_wit
