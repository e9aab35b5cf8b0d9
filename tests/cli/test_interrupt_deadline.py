"""Ctrl-C, deadlines and progress of the long commands, measured from outside the process.

* SIGINT to the command's process group (what a terminal sends on Ctrl-C) in the middle
  of ``verify``, ``resilience`` and ``bounds``: exit 130 within 1 s, and no process of the
  command's session is left (its worker child and everything that child started).
* ``--timeout T``: the command ends by T + max(1 s, 5 % of T) counted from before the
  process was started, with an honest answer that says time ran out.
* Progress: drawn on stderr when stderr is a terminal, never with ``--quiet``, never when
  stderr is a pipe; stdout stays clean.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

NNRES = [sys.executable, "-m", "nnresilience"]


def _start(args, **kw) -> subprocess.Popen:
    return subprocess.Popen(NNRES + [str(a) for a in args], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_for_child(proc: subprocess.Popen, members, timeout: float = 60.0) -> None:
    """Until the command's worker child exists (the work has started)."""
    end = time.monotonic() + timeout
    while len(members(proc.pid)) < 2:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < end, "the command never started its worker"
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["verify", "resilience", "bounds", "contract"])
def test_ctrl_c_ends_within_a_second_and_leaves_no_process(command, slow_query, members,
                                                           tmp_path):
    model, prop = slow_query
    js = tmp_path / "out.json"
    page = tmp_path / "page.html"
    args = {"verify": ["verify", model, prop, "--json", js],
            # alpha 1.5: at alpha 1 the two-copy pair attack finds a pair on the
            # decision boundary (Phi = 0) within a second
            "resilience": ["resilience", model, "--class", "0", "--domain", "-1:1",
                           "--alpha", "1.5", "--json", js],
            "bounds": ["bounds", model, prop, "--method", "milp:3", "--json", js],
            "contract": ["contract", model, "--alpha", "1.5", "--domain", "-1:1", "-o", js,
                         "--html", page]}[command]
    js.write_text("{}")                       # a stale output: must not survive
    page.write_text("<html>an earlier run</html>")
    proc = _start(args)
    try:
        _wait_for_child(proc, members)
        time.sleep(1.5)                       # well inside the solver
        assert proc.poll() is None, "the slow query finished before the signal"
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert took < 1.0, f"{command} took {took:.2f} s to end after SIGINT"
    assert err.decode().strip().splitlines()[-1] == "interrupted"
    assert out == b""
    time.sleep(0.2)
    assert members(proc.pid) == [], "processes left after Ctrl-C"
    assert not js.exists(), "an interrupted run must not leave an output file"
    if command == "contract":
        assert not page.exists(), "an interrupted run must not leave an old page"
    assert not list(tmp_path.glob(".*.tmp")), "temp files left behind"


def _run_timed(args) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    res = subprocess.run(NNRES + [str(a) for a in args], capture_output=True, text=True,
                         timeout=120, start_new_session=True)
    return res, time.monotonic() - t0


T = 4.0
PROMISE = T + max(1.0, 0.05 * T)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["verify", "vnncomp", "resilience", "bounds",
                                     "campaign", "contract", "compare"])
def test_timeout_is_a_promise_from_outside(command, slow_query, members, tmp_path):
    model, prop = slow_query
    js, result = tmp_path / "out.json", tmp_path / "result.txt"
    csv = tmp_path / "instances.csv"
    csv.write_text(f"{model},{prop},{T}\n")
    args = {"verify": ["verify", model, prop, "--timeout", T, "--json", js],
            "vnncomp": ["vnncomp", model, prop, result, T],
            "resilience": ["resilience", model, "--class", "0", "--domain", "-1:1",
                           "--alpha", "1.5", "--timeout", T, "--json", js],
            "bounds": ["bounds", model, prop, "--method", "milp:3", "--timeout", T,
                       "--json", js],
            "campaign": ["campaign", "run", csv, "--store", tmp_path / "s.sqlite",
                         "--timeout", T, "--quiet"],
            "contract": ["contract", model, "--alpha", "1.5", "--domain", "-1:1",
                         "--timeout", T, "-o", js],
            "compare": ["compare", model, model, "--domain", "-1:1", "--alpha", "1.5",
                        "--timeout", T, "--json", js]}[command]
    res, took = _run_timed(args)
    assert took <= PROMISE, f"{command} --timeout {T} took {took:.2f} s (> {PROMISE})"
    if command == "campaign":
        assert res.returncode == 4, res.stderr        # stopped by --timeout, unit left
        return
    assert res.returncode == 0, res.stderr
    if command in ("contract", "compare"):
        doc = json.loads(js.read_text())
        assert doc["command"] == command
        if command == "contract":        # Φ_m of the slow net is far from solved in 4 s
            for cl in doc["clauses"]:
                assert not cl["phi"]["optimal"]
                assert 0.0 <= cl["tolerance"] <= (cl["phi"]["lower"] or 0.0)
        else:
            assert [m["xi"]["optimal"] for m in doc["models"]] == [False, False]
        return
    if command == "vnncomp":
        assert result.read_text() == "timeout\n"
        return
    doc = json.loads(js.read_text())
    if command == "verify":
        assert doc["status"] == "unknown" and doc["vnncomp"] == "timeout"
    elif command == "resilience":
        r = doc["results"][0]
        assert r["class"] == 0 and not r["optimal"] and r["status"] in ("bounded", "unknown")
    else:
        assert doc["timed_out"] and doc["status"] in ("timed_out", "killed")
        assert doc["note"]
        assert all(lo <= hi for lo, hi in zip(doc["output_lo"], doc["output_hi"],
                                              strict=True))


def _pty_run(args, quiet: bool = False) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal; return (code, stdout, what the tty got)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(NNRES + [str(a) for a in args] + (["--quiet"] if quiet else []),
                            stdout=subprocess.PIPE, stderr=slave, start_new_session=True,
                            env=dict(os.environ, COLUMNS="120", TERM="xterm"))
    os.close(slave)
    chunks = []
    while True:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    proc.wait()
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


def test_progress_on_a_terminal_only(slow_query, tmp_path):
    model, prop = slow_query
    # 8 s: enough for the worker to start even when start-up is slow on a busy machine
    rc, out, tty = _pty_run(["verify", model, prop, "--timeout", 8, "--json", "-"])
    assert rc == 0
    assert json.loads(out)["status"] == "unknown"             # stdout: only the JSON
    assert "verify" in tty and "s left" in tty                # the live status line
    args = ["verify", model, prop, "--timeout", 3, "--json", "-"]
    rc, out, tty = _pty_run(args, quiet=True)
    assert rc == 0 and json.loads(out)["status"] == "unknown"
    assert "s left" not in tty                                # --quiet: no progress
    res = subprocess.run(NNRES + [str(a) for a in args], capture_output=True, text=True,
                         timeout=60)
    assert "s left" not in res.stderr                         # not a terminal: none
    assert json.loads(res.stdout)["status"] == "unknown"


@pytest.mark.slow
def test_contract_progress_on_a_terminal_only(slow_query, tmp_path):
    """``contract -o -``: the status line (class being solved, time left) on a terminal,
    the summary table on stderr, only the contract's JSON on stdout; none with --quiet."""
    model, _ = slow_query
    args = ["contract", model, "--alpha", "1.5", "--domain", "-1:1", "--timeout", 8, "-o",
            "-"]
    rc, out, tty = _pty_run(args)
    assert rc == 0
    assert json.loads(out)["command"] == "contract"
    assert "contract" in tty and "Phi_m" in tty and "s left" in tty
    assert "sensor contract" in tty                       # the table went to stderr
    rc, out, tty = _pty_run(args, quiet=True)
    assert rc == 0 and json.loads(out)["command"] == "contract"
    assert "s left" not in tty and "sensor contract" in tty
