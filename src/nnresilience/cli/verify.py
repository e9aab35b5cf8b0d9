"""``nnres verify`` and ``nnres vnncomp``: decide a VNN-LIB property on a model file.

Timeouts are enforced from outside the solver: with a timeout, the query runs in a forked
child process (its own process group, so solver subprocesses go with it) and the parent
waits until ``timeout + GRACE_SECONDS`` after start-up; if no answer has arrived, the
whole group is killed and the answer is ``unknown (timeout)``. Inside the child the
remaining time is also handed to :func:`nnresilience.verify.verify` as a deadline, so the
kill is only a backstop for a solver that ignores its limit or holds the GIL.

Exit codes: 0 for any verdict (holds, violated, unknown), 2 for bad input (unreadable model
or property, sizes that do not match) via :func:`nnresilience.cli.main`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Any

import typer

from nnresilience.cli.app import app, console, emit_json, err_console, write_atomic
from nnresilience.errors import NNResError
from nnresilience.results import Status, VerificationResult

ENGINES = ("auto", "bab", "milp", "reluplex", "none")
GRACE_SECONDS = 2.0


# --------------------------------------------------------------------- loading
def load_model(path: Path):
    """The model file as a :class:`Network` (ONNX, NNet or TorchScript by suffix)."""
    from nnresilience.loaders import load_network

    return load_network(path)


def load_property(path: Path, network):
    """The VNN-LIB file as a :class:`Property` sized for ``network`` (checked)."""
    from nnresilience.spec.vnnlib import read_vnnlib

    prop = read_vnnlib(path, network.n_inputs, network.n_outputs)
    prop.check_network(network)
    return prop


def _check_options(engine: str, bounds: str) -> None:
    if engine not in ENGINES and not engine.startswith("milp:"):
        raise typer.BadParameter(f"--engine must be one of {', '.join(ENGINES)} or "
                                 f"milp:<backend>, got {engine!r}")
    from nnresilience.bounds import parse_method

    try:
        parse_method(bounds)
    except (ValueError, NNResError) as exc:
        raise typer.BadParameter(f"--bounds: {exc}") from exc


# ------------------------------------------------------------------ running
def _child(conn, network, prop, kwargs: dict[str, Any]) -> None:
    """Body of the forked worker: run verify, send the result dict (or the error)."""
    os.setpgrp()                              # own group: the parent can kill it whole
    from nnresilience.verify import verify

    try:
        res = verify(network, prop, **kwargs)
        conn.send(("ok", res.to_dict()))
    except NNResError as exc:
        conn.send(("nnres", (type(exc).__name__, str(exc), exc.exit_code)))
    except Exception as exc:  # report, the parent decides
        conn.send(("crash", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class _ChildError(NNResError):
    pass


def _kill_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)


def run_verify(network, prop, timeout: float | None, started: float,
               **kwargs: Any) -> VerificationResult:
    """Run :func:`verify` honouring ``timeout`` counted from ``started`` (monotonic).

    Without a timeout it runs in this process. With one it runs in a forked child that is
    killed (with its process group) ``GRACE_SECONDS`` after the deadline.
    """
    from nnresilience.verify import verify

    if timeout is None:
        return verify(network, prop, **kwargs)
    remaining = max(0.0, timeout - (time.monotonic() - started))
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, network, prop,
                                            {**kwargs, "timeout": remaining}), daemon=False)
    proc.start()
    send.close()
    msg = None
    if recv.poll(remaining + GRACE_SECONDS):
        try:
            msg = recv.recv()
        except EOFError:
            msg = None
    proc.join(0.5)
    if proc.is_alive() or msg is None:
        _kill_group(proc.pid)
        proc.join(2.0)
    if msg is None:
        why = "timeout" if time.monotonic() - started >= timeout else \
            f"worker ended without an answer (exit code {proc.exitcode})"
        return VerificationResult(Status.UNKNOWN, message=why,
                                  seconds=time.monotonic() - started,
                                  stats={"killed": True})
    kind, payload = msg
    if kind == "ok":
        return VerificationResult.from_dict(payload)
    if kind == "nnres":
        name, text, code = payload
        err = _ChildError(text)
        err.exit_code = code
        raise err
    return VerificationResult(Status.UNKNOWN, message=f"internal error: {payload}",
                              seconds=time.monotonic() - started)


def _summary(res: VerificationResult) -> list[str]:
    lines = [f"{res.status.value} ({res.status.vnncomp})"]
    label = "tried" if res.status is Status.UNKNOWN else "decided by"
    detail = f"{label}: {res.engine or '-'}; {res.seconds:.2f} s"
    if res.message:
        detail += f"; {res.message}"
    lines.append(detail)
    for c in res.stats.get("cases", []):
        extra = f" ({c['message']})" if c.get("message") else ""
        lines.append(f"  case {c['index']}: {c['status']} via {c.get('method') or '-'}"
                     f" in {c.get('seconds', 0.0):.2f} s{extra}")
    if res.counterexample is not None:
        ce = res.counterexample
        ort = {None: "not applicable", True: "agrees", False: "DISAGREES (float32)"}[
            ce.replayed_onnxruntime]
        lines.append(f"  counterexample replayed in float64; onnxruntime {ort}")
    return lines


def _counterexample_json(res: VerificationResult) -> dict[str, Any]:
    ce = res.counterexample
    assert ce is not None
    return {"status": res.status.value, "x": list(ce.x), "y": list(ce.y),
            "replayed_onnxruntime": ce.replayed_onnxruntime,
            "vnncomp": res.to_vnncomp()}


# ------------------------------------------------------------------ commands
@app.command("verify")
def verify_cmd(
    model: Path = typer.Argument(..., metavar="MODEL", help="Model file (.onnx, .nnet, .pt)."),
    prop_file: Path = typer.Argument(..., metavar="PROPERTY", help="VNN-LIB property file."),
    engine: str = typer.Option("auto", help="Complete engine: auto|bab|milp|reluplex|none."),
    timeout: float | None = typer.Option(None, help="Seconds for the whole query."),
    bounds: str = typer.Option("symbolic", help="Bounds: interval|symbolic|lp|milp:W."),
    json_out: str | None = typer.Option(None, "--json", help="Write the result as JSON "
                                        "to FILE ('-' = stdout)."),
    counterexample: Path | None = typer.Option(None, help="Write a found counterexample "
                                               "(x, y, VNN-COMP block) as JSON here."),
    seed: int = typer.Option(0, help="Seed of the falsifier."),
    falsify_budget: float = typer.Option(1.0, help="Seconds of falsification per case."),
    workers: int = typer.Option(1, help="Processes sharing the input-splitting search "
                                "(1 = serial in this process)."),
    device: str = typer.Option("cpu", help="Torch device of the optimised bounds and the "
                               "falsifier where they use torch (cpu, cuda)."),
) -> None:
    """Decide a property: prints holds (unsat), violated (sat) or unknown (timeout)."""
    started = time.monotonic()
    _check_options(engine, bounds)
    network = load_model(model)
    prop = load_property(prop_file, network)
    if workers < 1:
        raise typer.BadParameter("--workers must be at least 1")
    res = run_verify(network, prop, timeout, started, engine=engine,
                     bounds_method=bounds, falsify_budget=falsify_budget, seed=seed,
                     executor=workers if workers > 1 else None, device=device)
    out = err_console if json_out == "-" else console
    for line in _summary(res):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    if json_out is not None:
        emit_json({"model": str(model), "property": str(prop_file), **res.to_dict()},
                  json_out)
    if counterexample is not None and res.counterexample is not None:
        write_atomic(counterexample, json.dumps(_counterexample_json(res), indent=2) + "\n")


@app.command("vnncomp")
def vnncomp_cmd(
    model: Path = typer.Argument(..., metavar="MODEL", help="ONNX model file."),
    prop_file: Path = typer.Argument(..., metavar="PROPERTY", help="VNN-LIB property file."),
    result_file: Path = typer.Argument(..., metavar="RESULT_FILE",
                                       help="Where to write the VNN-COMP result."),
    timeout: float = typer.Argument(..., metavar="TIMEOUT", help="Seconds."),
    engine: str = typer.Option("auto", help="Complete engine: auto|milp|reluplex."),
    bounds: str = typer.Option("symbolic", help="Bounds: interval|symbolic|lp|milp:W."),
) -> None:
    """VNN-COMP style run: writes sat + assignment / unsat / timeout to RESULT_FILE.

    A model or property that cannot be read writes nothing and exits 2.
    """
    started = time.monotonic()
    _check_options(engine, bounds)
    network = load_model(model)
    prop = load_property(prop_file, network)
    res = run_verify(network, prop, float(timeout), started, engine=engine,
                     bounds_method=bounds)
    write_atomic(result_file, res.to_vnncomp())
    console.print(f"{res.status.vnncomp} ({res.status.value}, {res.seconds:.2f} s)",
                  highlight=False, markup=False, soft_wrap=True)
