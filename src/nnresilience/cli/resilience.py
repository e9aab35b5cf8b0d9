"""``nnres resilience``, ``nnres alpha-max`` and ``nnres min-perturbation`` (seed 000).

``resilience`` computes Φ_m for the chosen classes (all by default, then also Ξ) by MIP (6);
``alpha-max`` the largest confidence ratio a class reaches in the domain;
``min-perturbation`` the per-sample minimum perturbation of every row of a data file (a
robustness table). Every number is an interval [proven lower, replayed upper]; a single
value is printed only when the solver proved it optimal. An infeasible premise
(alpha > alpha_max) is an answer, printed as such, with exit code 0.

``--timeout T`` is the budget of the whole command (start-up included): each class or
sample gets an equal share of what is left (times the number of parallel workers), and
the work runs in a killable child that is stopped at T + max(1 s, 5 % of T). Items the
child finished before that are kept; the others are reported ``unknown``.

All three commands write the same JSON shape (schema in ``docs/cli.md``): ``model``,
``query``, and ``results`` -- one object per class or sample with ``class``, ``sample``,
``status``, ``lower``, ``upper``, ``witness`` -- plus ``xi`` for ``resilience``.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from nnresilience import validate
from nnresilience.cli.app import app, console
from nnresilience.cli.command import CommandRun
from nnresilience.errors import InputDataError, InvalidArgumentError

_NORM_HELP = "perturbation norm: l1 (the paper's), l2 (SCIP) or linf"
RES_NORMS = ("l1", "linf", "l2")
# Seconds of each item's share kept back for bounds, replay and passing the answer on.
ITEM_OVERHEAD = 0.2


def _load_model(path: Path):
    from nnresilience.loaders import load_network

    return load_network(validate.input_file(path, "model"))


def _load_array(path: Path, what: str, network=None) -> np.ndarray:
    """Rows of inputs from .npy/.npz/.csv through :mod:`nnresilience.io` (checked against
    ``network``'s input size when given, the file named in the error)."""
    from nnresilience.errors import ShapeMismatchError
    from nnresilience.io import load_inputs

    X = np.asarray(load_inputs(validate.input_file(path, what)), float)
    if network is not None:
        try:
            X = network.check_input(X)
        except ShapeMismatchError as exc:
            raise ShapeMismatchError(f"{what} {path}: {exc}") from None
    return X


def _domain(network, domain: str | None, domain_from: Path | None,
            data: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """--domain LO:HI, else the input box of a VNN-LIB file, else the data's bounding box,
    else the network's own domain."""
    n = network.n_inputs
    if domain is not None:
        return validate.domain_text(domain, n)
    if domain_from is not None:
        from nnresilience.spec.vnnlib import read_vnnlib

        prop = read_vnnlib(validate.input_file(domain_from, "--domain-from"), n_inputs=n,
                           n_outputs=network.n_outputs)
        los = np.array([c.region.lo for c in prop.cases])
        his = np.array([c.region.hi for c in prop.cases])
        return validate.box(los.min(axis=0), his.max(axis=0), n, "--domain-from")
    if data is not None:
        X = network.check_input(data)
        return X.min(axis=0), X.max(axis=0)
    if network.input_lo is not None and network.input_hi is not None:
        return validate.box(network.input_lo, network.input_hi, n, "the model's domain")
    raise InvalidArgumentError("no input domain: give --domain LO:HI, --domain-from VNNLIB "
                               "or --data FILE")


def _settings(preset: str, big_m: str | None, lookback: int | None, priorities: bool | None,
              warm_start: bool | None, backend: str | None, arctan: str | None = None,
              norm: str | None = None):
    from nnresilience.backends.registry import get_backend
    from nnresilience.resilience import preset as get_preset
    from nnresilience.resilience.settings import BIG_M_SOURCES, PRESETS

    validate.choice(preset, tuple(PRESETS), "--preset")
    if big_m is not None:
        validate.choice(big_m, BIG_M_SOURCES, "--big-m")
    if lookback is not None:
        validate.integer(lookback, "--lookback", lo=0)
    if backend is not None:
        get_backend(backend)          # unknown or not installed: exit 2 before any work
    if arctan is not None:
        from nnresilience.resilience.settings import ARCTAN_MODES

        validate.choice(arctan, ARCTAN_MODES, "--arctan")
    s = get_preset(preset)
    changes = {k: v for k, v in dict(big_m=big_m, lookback=lookback, priorities=priorities,
                                     warm_start=warm_start, backend=backend,
                                     arctan=arctan).items()
               if v is not None}
    s = s.with_(**changes) if changes else s
    if norm is not None:
        from nnresilience.resilience.common import check_backend

        check_backend(norm, s)        # l2 with --backend highs: exit 2 before any work
    return s


def item_budget(run: CommandRun, n_items: int, workers: int) -> float | None:
    """Each class/sample's share of the time left: ``left * min(workers, n) / n``."""
    left = run.budget.remaining()
    if left is None:
        return None
    share = left * min(workers, max(n_items, 1)) / max(n_items, 1)
    return max(share - ITEM_OVERHEAD, 0.05)


def _with_progress(fn, reporter) -> dict[str, Any]:
    """``progress=`` for library functions that accept it (their dicts go to the display)."""
    return {"progress": reporter.progress} if "progress" in inspect.signature(fn).parameters \
        else {}


# ------------------------------------------------------------------------- JSON shape
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


def result_json(r, cls: int | None = None, sample: int | None = None,
                label: int | None = None) -> dict[str, Any]:
    """One entry of ``results`` (the same keys for a class and for a sample)."""
    from nnresilience.store import result_status

    d = r.to_dict()
    witness = None
    if d.get("a") is not None or d.get("a_perturbed") is not None:
        witness = {"a": d.get("a"), "a_perturbed": d.get("a_perturbed")}
    stats = d.get("stats") or {}
    return {"class": cls if cls is not None else d.get("cls") if sample is None else None,
            "sample": sample, "label": label if label is not None else
            (d.get("cls") if sample is not None else None),
            "predicted": stats.get("predicted"), "quantity": d.get("quantity"),
            "status": result_status(d), "value": r.value if r.optimal else None,
            "lower": d.get("lower"), "upper": d.get("upper"), "optimal": d.get("optimal"),
            "feasible": d.get("feasible"), "witness": witness,
            "encoding": stats.get("activation_encoding"),
            "seconds": d.get("seconds"), "message": d.get("message"),
            "backend": stats.get("backend"), "stats": stats}


def _killed(quantity: str, cls: int | None, why: str, seconds: float = 0.0):
    from nnresilience.results import ResilienceResult

    return ResilienceResult(quantity, None, None, False, True, cls=cls, message=why,
                            seconds=seconds, stats={"killed": True})


def _document(command: str, model: Path, run: CommandRun, query: dict[str, Any],
              results: list[dict[str, Any]], killed: bool, **extra: Any) -> dict[str, Any]:
    return {"command": command, "model": str(model), "query": query,
            "timeout": run.budget.timeout, "killed": killed, "results": results, **extra,
            "timings": {"command": round(run.budget.elapsed(), 3)}}


def _domain_json(lo: np.ndarray, hi: np.ndarray) -> dict[str, Any]:
    return {"lo": lo, "hi": hi}


def _kept(partials: list[Any], key: str) -> dict[int, Any]:
    """Items a killed child finished: its partials ``(index, result)`` or progress dicts
    ``{key: index, "result": ResilienceResult.to_dict()}``."""
    from nnresilience.results import ResilienceResult

    out: dict[int, Any] = {}
    for p in partials:
        if isinstance(p, tuple) and len(p) == 2:
            out[int(p[0])] = p[1]
        elif isinstance(p, dict) and isinstance(p.get("result"), dict) and p.get(key) is not None:
            out[int(p[key])] = ResilienceResult.from_dict(p["result"])
    return out


PRESET_OPT = typer.Option("default", "--preset",
                          help="settings preset: default, paper_baseline, dataflow, heuristics12")
BIGM_OPT = typer.Option(None, "--big-m", help="big-M source: uniform, interval, symbolic, alpha")
LOOK_OPT = typer.Option(None, "--lookback", help="heuristic 1: milp:W bound tightening (0=off)")
PRIO_OPT = typer.Option(None, "--priorities/--no-priorities", help="heuristic 2")
WARM_OPT = typer.Option(None, "--warm-start/--no-warm-start", help="heuristic 3")
BACK_OPT = typer.Option(None, "--backend", help="solver backend (auto, scip, highs, gurobi)")
ATAN_OPT = typer.Option(None, "--arctan", help="arctan neurons: pwl (sound linear relaxation, "
                        "default) or miqcp (the paper's quadratic approximation + error band; "
                        "SCIP)")
TIMEOUT_OPT = typer.Option(None, "--timeout", help="seconds for the whole command (start-up "
                           "included), shared equally by the classes/samples")
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress display on stderr.")
JSON_OPT = typer.Option(None, "--json", help="write results as JSON (FILE or -)")


# ------------------------------------------------------------------------- resilience
def _phi_work(reporter, net, classes: list[int], with_xi: bool, alpha: float, k: int,
              norm: str, lo, hi, settings, per_item: float | None, data, workers: int):
    from nnresilience.resilience import phi_many, xi
    from nnresilience.results import ResilienceResult

    if with_xi:
        total = xi(net, alpha, k, norm, (lo, hi), classes=classes, settings=settings,
                   timeout=per_item, data=data, workers=workers,
                   **_with_progress(xi, reporter))
        per = [ResilienceResult.from_dict(d) for d in total.stats["per_class"]]
        return per, total
    if workers > 1:
        return phi_many(net, classes, alpha, k, norm, (lo, hi), settings=settings,
                        timeout=per_item, data=data, workers=workers,
                        **_with_progress(phi_many, reporter)), None
    per = []
    for c in classes:        # serial per class: each finished class survives a kill
        reporter.progress({"phase": "Phi_m", "cls": c, "done": len(per),
                           "total": len(classes)})
        r = phi_many(net, [c], alpha, k, norm, (lo, hi), settings=settings,
                     timeout=per_item, data=data, workers=1,
                     **_with_progress(phi_many, reporter))[0]
        reporter.partial((c, r))
        per.append(r)
    return per, None


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
    data: Path = typer.Option(None, "--data", help="inputs (.npy/.npz/.csv): domain = their "
                              "bounding box unless --domain; samples for --warm-start"),
    timeout: float = TIMEOUT_OPT,
    workers: int = typer.Option(1, "--workers", help="processes (one class each)"),
    preset: str = PRESET_OPT, big_m: str = BIGM_OPT, lookback: int = LOOK_OPT,
    priorities: bool = PRIO_OPT, warm_start: bool = WARM_OPT, backend: str = BACK_OPT,
    arctan: str = ATAN_OPT, json_out: str = JSON_OPT, quiet: bool = QUIET_OPT,
) -> None:
    """Maximum perturbation bound Phi_m (and Xi = min over classes) by MIP (6)."""
    with CommandRun("resilience", timeout, quiet) as run:
        js = run.output(json_out, "--json", (model, domain_from, data))
        alpha = validate.alpha(alpha)
        norm = validate.norm(norm, allowed=RES_NORMS)
        workers = validate.workers(workers)
        s = _settings(preset, big_m, lookback, priorities, warm_start, backend, arctan, norm)
        net = _load_model(model)
        k = validate.top_k(k, net.n_outputs)
        chosen = validate.classes(cls, net.n_outputs)
        X = None if data is None else _load_array(data, "--data", net)
        lo, hi = _domain(net, domain, domain_from, X)
        classes = chosen or list(range(net.n_outputs))
        with_xi = chosen is None and len(classes) > 1
        per_item = item_budget(run, len(classes), workers)
        out = run.in_child(_phi_work, net, classes, with_xi, alpha, k, norm, lo, hi, s,
                           per_item, X, workers)
        total = None
        if out.finished:
            per, total = out.value
        else:
            kept = _kept(out.partials, "cls")
            per = [kept.get(c) or _killed("phi", c, "stopped at the deadline",
                                          run.budget.elapsed()) for c in classes]
        query = {"quantity": "phi", "alpha": alpha, "k": k, "norm": norm,
                 "classes": classes, "domain": _domain_json(lo, hi), "arctan": s.arctan}
        xi_json = None
        if total is not None:
            xi_json = result_json(total, cls=total.cls)
            xi_json["stats"] = {}
        run.outputs.write_json(js, _document(
            "resilience", model, run, query, [result_json(r, cls=c) for c, r in
                                              zip(classes, per, strict=True)],
            not out.finished, xi=xi_json))
    if js == "-":
        return
    table = Table(title=f"Phi_m  (alpha={alpha:g}, k={k}, norm={norm})")
    for col in ("class", "Phi_m", "lower", "upper", "optimal", "seconds", "note"):
        table.add_column(col)
    for c, r in zip(classes, per, strict=True):
        table.add_row(str(c), _value(r), _fmt(r.lower), _fmt(r.upper),
                      "yes" if r.optimal else "no", f"{r.seconds:.2f}",
                      r.message if r.feasible else "see below")
    console.print(table)
    for c, r in zip(classes, per, strict=True):
        if not r.feasible:
            console.print(f"class {c}: {r.message}", highlight=False, soft_wrap=True)
    if total is not None:
        console.print(f"Xi = {_value(total)}  (argmin class {total.cls})"
                      + (f"  {total.message}" if total.message else ""), highlight=False,
                      soft_wrap=True)
    if not out.finished:
        console.print("TIMED OUT: the command was stopped at its deadline; classes marked "
                      "'stopped at the deadline' have no answer", highlight=False,
                      soft_wrap=True)


# -------------------------------------------------------------------------- alpha-max
def _alpha_work(reporter, net, classes: list[int], lo, hi, settings, per_item):
    from nnresilience.resilience import alpha_max

    res = []
    for i, m in enumerate(classes):
        reporter.progress({"phase": "alpha_max", "cls": m, "done": i,
                           "total": len(classes)})
        r = alpha_max(net, m, (lo, hi), settings=settings, timeout=per_item,
                      **_with_progress(alpha_max, reporter))
        reporter.partial((m, r))
        res.append(r)
    return res


@app.command("alpha-max")
def alpha_max_cmd(
    model: Path = typer.Argument(..., help="network file"),
    cls: list[int] = typer.Option(None, "--class", "-m", help="class (repeatable; default all)"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI"),
    domain_from: Path = typer.Option(None, "--domain-from", help="input box of a VNN-LIB file"),
    data: Path = typer.Option(None, "--data", help="inputs whose bounding box is the domain"),
    timeout: float = TIMEOUT_OPT,
    preset: str = PRESET_OPT, backend: str = BACK_OPT, arctan: str = ATAN_OPT,
    json_out: str = JSON_OPT, quiet: bool = QUIET_OPT,
) -> None:
    """Largest confidence ratio p_m / max_j p_j any input of the domain reaches."""
    with CommandRun("alpha-max", timeout, quiet) as run:
        js = run.output(json_out, "--json", (model, domain_from, data))
        s = _settings(preset, None, None, None, None, backend, arctan)
        net = _load_model(model)
        classes = validate.classes(cls, net.n_outputs) or list(range(net.n_outputs))
        X = None if data is None else _load_array(data, "--data", net)
        lo, hi = _domain(net, domain, domain_from, X)
        out = run.in_child(_alpha_work, net, classes, lo, hi, s,
                           item_budget(run, len(classes), 1))
        if out.finished:
            res = out.value
        else:
            kept = _kept(out.partials, "cls")
            res = [kept.get(m) or _killed("alpha_max", m, "stopped at the deadline",
                                          run.budget.elapsed()) for m in classes]
        run.outputs.write_json(js, _document(
            "alpha-max", model, run, {"quantity": "alpha_max", "classes": classes,
                                      "domain": _domain_json(lo, hi)},
            [result_json(r, cls=m) for m, r in zip(classes, res, strict=True)],
            not out.finished))
    if js == "-":
        return
    table = Table(title="alpha_max per class")
    for col in ("class", "alpha_max", "lower", "upper", "seconds", "note"):
        table.add_column(col)
    for m, r in zip(classes, res, strict=True):
        table.add_row(str(m), _value(r), _fmt(r.lower), _fmt(r.upper), f"{r.seconds:.2f}",
                      r.message or "")
    console.print(table)


# ------------------------------------------------------------------- min-perturbation
def _minpert_work(reporter, net, X, y, norm: str, k: int, lo, hi, settings,
                  per_item: float | None, workers: int):
    from nnresilience.resilience import robustness_table

    if workers > 1:
        return robustness_table(net, X, y, norm, k, (lo, hi), settings=settings,
                                timeout=per_item, workers=workers,
                                **_with_progress(robustness_table, reporter))
    res = []
    for i in range(X.shape[0]):     # serial per sample: each finished row survives a kill
        reporter.progress({"phase": "minimum perturbation", "sample": i, "done": i,
                           "total": X.shape[0]})
        r = robustness_table(net, X[i:i + 1], None if y is None else y[i:i + 1], norm, k,
                             (lo, hi), settings=settings, timeout=per_item, workers=1,
                             **_with_progress(robustness_table, reporter))[0]
        reporter.partial((i, r))
        res.append(r)
    return res


@app.command("min-perturbation")
def min_perturbation_cmd(
    model: Path = typer.Argument(..., help="network file"),
    data: Path = typer.Option(..., "--data", help="samples (.npy, .csv, or .npz with an "
                              "array 'x'), one per row"),
    labels: Path = typer.Option(None, "--labels", help="labels file (.npy/.csv/.npz "
                                "'labels'; default: the predicted class)"),
    norm: str = typer.Option("l1", "--norm", help=_NORM_HELP),
    k: int = typer.Option(1, "--k", help="the label must leave the top-k (1..d-1)"),
    domain: str = typer.Option(None, "--domain", help="input domain box LO:HI"),
    timeout: float = TIMEOUT_OPT,
    workers: int = typer.Option(1, "--workers", help="processes (one sample each)"),
    preset: str = PRESET_OPT, big_m: str = BIGM_OPT, backend: str = BACK_OPT,
    arctan: str = ATAN_OPT, json_out: str = JSON_OPT, quiet: bool = QUIET_OPT,
) -> None:
    """Per-sample minimum perturbation (robustness table) of every row of --data."""
    with CommandRun("min-perturbation", timeout, quiet) as run:
        js = run.output(json_out, "--json", (model, data, labels))
        norm = validate.norm(norm, allowed=RES_NORMS)
        workers = validate.workers(workers)
        s = _settings(preset, big_m, None, None, None, backend, arctan, norm)
        net = _load_model(model)
        k = validate.top_k(k, net.n_outputs)
        X = _load_array(data, "--data", net)
        y = None
        if labels is not None:
            from nnresilience.io import load_labels

            y = validate.labels(load_labels(validate.input_file(labels, "--labels")),
                                net.n_outputs, X.shape[0], name=f"--labels {labels}")
        if domain is None and (net.input_lo is None or net.input_hi is None):
            raise InputDataError("min-perturbation needs the input domain: give --domain "
                                 "LO:HI")
        lo, hi = _domain(net, domain, None, None)
        pred = np.atleast_1d(net.predict(X)).astype(int)
        out = run.in_child(_minpert_work, net, X, y, norm, k, lo, hi, s,
                           item_budget(run, X.shape[0], workers), workers)
        if out.finished:
            res = out.value
        else:
            kept = _kept(out.partials, "sample")
            res = [kept.get(i) or _killed("min_perturbation",
                                          int(pred[i] if y is None else y[i]),
                                          "stopped at the deadline", run.budget.elapsed())
                   for i in range(X.shape[0])]
        results = [result_json(r, sample=i, label=int(pred[i] if y is None else y[i]))
                   for i, r in enumerate(res)]
        for i, row in enumerate(results):
            row["predicted"] = int(pred[i])
        run.outputs.write_json(js, _document(
            "min-perturbation", model, run,
            {"quantity": "min_perturbation", "norm": norm, "k": k, "data": str(data),
             "arctan": s.arctan,
             "labels": None if labels is None else str(labels),
             "domain": _domain_json(lo, hi)}, results, not out.finished))
    if js == "-":
        return
    table = Table(title=f"minimum perturbation ({norm}, k={k})")
    for col in ("sample", "label", "predicted", "min ||eps||", "lower", "upper", "seconds",
                "note"):
        table.add_column(col)
    for i, r in enumerate(res):
        table.add_row(str(i), str(results[i]["label"]), str(int(pred[i])), _value(r),
                      _fmt(r.lower), _fmt(r.upper), f"{r.seconds:.2f}", r.message or "")
    console.print(table)
    ups = [r.upper for r in res if r.upper is not None and math.isfinite(r.upper)]
    if ups:
        console.print(f"{len(res)} samples: smallest {min(ups):.6g}, median "
                      f"{float(np.median(ups)):.6g}", highlight=False, soft_wrap=True)
