"""``nnres verify`` and ``nnres vnncomp``: decide a VNN-LIB property on a model file.

The query runs in a killable child (:mod:`nnresilience.killable`): with ``--timeout T``
the library gets the time left until T (counted from the start of the ``nnres``
process), and the child's process group -- solver subprocesses and ``--workers``
included -- is killed at T + max(1 s, 5 % of T) minus the time needed to answer, which
then is ``unknown`` (``timeout``). Ctrl-C kills the group at once and exits 130.

Outputs are staged and committed together (:mod:`nnresilience.cli.output`): a run that
answers ``holds`` or ``unknown`` removes an old ``--counterexample`` file; ``vnncomp``
always leaves RESULT_FILE holding *this* run's word -- ``sat`` + assignment, ``unsat``,
``timeout``, ``unknown`` or ``error`` (bad input, exit 2; internal error, exit 3) -- or,
when interrupted, no file at all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from nnresilience import validate
from nnresilience.cli.app import app, console, err_console
from nnresilience.cli.command import CommandRun, command_started
from nnresilience.cli.output import write_atomic
from nnresilience.errors import InvalidArgumentError, NNResError
from nnresilience.results import Status, VerificationResult

ENGINES = validate.engine_choices()       # auto, the engines' own list, none


# --------------------------------------------------------------------- loading
def load_model(path: Path):
    """The model file as a :class:`Network` (ONNX, NNet or TorchScript by suffix)."""
    from nnresilience.loaders import load_network

    return load_network(validate.input_file(path, "model"))


def load_property(path: Path, network):
    """The VNN-LIB file as a :class:`Property` sized for ``network`` (checked)."""
    from nnresilience.spec.vnnlib import read_vnnlib

    prop = read_vnnlib(validate.input_file(path, "property"), network.n_inputs,
                       network.n_outputs)
    prop.check_network(network)
    return prop


def check_options(engine: str, bounds: str) -> None:
    """``--engine`` and ``--bounds`` name things that exist (before any file is read)."""
    validate.engine(engine)
    from nnresilience.bounds import parse_method

    try:
        parse_method(bounds)
    except (ValueError, NNResError) as exc:
        raise InvalidArgumentError(f"--bounds: {exc}") from None


# ------------------------------------------------------------------ running
def _verify_work(reporter, network, prop, kwargs: dict[str, Any]) -> VerificationResult:
    """Body of the child: run verify with the time left and progress to the parent."""
    import inspect

    from nnresilience.verify import verify

    if "progress" in inspect.signature(verify).parameters:
        kwargs = {**kwargs, "progress": reporter.progress}
    return verify(network, prop, timeout=reporter.budget.remaining(), **kwargs)


def run_verify(run: CommandRun, network, prop, **kwargs: Any) -> VerificationResult:
    """:func:`nnresilience.verify.verify` in a killable child of ``run`` (module doc)."""
    out = run.in_child(_verify_work, network, prop, kwargs)
    if out.finished:
        return out.value
    last = out.last_progress or {}
    note = f" (last progress: {', '.join(f'{k}={v}' for k, v in last.items())})" if last \
        else ""
    return VerificationResult(Status.UNKNOWN, message="timeout",
                              seconds=time.monotonic() - run.budget.started,
                              stats={"killed": True, "killed_reason": "deadline" + note})


def vnncomp_word(res: VerificationResult) -> str:
    """The VNN-COMP result word: ``sat``/``unsat``; an unknown is ``timeout`` when time ran
    out and ``unknown`` when the tool gave up earlier (e.g. a witness failed replay)."""
    if res.status is not Status.UNKNOWN:
        return res.status.vnncomp
    killed = bool(res.stats.get("killed"))
    return "timeout" if killed or "timeout" in (res.message or "").lower() else "unknown"


def vnncomp_text(res: VerificationResult) -> str:
    """Contents of a VNN-COMP result file for ``res``."""
    if res.status is Status.VIOLATED:
        return res.to_vnncomp()
    return vnncomp_word(res) + "\n"


def summary_lines(res: VerificationResult) -> list[str]:
    """The human summary (first line: ``<status> (<vnncomp word>)``)."""
    lines = [f"{res.status.value} ({vnncomp_word(res)})"]
    label = "tried" if res.status is Status.UNKNOWN else "decided by"
    detail = f"{label}: {res.engine or '-'}; {res.seconds:.2f} s"
    if res.message:
        detail += f"; {res.message}"
    if res.stats.get("killed"):
        detail += "; stopped at the deadline"
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


def verify_json(model: Path, prop_file: Path, res: VerificationResult,
                timeout: float | None, bounds: str) -> dict[str, Any]:
    """The ``verify --json`` document (schema in docs/cli.md)."""
    d = res.to_dict()
    ce = d.pop("counterexample")
    return {"command": "verify", "model": str(model), "property": str(prop_file),
            "status": d.pop("status"), "vnncomp": vnncomp_word(res),
            "engine": d.pop("engine"), "bounds_method": bounds,
            "message": d.pop("message"), "counterexample": ce,
            "timeout": timeout, "killed": bool(res.stats.get("killed")),
            "seconds": d.pop("seconds"),
            "timings": {"verify": res.seconds,
                        "command": round(time.monotonic() - command_started(), 3)},
            "stats": d.pop("stats")}


def _counterexample_json(model: Path, prop_file: Path, res: VerificationResult
                         ) -> dict[str, Any]:
    ce = res.counterexample
    assert ce is not None
    return {"model": str(model), "property": str(prop_file), "status": res.status.value,
            "x": list(ce.x), "y": list(ce.y), "replayed_onnxruntime": ce.replayed_onnxruntime,
            "vnncomp": res.to_vnncomp()}


def _print(lines: list[str], to_stderr: bool) -> None:
    out = err_console if to_stderr else console
    for line in lines:
        out.print(line, highlight=False, markup=False, soft_wrap=True)


QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress display on stderr.")


# ------------------------------------------------------------------ commands
@app.command("verify")
def verify_cmd(
    model: Path = typer.Argument(..., metavar="MODEL", help="Model file (.onnx, .nnet, .pt)."),
    prop_file: Path = typer.Argument(..., metavar="PROPERTY", help="VNN-LIB property file."),
    engine: str = typer.Option("auto", help="Complete engine: auto|bab|milp|reluplex|none."),
    timeout: float | None = typer.Option(None, help="Seconds for the whole command "
                                         "(start-up included); must be > 0."),
    bounds: str = typer.Option("symbolic", help="Bounds: interval|symbolic|lp|milp:W."),
    json_out: str | None = typer.Option(None, "--json", help="Write the result as JSON "
                                        "to FILE ('-' = stdout, then the summary goes to "
                                        "stderr)."),
    counterexample: Path | None = typer.Option(None, help="Write a found counterexample "
                                               "(x, y, VNN-COMP block) as JSON here; an "
                                               "answer without one removes the file."),
    seed: int = typer.Option(0, help="Seed of the falsifier."),
    falsify_budget: float = typer.Option(1.0, help="Seconds of falsification per case (0: off)."),
    workers: int = typer.Option(1, help="Processes sharing the input-splitting search "
                                "(1 = serial)."),
    device: str = typer.Option("cpu", help="Torch device of the optimised bounds and the "
                               "falsifier where they use torch (cpu, cuda, cuda:N)."),
    quiet: bool = QUIET_OPT,
) -> None:
    """Decide a property: prints holds (unsat), violated (sat) or unknown (timeout)."""
    with CommandRun("verify", timeout, quiet) as run:
        inputs = (model, prop_file)
        js = run.output(json_out, "--json", inputs)
        cex = run.output(counterexample, "--counterexample", inputs, allow_stdout=False)
        check_options(engine, bounds)
        workers = validate.workers(workers)
        falsify_budget = validate.nonnegative(falsify_budget, "--falsify-budget")
        device = validate.device(device)
        network = load_model(model)
        prop = load_property(prop_file, network)
        res = run_verify(run, network, prop, engine=engine, bounds_method=bounds,
                         falsify_budget=falsify_budget, seed=seed,
                         executor=workers if workers > 1 else None, device=device)
        _print(summary_lines(res), to_stderr=js == "-")
        run.outputs.write_json(js, verify_json(model, prop_file, res, run.budget.timeout,
                                               bounds))
        if res.counterexample is not None:
            run.outputs.write(cex, json.dumps(_counterexample_json(model, prop_file, res),
                                              indent=2) + "\n")
        else:
            run.outputs.remove(cex)


# ignore_unknown_options: a TIMEOUT of "-5" is an argument to reject with an "error"
# result, not an unknown option that would leave RESULT_FILE as it was.
@app.command("vnncomp", context_settings={"ignore_unknown_options": True})
def vnncomp_cmd(
    model: Path = typer.Argument(..., metavar="MODEL", help="ONNX model file."),
    prop_file: Path = typer.Argument(..., metavar="PROPERTY", help="VNN-LIB property file."),
    result_file: Path = typer.Argument(..., metavar="RESULT_FILE",
                                       help="Where to write the VNN-COMP result."),
    timeout: str = typer.Argument(..., metavar="TIMEOUT", help="Seconds for the whole "
                                  "command (> 0)."),
    engine: str = typer.Option("auto", help="Complete engine: auto|milp|reluplex."),
    bounds: str = typer.Option("symbolic", help="Bounds: interval|symbolic|lp|milp:W."),
    quiet: bool = QUIET_OPT,
) -> None:
    """VNN-COMP run: writes sat + assignment, unsat, timeout, unknown or error.

    RESULT_FILE always holds this run's answer: bad input writes `error` and exits 2, an
    internal error writes `error` and exits 3, Ctrl-C removes the file and exits 130.
    """
    result_path = validate.output_file(result_file, "RESULT_FILE", (model, prop_file))
    try:
        run = CommandRun("vnncomp", validate.timeout(timeout, "TIMEOUT"), quiet)
        check_options(engine, bounds)
        network = load_model(model)
        prop = load_property(prop_file, network)
    except NNResError:
        write_atomic(result_path, "error\n")
        raise
    with run:
        run.outputs.declare(result_path, "RESULT_FILE", (model, prop_file))
        try:
            res = run_verify(run, network, prop, engine=engine, bounds_method=bounds)
        except NNResError:
            run.outputs.started = False          # keep the explicit answer below
            write_atomic(result_path, "error\n")
            raise
        run.outputs.write(result_path, vnncomp_text(res))
        console.print(f"{vnncomp_word(res)} ({res.status.value}, {res.seconds:.2f} s)",
                      highlight=False, markup=False, soft_wrap=True)
