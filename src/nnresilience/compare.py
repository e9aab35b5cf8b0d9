"""Comparing the resilience of several networks over the same domain and samples.

Seed 000 (§7): "our verification techniques also allow to formally and quantitatively
compare the resilience of different neural networks". For each model, on one domain D and
one set of samples, this computes

* Φ_m of every class and Ξ = min_m Φ_m (MIP (6); witnesses replayed exactly, as in
  :mod:`nnresilience.contract`),
* α_max of every class (the largest confidence ratio any input of D reaches),
* the minimum perturbation of every sample (the robustness table),

each as an honest interval [proven lower, witnessed upper], and returns one JSON-ready
dict (schema in ``docs/contracts.md``) that :mod:`nnresilience.report_compare` draws.
The models must agree in input and output sizes (the same task, e.g. two architectures,
a retrained or a pruned model). ``timeout`` is the budget of the whole comparison, shared
by the models and, within a model, by its stages in proportion to their work.
Only the public resilience API is used.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.contract import (
    Progress,
    call_timeout,
    class_phis,
    file_sha256,
    is_parallel,
    next_slot,
    resolve_box,
    task_timeout,
    worker_count,
)
from nnresilience.errors import InputDataError, ShapeMismatchError

SCHEMA = "nnresilience.compare"
SCHEMA_VERSION = 1
SAMPLE_WEIGHT = 3


def _check_models(models: list[tuple[str, Any, Any]]) -> None:
    if len(models) < 1:
        raise InputDataError("give at least one model to compare")
    n_in, n_out = models[0][1].n_inputs, models[0][1].n_outputs
    for name, net, _ in models[1:]:
        if (net.n_inputs, net.n_outputs) != (n_in, n_out):
            raise ShapeMismatchError(
                f"{name} has {net.n_inputs} inputs and {net.n_outputs} outputs, "
                f"{models[0][0]} has {n_in} and {n_out}: compared models must share them")


class _Budget:
    """Splits a wall-clock budget over stages in proportion to their rounds of work; a
    stage that finishes early leaves its time to the later ones."""

    def __init__(self, total: float | None, rounds: float) -> None:
        self.end = None if total is None else time.perf_counter() + float(total)
        self.rounds_left = max(float(rounds), 1.0)

    def take(self, rounds: float) -> float | None:
        if self.end is None:
            return None
        left = max(0.0, self.end - time.perf_counter())
        share = left * min(1.0, rounds / self.rounds_left)
        self.rounds_left = max(1.0, self.rounds_left - rounds)
        return share

    def spent(self) -> bool:
        return self.end is not None and time.perf_counter() >= self.end - 0.2


def _num(v: float | None) -> float | None:
    return None if v is None else float(v)


def _phi_rows(per: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in per:
        r = c["result"]
        status = ("vacuous" if not c["feasible"] else "optimal" if c["optimal"] else
                  "bounded" if c["lower"] is not None or c["upper"] is not None else "unknown")
        rows.append({"class": c["cls"], "lower": _num(c["lower"]), "upper": _num(c["upper"]),
                     "optimal": c["optimal"], "feasible": c["feasible"], "status": status,
                     "seconds": round(float(r.seconds), 4), "message": c["message"] or "",
                     "a": None if c["a"] is None else c["a"].tolist(),
                     "a_perturbed": None if c["b"] is None else c["b"].tolist()})
    return rows


def _xi(rows: list[dict[str, Any]], opt_tol: float) -> dict[str, Any]:
    feas = [r for r in rows if r["feasible"]]
    if not feas:
        return {"lower": None, "upper": None, "argmin_class": None, "optimal": False,
                "message": "no class reaches the confidence ratio"}
    ups = [(r["upper"], r["class"]) for r in feas if r["upper"] is not None]
    lower = min(r["lower"] if r["lower"] is not None else 0.0 for r in feas)
    if not ups:
        return {"lower": lower, "upper": None, "argmin_class": None, "optimal": False}
    up, cls = min(ups)
    best = next(r for r in feas if r["class"] == cls)
    optimal = best["optimal"] and all(
        r is best or (r["lower"] is not None and r["lower"] >= up * (1 - opt_tol))
        for r in feas)
    return {"lower": min(lower, up), "upper": up, "argmin_class": cls, "optimal": optimal}


def _alpha_rows(net, classes, lo, hi, settings, budget: _Budget, stage_rounds: int
                ) -> list[dict[str, Any]]:
    from nnresilience.resilience import alpha_max

    stage = budget.take(stage_rounds)
    t_end = None if stage is None else time.perf_counter() + stage
    rows = []
    for i, m in enumerate(classes):
        share = None
        if t_end is not None:
            slot = next_slot(t_end - time.perf_counter(), len(classes) - i)
            if slot is None:
                rows.append({"class": m, "lower": None, "upper": None, "optimal": False,
                             "seconds": 0.0, "message": "not run: time budget spent"})
                continue
            share = call_timeout(slot)
        r = alpha_max(net, m, (lo, hi), settings=settings, timeout=share)
        rows.append({"class": m, "lower": _num(r.lower), "upper": _num(r.upper),
                     "optimal": bool(r.optimal), "seconds": round(float(r.seconds), 4),
                     "message": r.message})
    return rows


def _sample_rows(net, X, labels, norm, k, lo, hi, settings, budget: _Budget, rounds: float,
                 workers) -> list[dict[str, Any]]:
    """Minimum perturbation of every sample: through the executor with workers (each gets
    its wave's share), else one by one, each with an equal share of what is left (a
    sample reached after the budget is spent is reported, not run)."""
    from nnresilience.resilience import min_perturbation, robustness_table
    from nnresilience.results import ResilienceResult

    if X is None:
        return []
    stage = budget.take(rounds)
    n = X.shape[0]
    if is_parallel(workers) or stage is None:
        res = robustness_table(net, X, labels, norm, k, (lo, hi), settings=settings,
                               timeout=task_timeout(stage, math.ceil(n / worker_count(
                                   workers)), workers), workers=workers)
    else:
        end = time.perf_counter() + stage
        res = []
        for i in range(n):
            lab = None if labels is None else int(labels[i])
            slot = next_slot(end - time.perf_counter(), n - i)
            if slot is None:
                m = int(np.argmax(net.forward(X[i]))) if lab is None else lab
                res.append(ResilienceResult("min_perturbation", None, None, False, True,
                                            cls=m, k=k, norm=norm,
                                            message="not run: time budget spent"))
                continue
            res.append(min_perturbation(net, X[i], lab, norm, k, (lo, hi), settings=settings,
                                        timeout=call_timeout(slot)))
    rows = []
    for i, r in enumerate(res):
        rows.append({"sample": i, "label": r.cls,
                     "predicted": int(np.argmax(net.forward(X[i]))),
                     "lower": _num(r.lower), "upper": _num(r.upper),
                     "optimal": bool(r.optimal), "seconds": round(float(r.seconds), 4),
                     "a_perturbed": None if r.a_perturbed is None else list(r.a_perturbed),
                     "message": r.message})
    return rows


def _summary(rows: list[dict[str, Any]], labels) -> dict[str, Any]:
    if not rows:
        return {}
    ups = np.array([np.nan if r["upper"] is None else r["upper"] for r in rows], float)
    los = np.array([0.0 if r["lower"] is None else r["lower"] for r in rows], float)
    fin_up = ups[np.isfinite(ups)]
    out = {"samples": len(rows),
           "optimal": int(sum(r["optimal"] for r in rows)),
           "median_lower": float(np.median(np.where(np.isfinite(los), los, np.nan)))
           if np.isfinite(los).any() else None,
           "median_upper": float(np.median(fin_up)) if fin_up.size else None,
           "min_upper": float(fin_up.min()) if fin_up.size else None}
    if labels is not None:
        out["accuracy"] = float(np.mean([r["label"] == r["predicted"] for r in rows]))
    return out


@dataclass(frozen=True)
class CompareQuery:
    """The checked question of a comparison: the same domain, samples and labels for
    every model."""

    alpha: float
    k: int
    norm: str
    lo: np.ndarray
    hi: np.ndarray
    X: np.ndarray | None
    labels: np.ndarray | None


def compare_query(models: list[tuple[str, Any, Any]], domain=None, alpha: float = 2.0,
                  k: int = 1, norm: str = "l1", data: np.ndarray | None = None,
                  labels: np.ndarray | None = None) -> CompareQuery:
    """Check a comparison's parameters against its models (bad input raises before any
    work starts)."""
    from nnresilience import validate
    from nnresilience.contract import check_query

    _check_models(models)
    ref = models[0][1]
    alpha, k, norm = check_query(ref, alpha, k, norm)
    lo, hi = resolve_box(ref, domain)
    X = None if data is None else ref.check_input(np.asarray(data, float))
    if X is not None and (np.any(lo > X) or np.any(hi < X)):
        raise InputDataError("some samples lie outside the domain")
    if labels is not None:
        if X is None:
            raise InputDataError("labels need --data with as many rows")
        labels = validate.labels(labels, ref.n_outputs, X.shape[0])
    return CompareQuery(alpha, k, norm, lo, hi, X, labels)


def compare_models(models: list[tuple[str, Any, str | Path | None]], domain=None,
                   alpha: float = 2.0, k: int = 1, norm: str = "l1", *,
                   data: np.ndarray | None = None, labels: np.ndarray | None = None,
                   settings=None, timeout: float | None = None, workers: Any = None,
                   alpha_max_too: bool = True, progress: Progress | None = None
                   ) -> dict[str, Any]:
    """Compare ``models`` (``(name, network, path or None)`` triples) side by side.

    ``data`` rows are the samples of the minimum-perturbation distributions (``labels``
    default to each model's own prediction, so a misclassified sample is not a 0);
    ``timeout`` is the budget of the whole call. ``progress`` gets a dict per stage of
    each model, and one per finished model carrying its entry under ``"result"`` (a
    killed caller keeps the finished models: :mod:`nnresilience.killable`).
    """
    from nnresilience.resilience import DEFAULT

    t0 = time.perf_counter()
    settings = DEFAULT if settings is None else settings
    q = compare_query(models, domain, alpha, k, norm, data, labels)
    C = models[0][1].n_outputs
    w = worker_count(workers)
    r_phi = C if w == 1 else math.ceil(C / w)
    r_alpha = C if alpha_max_too else 0
    # a sample's minimum perturbation is a staged search (attack, bisection, final MIP):
    # it gets three rounds where one class's Φ_m (one MIP) gets one
    r_samples = 0 if q.X is None else SAMPLE_WEIGHT * math.ceil(q.X.shape[0] / w)
    budget = _Budget(timeout, len(models) * (r_phi + r_alpha + r_samples))

    def say(i: int, name: str, stage: str, **extra: Any) -> None:
        if progress is not None:
            progress({"phase": stage, "item": name, "done": i, "total": len(models),
                      **extra})

    out_models = []
    for i, (name, net, path) in enumerate(models):
        tm = time.perf_counter()
        say(i, name, "Phi_m")
        per = class_phis(net, range(C), q.alpha, q.k, q.norm, q.lo, q.hi, settings=settings,
                         timeout=budget.take(r_phi), workers=workers)
        phis = _phi_rows(per)
        if alpha_max_too:
            say(i, name, "alpha_max")
        alphas = (_alpha_rows(net, list(range(C)), q.lo, q.hi, settings, budget, r_alpha)
                  if alpha_max_too else [])
        if q.X is not None:
            say(i, name, "minimum perturbation")
        samples = _sample_rows(net, q.X, q.labels, q.norm, q.k, q.lo, q.hi, settings, budget,
                               r_samples, workers)
        entry = {
            "name": name, "path": None if path is None else str(path),
            "content_hash": net.content_hash(),
            "file_sha256": None if path is None else file_sha256(path),
            "layers": [lay["description"] for lay in net.summary()],
            "xi": _xi(phis, settings.opt_tol), "phi": phis, "alpha_max": alphas,
            "min_perturbation": samples, "summary": _summary(samples, q.labels),
            "seconds": round(time.perf_counter() - tm, 3)}
        out_models.append(entry)
        say(i + 1, name, "model done", result=entry)
    return assemble_compare(q, out_models, settings=settings, timeout=timeout,
                            workers=workers, seconds=time.perf_counter() - t0)


def stopped_model(name: str, net, path: str | Path | None,
                  why: str = "stopped at the deadline") -> dict[str, Any]:
    """The entry of a model whose answers were lost when the work was killed: the same
    keys, no rows, every number unknown."""
    return {"name": name, "path": None if path is None else str(path),
            "content_hash": net.content_hash(),
            "file_sha256": None if path is None else file_sha256(path),
            "layers": [lay["description"] for lay in net.summary()],
            "xi": {"lower": None, "upper": None, "argmin_class": None, "optimal": False,
                   "message": why},
            "phi": [], "alpha_max": [], "min_perturbation": [], "summary": {},
            "seconds": 0.0, "message": why}


def assemble_compare(q: CompareQuery, entries: list[dict[str, Any]], *, settings,
                     timeout: float | None = None, workers: Any = None,
                     seconds: float = 0.0, killed: bool = False) -> dict[str, Any]:
    """The comparison document from the models' entries."""
    from nnresilience import __version__
    from nnresilience.contract import utc_now

    X, labels = q.X, q.labels
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": utc_now(),
        "tool": {"name": "nnresilience", "version": __version__},
        "parameters": {"alpha": float(q.alpha), "k": int(q.k), "norm": q.norm,
                       "domain": {"lo": q.lo.tolist(), "hi": q.hi.tolist()},
                       "samples": None if X is None else int(X.shape[0]),
                       "sample_inputs": None if X is None else X.tolist(),
                       "labels": None if labels is None else labels.tolist(),
                       "labels_from": "given" if labels is not None else "each model's "
                                                                         "prediction",
                       "timeout": timeout,
                       "workers": None if workers is None else str(workers)},
        "models": entries, "settings": asdict(settings),
        "seconds": round(seconds, 3), "killed": killed,
    }
