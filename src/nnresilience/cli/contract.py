"""``nnres contract MODEL ...`` and ``nnres contract check MODEL CONTRACT``.

The first computes Φ_m of every class and Ξ and writes a sensor contract (versioned JSON,
``docs/contracts.md``), optionally its HTML page and the witness pairs as ``.npz``; the
second re-checks every clause of a contract against a (possibly retrained) model.

Both follow the conventions of every command (``docs/cli.md``): every input is checked
through :mod:`nnresilience.validate` before any output file is touched; the work runs in a
killable child (:class:`~nnresilience.cli.command.CommandRun`), so ``--timeout T`` ends
the command by T + max(1 s, 5 % of T) counted from the start of the process and Ctrl-C
ends it at once with exit 130 and no output file; outputs are staged and renamed into
place together; a live status line is drawn on a terminal unless ``--quiet``. The child
hands over each finished class as it goes: if it has to be killed at the deadline, the
contract (or check report) is assembled from the classes that finished, the others
promising nothing (tolerance 0) or coming out ``unknown``. The HTML page is drawn in the
child after the computation, in the time kept back for it (:data:`PAGE_RESERVE`, counted
after matplotlib has been warmed up); witness pictures that no longer fit before the
deadline are left out (the page says how many). A killed run writes no page and removes
an old one.

Exit codes (the one list of ``cli/__init__.py``): ``contract`` 0 written, 2 bad input,
130 interrupted. ``contract check`` answers with its verdict: 0 every clause holds, 1 some
clause fails (a replayed witness breaks it), 4 no clause fails but some are unknown within
the time given (more time may decide them), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table
from typer.core import TyperGroup

from nnresilience import validate
from nnresilience.cli import EXIT_FAILED_UNITS, EXIT_TIMED_OUT
from nnresilience.cli.app import app, console, err_console
from nnresilience.cli.command import CommandRun
from nnresilience.cli.resilience import (
    BACK_OPT,
    PRESET_OPT,
    QUIET_OPT,
    _load_array,
    _load_model,
    _settings,
)
from nnresilience.errors import InvalidArgumentError

# contract check's verdicts, on the one list of exit codes (docs/cli.md)
EXIT_CLAUSE_FAILS = EXIT_FAILED_UNITS          # 1: a check found a failure
EXIT_UNDECIDED = EXIT_TIMED_OUT                # 4: not decided in the time given

# Seconds of the budget kept back from the computation: for handing the answer over and
# writing the files, and for drawing an HTML page once matplotlib is warmed up (the
# contract page's chart and a witness picture take ~1 s each at load 6 on the shared 2-core
# machine; further witness pictures are drawn only while they fit before the deadline).
OUTPUT_RESERVE = 0.3
PAGE_RESERVE = 2.5
STOPPED = "stopped at the deadline"


class _DefaultCreate(TyperGroup):
    """``nnres contract MODEL ...`` means ``nnres contract create MODEL ...``: the first
    word is a subcommand only when it names one."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


contract_app = typer.Typer(
    cls=_DefaultCreate, no_args_is_help=True,
    help="Sensor contracts: `nnres contract MODEL --alpha A ... -o C.json` writes one, "
         "`nnres contract check MODEL C.json` re-checks it on a model.")
app.add_typer(contract_app, name="contract")


# ------------------------------------------------------------------ shared helpers
def executor_spec(workers: int | None, scheduler: str | None) -> Any:
    """``--workers N`` (local processes) or ``--scheduler tcp://host:port`` (Dask), checked
    like ``campaign run``'s; None runs the classes here, one after the other."""
    from nnresilience.cli.campaign import _check_executor_options

    _check_executor_options(workers, scheduler, None)
    if scheduler is not None:
        return scheduler
    return workers if workers is not None and workers > 1 else None


def domain_box(network, domain: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``--domain LO:HI`` (every input), else the model's own domain (NNet files)."""
    n = network.n_inputs
    if domain is not None:
        return validate.domain_text(domain, n)
    if network.input_lo is not None and network.input_hi is not None:
        return validate.box(network.input_lo, network.input_hi, n, "the model's domain")
    raise InvalidArgumentError("no input domain: give --domain LO:HI")


def compute_budget(reporter, page: bool, page_reserve: float | None = None
                   ) -> float | None:
    """What the computation in the child gets: the time left of ``--timeout`` (counted
    from the process start) less what comes after it -- handing the answer over, and the
    page if one is asked for. For a page, matplotlib is warmed up first (imports, font
    cache: seconds on a busy machine), so that cost is measured, not guessed."""
    if page:
        from nnresilience.report_page import warm_up

        warm_up()
    left = reporter.budget.remaining()
    if left is None:
        return None
    reserve = OUTPUT_RESERVE
    if page:
        reserve += PAGE_RESERVE if page_reserve is None else page_reserve
    return max(left - reserve, 0.0)


def finished_pieces(partials: list[Any], phase: str) -> list[Any]:
    """The ``"result"`` of every progress report of ``phase`` a killed child sent."""
    return [p["result"] for p in partials if isinstance(p, dict) and p.get("phase") == phase
            and p.get("result") is not None]


def document(partials: list[Any], tag: str) -> Any:
    """The whole answer a child handed over (``reporter.partial((tag, doc))``) before it
    was killed while drawing the page, or None."""
    return next((p[1] for p in partials if isinstance(p, tuple) and p[0] == tag), None)


def answer(res, on_killed) -> tuple[dict[str, Any], str | None]:
    """``(document, page)`` of a finished child; of a killed one, ``on_killed()`` and no
    page (there was no time to draw it)."""
    return res.value if res.finished else (on_killed(), None)


def stage_page(run: CommandRun, target: Any, page: str | None) -> None:
    """Stage the page; a run without one removes a page an earlier run left there."""
    if page is not None:
        run.outputs.write(target, page)
    else:
        run.outputs.remove(target)


def say(text: str, to_stderr: bool = False) -> None:
    (err_console if to_stderr else console).print(text, highlight=False, markup=False,
                                                  soft_wrap=True)


def _num(v) -> str:
    from nnresilience.contract import json_number

    v = json_number(v) if isinstance(v, str) else v
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.6g}"


MODEL_ARG = typer.Argument(..., help="network file (.onnx, .nnet, ...)")
TIMEOUT_OPT = typer.Option(None, "--timeout", help="seconds for the whole command (start-up "
                           "included); the classes share it")
WORKERS_OPT = typer.Option(None, "--workers", help="local worker processes (one class each)")
SCHED_OPT = typer.Option(None, "--scheduler", help="run the classes on a Dask cluster "
                         "(tcp://host:port)")


# ------------------------------------------------------------------------ create
def _create_work(reporter, net, q, settings, spec, data, scale_source, model, page: bool):
    """Body of the child: the contract, handed over as soon as it exists, then its page."""
    from nnresilience.contract import make_contract, strict_json

    contract = make_contract(
        net, q.alpha, q.k, q.norm, (q.lo, q.hi), scale=q.scale, scale_source=scale_source,
        settings=settings, timeout=compute_budget(reporter, page), workers=spec,
        margin=q.margin, model_path=model, data=data, progress=reporter.progress)
    reporter.partial(("contract", contract))
    if not page:
        return contract, None
    from nnresilience.report_contract import render_contract

    reporter.progress({"phase": "drawing the page"})
    return contract, render_contract(strict_json(contract), deadline=reporter.budget.deadline)


def _contract_of_killed_run(out, run: CommandRun, net, q, settings, spec, scale_source,
                            model) -> dict[str, Any]:
    """The contract of a child killed at the deadline: the one it handed over, else one
    assembled from the classes it finished (the others promise nothing)."""
    from nnresilience.contract import assemble_contract, stopped_class

    whole = document(out.partials, "contract")
    if whole is not None:
        return whole
    done = {c["cls"]: c for c in finished_pieces(out.partials, "Phi_m")}
    per = [done.get(m) or stopped_class(m, q.alpha, q.k, q.norm)
           for m in range(net.n_outputs)]
    return assemble_contract(net, q, per, settings=settings, scale_source=scale_source,
                             timeout=run.budget.timeout, workers=spec, model_path=model,
                             seconds=run.budget.elapsed(), killed=True)


@contract_app.command("create")
def create(
    model: Path = MODEL_ARG,
    alpha: float = typer.Option(..., "--alpha", help="confidence ratio alpha >= 1 (p_m >= "
                                "alpha p_j for every j != m)"),
    k: int = typer.Option(1, "--k", help="the class must stay in the top-k (1..d-1)"),
    norm: str = typer.Option("l1", "--norm", help="perturbation norm: l1 or linf"),
    per_input_scale: Path = typer.Option(None, "--per-input-scale", help=".npy/.csv with "
                                         "one scale s_i > 0 per input: eps measured as "
                                         "eps_i / s_i"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI (default: "
                               "the model's own)"),
    margin: float = typer.Option(1e-3, "--margin", help="tolerance = proven lower bound x "
                                 "(1 - margin), 0 <= margin < 1"),
    data: Path = typer.Option(None, "--data", help="samples (.npy/.csv/.npz) for the warm "
                              "start (heuristic 3; switches it on)"),
    timeout: float = TIMEOUT_OPT, workers: int = WORKERS_OPT, scheduler: str = SCHED_OPT,
    preset: str = PRESET_OPT, backend: str = BACK_OPT,
    output: str = typer.Option(..., "--output", "-o", help="the contract (JSON; '-' = "
                               "stdout, then the summary goes to stderr)"),
    html: Path = typer.Option(None, "--html", help="also write the contract's HTML page"),
    witnesses: Path = typer.Option(None, "--witnesses", help="also write the witness pairs "
                                   "(.npz, training-set ready)"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Compute Phi_m of every class and Xi and write a sensor contract."""
    from nnresilience.contract import check_margin, contract_query, dumps, load_scale
    from nnresilience.export_witnesses import npz_bytes, pairs_from_contract

    with CommandRun("contract", timeout, quiet) as run:
        inputs = (model, per_input_scale, data)
        out_json = run.output(output, "--output", inputs)
        page_out = run.output(html, "--html", inputs, allow_stdout=False)
        npz_out = run.output(witnesses, "--witnesses", inputs, allow_stdout=False)
        spec = executor_spec(workers, scheduler)
        settings = _settings(preset, None, None, None, True if data is not None else None,
                             backend)
        net = _load_model(model)
        scale = None
        if per_input_scale is not None:
            scale = load_scale(validate.input_file(per_input_scale, "--per-input-scale"),
                               net.n_inputs)
        q = contract_query(net, validate.alpha(alpha), validate.top_k(k, net.n_outputs),
                           validate.norm(norm), domain_box(net, domain), scale,
                           check_margin(margin, "--margin"))
        X = None if data is None else _load_array(data, "--data", net)
        source = None if per_input_scale is None else str(per_input_scale)
        res = run.in_child(_create_work, net, q, settings, spec, X, source, model,
                           page_out is not None)
        contract, page = answer(res, lambda: _contract_of_killed_run(
            res, run, net, q, settings, spec, source, model))
        run.outputs.write(out_json, dumps({"command": "contract", **contract}))
        stage_page(run, page_out, page)
        if npz_out is not None:
            name = "contract" if out_json == "-" else str(out_json)
            run.outputs.write(npz_out, npz_bytes(pairs_from_contract(contract, source=name)))
    _print_contract(contract, out_json, to_stderr=out_json == "-")
    if not res.finished:
        say(f"TIMED OUT: the command was stopped at its deadline; classes marked "
            f"'{STOPPED}' promise nothing (tolerance 0)"
            + ("; the page was not written" if page_out is not None else ""),
            to_stderr=out_json == "-")


# ------------------------------------------------------------------------- check
def _check_work(reporter, net, contract, settings, spec, model, page: bool):
    """Body of the child: the check report, handed over as soon as it exists, then the
    page."""
    from nnresilience.contract import check_contract, strict_json

    report = check_contract(net, contract, settings=settings, workers=spec,
                            timeout=compute_budget(reporter, page), model_path=model,
                            progress=reporter.progress)
    reporter.partial(("report", report))
    if not page:
        return report, None
    from nnresilience.report_contract import render_contract

    reporter.progress({"phase": "drawing the page"})
    return report, render_contract(strict_json(contract), check=strict_json(report),
                                   deadline=reporter.budget.deadline)


def _report_of_killed_run(out, run: CommandRun, net, contract, q, settings, spec,
                          model) -> dict[str, Any]:
    from nnresilience.contract import assemble_check, stopped_class

    whole = document(out.partials, "report")
    if whole is not None:
        return whole
    done = {c["cls"]: c for c in finished_pieces(out.partials, "Phi_m")}
    per = [done.get(m) or stopped_class(m, q.alpha, q.k, q.norm) for m in q.classes]
    return assemble_check(net, contract, q, per, settings=settings,
                          timeout=run.budget.timeout, workers=spec, model_path=model,
                          seconds=run.budget.elapsed(), killed=True)


@contract_app.command("check")
def check(
    model: Path = MODEL_ARG,
    contract_file: Path = typer.Argument(..., metavar="CONTRACT", help="a contract JSON "
                                         "written by `nnres contract`"),
    timeout: float = TIMEOUT_OPT, workers: int = WORKERS_OPT, scheduler: str = SCHED_OPT,
    preset: str = PRESET_OPT, backend: str = BACK_OPT,
    json_out: str = typer.Option(None, "--json", help="write the check report as JSON "
                                 "(FILE or '-' = stdout, then the summary goes to stderr)"),
    html: Path = typer.Option(None, "--html", help="write the contract page with the "
                              "verdicts"),
    quiet: bool = QUIET_OPT,
) -> None:
    """Re-check CONTRACT on MODEL: exit 0 holds, 1 a clause fails, 4 some unknown."""
    from nnresilience.contract import check_query_of, dumps, load_contract

    with CommandRun("contract check", timeout, quiet) as run:
        inputs = (model, contract_file)
        js = run.output(json_out, "--json", inputs)
        page_out = run.output(html, "--html", inputs, allow_stdout=False)
        spec = executor_spec(workers, scheduler)
        settings = _settings(preset, None, None, None, None, backend)
        contract = load_contract(validate.input_file(contract_file, "CONTRACT"))
        net = _load_model(model)
        q = check_query_of(net, contract)
        res = run.in_child(_check_work, net, contract, settings, spec, model,
                           page_out is not None)
        report, page = answer(res, lambda: _report_of_killed_run(
            res, run, net, contract, q, settings, spec, model))
        run.outputs.write(js, dumps({"command": "contract check", **report}))
        stage_page(run, page_out, page)
    _print_check(report, to_stderr=js == "-")
    if not res.finished:
        say(f"TIMED OUT: the command was stopped at its deadline; clauses of classes "
            f"'{STOPPED}' are unknown"
            + ("; the page was not written" if page_out is not None else ""),
            to_stderr=js == "-")
    if report["verdict"] == "fails":
        raise typer.Exit(EXIT_CLAUSE_FAILS)
    if report["verdict"] == "unknown":
        raise typer.Exit(EXIT_UNDECIDED)


# ---------------------------------------------------------------------- printing
def _print_contract(c: dict, output: Any, to_stderr: bool) -> None:
    asm = c["assumption"]
    scaled = ", per-input scale" if asm["per_input_scale"] else ""
    table = Table(title=f"sensor contract (alpha={asm['alpha']:g}, k={asm['k']}, "
                        f"norm={asm['norm']}{scaled})")
    for col in ("class", "tolerance", "Phi lower", "Phi upper", "status", "seconds", "note"):
        table.add_column(col)
    for cl in c["clauses"]:
        table.add_row(str(cl["class"]), _num(cl["tolerance"]), _num(cl["phi"]["lower"]),
                      _num(cl["phi"]["upper"]), cl["status"], f"{cl['proof']['seconds']:.2f}",
                      cl["message"] or "")
    (err_console if to_stderr else console).print(table)
    where = "stdout" if str(output) == "-" else str(output)
    say(f"network tolerance (Xi): {_num(c['network']['tolerance'])}; written to {where}",
        to_stderr)


def _print_check(r: dict, to_stderr: bool) -> None:
    table = Table(title=f"contract check: {r['verdict']}")
    for col in ("clause", "tolerance", "verdict", "new Phi lower", "new Phi upper"):
        table.add_column(col)
    for cl in r["clauses"]:
        phi = cl["phi"] or {}
        table.add_row(cl["id"], _num(cl["tolerance"]), cl["verdict"],
                      _num(phi.get("lower")), _num(phi.get("upper")))
    table.add_row(r["network"]["id"], _num(r["network"]["tolerance"]),
                  r["network"]["verdict"], "", "")
    (err_console if to_stderr else console).print(table)
