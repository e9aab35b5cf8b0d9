"""Campaigns: parsing, skipping what is stored, per-unit errors, and surviving SIGKILL.

The crash test runs ``nnres campaign run`` in a subprocess on 12 units made slow by a
test-only task (``"task": "test_campaign:slow_task"`` in the config; the subprocess gets
this directory on PYTHONPATH), SIGKILLs it once the store holds at least 3 answers, checks
the file with ``PRAGMA integrity_check``, runs the campaign again and checks that every
answer stored before the kill is still there exactly once (same row, not recomputed) and
that all the others were completed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnresilience.campaign import (
    WorkUnit,
    load_campaign,
    run_campaign,
    run_unit,
    unit_key,
)
from nnresilience.errors import InputDataError
from nnresilience.parallel import InlineExecutor, ProcessExecutor
from nnresilience.progress import JsonlProgress
from nnresilience.results import Counterexample, Status, VerificationResult
from nnresilience.store import CampaignStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ------------------------------------------------------------------ test-only tasks
def slow_task(unit: WorkUnit):
    """Sleep (``NNRES_TEST_SLEEP`` s, default 0.5), then answer the unit for real."""
    time.sleep(float(os.environ.get("NNRES_TEST_SLEEP", "0.5")))
    return run_unit(unit)


def forward_task(unit: WorkUnit) -> VerificationResult:
    """A fast, deterministic stand-in for verify: evaluates a fixed linear map at the
    centre; 'violated' (with a replayable witness) when the top class differs from the
    label. Used where the real engines are not the point."""
    c = np.asarray(unit.params["center"], dtype=float)
    y = np.array([c.sum(), 1.5 - c.sum()])
    if int(np.argmax(y)) != int(unit.params["label"]):
        return VerificationResult(Status.VIOLATED, Counterexample.from_arrays(c, y),
                                  engine="forward", seconds=0.001)
    return VerificationResult(Status.HOLDS, engine="forward", seconds=0.001)


def failing_task(unit: WorkUnit):
    if unit.params.get("sample") == 1:
        raise ValueError("boom on sample 1")
    return forward_task(unit)


# ------------------------------------------------------------------------ fixtures
def _tiny_onnx(path: Path, seed: int = 3) -> Path:
    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Affine, Network, ReLU

    rng = np.random.default_rng(seed)
    net = Network([Affine(rng.standard_normal((6, 3)), rng.standard_normal(6) * 0.1), ReLU(6),
                   Affine(rng.standard_normal((2, 6)), rng.standard_normal(2) * 0.1)])
    return save_onnx(net, path)


@pytest.fixture
def tiny_campaign(tmp_path):
    """A JSON campaign of 4 samples × 3 δ = 12 robustness units on a tiny ONNX net."""
    _tiny_onnx(tmp_path / "tiny.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 3)))
    cfg = {"name": "tiny", "defaults": {"timeout": 30},
           "units": [{"kind": "robustness", "network": "tiny.onnx", "inputs": "x.npy",
                      "deltas": [0.01, 0.2, 1.0], "domain": [0.0, 1.0]}]}
    path = tmp_path / "camp.json"
    path.write_text(json.dumps(cfg))
    return path


# --------------------------------------------------------------------------- parsing
def test_load_json_campaign_expands_units(tiny_campaign):
    camp = load_campaign(tiny_campaign, {"engine": "milp"})
    assert camp.name == "tiny" and len(camp.units) == 12
    u = camp.units[0]
    assert u.kind == "robustness" and Path(u.network).is_absolute()
    assert u.params["timeout"] == 30 and u.params["engine"] == "milp"
    assert {(v.params["sample"], v.params["radius"]) for v in camp.units} == {
        (s, d) for s in range(4) for d in (0.01, 0.2, 1.0)}
    assert len(u.params["center"]) == 3 and u.params["label"] in (0, 1)
    assert len({unit_key(v) for v in camp.units}) == 12


def test_load_instances_csv(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "a.onnx").write_bytes(b"x")
    (tmp_path / "p.vnnlib").write_text("; p\n")
    csv = tmp_path / "instances.csv"
    csv.write_text("nets/a.onnx,p.vnnlib,116\nnets/a.onnx,p.vnnlib,\n")
    camp = load_campaign(csv, {"timeout": 7.0})
    assert [u.params["timeout"] for u in camp.units] == [116.0, 7.0]
    assert camp.units[0].network == str((tmp_path / "nets" / "a.onnx").resolve())
    assert camp.units[0].property == str((tmp_path / "p.vnnlib").resolve())
    csv.write_text("nets/a.onnx,p.vnnlib,soon\n")
    with pytest.raises(InputDataError, match="instances.csv:1"):
        load_campaign(csv)


@pytest.mark.parametrize("cfg, match", [
    ({"units": [{"kind": "robustnes", "network": "n.onnx"}]}, "kind"),
    ({"units": [{"kind": "phi", "network": "n.onnx", "clases": [1]}]}, "clases"),
    ({"units": []}, "non-empty"),
    ({"unit": []}, "unknown key"),
    ({"units": [{"kind": "verify", "network": "missing.onnx", "property": "p"}]},
     "does not exist"),
])
def test_config_errors_name_the_problem(tmp_path, cfg, match):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(InputDataError, match=match):
        load_campaign(path)


# --------------------------------------------------------------------------- running
def _units(n: int, tmp_path: Path) -> tuple[list[WorkUnit], Path]:
    """``n`` robustness units on a real tiny model (keys come from its content hash)."""
    model = _tiny_onnx(tmp_path / "units.onnx")
    return [WorkUnit("robustness", str(model), None,
                     {"sample": i, "center": [0.1 * i, 0.2, 0.3], "label": 0,
                      "radius": 0.1}, name=f"u{i}") for i in range(n)], model


def test_run_skips_stored_and_duplicates(tmp_path, monkeypatch):

    units, _ = _units(6, tmp_path)
    with CampaignStore(tmp_path / "s.sqlite") as st:
        s1 = run_campaign(units + units[:2], st, InlineExecutor(), task=forward_task)
        assert (s1.done, s1.skipped, s1.errors) == (6, 2, [])
        assert st.count() == 6
        assert s1.counts == {"holds": 3, "violated": 3}   # sum(center) > 0.75 keeps label 0
        calls = []
        s2 = run_campaign(units, st, InlineExecutor(),
                          task=lambda u: calls.append(u) or forward_task(u))
        assert (s2.done, s2.skipped) == (0, 6) and calls == []
        rec = st.all()[0]
        assert rec.status == "violated" and rec.params["center"] == [0.0, 0.2, 0.3]
        assert rec.result["counterexample"]["x"] == [0.0, 0.2, 0.3]


def test_failing_unit_is_reported_not_stored(tmp_path, monkeypatch):

    units, _ = _units(3, tmp_path)
    out = io.StringIO()
    with CampaignStore(tmp_path / "s.sqlite") as st:
        s = run_campaign(units, st, InlineExecutor(), progress=JsonlProgress(out),
                         task=failing_task)
        assert s.done == 2 and len(s.errors) == 1
        assert s.errors[0]["type"] == "ValueError" and "boom" in s.errors[0]["message"]
        assert st.count() == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(ev["event"] for ev in lines) == ["done", "done", "error"]
    assert {ev["name"] for ev in lines} == {"u0", "u1", "u2"}
    assert all("status" in ev for ev in lines if ev["event"] == "done")


def test_global_timeout_keeps_finished_answers(tmp_path, monkeypatch):

    monkeypatch.setenv("NNRES_TEST_SLEEP", "0.4")
    units, _ = _units(8, tmp_path)

    def sleepy(u):
        time.sleep(0.4)
        return forward_task(u)

    with CampaignStore(tmp_path / "s.sqlite") as st:
        s = run_campaign(units, st, InlineExecutor(), timeout=1.0, task=sleepy)
        assert s.timed_out and 1 <= s.done < 8 and st.count() == s.done
        s2 = run_campaign(units, st, InlineExecutor(), task=forward_task)
        assert s2.skipped == s.done and s2.done == 8 - s.done and st.count() == 8


def test_real_verify_campaign_inline_and_processes(tiny_campaign, tmp_path):
    camp = load_campaign(tiny_campaign)
    with CampaignStore(tmp_path / "a.sqlite") as a:
        sa = run_campaign(camp.units, a, InlineExecutor())
        ra = {r.key: r.status for r in a.all()}
    with CampaignStore(tmp_path / "b.sqlite") as b, ProcessExecutor(2) as ex:
        sb = run_campaign(camp.units, b, ex)
        rb = {r.key: r.status for r in b.all()}
    assert sa.errors == [] and sb.errors == []
    assert len(ra) == 12 and ra == rb
    assert set(ra.values()) <= {"holds", "violated", "unknown"}
    # δ = 1 covers the whole domain box: at least one sample must be violated there
    # for this network (fixed seed), and δ = 0.01 is robust everywhere it was proven.
    assert "violated" in ra.values()


# --------------------------------------------------------------------- crash safety
def _count(store: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _rows(store: Path) -> dict[tuple, tuple]:
    con = sqlite3.connect(store)
    try:
        dup = con.execute("SELECT COUNT(*) FROM (SELECT 1 FROM queries GROUP BY network_hash,"
                          " property_hash, params_hash HAVING COUNT(*) > 1)").fetchone()[0]
        assert dup == 0
        return {tuple(r[:3]): tuple(r[3:]) for r in con.execute(
            "SELECT network_hash, property_hash, params_hash, id, status, result, created_at "
            "FROM queries")}
    finally:
        con.close()


def test_sigkill_midway_loses_nothing_finished(tiny_campaign, tmp_path):
    cfg = json.loads(tiny_campaign.read_text())
    cfg["task"] = "test_campaign:slow_task"
    tiny_campaign.write_text(json.dumps(cfg))
    store = tmp_path / "crash.sqlite"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        NNRES_TEST_SLEEP="0.5")
    cmd = [sys.executable, "-m", "nnresilience", "campaign", "run", str(tiny_campaign),
           "--store", str(store), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 120
        while _count(store) < 3:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < end, "campaign did not store 3 answers in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    con = sqlite3.connect(store)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    before = _rows(store)
    assert 3 <= len(before) < 12, "the kill should land mid-campaign"

    done = subprocess.run(cmd + ["--json", "-"], env=dict(env, NNRES_TEST_SLEEP="0"),
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout)
    assert summary["skipped"] == len(before)
    assert summary["done"] == 12 - len(before)
    after = _rows(store)
    assert len(after) == 12
    for key, row in before.items():
        assert after[key] == row      # same row id, verdict, result and time: not redone
    with CampaignStore(store, readonly=True) as st:
        assert st.integrity_check() == "ok"
        assert {r.status for r in st.all()} <= {"holds", "violated", "unknown"}


def test_cli_show_and_errors(tmp_path, capsys):
    from nnresilience.cli import main

    assert main(["campaign", "show", str(tmp_path / "missing.sqlite")]) == 2
    assert "missing.sqlite: no such file" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite").exists()
    with CampaignStore(tmp_path / "s.sqlite") as st:
        st.put(("n", "p", "q"), "verify", VerificationResult(Status.HOLDS, engine="milp"),
               {"network_name": "net", "property_name": "prop"})
    assert main(["campaign", "show", str(tmp_path / "s.sqlite"), "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 1 and data["summary"] == {"verify": {"holds": 1}}
    assert data["answers"][0]["property_name"] == "prop"


def test_cli_run_exit_codes_and_resume(tiny_campaign, tmp_path, capsys):
    from nnresilience.cli import main

    store = tmp_path / "s.sqlite"
    base = ["campaign", "run", str(tiny_campaign), "--store", str(store), "--quiet"]
    assert main(base + ["--timeout", "0"]) == 2          # not a budget: bad input
    assert not store.exists()                            # ... and no empty store created
    capsys.readouterr()
    assert main(base + ["--timeout", "0.001"]) == 4      # budget spent: units left
    assert "run the same command again" in capsys.readouterr().err
    assert main(base + ["--jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 12 and all(ev["event"] == "done" for ev in lines)
    assert main(base + ["--json", "-"]) == 0             # everything stored: all skipped
    assert json.loads(capsys.readouterr().out)["skipped"] == 12
    assert main(base + ["--workers", "2", "--scheduler", "tcp://x:1"]) == 2


def hang_task(unit: WorkUnit):
    """Test-only: the first unit answers at once (an honest 'unknown'), every other one
    hangs for a minute."""
    if unit.params.get("sample") != 0 or unit.params.get("radius") != 0.01:
        time.sleep(60)
    return VerificationResult(Status.UNKNOWN, engine="test", message="not attempted")


def _session_members(sid: int) -> list[int]:
    psutil = pytest.importorskip("psutil")
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return out


def test_ctrl_c_with_dask_workers_leaves_no_process(tiny_campaign, tmp_path):
    """Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) during a
    ``--workers 2`` campaign: exit 130, the finished answer kept, no worker left alive."""
    pytest.importorskip("distributed")
    cfg = json.loads(tiny_campaign.read_text())
    cfg["task"] = "test_campaign:hang_task"
    tiny_campaign.write_text(json.dumps(cfg))
    store = tmp_path / "int.sqlite"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "nnresilience", "campaign", "run", str(tiny_campaign),
           "--store", str(store), "--quiet", "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        end = time.monotonic() + 120
        while _count(store) < 1:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < end, "no answer stored in time"
            time.sleep(0.05)
        assert len(_session_members(proc.pid)) >= 3     # main + 2 dask workers
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err.decode()[-2000:]
    end = time.monotonic() + 20
    while _session_members(proc.pid) and time.monotonic() < end:
        time.sleep(0.1)
    left = _session_members(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes left behind after Ctrl-C: {left}"
    assert _count(store) >= 1


def crash_task(unit: WorkUnit):
    """Test-only: the worker process dies abruptly on sample 2 (a segfaulting solver)."""
    if unit.params.get("sample") == 2:
        os._exit(3)
    return forward_task(unit)


def test_worker_death_stops_cleanly_and_resumes(tmp_path, monkeypatch):

    monkeypatch.syspath_prepend(str(HERE))      # spawned workers import this module
    import test_campaign as importable

    units, _ = _units(4, tmp_path)
    with CampaignStore(tmp_path / "s.sqlite") as st:
        with ProcessExecutor(1) as ex:
            s = run_campaign(units, st, ex, task=importable.crash_task)
        assert s.aborted and "Broken" in s.aborted
        assert st.count() == s.done < 4
        s2 = run_campaign(units, st, InlineExecutor(), task=forward_task)
        assert s2.skipped == s.done and st.count() == 4


def test_rich_progress_shows_counts_and_eta(tmp_path, monkeypatch):
    from rich.console import Console

    from nnresilience.progress import make_progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=120)
    units, _ = _units(3, tmp_path)
    with CampaignStore(tmp_path / "s.sqlite") as st:
        run_campaign(units, st, InlineExecutor(), task=forward_task,
                     progress=make_progress(console=console, title="demo"))
        run_campaign(units, st, InlineExecutor(), task=forward_task,
                     progress=make_progress(console=console, title="demo"))
    out = buf.getvalue()
    assert "demo" in out and "3/3" in out and "eta" in out
    assert "violated:3" in out          # sums 0.5, 0.6, 0.7 < 0.75: all flip
    assert "3 unit(s) already in the store" in out
    assert make_progress(quiet=True).__class__.__name__ == "QuietProgress"
