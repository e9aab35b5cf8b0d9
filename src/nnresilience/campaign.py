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

Each unit runs in a killable child process (:mod:`nnresilience.killable`) whenever it has
a time limit or runs in the main process: its query timeout T is then a promise (the unit
ends by T + max(1 s, 5 %), answering ``unknown`` if the solver overran), a campaign
``timeout`` stops the running unit too, and Ctrl-C never waits for a solver.

Campaign files: a VNN-COMP ``instances.csv`` (``onnx,vnnlib,timeout`` per line, paths
relative to the csv), or a JSON or TOML config (see ``docs/campaigns.md`` and
:func:`load_campaign`) that may also hold the *settings* -- engine, bounds, solver,
timeout and the resilience settings -- applied to every unit. Every value is checked when
the file is read (:mod:`nnresilience.validate`), before the store is opened.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import math
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnresilience import validate
from nnresilience.errors import InputDataError, InvalidArgumentError, NNResError
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
_CONFIG_KEYS = {"name", "task", "defaults", "units", "settings"}
# The [settings] of a campaign config: how every unit is answered (docs/campaigns.md).
SETTINGS_KEYS = ("engine", "timeout", "bounds", "solver", "falsify_budget", "resilience")


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
    # Descriptive data stored next to the answer, never part of its key (e.g. the
    # feature names of tabular inputs, for the report).
    info: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return self.name or f"{self.kind}:{Path(self.network).stem}"


@dataclass
class Campaign:
    """A parsed campaign file: its units and, optionally, a custom task ``module:function``."""

    units: list[WorkUnit]
    name: str = "campaign"
    task: str | None = None
    source: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


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
    st = dict(p.get("settings") or {})
    if unit.kind in ("verify", "robustness"):
        from nnresilience.verify import verify

        prop = (_read_property(unit.property, net) if unit.kind == "verify"
                else _robustness_property(unit, net))
        engine = p.get("engine", "auto")
        if st.get("solver") and engine in ("auto", "milp"):
            engine = f"milp:{st['solver']}"
        return _call_filtered(verify, net, prop, engine=engine, timeout=p.get("timeout"),
                              bounds_method=st.get("bounds"),
                              falsify_budget=st.get("falsify_budget"), options=options)
    if unit.kind == "phi":
        from nnresilience.resilience import phi

        lo, hi = _domain(p, net)
        dom = None if lo is None else (lo, hi)
        return _call_filtered(phi, net, int(p["cls"]), alpha=p.get("alpha", 1.0),
                              k=p.get("k", 1), norm=p.get("norm", "l1"), domain=dom,
                              engine=p.get("engine"), timeout=p.get("timeout"),
                              settings=resilience_settings(st), options=options)
    if unit.kind == "min_perturbation":
        from nnresilience.resilience import min_perturbation

        lo, hi = _domain(p, net)
        dom = None if lo is None else (lo, hi)
        return _call_filtered(min_perturbation, net, np.asarray(p["center"], np.float64),
                              int(p["label"]), norm=p.get("norm", "l1"), domain=dom,
                              engine=p.get("engine"), timeout=p.get("timeout"),
                              settings=resilience_settings(st), options=options)
    raise InputDataError(f"unknown unit kind {unit.kind!r}; kinds: {', '.join(KINDS)}")


def _unit_work(reporter: Any, task: Callable, unit: WorkUnit) -> Any:
    """Body of a unit's killable child."""
    return task(unit)


def killed_result(unit: WorkUnit, seconds: float) -> Any:
    """The honest answer of a unit stopped at its own deadline: ``unknown``, no bound."""
    from nnresilience.results import ResilienceResult, Status, VerificationResult

    msg = "timeout (stopped at the query's deadline)"
    if unit.kind in ("phi", "min_perturbation"):
        cls = unit.params.get("cls", unit.params.get("label"))
        return ResilienceResult(unit.kind, None, None, False, True,
                                cls=None if cls is None else int(cls), seconds=seconds,
                                message=msg, stats={"killed": True})
    return VerificationResult(Status.UNKNOWN, engine=str(unit.params.get("engine", "")),
                              seconds=seconds, message=msg, stats={"killed": True})


def _guarded(job: tuple) -> tuple[str, Any]:
    """Run one task; an ordinary exception becomes data so one bad unit never stops the
    campaign (Ctrl-C and worker deaths still propagate).

    ``job`` is ``(task, unit)`` or ``(task, unit, killable, stop_at)``: with ``killable``
    the task runs in a child stopped at the unit's ``timeout`` promise (its answer is
    then :func:`killed_result`) or at ``stop_at`` (the campaign's deadline; tag
    ``"stopped"``, nothing is stored).
    """
    task, unit = job[0], job[1]
    killable = job[2] if len(job) > 2 else False
    stop_at = job[3] if len(job) > 3 else None
    t0 = time.perf_counter()
    try:
        if not killable:
            return "ok", task(unit)
        from nnresilience.killable import Budget, run_killable

        out = run_killable(_unit_work, task, unit, budget=Budget(unit.params.get("timeout")),
                           stop_at=stop_at)
        if out.killed == "stopped":
            return "stopped", None
        if out.killed is not None:
            return "ok", killed_result(unit, time.perf_counter() - t0)
        return "ok", out.value
    except Exception as exc:  # noqa: BLE001 - reported per unit, with its type
        return "error", {"type": getattr(exc, "original_type", type(exc).__name__),
                         "message": getattr(exc, "original_message", str(exc)),
                         "user_error": isinstance(exc, NNResError) and exc.exit_code == 2,
                         "traceback": getattr(exc, "detail", None)
                         or traceback.format_exc(limit=8),
                         "seconds": time.perf_counter() - t0}


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
    info = {k: unit.params[k] for k in ("sample_id",) if k in unit.params}
    if unit.info:
        info.update(unit.info)
    return {"network_name": Path(unit.network).stem, "network_path": unit.network,
            "property_name": prop_name, "property_path": unit.property,
            "params": dict(unit.params), "info": info}


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
        # In this process (inline) every unit runs in a killable child: Ctrl-C and the
        # campaign deadline never wait for a solver. In pool workers only units with a
        # timeout need one (the pool itself is terminated on Ctrl-C and at the deadline).
        inline = isinstance(executor, InlineExecutor)
        jobs: Iterable = [(fn, u, inline or u.params.get("timeout") is not None,
                           deadline if inline else None) for u, _ in todo]
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
            if tag == "stopped":         # the campaign deadline stopped a running unit
                summary.timed_out = True
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
def resilience_settings(settings: dict[str, Any] | None) -> Any:
    """The :class:`~nnresilience.resilience.settings.ResilienceSettings` of a campaign's
    ``settings`` (``resilience`` table: ``preset`` plus field overrides; ``solver`` is the
    backend unless the table names one); None when nothing is set (library default)."""
    settings = settings or {}
    res = dict(settings.get("resilience") or {})
    if not res and not settings.get("solver"):
        return None
    from nnresilience.resilience import preset as get_preset

    base = get_preset(res.pop("preset", "default"))
    if settings.get("solver") and "backend" not in res:
        res["backend"] = settings["solver"]
    try:
        return base.with_(**res) if res else base
    except TypeError as exc:
        raise InvalidArgumentError(f"settings.resilience: {exc}") from None


def check_settings(settings: Any, where: str) -> dict[str, Any]:
    """Validate a ``settings`` table (docs/campaigns.md); returns a plain, canonical dict."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise InvalidArgumentError(f"{where}: settings must be a table/object")
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown:
        raise InvalidArgumentError(f"{where}: unknown setting(s) {unknown}; allowed: "
                                   f"{list(SETTINGS_KEYS)}")
    out: dict[str, Any] = {}
    if settings.get("engine") is not None:
        out["engine"] = _check_engine(settings["engine"], f"{where}: engine")
    if settings.get("timeout") is not None:
        out["timeout"] = validate.timeout(settings["timeout"], f"{where}: timeout")
    if settings.get("bounds") is not None:
        from nnresilience.bounds import parse_method

        try:
            parse_method(str(settings["bounds"]))
        except (ValueError, NNResError) as exc:
            raise InvalidArgumentError(f"{where}: bounds: {exc}") from None
        out["bounds"] = str(settings["bounds"])
    if settings.get("solver") is not None:
        from nnresilience.backends.registry import BACKENDS

        out["solver"] = validate.choice(str(settings["solver"]).lower(),
                                        ("auto", *BACKENDS), f"{where}: solver")
    if settings.get("falsify_budget") is not None:
        out["falsify_budget"] = validate.nonnegative(settings["falsify_budget"],
                                                     f"{where}: falsify_budget")
    if settings.get("resilience") is not None:
        res = settings["resilience"]
        if not isinstance(res, dict):
            raise InvalidArgumentError(f"{where}: resilience must be a table/object")
        from nnresilience.resilience.settings import PRESETS, ResilienceSettings

        if "preset" in res:
            validate.choice(res["preset"], tuple(PRESETS), f"{where}: resilience.preset")
        known = {f.name for f in __import__("dataclasses").fields(ResilienceSettings)}
        bad = sorted(set(res) - known - {"preset"})
        if bad:
            raise InvalidArgumentError(f"{where}: unknown resilience setting(s) {bad}; "
                                       f"allowed: preset, {', '.join(sorted(known))}")
        out["resilience"] = dict(res)
        resilience_settings(out)                      # builds it: bad values raise here
    return out


def _check_engine(engine: Any, where: str) -> str:
    return validate.engine(engine, where)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON (``.json``) or TOML (``.toml``) document as a dict (errors: exit 2)."""
    p = validate.input_file(path, "campaign config", (".json", ".toml"))
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            with open(p, "rb") as f:
                cfg = tomllib.load(f)
        else:
            cfg = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{p}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{p}: not valid JSON ({exc})") from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise InputDataError(f"{p}: not valid TOML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise InputDataError(f"{p}: the config must be a JSON object / TOML table")
    return cfg


def load_settings(path: str | Path) -> dict[str, Any]:
    """The settings of a config file given with ``campaign run --config``: its
    ``[settings]`` table, or its top-level keys when it has no such table."""
    cfg = read_config_file(path)
    return check_settings(cfg.get("settings", cfg), str(path))


def load_campaign(path: str | Path, defaults: dict[str, Any] | None = None,
                  overrides: dict[str, Any] | None = None,
                  settings: dict[str, Any] | None = None) -> Campaign:
    """Parse a VNN-COMP ``instances.csv`` or a JSON/TOML campaign config into work units.

    ``defaults`` (e.g. ``{"engine": "milp", "timeout": 60}``) fill parameters a unit does
    not set itself; ``settings`` (a checked ``settings`` table, e.g. from ``--config``)
    replace the file's own settings key by key; ``overrides`` (the command line's
    ``--engine``/``--query-timeout``) replace them in every unit, including the timeouts
    of an ``instances.csv``. Every value is validated here.
    """
    overrides = dict(overrides or {})
    if overrides.get("engine") is not None:
        _check_engine(overrides["engine"], "--engine")
    if overrides.get("timeout") is not None:
        overrides["timeout"] = validate.timeout(overrides["timeout"], "--query-timeout")
    camp = _load_campaign(Path(path), defaults, settings or {})
    if overrides:
        camp.units = [replace(u, params={**u.params, **overrides}) for u in camp.units]
    return camp


def _apply_settings(units: list[WorkUnit], st: dict[str, Any]) -> list[WorkUnit]:
    """Put the settings into every unit: engine/timeout as defaults of its own params,
    the rest under ``params["settings"]`` (hashed: other settings, other answer)."""
    rest = {k: v for k, v in st.items() if k not in ("engine", "timeout")}
    out = []
    for u in units:
        p = dict(u.params)
        for k in ("engine", "timeout"):
            if k in st and k not in p:
                p[k] = st[k]
        if rest:
            p["settings"] = {**rest, **(p.get("settings") or {})}
        out.append(replace(u, params=p))
    return out


def _load_campaign(path: Path, defaults: dict[str, Any] | None,
                   settings: dict[str, Any]) -> Campaign:
    if path.is_dir():
        raise InputDataError(f"{path}: is a directory, not a campaign file")
    if not path.is_file():
        raise InputDataError(f"{path}: no such campaign file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        units = read_instances(path, defaults or {})
        # --config settings override defaults for an instances.csv too
        if settings:
            units = [replace(u, params={**u.params, **{k: settings[k] for k in
                                                       ("engine", "timeout") if k in settings}})
                     for u in units]
        return Campaign(units=_apply_settings(units, settings),
                        name=path.parent.name or path.stem, source=str(path),
                        settings=dict(settings))
    if suffix not in (".json", ".toml"):
        raise InputDataError(f"{path}: a campaign is an instances .csv, or a .json or .toml "
                             "config")
    cfg = read_config_file(path)
    unknown = set(cfg) - _CONFIG_KEYS
    if unknown:
        raise InputDataError(f"{path}: unknown key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(_CONFIG_KEYS)}")
    st = {**check_settings(cfg.get("settings"), f"{path}: settings"), **settings}
    base = dict(defaults or {})
    base.update(cfg.get("defaults") or {})
    for k in ("engine", "timeout"):           # settings fill what defaults leave open
        if k in st and k not in (cfg.get("defaults") or {}):
            base[k] = st[k]
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
    rest = {k: v for k, v in st.items() if k not in ("engine", "timeout")}
    return Campaign(units=_apply_settings(units, rest), name=str(cfg.get("name") or path.stem),
                    task=cfg.get("task"), source=str(path), settings=st)


def read_instances(path: Path, defaults: dict[str, Any]) -> list[WorkUnit]:
    """``onnx,vnnlib,timeout`` lines (no header) → ``verify`` units, paths made absolute."""
    units = []
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"{path}: cannot read ({exc})") from exc
    for line_no, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not row or not row[0] or row[0].startswith("#"):
            continue
        if len(row) < 2:
            raise InputDataError(f"{path}:{line_no}: expected onnx,vnnlib[,timeout]")
        params = {k: v for k, v in defaults.items() if k in ("engine", "timeout")}
        if params.get("timeout") is not None:
            params["timeout"] = validate.timeout(params["timeout"], f"{path}: timeout")
        if len(row) >= 3 and row[2]:
            try:
                params["timeout"] = float(row[2])
            except ValueError as exc:
                raise InputDataError(f"{path}:{line_no}: timeout {row[2]!r} is not a "
                                     "number") from exc
            try:
                validate.timeout(params["timeout"], "timeout")
            except InvalidArgumentError:
                raise InputDataError(f"{path}:{line_no}: timeout {row[2]!r} must be a "
                                     "positive finite number of seconds") from None
        net, prop = (str((path.parent / c).resolve()) for c in row[:2])
        for what, f in (("model", net), ("property", prop)):
            if not Path(f).is_file():
                raise InputDataError(f"{path}:{line_no}: {what} file {f} does not exist")
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
        if p.is_dir():
            raise InputDataError(f"{where}: {key} {p} is a directory, not a file")
        return str(p)

    common = {k: e[k] for k in ("engine", "timeout", "options") if e.get(k) is not None}
    if "engine" in common:
        _check_engine(common["engine"], f"{where}: engine")
    if "timeout" in common:
        common["timeout"] = validate.timeout(common["timeout"], f"{where}: timeout")
    if "options" in common and not isinstance(common["options"], dict):
        raise InputDataError(f"{where}: options must be an object")
    if kind == "verify":
        if "instances" in e:
            return read_instances(Path(rel("instances")), common)
        return [WorkUnit("verify", rel("network"), rel("property"), common,
                         name=e.get("name", ""))]
    net_path = rel("network")
    net = load_network_cached(net_path)
    n_out = net.n_outputs
    domain = e.get("domain")
    if domain is not None:
        if not (isinstance(domain, list) and len(domain) == 2):
            raise InputDataError(f"{where}: domain must be [lo, hi]")
        try:
            validate.box(domain[0], domain[1], net.n_inputs, f"{where}: domain")
        except InvalidArgumentError as exc:
            raise InputDataError(str(exc)) from None
        common["domain"] = domain
    norm = e.get("norm", "linf" if kind == "robustness" else "l1")
    # l2 only where the resilience MIPs answer (the verify engines take boxes / L1 balls)
    validate.norm(norm, f"{where}: norm",
                  ("l1", "linf") if kind == "robustness" else ("l1", "linf", "l2"))
    k = validate.top_k(e.get("k", 1), n_out, f"{where}: k") if "k" in e or n_out > 1 else 1
    if kind == "phi":
        classes = e.get("classes", "all")
        if classes == "all":
            classes = list(range(n_out))
        if not isinstance(classes, list) or not all(isinstance(c, int) for c in classes):
            raise InputDataError(f"{where}: classes must be a list of ints or 'all'")
        classes = validate.classes(classes, n_out, f"{where}: class") or []
        alpha = validate.alpha(e.get("alpha", 1.0), f"{where}: alpha")
        return [WorkUnit("phi", net_path, None,
                         {**common, "cls": c, "alpha": alpha, "k": k, "norm": norm},
                         name=f"phi(class={c})") for c in classes]
    # robustness / min_perturbation: per sample
    inputs_path = Path(rel("inputs"))
    x = _load_array(inputs_path)
    if x.ndim == 1:
        x = x[None, :]
    x = x.reshape(x.shape[0], -1)
    net.check_input(x)
    samples = e.get("samples")
    if samples is None:
        idx = list(range(x.shape[0]))
    elif isinstance(samples, int) and not isinstance(samples, bool):
        idx = list(range(min(validate.integer(samples, f"{where}: samples", lo=1),
                             x.shape[0])))
    elif isinstance(samples, list):
        idx = [validate.integer(s, f"{where}: samples", lo=0, hi=x.shape[0] - 1)
               for s in samples]
    else:
        raise InputDataError(f"{where}: samples must be a count or a list of row indices")
    labels = e.get("labels")
    if isinstance(labels, str):
        from nnresilience.io import load_labels

        labels = load_labels(Path(rel("labels")))
    if labels is None:
        labels = np.atleast_1d(net.predict(x))
    labels = validate.labels(labels, n_out, None, f"{where}: labels").tolist()
    if len(labels) < x.shape[0]:
        raise InputDataError(f"{where}: {len(labels)} labels for {x.shape[0]} inputs")
    info = _feature_info(inputs_path, x.shape[1])
    units = []
    if kind == "min_perturbation":
        for s in idx:
            units.append(WorkUnit("min_perturbation", net_path, None,
                                  {**common, "sample": s, "center": x[s].tolist(),
                                   "label": int(labels[s]), "norm": norm},
                                  name=f"minpert(sample={s})", info=info))
        return units
    deltas = e.get("deltas", [e["radius"]] if "radius" in e else None)
    if not deltas or not isinstance(deltas, list):
        raise InputDataError(f"{where}: robustness needs 'deltas' (list) or 'radius'")
    deltas = [validate.nonnegative(d, f"{where}: delta") for d in deltas]
    for s in idx:
        for d in deltas:
            units.append(WorkUnit("robustness", net_path, None,
                                  {**common, "sample": s, "center": x[s].tolist(),
                                   "label": int(labels[s]), "radius": float(d),
                                   "norm": norm, "k": k},
                                  name=f"robust(sample={s}, delta={float(d):g})", info=info))
    return units


def _feature_info(inputs: Path, n: int) -> dict[str, Any]:
    """Feature names shipped with an ``.npz`` of samples (``feature_names``), for the
    report; nothing for other files."""
    if inputs.suffix.lower() != ".npz":
        return {}
    try:
        with np.load(inputs, allow_pickle=False) as z:
            if "feature_names" in z.files:
                names = [str(v) for v in z["feature_names"]]
                if len(names) == n:
                    return {"feature_names": names}
    except (OSError, ValueError):
        pass
    return {}


# ------------------------------------------------------------------------- exports
EXPORT_FORMATS = ("vnncomp-csv", "csv", "json")


def vnncomp_word(rec: Any) -> str:
    """The VNN-COMP result word of a stored decision answer."""
    status = rec.status or "unknown"
    if status == "holds":
        return "unsat"
    if status == "violated":
        return "sat"
    msg = str(rec.result.get("message") or "").lower()
    killed = bool((rec.result.get("stats") or {}).get("killed"))
    return "timeout" if killed or "timeout" in msg or "time limit" in msg else "unknown"


def _category(rec: Any) -> str:
    return Path(rec.network_path).parent.name if rec.network_path else ""


def export_rows(records: list[Any], fmt: str, category: str | None = None) -> str:
    """The text of an export of ``records`` (stored answers) in ``fmt``.

    ``vnncomp-csv``: the competition's ``results.csv`` lines
    ``category,onnx,vnnlib,result,runtime`` (decision answers only; no header);
    ``csv``: one row per answer with a header; ``json``: a list of answers (strict).
    """
    validate.choice(fmt, EXPORT_FORMATS, "--format")
    buf = io.StringIO()
    if fmt == "vnncomp-csv":
        w = csv.writer(buf, lineterminator="\n")
        for r in records:
            if r.kind not in ("verify", "robustness"):
                continue
            w.writerow([category or _category(r), r.network_path or r.network_name or "",
                        r.property_path or r.property_name or "", vnncomp_word(r),
                        f"{r.seconds:.6f}" if r.seconds is not None else ""])
        return buf.getvalue()
    if fmt == "csv":
        cols = ["kind", "network", "property", "status", "vnncomp", "lower", "upper",
                "seconds", "engine", "timeout", "sample", "class", "radius", "message",
                "created_at", "query_id", "network_path", "property_path"]
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in records:
            p = r.params
            w.writerow([r.kind, r.network_name or "", r.property_name or "", r.status or "",
                        vnncomp_word(r) if r.kind in ("verify", "robustness") else "",
                        _cell(r.lower), _cell(r.upper), _cell(r.seconds), r.engine or "",
                        _cell(p.get("timeout")), _cell(p.get("sample")),
                        _cell(p.get("cls", p.get("label"))), _cell(p.get("radius")),
                        str(r.result.get("message") or ""), r.created_at, r.query_id,
                        r.network_path or "", r.property_path or ""])
        return buf.getvalue()
    from nnresilience.io import json_text

    return json_text([r.to_dict() for r in records])


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.10g}" if math.isfinite(v) else ""
    return str(v)


def counterexample_files(records: list[Any]) -> dict[str, str]:
    """One VNN-COMP counterexample file per violated answer: ``{file name: text}``.

    The text is what ``run_instance.sh`` writes for ``sat``: the word and the
    ``((X_i v) ... (Y_j v))`` assignment; names are ``<onnx>_<vnnlib>.counterexample``
    (made unique and file-system safe).
    """
    from nnresilience.results import VerificationResult

    out: dict[str, str] = {}
    for r in records:
        if r.status != "violated" or not r.result.get("counterexample"):
            continue
        res = VerificationResult.from_dict(r.result)
        net = Path(r.network_path).stem if r.network_path else (r.network_name or "net")
        prop = Path(r.property_path).stem if r.property_path else (r.property_name or r.kind)
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{net}_{prop}").strip("_") or "instance"
        name, n = f"{base}.counterexample", 2
        while name in out:
            name, n = f"{base}_{n}.counterexample", n + 1
        out[name] = res.to_vnncomp()
    return out
