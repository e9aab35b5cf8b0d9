"""Executors: serial, process pool and Dask agree; cancel and timeout leave nothing running.

The Dask tests start a real ``distributed.LocalCluster`` with two single-threaded worker
processes (the same code path as ``--workers 2``). "No process left behind" is checked
by comparing the test process's live children before and after (psutil ships with
distributed); multiprocessing's resource tracker, which lives as long as the parent by
design, is ignored.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from nnresilience.parallel import (
    DaskExecutor,
    InlineExecutor,
    ProcessExecutor,
    make_executor,
)

psutil = pytest.importorskip("psutil")
pytest.importorskip("distributed")


def _children() -> set[int]:
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if any("resource_tracker" in part for part in p.cmdline()):
                continue
        except psutil.NoSuchProcess:
            continue
        out.add(p.pid)
    return out


def _wait_no_new_children(before: set[int], limit: float = 20.0) -> set[int]:
    """New live children after up to ``limit`` seconds (process exit is asynchronous)."""
    end = time.monotonic() + limit
    while True:
        extra = _children() - before
        if not extra or time.monotonic() > end:
            return extra
        time.sleep(0.1)


@pytest.fixture(scope="module")
def dask_executor():
    before = _children()
    ex = DaskExecutor(workers=2)
    try:
        yield ex
    finally:
        ex.shutdown()
    assert not _wait_no_new_children(before), "LocalCluster left worker processes behind"


def _tiny_units(tmp_path: Path):
    """Robustness queries on a tiny ONNX model (real verify calls)."""
    from nnresilience.campaign import WorkUnit
    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Affine, Network, ReLU

    rng = np.random.default_rng(7)
    net = Network([Affine(rng.standard_normal((5, 3)), rng.standard_normal(5) * 0.1), ReLU(5),
                   Affine(rng.standard_normal((2, 5)), rng.standard_normal(2) * 0.1)])
    path = save_onnx(net, tmp_path / "tiny.onnx")
    from nnresilience.loaders import load_network

    net = load_network(path)
    centers = rng.random((2, 3))
    return [WorkUnit("robustness", str(path), None,
                     {"center": c.tolist(), "label": int(net.predict(c)), "radius": r,
                      "domain": [0.0, 1.0], "timeout": 30, "sample": i})
            for i, c in enumerate(centers) for r in (0.01, 1.0)]


def _summary(res) -> tuple:
    ce = res.counterexample
    return (res.status.value, None if ce is None else tuple(np.round(ce.x, 9)))


def test_serial_processes_and_dask_agree(dask_executor, tmp_path):
    items = list(range(12))
    # numpy/stdlib functions: importable in any worker, without this test module
    mats = [np.random.default_rng(i).standard_normal((6, 6)) for i in items]
    units = _tiny_units(tmp_path)
    from nnresilience.campaign import run_unit

    with InlineExecutor() as ex:
        serial = dict(ex.map(np.linalg.det, mats))
        facts = dict(ex.map(math.factorial, items))
        a = {i: _summary(r) for i, r in ex.map(run_unit, units)}
    with ProcessExecutor(2) as ex:
        pooled = dict(ex.map(np.linalg.det, mats))
        pooled_f = dict(ex.map(math.factorial, items))
    dasked = dict(dask_executor.map(np.linalg.det, mats))
    dasked_f = dict(dask_executor.map(math.factorial, items))
    assert sorted(serial) == items
    assert serial == pooled == dasked
    assert facts == pooled_f == dasked_f
    # duplicated items are separate tasks (pure=False), never merged into one key
    assert sorted(i for i, _ in dask_executor.map(math.factorial, [3, 3, 3])) == [0, 1, 2]

    # (inline vs process pool on real queries: tests/test_campaign.py)
    c = {i: _summary(r) for i, r in dask_executor.map(run_unit, units)}
    assert a == c
    assert len(a) == len(units)


def test_dask_submit_and_task_errors(dask_executor):
    fut = dask_executor.submit(math.pow, 2, 10)
    assert fut.result() == 1024.0
    with pytest.raises(ValueError):
        list(dask_executor.map(math.sqrt, [4.0, -1.0]))


def test_dask_cancel_after_first_result(dask_executor):
    client = dask_executor.client
    gen = dask_executor.map(time.sleep, [0.0] + [1.0] * 8)
    first = next(gen)
    assert first == (0, None)
    futures = list(dask_executor._pending)
    dask_executor.cancel()
    gen.close()
    end = time.monotonic() + 20
    busy = -1
    while time.monotonic() < end:
        busy = sum(len(v) for v in client.processing().values())
        if busy == 0 and all(f.cancelled() for f in futures):
            break
        time.sleep(0.05)
    # nothing left on the scheduler, and no queued task ever ran to completion
    assert busy == 0, "the scheduler still has tasks assigned after cancel"
    assert all(f.cancelled() for f in futures)
    # the cluster stays usable
    assert dict(dask_executor.map(math.factorial, [5])) == {0: 120}


def test_process_pool_cancel_then_terminate_leaves_nothing():
    before = _children()
    ex = ProcessExecutor(2)
    try:
        gen = ex.map(time.sleep, [0.0] + [30.0] * 8)
        assert next(gen) == (0, None)
        futures = list(ex._pending)
        ex.cancel()
        # Everything not yet handed to the pool's call queue is cancelled at once; at most
        # 2 running + 3 queued (workers + 1) cannot be.
        assert sum(f.cancelled() for f in futures) >= len(futures) - 5
    finally:
        ex.terminate()
    assert all(f.done() for f in futures)
    assert not _wait_no_new_children(before)


def test_process_pool_timeout_leaves_no_workers():
    before = _children()
    ex = ProcessExecutor(2)
    # spawn the workers first: under load, starting them can take longer than the 2 s
    # deadline below, which is about the map, not about process start-up
    ex.submit(time.sleep, 0.0).result(timeout=120)
    got = []
    with pytest.raises(TimeoutError), ex:
        for i, _ in ex.map(time.sleep, [0.0, 60.0, 60.0, 60.0], timeout=2.0):
            got.append(i)
    assert got == [0]
    assert not _wait_no_new_children(before), "process pool workers left behind"


def test_inline_map_is_lazy_and_checks_deadline():
    calls = []

    def slow(x):
        calls.append(x)
        time.sleep(0.3)
        return x

    with InlineExecutor() as ex:
        gen = ex.map(slow, range(5))
        assert next(gen) == (0, 0)
        ex.cancel()
        gen.close()
    assert calls == [0]
    with pytest.raises(TimeoutError):
        list(InlineExecutor().map(slow, range(10), timeout=0.5))
    assert len(calls) < 11


def test_make_executor_specs():
    assert isinstance(make_executor("inline"), InlineExecutor)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("gpu")
    with pytest.raises(ValueError):
        make_executor("dask:zero")


# Keep this test LAST in the module: it ends the shared cluster on purpose (a timeout
# must stop the workers of a local cluster, not wait for them).
def test_dask_timeout_terminates_local_cluster(dask_executor):
    before = _children() - set(_worker_pids(dask_executor))
    assert _worker_pids(dask_executor), "the local cluster should run worker processes"
    got = []
    with pytest.raises(TimeoutError), dask_executor:
        for i, _ in dask_executor.map(time.sleep, [0.0, 60.0, 60.0, 60.0], timeout=2.0):
            got.append(i)
    assert got == [0]
    assert dask_executor.client is None
    assert not _wait_no_new_children(before), "dask worker processes left behind"


def _worker_pids(ex: DaskExecutor) -> list[int]:
    return [] if ex.client is None else list(ex.client.run(os.getpid).values())
