"""A real Dask cluster: ``dask scheduler`` and ``dask worker`` started as separate programs
on 127.0.0.1 (what an operator or dask-jobqueue starts), a campaign run by
``nnres campaign run --scheduler tcp://...`` and a Ξ computation by
``xi(..., workers="tcp://...")``, each with one worker killed by SIGKILL while it runs a
task. Every answer must arrive exactly once and equal the serial run's.

Each program runs in its own session (process group); the worker is killed as a whole
group — nanny and worker process together, like a machine that dies. Teardown kills every
group it started, on success and on failure, and checks that none of their processes
survives. Scheduler (``--idle-timeout``) and workers (``--death-timeout``) also end on
their own if a teardown were ever skipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

psutil = pytest.importorskip("psutil")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


class Cluster:
    """Scheduler and workers as separate programs; ``close()`` kills all of them."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.pids: set[int] = set()
        self.address = ""
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                    "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                             stderr=subprocess.STDOUT, cwd=self.dir, env=self.env,
                             start_new_session=True)
        log.close()
        self.procs[name] = p
        self.pids.add(p.pid)
        return p

    def start_scheduler(self, timeout: float = 60.0) -> str:
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--idle-timeout", "300"])
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)",
                          (self.dir / "scheduler.log").read_text(errors="replace"))
            if m:
                self.address = m.group(1)
                return self.address
            if self.procs["scheduler"].poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("scheduler did not start:\n" + self.log("scheduler"))

    def start_worker(self, name: str) -> None:
        self._start(name, ["worker", self.address, "--name", name, "--nworkers", "1",
                           "--nthreads", "1", "--no-dashboard", "--death-timeout", "30",
                           "--local-directory", str(self.dir / f"{name}-space")])

    def wait_workers(self, client, names: set[str], timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            have = {w["name"] for w in client.scheduler_info()["workers"].values()}
            if have == names:
                return
            time.sleep(0.2)
        raise RuntimeError(f"workers {names} did not connect; logs:\n" +
                           "\n".join(self.log(n) for n in names))

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group (nanny and worker)."""
        p = self.procs[name]
        self._remember_children(p.pid)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    def _remember_children(self, pid: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self.pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))

    def log(self, name: str) -> str:
        p = self.dir / f"{name}.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def close(self) -> set[int]:
        """Kill every group started here; return the pids still alive (should be none)."""
        for p in self.procs.values():
            self._remember_children(p.pid)
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        end = time.monotonic() + 10
        alive = set(self.pids)
        while alive and time.monotonic() < end:
            alive = {pid for pid in alive if _alive(pid)}
            time.sleep(0.1)
        return alive


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_when_busy(client, cluster: Cluster, name: str, done: threading.Event,
                    replacement: str | None = None, timeout: float = 60.0) -> None:
    """Kill worker ``name`` as soon as the scheduler shows a task running on it (then
    start ``replacement``, as an operator would)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done.is_set():
        addr = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        busy = {addr.get(a) for a, keys in client.processing().items() if keys}
        if name in busy:
            cluster.kill(name)
            if replacement:
                cluster.start_worker(replacement)
            return
        time.sleep(0.05)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        alive = c.close()
        assert not alive, f"cluster processes survived the teardown: {sorted(alive)}"


def _tiny_net(seed: int, sizes):
    from nnresilience.testing.bruteforce import random_network

    for s in range(seed, seed + 1000):
        net = random_network(np.random.default_rng(s), sizes, kind="relu", scale=2.0)
        xs = np.linspace(-1, 1, 41)
        G = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
        if np.unique(net.predict(G)).size >= 3:
            return net
    raise AssertionError("no interesting network")


def _campaign(tmp_path: Path) -> Path:
    from nnresilience.loaders.export import save_onnx

    save_onnx(_tiny_net(1, [2, 6, 4]), tmp_path / "net.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(5).uniform(-0.8, 0.8, (3, 2)))
    cfg = {"name": "cluster", "defaults": {"timeout": 60, "domain": [[-1, -1], [1, 1]]},
           "units": [
               {"kind": "robustness", "network": "net.onnx", "inputs": "x.npy",
                "deltas": [0.05, 0.3, 0.8], "norm": "linf"},
               {"kind": "phi", "network": "net.onnx", "classes": "all", "alpha": 1.1},
               {"kind": "min_perturbation", "network": "net.onnx", "inputs": "x.npy",
                "samples": 2, "norm": "linf"}]}
    path = tmp_path / "campaign.json"
    path.write_text(json.dumps(cfg))
    return path


def _digest(result: dict) -> tuple:
    if "quantity" in result:
        r = [result.get("lower"), result.get("upper")]
        return ("opt", result.get("feasible"), result.get("optimal"),
                tuple(None if v is None else round(v, 6) for v in r))
    ce = result.get("counterexample")
    return ("dec", result["status"], None if ce is None else tuple(np.round(ce["x"], 9)))


def test_campaign_and_xi_survive_a_killed_worker(cluster, tmp_path):
    from nnresilience.campaign import load_campaign, run_campaign
    from nnresilience.parallel import InlineExecutor
    from nnresilience.resilience import xi
    from nnresilience.store import CampaignStore

    t_start = time.monotonic()
    # the cluster starts first: its programs import the solver stack while the serial
    # references are computed here
    addr = cluster.start_scheduler()
    cluster.start_worker("a")
    cluster.start_worker("b")
    camp_file = _campaign(tmp_path)
    units = load_campaign(camp_file).units
    with CampaignStore(tmp_path / "serial.sqlite") as st:
        s = run_campaign(units, st, InlineExecutor())
        assert not s.errors and s.done == len(units)
        serial = {r.key: _digest(r.result) for r in st.all()}
    net = _tiny_net(2, [2, 8, 6])
    ref = xi(net, 1.1, 1, "l1", (-1.0, 1.0))

    with distributed.Client(addr, timeout=60) as mon:
        cluster.wait_workers(mon, {"a", "b"})

        # ---- the campaign, through the CLI, with worker "a" killed while busy
        store = tmp_path / "cluster.sqlite"
        nnres = [sys.executable, "-m", "nnresilience.cli"]
        run = subprocess.Popen(
            nnres + ["campaign", "run", str(camp_file), "--store", str(store),
                     "--scheduler", addr, "--jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=cluster.env,
            start_new_session=True)
        cluster.pids.add(run.pid)
        stop = threading.Event()
        killer = threading.Thread(target=_kill_when_busy,
                                  args=(mon, cluster, "a", stop, "c"))
        killer.start()
        try:
            out, err = run.communicate(timeout=120)
        finally:
            stop.set()
            killer.join()
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
        assert cluster.procs["a"].poll() is not None, "worker a was never seen busy"
        assert run.returncode == 0, err.decode()[-3000:]
        events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        done = [e["index"] for e in events if e.get("event") == "done"]
        assert sorted(done) == list(range(len(units)))       # each answer exactly once
        with CampaignStore(store, readonly=True) as st:
            rows = st.all()
            assert len(rows) == len(units) and st.integrity_check() == "ok"
            got = {r.key: _digest(r.result) for r in rows}
        assert got == serial

        # ---- Xi through the executor, with worker "b" killed while busy
        cluster.wait_workers(mon, {"b", "c"})
        stop = threading.Event()
        killer = threading.Thread(target=_kill_when_busy, args=(mon, cluster, "b", stop))
        killer.start()
        try:
            dist = xi(net, 1.1, 1, "l1", (-1.0, 1.0), workers=addr)
        finally:
            stop.set()
            killer.join()
        assert cluster.procs["b"].poll() is not None, "worker b was never seen busy"
    per_ref = {d["cls"]: d for d in ref.stats["per_class"]}
    per = [d["cls"] for d in dist.stats["per_class"]]
    assert sorted(per) == list(range(6))                     # each class exactly once
    for d in dist.stats["per_class"]:
        r = per_ref[d["cls"]]
        assert d["feasible"] == r["feasible"] and d["optimal"] == r["optimal"]
        for key in ("lower", "upper"):
            if r[key] is None or d[key] is None:
                assert r[key] == d[key]
            else:
                assert d[key] == pytest.approx(r[key], rel=1e-6, abs=1e-9)
    assert dist.optimal == ref.optimal
    assert (dist.upper is None and ref.upper is None) or \
        math.isclose(dist.upper, ref.upper, rel_tol=1e-6, abs_tol=1e-9)
    assert time.monotonic() - t_start < 120
