"""``nnres resilience``, ``nnres alpha-max`` and ``nnres min-perturbation`` (seed 000).

``resilience`` computes Φ_m for the chosen classes (all by default, then also Ξ) by MIP (6);
``alpha-max`` the largest confidence ratio a class reaches in the domain;
``min-perturbation`` the per-sample minimum perturbation of every row of a data file (a
robustness table). Every number is an interval [proven lower, replayed upper]; a single
value is printed only when the solver proved it optimal. An infeasible premise
(alpha > alpha_max) is an answer, printed as such, with exit code 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from nnresilience.cli.app import app, console, emit_json
from nnresilience.errors import InputDataError

_NORM_HELP = "perturbation norm: l1 (the paper's) or linf"


def _load_model(path: Path):
    from nnresilience.loaders import load_network

    return load_network(path)


def _load_array(path: Path) -> np.ndarray:
    """Rows of inputs (or labels) from .npy/.npz/.csv through :mod:`nnresilience.io`."""
    from nnresilience.io import load_inputs

    return np.asarray(load_inputs(path), float)


def _parse_domain(spec: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo_s, hi_s = spec.split(":")
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise InputDataError(f"--domain {spec!r}: expected LO:HI, e.g. 0:1") from None
    return np.full(n, lo), np.full(n, hi)


def _domain(network, domain: str | None, domain_from: Path | None,
            data: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """--domain LO:HI, else the input box of a VNN-LIB file, else the data's bounding box,
    else the network's own domain."""
    n = network.n_inputs
    if domain is not None:
        return _parse_domain(domain, n)
    if domain_from is not None:
        from nnresilience.spec.vnnlib import read_vnnlib

        prop = read_vnnlib(domain_from, n_inputs=n, n_outputs=network.n_outputs)
        los = np.array([c.region.lo for c in prop.cases])
        his = np.array([c.region.hi for c in prop.cases])
        return los.min(axis=0), his.max(axis=0)
    if data is not None:
        X = network.check_input(data)
        return X.min(axis=0), X.max(axis=0)
    if network.input_lo is not None and network.input_hi is not None:
        return network.input_lo, network.input_hi
    raise InputDataError("no input domain: give --domain LO:HI, --domain-from VNNLIB or "
                         "--data FILE")


def _settings(preset: str, big_m: str | None, lookback: int | None, priorities: bool | None,
              warm_start: bool | None, backend: str | None):
    from nnresilience.resilience import preset as get_preset

    s = get_preset(preset)
    changes = {k: v for k, v in dict(big_m=big_m, lookback=lookback, priorities=priorities,
                                     warm_start=warm_start, backend=backend).items()
               if v is not None}
    return s.with_(**changes) if changes else s


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.6g}"


def _value(r) -> str:
    if not r.feasible:
        return "infeasible premise"
    if r.optimal and r.upper is not None:
        return _fmt(r.upper)
    return f"[{_fmt(r.lower)}, {_fmt(r.upper)}]"


PRESET_OPT = typer.Option("default", "--preset",
                          help="settings preset: default, paper_baseline, dataflow, heuristics12")
BIGM_OPT = typer.Option(None, "--big-m", help="big-M source: uniform, interval, symbolic")
LOOK_OPT = typer.Option(None, "--lookback", help="heuristic 1: milp:W bound tightening (0=off)")
PRIO_OPT = typer.Option(None, "--priorities/--no-priorities", help="heuristic 2")
WARM_OPT = typer.Option(None, "--warm-start/--no-warm-start", help="heuristic 3")
BACK_OPT = typer.Option(None, "--backend", help="solver backend (auto, scip, highs, gurobi)")


@app.command("resilience")
def resilience_cmd(
    model: Path = typer.Argument(..., help="network file (.onnx, .nnet, ...)"),
    cls: list[int] = typer.Option(None, "--class", "-m", help="class m (repeatable); "
                                  "default: all classes, and Xi"),
    alpha: float = typer.Option(1.0, "--alpha", help="confidence ratio alpha >= 1"),
    k: int = typer.Option(1, "--k", help="m must leave the top-k (1..d-1)"),
    norm: str = typer.Option("l1", "--norm", help=_NORM_HELP),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI (every input)"),
    domain_from: Path = typer.Option(None, "--domain-from", help="input box of a VNN-LIB file"),
    data: Path = typer.Option(None, "--data", help="inputs (.npy/.csv): domain = their "
                              "bounding box unless --domain; samples for --warm-start"),
    timeout: float = typer.Option(None, "--timeout", help="seconds per class"),
    workers: int = typer.Option(1, "--workers", help="processes (one class each)"),
    preset: str = PRESET_OPT, big_m: str = BIGM_OPT, lookback: int = LOOK_OPT,
    priorities: bool = PRIO_OPT, warm_start: bool = WARM_OPT, backend: str = BACK_OPT,
    json_out: str = typer.Option(None, "--json", help="write results as JSON (FILE or -)"),
) -> None:
    """Maximum perturbation bound Phi_m (and Xi = min over classes) by MIP (6)."""
    from nnresilience.resilience import phi_many, xi

    net = _load_model(model)
    X = None if data is None else _load_array(data)
    lo, hi = _domain(net, domain, domain_from, X)
    s = _settings(preset, big_m, lookback, priorities, warm_start, backend)
    classes = list(cls) if cls else list(range(net.n_outputs))
    if len(classes) > 1 and not cls:
        total = xi(net, alpha, k, norm, (lo, hi), classes=classes, settings=s, timeout=timeout,
                   data=X, workers=workers)
        from nnresilience.results import ResilienceResult

        per = [ResilienceResult.from_dict(d) for d in total.stats["per_class"]]
    else:
        total = None
        per = phi_many(net, classes, alpha, k, norm, (lo, hi), settings=s, timeout=timeout,
                       data=X, workers=workers)
    table = Table(title=f"Phi_m  (alpha={alpha:g}, k={k}, norm={norm})")
    for col in ("class", "Phi_m", "lower", "upper", "optimal", "seconds", "note"):
        table.add_column(col)
    for r in per:
        table.add_row(str(r.cls), _value(r), _fmt(r.lower), _fmt(r.upper),
                      "yes" if r.optimal else "no", f"{r.seconds:.2f}",
                      r.message if r.feasible else "see below")
    if json_out != "-":
        console.print(table)
        for r in per:
            if not r.feasible:
                console.print(f"class {r.cls}: {r.message}")
        if total is not None:
            console.print(f"Xi = {_value(total)}  (argmin class {total.cls})"
                          + (f"  {total.message}" if total.message else ""))
    if json_out is not None:
        out = {"alpha": alpha, "k": k, "norm": norm, "per_class": [r.to_dict() for r in per]}
        if total is not None:
            d = total.to_dict()
            d["stats"] = {}
            out["xi"] = d
        emit_json(out, json_out)


@app.command("alpha-max")
def alpha_max_cmd(
    model: Path = typer.Argument(..., help="network file"),
    cls: list[int] = typer.Option(None, "--class", "-m", help="class (repeatable; default all)"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI"),
    domain_from: Path = typer.Option(None, "--domain-from", help="input box of a VNN-LIB file"),
    data: Path = typer.Option(None, "--data", help="inputs whose bounding box is the domain"),
    timeout: float = typer.Option(None, "--timeout", help="seconds per class"),
    preset: str = PRESET_OPT, backend: str = BACK_OPT,
    json_out: str = typer.Option(None, "--json", help="write results as JSON (FILE or -)"),
) -> None:
    """Largest confidence ratio p_m / max_j p_j any input of the domain reaches."""
    from nnresilience.resilience import alpha_max

    net = _load_model(model)
    X = None if data is None else _load_array(data)
    lo, hi = _domain(net, domain, domain_from, X)
    s = _settings(preset, None, None, None, None, backend)
    res = [alpha_max(net, m, (lo, hi), settings=s, timeout=timeout)
           for m in (cls or range(net.n_outputs))]
    table = Table(title="alpha_max per class")
    for col in ("class", "alpha_max", "lower", "upper", "seconds"):
        table.add_column(col)
    for r in res:
        table.add_row(str(r.cls), _value(r), _fmt(r.lower), _fmt(r.upper), f"{r.seconds:.2f}")
    if json_out != "-":
        console.print(table)
    if json_out is not None:
        emit_json([r.to_dict() for r in res], json_out)


@app.command("min-perturbation")
def min_perturbation_cmd(
    model: Path = typer.Argument(..., help="network file"),
    data: Path = typer.Option(..., "--data", help="samples (.npy/.npz/.csv), one per row"),
    labels: Path = typer.Option(None, "--labels", help="labels file (default: predicted)"),
    norm: str = typer.Option("l1", "--norm", help=_NORM_HELP),
    k: int = typer.Option(1, "--k", help="the label must leave the top-k"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI"),
    timeout: float = typer.Option(None, "--timeout", help="seconds per sample"),
    workers: int = typer.Option(1, "--workers", help="processes (one sample each)"),
    preset: str = PRESET_OPT, big_m: str = BIGM_OPT, backend: str = BACK_OPT,
    json_out: str = typer.Option(None, "--json", help="write results as JSON (FILE or -)"),
) -> None:
    """Per-sample minimum perturbation (robustness table) of every row of --data."""
    from nnresilience.resilience import robustness_table

    net = _load_model(model)
    X = net.check_input(_load_array(data))
    y = None if labels is None else _load_array(labels).reshape(-1).astype(int)
    if domain is None and (net.input_lo is None or net.input_hi is None):
        raise InputDataError("min-perturbation needs the input domain: give --domain LO:HI")
    lo, hi = _domain(net, domain, None, None)
    s = _settings(preset, big_m, None, None, None, backend)
    res = robustness_table(net, X, y, norm, k, (lo, hi), settings=s, timeout=timeout,
                           workers=workers)
    table = Table(title=f"minimum perturbation ({norm}, k={k})")
    for col in ("sample", "label", "predicted", "min ||eps||", "lower", "upper", "seconds"):
        table.add_column(col)
    for i, r in enumerate(res):
        table.add_row(str(i), str(r.cls), str(r.stats.get("predicted", "")), _value(r),
                      _fmt(r.lower), _fmt(r.upper), f"{r.seconds:.2f}")
    if json_out != "-":
        console.print(table)
        ups = [r.upper for r in res if r.upper is not None and math.isfinite(r.upper)]
        if ups:
            console.print(f"{len(res)} samples: smallest {min(ups):.6g}, median "
                          f"{float(np.median(ups)):.6g}")
    if json_out is not None:
        emit_json([r.to_dict() for r in res], json_out)
