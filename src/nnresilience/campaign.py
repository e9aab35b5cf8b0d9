"""Campaigns: many queries, run in parallel, every finished answer kept.

A campaign is a list of :class:`WorkUnit` — one decision or optimisation query each:

* ``verify``            — a model file and a VNN-LIB property (a VNN-COMP instance);
* ``robustness``        — local robustness of one sample at one radius δ (a cell of the
  samples × δ table); the centre and label are kept in the unit's params so the report
  can draw the original next to a counterexample;
* ``phi``               — the maximum perturbation bound Φ_m of one class m (seed 000);
* ``min_perturbation``  — the minimum adversarial perturbation of one sample.

:func:`run_campaign` computes each unit's store key in the main process (network content
hash, property hash, parameter hash: :func:`nnresilience.store.query_key`), skips the units
already in the store, sends the rest through an executor (inline, process pool or Dask: the
task is a top-level function of a picklable unit that loads the model *in the worker*),
and commits each answer to the store the moment it arrives. Killing the campaign loses
only the answers still being computed; running it again computes only those.

Campaign files: a VNN-COMP ``instances.csv`` (``onnx,vnnlib,timeout`` per line, paths
relative to the csv) or a JSON config (see ``docs/campaigns.md`` and :func:`load_campaign`).
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.errors import InputDataError, NNResError
from nnresilience.parallel import Executor, InlineExecutor
from nnresilience.progress import Progress, QuietProgress
from nnresilience.store import CampaignStore, Key, query_key, result_status, stable_hash

KINDS = ("verify", "robustness", "phi", "min_perturbation")

# Parameters a JSON unit may set for each kind (anything else is a typo and raises).
_COMMON_KEYS = {"kind", "network", "name", "engine", "timeout", "options"}
_UNIT_KEYS = {
    "verify": _COMMON_KEYS | {"property", "instances"},
    "robustness": _COMMON_KEYS | {"inputs", "labels", "deltas", "radius", "norm", "k",
                                  "domain", "samples"},
    "phi": _COMMON_KEYS | {"classes", "alpha", "k", "norm", "domain"},
    "min_perturbation": _COMMON_KEYS | {"inputs", "labels", "norm", "domain", "samples"},
}
_CONFIG_KEYS = {"name", "task", "defaults", "units"}


@dataclass(frozen=True)
class WorkUnit:
    """One query of a campaign: picklable (paths and JSON parameters only).

    ``params`` holds everything that changes the answer (engine, timeout, δ, α, k, norm,
    centre, label, ...); all of it is hashed into the store key, so running the same unit
    with a longer timeout is a new query, not a stale hit.
    """

    kind: str
    network: str
    property: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def label(self) -> str:
        return self.name or f"{self.kind}:{Path(self.network).stem}"


@dataclass
class Campaign:
    """A parsed campaign file: its units and, optionally, a custom task ``module:function``."""

    units: list[WorkUnit]
    name: str = "campaign"
    task: str | None = None
    source: str | None = None


@dataclass
class CampaignSummary:
    """What one :func:`run_campaign` call did."""

    total: int = 0                       # units in the campaign
    skipped: int = 0                     # already stored (or duplicates of another unit)
    done: int = 0                        # answers stored by this run
    errors: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)   # status -> n, this run
    timed_out: bool = False
    interrupted: bool = False
    aborted: str | None = None           # the pool broke (a worker died): why
    seconds: float = 0.0

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done - len(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "skipped": self.skipped, "done": self.done,
                "errors": self.errors, "counts": dict(self.counts),
                "remaining": self.remaining, "timed_out": self.timed_out,
                "interrupted": self.interrupted, "aborted": self.aborted,
                "seconds": round(self.seconds, 3)}


# ------------------------------------------------------------------- loading helpers
# Per-process caches: a worker running 500 units on one model loads it once. They hold
# read-only objects keyed by (path, mtime, size), never settings.
_NETWORKS: dict[tuple, Any] = {}
_HASHES: dict[tuple, str] = {}


def _file_id(path: str) -> tuple:
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def load_network_cached(path: str) -> Any:
    """``nnresilience.loaders.load_network`` with a per-process cache."""
    from nnresilience.loaders import load_network

    fid = _file_id(path)
    net = _NETWORKS.get(fid)
    if net is None:
        net = load_network(path)
        if len(_NETWORKS) > 64:
            _NETWORKS.clear()
        _NETWORKS[fid] = net
    return net


def network_hash(path: str) -> str:
    """Content hash of the network in ``path`` (cached per file identity)."""
    fid = _file_id(path)
    h = _HASHES.get(fid)
    if h is None:
        h = load_network_cached(path).content_hash()
        _HASHES[fid] = h
    return h


def _read_property(path: str, net: Any) -> Any:
    from nnresilience.spec.vnnlib import read_vnnlib

    return read_vnnlib(path, n_inputs=net.n_inputs, n_outputs=net.n_outputs)


def _load_array(path: Path) -> np.ndarray:
    from nnresilience.io import load_inputs

    return np.asarray(load_inputs(path), dtype=np.float64)


def _domain(params: dict[str, Any], net: Any) -> tuple[Any, Any]:
    dom = params.get("domain")
    if dom is None:
        return net.input_lo, net.input_hi
    lo, hi = dom
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def _robustness_property(unit: WorkUnit, net: Any) -> Any:
    from nnresilience.spec.property import robustness

    p = unit.params
    lo, hi = _domain(p, net)
    return robustness(np.asarray(p["center"], dtype=np.float64), int(p["label"]),
                      float(p["radius"]), net.n_outputs, norm=p.get("norm", "linf"),
                      domain_lo=lo, domain_hi=hi, k=int(p.get("k", 1)),
                      name=unit.name or None)


def _call_filtered(fn: Callable, *args: Any, options: dict[str, Any] | None = None,
                   **kwargs: Any) -> Any:
    """Call ``fn`` with the standard keywords it accepts (``None`` values dropped) plus the
    user's ``options`` unfiltered (a misspelt option is an error, not ignored)."""
    sig = inspect.signature(fn)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kw = {k: v for k, v in kwargs.items()
          if v is not None and (accepts_any or k in sig.parameters)}
    kw.update(options or {})
    return fn(*args, **kw)


# ------------------------------------------------------------------------ the task
def run_unit(unit: WorkUnit) -> Any:
    """The default task: answer one unit (runs in a worker; loads the model there).

    Returns a :class:`~nnresilience.results.VerificationResult` (``verify``,
    ``robustness``) or :class:`~nnresilience.results.ResilienceResult` (``phi``,
    ``min_perturbation``).
    """
    net = load_network_cached(unit.network)
    p = unit.params
    options = dict(p.get("options") or {})
    if unit.kind in ("verify", "robustness"):
        from nnresilience.verify import verify

        prop = (_read_property(unit.property, net) if unit.kind == "verify"
                else _robustness_property(unit, net))
        return _call_filtered(verify, net, prop, engine=p.get("engine", "auto"),
                              timeout=p.get("timeout"), options=options)
    if unit.kind == "phi":
        from nnresilience.resilience import phi

        lo, hi = _domain(p, net)
        dom = None if lo is None else (lo, hi)
        return _call_filtered(phi, net, int(p["cls"]), alpha=p.get("alpha", 1.0),
                              k=p.get("k", 1), norm=p.get("norm", "l1"), domain=dom,
                              engine=p.get("engine"), timeout=p.get("timeout"), options=options)
    if unit.kind == "min_perturbation":
        from nnresilience.resilience import min_perturbation

        lo, hi = _domain(p, net)
        dom = None if lo is None else (lo, hi)
        return _call_filtered(min_perturbation, net, np.asarray(p["center"], np.float64),
                              int(p["label"]), norm=p.get("norm", "l1"), domain=dom,
                              engine=p.get("engine"), timeout=p.get("timeout"), options=options)
    raise InputDataError(f"unknown unit kind {unit.kind!r}; kinds: {', '.join(KINDS)}")


def _guarded(job: tuple[Callable, WorkUnit]) -> tuple[str, Any]:
    """Run one task; an ordinary exception becomes data so one bad unit never stops the
    campaign (Ctrl-C and worker deaths still propagate)."""
    task, unit = job
    t0 = time.perf_counter()
    try:
        result = task(unit)
    except Exception as exc:  # noqa: BLE001 - reported per unit, with its type
        return "error", {"type": type(exc).__name__, "message": str(exc),
                         "user_error": isinstance(exc, NNResError),
                         "traceback": traceback.format_exc(limit=8),
                         "seconds": time.perf_counter() - t0}
    return "ok", result


def resolve_task(spec: str | Callable | None) -> Callable:
    """``None`` → :func:`run_unit`; ``'package.module:function'`` → that function."""
    if spec is None:
        return run_unit
    if callable(spec):
        return spec
    mod, sep, fn = str(spec).partition(":")
    if not sep or not mod or not fn:
        raise InputDataError(f"task {spec!r}: expected 'module:function'")
    try:
        obj = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise InputDataError(f"task {spec!r}: cannot import ({exc})") from exc
    if not callable(obj):
        raise InputDataError(f"task {spec!r} is not callable")
    return obj


# ------------------------------------------------------------------------ the keys
def unit_query(unit: WorkUnit) -> tuple[str, Any]:
    """``(network_hash, property_or_query)`` of a unit (what :func:`query_key` hashes)."""
    h = network_hash(unit.network)
    if unit.kind == "verify":
        net = load_network_cached(unit.network)
        return h, _read_property(unit.property, net)
    if unit.kind == "robustness":
        return h, _robustness_property(unit, load_network_cached(unit.network))
    return h, {"query": unit.kind}


def unit_key(unit: WorkUnit) -> Key:
    """The store key of a unit (network content hash, property hash, params hash)."""
    h, prop = unit_query(unit)
    return query_key(h, prop, {"kind": unit.kind, **unit.params})


def unit_meta(unit: WorkUnit) -> dict[str, Any]:
    """Descriptive columns stored next to the answer."""
    prop_name = unit.name or (Path(unit.property).stem if unit.property else unit.kind)
    return {"network_name": Path(unit.network).stem, "network_path": unit.network,
            "property_name": prop_name, "params": dict(unit.params)}


# ----------------------------------------------------------------------- the runner
def run_campaign(units: Sequence[WorkUnit], store: CampaignStore,
                 executor: Executor | None = None, timeout: float | None = None,
                 progress: Progress | None = None,
                 task: Callable | str | None = None) -> CampaignSummary:
    """Run every unit not yet in ``store``; commit each answer as it completes.

    ``timeout`` is the wall-clock budget of the whole call (seconds): at the deadline the
    pending units are cancelled and the workers stopped (:meth:`Executor.terminate`);
    what finished is stored, the rest is left for the next run. Ctrl-C does the same and
    re-raises :class:`KeyboardInterrupt`. ``task`` (a top-level callable of one
    :class:`WorkUnit`, or ``'module:function'``) replaces :func:`run_unit`.
    """
    t0 = time.monotonic()
    executor = executor if executor is not None else InlineExecutor()
    progress = progress if progress is not None else QuietProgress()
    fn = resolve_task(task)
    summary = CampaignSummary(total=len(units))
    stored = store.keys()
    todo: list[tuple[WorkUnit, Key]] = []
    seen: set[Key] = set()
    key_errors: list[dict[str, Any]] = []
    for i, unit in enumerate(units):
        try:
            key = unit_key(unit)
        except (NNResError, OSError) as exc:
            key_errors.append({"event": "error", "index": i, "name": unit.label(),
                               "kind": unit.kind, "type": type(exc).__name__,
                               "message": str(exc), "user_error": True})
            continue
        if key in stored or key in seen:
            summary.skipped += 1
            continue
        seen.add(key)
        todo.append((unit, key))
    progress.start(len(todo) + len(key_errors), summary.skipped)
    for err in key_errors:
        summary.errors.append(err)
        progress.update(err)
    deadline = None if timeout is None else t0 + timeout
    try:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        jobs: Iterable = [(fn, u) for u, _ in todo]
        results = executor.map(_guarded, jobs, timeout=remaining)
        while True:
            try:
                idx, (tag, payload) = next(results)
            except StopIteration:
                break
            except TimeoutError:
                # Pools raise it from map at the deadline; the inline executor checks
                # the deadline between tasks.
                summary.timed_out = True
                executor.terminate()
                break
            except Exception as exc:  # noqa: BLE001 - a worker died (segfault, OOM kill)
                # Task exceptions arrive as data (_guarded); an exception here means the
                # pool itself broke (BrokenProcessPool, Dask KilledWorker). Stop cleanly:
                # everything stored stays, the rest is retried by the next run.
                summary.aborted = f"{type(exc).__name__}: {exc}"
                executor.terminate()
                break
            _record(todo[idx], idx, tag, payload, store, summary, progress)
    except KeyboardInterrupt:
        summary.interrupted = True
        executor.terminate()
        raise
    finally:
        progress.close()
        summary.seconds = time.monotonic() - t0
    return summary


def _record(item: tuple[WorkUnit, Key], idx: int, tag: str, payload: Any,
            store: CampaignStore, summary: CampaignSummary, progress: Progress) -> None:
    """Commit one finished unit (its own transaction) and report it."""
    unit, key = item
    event = {"event": "done" if tag == "ok" else "error", "index": idx,
             "name": unit.label(), "kind": unit.kind, "network": Path(unit.network).name,
             "property": Path(unit.property).name if unit.property else None}
    if tag == "ok":
        store.put(key, unit.kind, payload, unit_meta(unit))
        d = payload.to_dict() if hasattr(payload, "to_dict") else dict(payload)
        status = result_status(d)
        summary.done += 1
        summary.counts[status] += 1
        event.update(status=status, lower=d.get("lower"), upper=d.get("upper"),
                     seconds=d.get("seconds"), engine=d.get("engine"),
                     key=stable_hash(list(key))[:16])
    else:
        event.update({k: v for k, v in payload.items() if k != "traceback"})
        summary.errors.append(event)
    progress.update(event)


# ------------------------------------------------------------------ campaign files
def load_campaign(path: str | Path, defaults: dict[str, Any] | None = None,
                  overrides: dict[str, Any] | None = None) -> Campaign:
    """Parse a VNN-COMP ``instances.csv`` or a JSON campaign config into work units.

    ``defaults`` (e.g. ``{"engine": "milp", "timeout": 60}``) fill parameters a unit does
    not set itself; ``overrides`` (the command line's ``--engine``/``--query-timeout``)
    replace them in every unit, including the timeouts of an ``instances.csv``.
    """
    camp = _load_campaign(Path(path), defaults)
    if overrides:
        camp.units = [replace(u, params={**u.params, **overrides}) for u in camp.units]
    return camp


def _load_campaign(path: Path, defaults: dict[str, Any] | None) -> Campaign:
    if not path.is_file():
        raise InputDataError(f"{path}: no such campaign file")
    if path.suffix.lower() == ".csv":
        units = read_instances(path, defaults or {})
        return Campaign(units=units, name=path.parent.name or path.stem, source=str(path))
    if path.suffix.lower() != ".json":
        raise InputDataError(f"{path}: a campaign is an instances .csv or a .json config")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise InputDataError(f"{path}: the config must be a JSON object")
    unknown = set(cfg) - _CONFIG_KEYS
    if unknown:
        raise InputDataError(f"{path}: unknown key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(_CONFIG_KEYS)}")
    base = dict(defaults or {})
    base.update(cfg.get("defaults") or {})
    units: list[WorkUnit] = []
    entries = cfg.get("units")
    if not isinstance(entries, list) or not entries:
        raise InputDataError(f"{path}: 'units' must be a non-empty list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputDataError(f"{path}: units[{i}] must be an object")
        kind = entry.get("kind")
        if kind in KINDS:
            unknown = set(entry) - _UNIT_KEYS[kind]
            if unknown:
                raise InputDataError(f"{path}: units[{i}]: unknown key(s) {sorted(unknown)} "
                                     f"for kind {kind!r}; allowed: {sorted(_UNIT_KEYS[kind])}")
        units.extend(_expand_unit(path, i, {**base, **entry}))
    return Campaign(units=units, name=str(cfg.get("name") or path.stem),
                    task=cfg.get("task"), source=str(path))


def read_instances(path: Path, defaults: dict[str, Any]) -> list[WorkUnit]:
    """``onnx,vnnlib,timeout`` lines (no header) → ``verify`` units, paths made absolute."""
    units = []
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise InputDataError(f"{path}:{line_no}: expected onnx,vnnlib[,timeout]")
            params = {k: v for k, v in defaults.items() if k in ("engine", "timeout")}
            if len(row) >= 3 and row[2]:
                try:
                    params["timeout"] = float(row[2])
                except ValueError as exc:
                    raise InputDataError(f"{path}:{line_no}: timeout {row[2]!r} is not a "
                                         "number") from exc
            net, prop = (str((path.parent / c).resolve()) for c in row[:2])
            units.append(WorkUnit("verify", net, prop, params,
                                  name=f"{Path(row[0]).stem}/{Path(row[1]).stem}"))
    if not units:
        raise InputDataError(f"{path}: no instances")
    return units


def _expand_unit(path: Path, i: int, e: dict[str, Any]) -> list[WorkUnit]:
    where = f"{path}: units[{i}]"
    kind = e.get("kind")
    if kind not in KINDS:
        raise InputDataError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    root = path.parent

    def rel(key: str) -> str:
        if key not in e:
            raise InputDataError(f"{where}: missing {key!r}")
        p = (root / str(e[key])).resolve()
        if not p.exists():
            raise InputDataError(f"{where}: {key} file {p} does not exist")
        return str(p)

    common = {k: e[k] for k in ("engine", "timeout", "options") if e.get(k) is not None}
    if kind == "verify":
        if "instances" in e:
            return read_instances(Path(rel("instances")), common)
        return [WorkUnit("verify", rel("network"), rel("property"), common,
                         name=e.get("name", ""))]
    net_path = rel("network")
    domain = e.get("domain")
    if domain is not None:
        if not (isinstance(domain, list) and len(domain) == 2):
            raise InputDataError(f"{where}: domain must be [lo, hi]")
        common["domain"] = domain
    if kind == "phi":
        classes = e.get("classes", "all")
        if classes == "all":
            classes = list(range(load_network_cached(net_path).n_outputs))
        if not isinstance(classes, list) or not all(isinstance(c, int) for c in classes):
            raise InputDataError(f"{where}: classes must be a list of ints or 'all'")
        return [WorkUnit("phi", net_path, None,
                         {**common, "cls": c, "alpha": float(e.get("alpha", 1.0)),
                          "k": int(e.get("k", 1)), "norm": e.get("norm", "l1")},
                         name=f"phi(class={c})") for c in classes]
    # robustness / min_perturbation: per sample
    x = _load_array(Path(rel("inputs")))
    if x.ndim == 1:
        x = x[None, :]
    x = x.reshape(x.shape[0], -1)
    samples = e.get("samples")
    if samples is None:
        idx = list(range(x.shape[0]))
    elif isinstance(samples, int):
        idx = list(range(min(samples, x.shape[0])))
    else:
        idx = [int(s) for s in samples]
    labels = e.get("labels")
    if isinstance(labels, str):
        labels = _load_array(Path(rel("labels"))).ravel().astype(int).tolist()
    if labels is None:
        net = load_network_cached(net_path)
        labels = [int(v) for v in np.atleast_1d(net.predict(x))]
    if len(labels) < x.shape[0]:
        raise InputDataError(f"{where}: {len(labels)} labels for {x.shape[0]} inputs")
    units = []
    if kind == "min_perturbation":
        for s in idx:
            units.append(WorkUnit("min_perturbation", net_path, None,
                                  {**common, "sample": s, "center": x[s].tolist(),
                                   "label": int(labels[s]), "norm": e.get("norm", "l1")},
                                  name=f"minpert(sample={s})"))
        return units
    deltas = e.get("deltas", [e["radius"]] if "radius" in e else None)
    if not deltas:
        raise InputDataError(f"{where}: robustness needs 'deltas' (list) or 'radius'")
    for s in idx:
        for d in deltas:
            units.append(WorkUnit("robustness", net_path, None,
                                  {**common, "sample": s, "center": x[s].tolist(),
                                   "label": int(labels[s]), "radius": float(d),
                                   "norm": e.get("norm", "linf"), "k": int(e.get("k", 1))},
                                  name=f"robust(sample={s}, delta={float(d):g})"))
    return units
