"""``nnres contract MODEL ...`` and ``nnres contract check MODEL CONTRACT``.

The first computes Φ_m of every class and Ξ and writes a sensor contract (versioned JSON,
``docs/contracts.md``), optionally its HTML page and the witness pairs as ``.npz``; the
second re-checks every clause of a contract against a (possibly retrained) model.
Everything is read and validated before any output file is written; outputs are written
atomically. ``--timeout`` is the budget of the whole command (the classes share it).

Exit codes of ``contract``: 0 written, 2 bad input. Of ``contract check``: 0 every clause
holds, 1 some clause fails (a replayed witness breaks it), 4 no clause fails but some are
unknown within the time given (more time may decide them), 2 bad input.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import typer
from rich.table import Table
from typer.core import TyperGroup

from nnresilience.cli.app import app, console
from nnresilience.errors import InputDataError

EXIT_FAILS = 1
EXIT_UNKNOWN = 4


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


# ------------------------------------------------------------------------- helpers
def parse_domain(spec: str | None, network) -> tuple[np.ndarray, np.ndarray] | None:
    """``--domain LO:HI`` (every input), or None to use the model's own domain."""
    if spec is None:
        if network.input_lo is None or network.input_hi is None:
            raise InputDataError("no input domain: give --domain LO:HI")
        return None
    try:
        lo_s, hi_s = spec.split(":")
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise InputDataError(f"--domain {spec!r}: expected LO:HI, e.g. 0:1") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise InputDataError(f"--domain {spec!r}: need finite LO <= HI")
    n = network.n_inputs
    return np.full(n, lo), np.full(n, hi)


def load_samples(path: Path, network, labels: Path | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples (rows) and optional labels: ``.npy``/``.csv`` through
    :func:`nnresilience.io.load_inputs`, or an ``.npz`` holding ``x``/``X`` (and
    ``labels``/``y``, used unless ``labels`` is given)."""
    from nnresilience.io import load_inputs

    y = None
    if Path(path).suffix.lower() == ".npz":
        if not Path(path).is_file():
            raise InputDataError(f"{path}: no such input file")
        try:
            with np.load(path, allow_pickle=False) as z:
                xk = next((k for k in ("x", "X") if k in z.files), None)
                if xk is None:
                    raise InputDataError(f"{path}: an .npz of samples needs an array 'x' "
                                         f"(has {', '.join(z.files) or 'none'})")
                X = np.asarray(z[xk], float)
                yk = next((k for k in ("labels", "y") if k in z.files), None)
                y = None if yk is None else np.asarray(z[yk]).reshape(-1)
        except (OSError, ValueError) as exc:
            raise InputDataError(f"{path}: not a readable .npz ({exc})") from exc
        X = X.reshape(X.shape[0], -1) if X.ndim > 1 else X.reshape(1, -1)
        if not np.all(np.isfinite(X)):
            raise InputDataError(f"{path}: non-finite values in the samples")
    else:
        X = load_inputs(path)
    X = network.check_input(X)
    if labels is not None:
        y = load_inputs(labels).reshape(-1)
    if y is not None:
        if y.size != X.shape[0]:
            raise InputDataError(f"{y.size} labels for {X.shape[0]} samples")
        if not np.all(np.isfinite(y.astype(float))) or np.any(y != np.round(y)) \
                or y.min() < 0 or y.max() >= network.n_outputs:
            raise InputDataError(f"labels must be integers in 0..{network.n_outputs - 1}")
        y = y.astype(int)
    return X, y


def resilience_settings(preset: str, backend: str | None):
    from nnresilience.resilience import preset as get_preset

    s = get_preset(preset)
    return s.with_(backend=backend) if backend else s


def workers_spec(workers: int | None, scheduler: str | None):
    """``--workers N`` (local processes) or ``--scheduler tcp://host:port`` (Dask)."""
    if workers is not None and scheduler is not None:
        raise InputDataError("give either --workers or --scheduler, not both")
    if scheduler is not None:
        if not scheduler.startswith(("tcp://", "tls://")):
            raise InputDataError(f"--scheduler {scheduler!r}: expected tcp://host:port")
        return scheduler
    if workers is None:
        return None
    if workers < 1:
        raise InputDataError(f"--workers must be at least 1, got {workers}")
    return None if workers == 1 else workers


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise InputDataError(f"--timeout must be a finite number of seconds > 0, got "
                             f"{timeout}")


def budget_left(timeout: float | None, reserve: float = 1.0) -> float | None:
    """What is left of the command's ``--timeout`` for computing: the time since the
    process started (interpreter start-up, imports, model loading) is already spent, and
    ``reserve`` seconds are kept for writing the outputs."""
    if timeout is None:
        return None
    try:
        import psutil

        spent = max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - no psutil: count from here
        spent = 0.0
    return max(0.5, float(timeout) - spent - reserve)


def check_output(path: Path | None, option: str) -> None:
    if path is not None and Path(path).is_dir():
        raise InputDataError(f"{option} {path}: is a directory")


def _num(v) -> str:
    from nnresilience.contract import json_number

    v = json_number(v) if isinstance(v, str) else v
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.6g}"


MODEL_ARG = typer.Argument(..., help="network file (.onnx, .nnet, ...)")
TIMEOUT_OPT = typer.Option(None, "--timeout", help="seconds for the whole command (the "
                           "classes share it)")
WORKERS_OPT = typer.Option(None, "--workers", help="local worker processes (one class each)")
SCHED_OPT = typer.Option(None, "--scheduler", help="run the classes on a Dask cluster "
                         "(tcp://host:port)")
PRESET_OPT = typer.Option("default", "--preset", help="resilience settings preset")
BACKEND_OPT = typer.Option(None, "--backend", help="solver backend (auto, scip, highs)")


# ------------------------------------------------------------------------ commands
@contract_app.command("create")
def create(
    model: Path = MODEL_ARG,
    alpha: float = typer.Option(..., "--alpha", help="confidence ratio alpha >= 1 (p_m >= "
                                "alpha p_j for every j != m)"),
    k: int = typer.Option(1, "--k", help="the class must stay in the top-k"),
    norm: str = typer.Option("l1", "--norm", help="perturbation norm: l1 or linf"),
    per_input_scale: Path = typer.Option(None, "--per-input-scale", help=".npy/.csv with "
                                         "one scale s_i > 0 per input: eps measured as "
                                         "eps_i / s_i"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI"),
    margin: float = typer.Option(1e-3, "--margin", help="tolerance = proven lower bound x "
                                 "(1 - margin)"),
    data: Path = typer.Option(None, "--data", help="samples (.npy/.csv/.npz) for the warm "
                              "start (heuristic 3; switches it on)"),
    timeout: float = TIMEOUT_OPT, workers: int = WORKERS_OPT, scheduler: str = SCHED_OPT,
    preset: str = PRESET_OPT, backend: str = BACKEND_OPT,
    output: Path = typer.Option(..., "--output", "-o", help="the contract (JSON)"),
    html: Path = typer.Option(None, "--html", help="also write the contract's HTML page"),
    witnesses: Path = typer.Option(None, "--witnesses", help="also write the witness pairs "
                                   "(.npz, training-set ready)"),
) -> None:
    """Compute Phi_m of every class and Xi and write a sensor contract."""
    from nnresilience.contract import check_query, load_scale, make_contract, strict_json
    from nnresilience.export_witnesses import pairs_from_contract, write_witnesses_npz
    from nnresilience.loaders import load_network

    for path, opt in ((output, "--output"), (html, "--html"), (witnesses, "--witnesses")):
        check_output(path, opt)
    check_timeout(timeout)
    net = load_network(model)
    check_query(net, alpha, k, norm)
    dom = parse_domain(domain, net)
    scale = None if per_input_scale is None else load_scale(per_input_scale, net.n_inputs)
    settings = resilience_settings(preset, backend)
    X = None
    if data is not None:
        X, _ = load_samples(data, net)
        settings = settings.with_(warm_start=True)
    spec = workers_spec(workers, scheduler)
    contract = strict_json(make_contract(
        net, alpha, k, norm, dom, scale=scale,
        scale_source=None if per_input_scale is None else str(per_input_scale),
        settings=settings, timeout=budget_left(timeout), workers=spec, margin=margin,
        model_path=model,
        data=X))
    from nnresilience.contract import write_json

    write_json(contract, output)
    if html is not None:
        from nnresilience.report_contract import write_contract_page

        write_contract_page(contract, html)
    if witnesses is not None:
        write_witnesses_npz(pairs_from_contract(contract, source=str(output)), witnesses)
    _print_contract(contract, output)


@contract_app.command("check")
def check(
    model: Path = MODEL_ARG,
    contract_file: Path = typer.Argument(..., metavar="CONTRACT", help="a contract JSON "
                                         "written by `nnres contract`"),
    timeout: float = TIMEOUT_OPT, workers: int = WORKERS_OPT, scheduler: str = SCHED_OPT,
    preset: str = PRESET_OPT, backend: str = BACKEND_OPT,
    json_out: str = typer.Option(None, "--json", help="write the check report as JSON "
                                 "(FILE or -)"),
    html: Path = typer.Option(None, "--html", help="write the contract page with the "
                              "verdicts"),
) -> None:
    """Re-check every clause of CONTRACT on MODEL: holds, fails (with a witness) or unknown."""
    from nnresilience.contract import check_contract, dumps, load_contract, write_json
    from nnresilience.loaders import load_network

    if json_out not in (None, "-"):
        check_output(Path(json_out), "--json")
    check_output(html, "--html")
    check_timeout(timeout)
    contract = load_contract(contract_file)
    net = load_network(model)
    settings = resilience_settings(preset, backend)
    spec = workers_spec(workers, scheduler)
    report = check_contract(net, contract, settings=settings, timeout=budget_left(timeout),
                            workers=spec, model_path=model)
    if json_out == "-":
        typer.echo(dumps(report), nl=False)
    elif json_out is not None:
        write_json(report, json_out)
    if html is not None:
        from nnresilience.contract import strict_json
        from nnresilience.report_contract import write_contract_page

        write_contract_page(contract, html, check=strict_json(report))
    if json_out != "-":
        _print_check(report)
    if report["verdict"] == "fails":
        raise typer.Exit(EXIT_FAILS)
    if report["verdict"] == "unknown":
        raise typer.Exit(EXIT_UNKNOWN)


def _print_contract(c: dict, output: Path) -> None:
    asm = c["assumption"]
    scaled = ", per-input scale" if asm["per_input_scale"] else ""
    table = Table(title=f"sensor contract (alpha={asm['alpha']:g}, k={asm['k']}, "
                        f"norm={asm['norm']}{scaled})")
    for col in ("class", "tolerance", "Phi lower", "Phi upper", "status", "seconds"):
        table.add_column(col)
    for cl in c["clauses"]:
        table.add_row(str(cl["class"]), _num(cl["tolerance"]), _num(cl["phi"]["lower"]),
                      _num(cl["phi"]["upper"]), cl["status"], f"{cl['proof']['seconds']:.2f}")
    console.print(table)
    console.print(f"network tolerance (Xi): {_num(c['network']['tolerance'])}; written to "
                  f"{output}", highlight=False)


def _print_check(r: dict) -> None:
    table = Table(title=f"contract check: {r['verdict']}")
    for col in ("clause", "tolerance", "verdict", "new Phi lower", "new Phi upper"):
        table.add_column(col)
    for cl in r["clauses"]:
        phi = cl["phi"] or {}
        table.add_row(cl["id"], _num(cl["tolerance"]), cl["verdict"],
                      _num(phi.get("lower")), _num(phi.get("upper")))
    table.add_row(r["network"]["id"], _num(r["network"]["tolerance"]),
                  r["network"]["verdict"], "", "")
    console.print(table)
