"""``contract``, ``contract check`` and ``compare`` killed at their deadline keep what
finished.

A solver that ignores its time limit is simulated: ``phi_many`` hangs for one class (or
for the second model); the forked worker inherits the patch. The command must still end
by T + max(1 s, 5 % of T), write this run's answer assembled from the pieces the worker
handed over (finished classes or models kept, the rest marked ``stopped at the
deadline``), and leave no page from an earlier run (the page is drawn after the
computation, so a killed run has none).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from nnresilience.cli import main

pytestmark = pytest.mark.slow

T = 4.0
PROMISE = T + max(1.0, 0.05 * T)
OLD_PAGE = "<html>an earlier run</html>"


@pytest.fixture
def models(tmp_path):
    """Two 2-input, 3-class nets over [-1, 1]^2 (the second: logits doubled)."""
    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Affine, Network, ReLU

    W1 = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.5]])
    W2 = np.array([[1.0, 0.5, -1.0], [0.0, 1.0, 1.0], [0.5, -0.5, 0.2]])
    a = Network([Affine(W1, np.zeros(3)), ReLU(3), Affine(W2, np.zeros(3))])
    b = Network([Affine(W1, np.zeros(3)), ReLU(3), Affine(2 * W2, np.zeros(3))])
    return save_onnx(a, tmp_path / "a.onnx"), save_onnx(b, tmp_path / "b.onnx")


def _hang_when(monkeypatch, stuck) -> None:
    """``phi_many`` never returns when ``stuck(network, classes)`` says so."""
    import nnresilience.resilience as res

    real = res.phi_many

    def phi_many(network, classes, *a, **kw):
        if stuck(network, list(classes)):
            time.sleep(600)
        return real(network, classes, *a, **kw)

    monkeypatch.setattr(res, "phi_many", phi_many)


def _no_time_for_the_page(monkeypatch, module: str) -> None:
    """All of T goes to the computation (no warm-up, no time kept for the page), so the
    hang is reached however busy the machine is."""
    import importlib

    import nnresilience.report_page as report_page

    monkeypatch.setattr(importlib.import_module(f"nnresilience.cli.{module}"),
                        "PAGE_RESERVE", 0.0)
    monkeypatch.setattr(report_page, "warm_up", lambda: None)


def _run(argv) -> tuple[int, float]:
    t0 = time.monotonic()
    rc = main([str(a) for a in argv])
    return rc, time.monotonic() - t0


def test_contract_keeps_finished_classes_and_drops_the_old_page(models, tmp_path,
                                                                monkeypatch, capsys):
    _no_time_for_the_page(monkeypatch, "contract")
    _hang_when(monkeypatch, lambda net, classes: classes == [1])
    out, page = tmp_path / "c.json", tmp_path / "c.html"
    page.write_text(OLD_PAGE)
    rc, took = _run(["contract", models[0], "--alpha", "1.05", "--domain", "-1:1",
                     "--timeout", T, "-o", out, "--html", page])
    assert rc == 0 and took <= PROMISE, (rc, took)
    c = json.loads(out.read_text())
    assert c["command"] == "contract" and c["run"]["killed"] is True
    by_class = {cl["class"]: cl for cl in c["clauses"]}
    assert by_class[0]["status"] != "unknown"            # finished before the hang: kept
    for m in (1, 2):                                     # hung / never reached
        assert by_class[m]["message"] == "stopped at the deadline"
        assert by_class[m]["tolerance"] == 0.0 and by_class[m]["witness"] is None
    assert c["network"]["tolerance"] == 0.0
    assert not page.exists()
    assert "TIMED OUT" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


def test_check_of_a_killed_run_is_unknown_exit_4(models, tmp_path, monkeypatch, capsys):
    from nnresilience.contract import make_contract, write_json
    from nnresilience.loaders import load_network

    c = make_contract(load_network(models[0]), 1.05, 1, "l1", (-1.0, 1.0),
                      model_path=models[0])
    contract = write_json(c, tmp_path / "c.json")
    assert any(cl["tolerance"] > 0 for cl in c["clauses"])
    _hang_when(monkeypatch, lambda net, classes: classes == [1])
    js = tmp_path / "chk.json"
    rc, took = _run(["contract", "check", models[0], contract, "--timeout", T,
                     "--json", js])
    assert rc == 4 and took <= PROMISE, (rc, took)
    r = json.loads(js.read_text())
    assert r["command"] == "contract check" and r["run"]["killed"] is True
    assert r["verdict"] == "unknown" and r["summary"]["fails"] == 0
    v = {cl["class"]: cl for cl in r["clauses"]}
    assert v[1]["verdict"] == "unknown" and "stopped at the deadline" in v[1]["reason"]
    assert v[0]["verdict"] == "holds"                 # the same model, proven again


def test_compare_keeps_the_finished_model(models, tmp_path, monkeypatch, capsys):
    _no_time_for_the_page(monkeypatch, "compare")
    seen: list[str] = []

    def second_model(net, classes):
        h = net.content_hash()
        if h not in seen:
            seen.append(h)
        return seen.index(h) == 1

    _hang_when(monkeypatch, second_model)
    js, page = tmp_path / "cmp.json", tmp_path / "cmp.html"
    page.write_text(OLD_PAGE)
    rc, took = _run(["compare", *models, "--domain", "-1:1", "--alpha", "1.05",
                     "--no-alpha-max", "--timeout", T, "--json", js, "-o", page])
    assert rc == 0 and took <= PROMISE, (rc, took)
    d = json.loads(js.read_text())
    assert d["command"] == "compare" and d["killed"] is True
    a, b = d["models"]
    assert [r["class"] for r in a["phi"]] == [0, 1, 2] and "message" not in a
    assert b["message"] == "stopped at the deadline" and b["phi"] == []
    assert b["xi"]["lower"] is None and b["xi"]["upper"] is None
    assert not page.exists()
