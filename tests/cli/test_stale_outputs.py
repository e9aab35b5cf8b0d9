"""No stale file can be mistaken for an answer: one test per case.

Each test first plants an output file from an "earlier run", then runs the command and
checks what is left: this run's answer, an explicit ``error``/``timeout`` word, or
nothing -- never the old content. Output files are staged as hidden temp files and
renamed at the end, so no ``.*.tmp`` is ever left behind either.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnresilience.cli import main

OLD = "this file is from an earlier run\n"


@pytest.fixture
def tiny(tmp_path) -> dict[str, Path]:
    """y0 = relu(x0 + x1) - relu(x0 - x1) on [-1, 1]^2 (max 2): reach / far properties."""
    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Affine, Network, ReLU

    net = Network([Affine(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2)), ReLU(2),
                   Affine(np.array([[1.0, -1.0], [0.0, 0.0]]), np.array([0.0, 0.5]))])
    f = {"model": save_onnx(net, tmp_path / "tiny.onnx")}
    for name, bound in (("reach", 1.5), ("far", 2.5), ("open", 1.999999)):
        lines = ["(declare-const X_0 Real)", "(declare-const X_1 Real)",
                 "(declare-const Y_0 Real)", "(declare-const Y_1 Real)",
                 "(assert (>= X_0 -1.0))", "(assert (<= X_0 1.0))",
                 "(assert (>= X_1 -1.0))", "(assert (<= X_1 1.0))",
                 f"(assert (>= Y_0 {bound}))"]
        f[name] = tmp_path / f"{name}.vnnlib"
        f[name].write_text("\n".join(lines) + "\n")
    return f


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*.tmp")], "temp files left behind"


def _stale(path: Path) -> Path:
    path.write_text(OLD)
    return path


def test_counterexample_removed_when_property_holds(tiny, tmp_path):
    cex = _stale(tmp_path / "cex.json")
    assert main(["verify", str(tiny["model"]), str(tiny["far"]), "--counterexample",
                 str(cex)]) == 0
    assert not cex.exists()
    _no_temp_files(tmp_path)


def test_counterexample_removed_when_unknown(slow_query, tmp_path):
    model, prop = slow_query
    cex = _stale(tmp_path / "cex.json")
    js = tmp_path / "r.json"
    # no complete engine: bounds and the falsifier give up quickly -> unknown
    assert main(["verify", str(model), str(prop), "--engine", "none", "--falsify-budget",
                 "0.2", "--counterexample", str(cex), "--json", str(js)]) == 0
    assert json.loads(js.read_text())["status"] == "unknown"
    assert not cex.exists()


def test_counterexample_replaced_when_violated(tiny, tmp_path):
    cex = _stale(tmp_path / "cex.json")
    assert main(["verify", str(tiny["model"]), str(tiny["reach"]), "--counterexample",
                 str(cex)]) == 0
    ce = json.loads(cex.read_text())
    assert ce["status"] == "violated" and ce["vnncomp"].startswith("sat\n")
    _no_temp_files(tmp_path)


def test_vnncomp_result_is_error_on_bad_input(tiny, tmp_path):
    result = _stale(tmp_path / "result.txt")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x01garbage")
    assert main(["vnncomp", str(broken), str(tiny["far"]), str(result), "10"]) == 2
    assert result.read_text() == "error\n"


def test_vnncomp_result_is_replaced_by_this_answer(tiny, tmp_path):
    result = _stale(tmp_path / "result.txt")
    assert main(["vnncomp", str(tiny["model"]), str(tiny["far"]), str(result), "10"]) == 0
    assert result.read_text() == "unsat\n"
    _no_temp_files(tmp_path)


def test_vnncomp_internal_error_writes_error(tiny, tmp_path, monkeypatch):
    """A crash inside the worker (simulated: verify raises) is exit 3 and 'error'."""
    import nnresilience.verify as verify_mod

    def boom(*a, **k):
        raise RuntimeError("simulated solver crash")

    monkeypatch.setattr(verify_mod, "verify", boom)     # the forked worker inherits it
    result = _stale(tmp_path / "result.txt")
    assert main(["vnncomp", str(tiny["model"]), str(tiny["far"]), str(result), "10"]) == 3
    assert result.read_text() == "error\n"


def test_verify_outputs_removed_after_internal_error(tiny, tmp_path, monkeypatch, capsys):
    import nnresilience.verify as verify_mod

    def boom(*a, **k):
        raise RuntimeError("simulated solver crash")

    monkeypatch.setattr(verify_mod, "verify", boom)
    js, cex = _stale(tmp_path / "r.json"), _stale(tmp_path / "cex.json")
    assert main(["verify", str(tiny["model"]), str(tiny["reach"]), "--json", str(js),
                 "--counterexample", str(cex)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: internal error: RuntimeError: simulated solver crash"]
    assert not js.exists() and not cex.exists()
    _no_temp_files(tmp_path)


def test_vnncomp_result_removed_on_ctrl_c(slow_query, tmp_path, members):
    model, prop = slow_query
    result = _stale(tmp_path / "result.txt")
    proc = subprocess.Popen([sys.executable, "-m", "nnresilience", "vnncomp", str(model),
                             str(prop), str(result), "60"], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 60
        while len(members(proc.pid)) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert not result.exists()
    _no_temp_files(tmp_path)


def test_bad_input_leaves_outputs_untouched(tiny, tmp_path):
    """An input error found before the work starts touches no output file (only vnncomp
    writes its explicit 'error')."""
    js = _stale(tmp_path / "r.json")
    report = _stale(tmp_path / "report.html")
    assert main(["verify", str(tiny["model"]), str(tiny["far"]), "--timeout", "-1",
                 "--json", str(js)]) == 2
    assert main(["report", str(tmp_path / "none.sqlite"), "-o", str(report)]) == 2
    assert js.read_text() == OLD and report.read_text() == OLD


def test_export_drops_counterexamples_of_answers_no_longer_violated(tiny, tmp_path):
    from nnresilience.results import Counterexample, Status, VerificationResult
    from nnresilience.store import CampaignStore

    store = tmp_path / "s.sqlite"
    with CampaignStore(store) as st:
        st.put(("n", "p1", "a"), "verify", VerificationResult(
            Status.VIOLATED, Counterexample.from_arrays([1.0, 1.0], [2.0, 0.5])),
            {"network_name": "tiny", "network_path": str(tiny["model"]),
             "property_name": "reach", "property_path": str(tiny["reach"]),
             "params": {"timeout": 10}})
    out = tmp_path / "export" / "results.csv"
    cex_dir = tmp_path / "export" / "results_counterexamples"
    cex_dir.mkdir(parents=True)
    old = _stale(cex_dir / "old_instance.counterexample")
    assert main(["campaign", "export", str(store), "-o", str(out)]) == 0
    category, onnx, vnnlib, word, _runtime = out.read_text().strip().split(",")
    assert (category, onnx, vnnlib, word) == (tmp_path.name, str(tiny["model"]),
                                              str(tiny["reach"]), "sat")
    assert [p.name for p in cex_dir.iterdir()] == ["tiny_reach.counterexample"]
    assert not old.exists()
    _no_temp_files(tmp_path)


def test_contract_outputs_removed_after_internal_error(tiny, tmp_path, monkeypatch, capsys):
    """A crash in the worker (simulated: make_contract raises) is exit 3 and leaves none of
    the contract, page and witness files of an earlier run."""
    import nnresilience.contract as contract_mod

    def boom(*a, **k):
        raise RuntimeError("simulated solver crash")

    monkeypatch.setattr(contract_mod, "make_contract", boom)
    out, page = _stale(tmp_path / "c.json"), _stale(tmp_path / "c.html")
    npz = _stale(tmp_path / "w.npz")
    assert main(["contract", str(tiny["model"]), "--alpha", "1.5", "--domain", "-1:1",
                 "-o", str(out), "--html", str(page), "--witnesses", str(npz)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: internal error: RuntimeError: simulated solver crash"]
    assert not out.exists() and not page.exists() and not npz.exists()
    _no_temp_files(tmp_path)


def test_contract_check_replaces_old_report_and_page(tiny, tmp_path):
    """A check rewrites --json and --html with this run's verdict (never the old text)."""
    out = tmp_path / "c.json"
    assert main(["contract", str(tiny["model"]), "--alpha", "1.5", "--domain", "-1:1",
                 "-o", str(out)]) == 0
    js, page = _stale(tmp_path / "chk.json"), _stale(tmp_path / "chk.html")
    rc = main(["contract", "check", str(tiny["model"]), str(out), "--json", str(js),
               "--html", str(page)])
    report = json.loads(js.read_text())
    assert report["command"] == "contract check"
    assert rc == {"holds": 0, "fails": 1, "unknown": 4}[report["verdict"]]
    assert report["summary"]["fails"] == 0            # the same model never fails
    assert "Sensor contract check" in page.read_text()
    _no_temp_files(tmp_path)
