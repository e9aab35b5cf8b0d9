"""Sensor contracts: maximum resilience handed on as an assume-guarantee interface.

Seed 000 (§7) sells Φ_m as "a formal assume-guarantee interface for decoupling the design
of sensor sets from the design of the neural network": the network *assumes* that the
sensors err by less than a bound, and *guarantees* that every confidently classified input
keeps its class. This module writes that interface down as a versioned JSON document and
re-checks it against a (possibly retrained) model.

For each class m a **clause** says: for every input ``a`` in the domain D with
``p_m(a) >= alpha p_j(a)`` (all j != m) and every perturbation ``ε`` with ``a + ε`` in D and
``||ε|| < tolerance``, class m stays in the top-k at ``a + ε``. The tolerance is the proven
lower bound of Φ_m shrunk by a small relative ``margin`` (default 1e-3), so that a re-check
of the *same* model, whose solver answers vary within the MIP gap, proves it again. The
clause also carries the upper end of Φ_m with its witness pair ``(a, a + ε)``: a replayed
perturbation that the network does *not* tolerate. A network clause (Ξ) is the minimum.

**Per-input scale.** Sensors differ in accuracy; with scales ``s_i > 0`` the perturbation
is measured as ``||ε / s||`` (``ε_i / s_i`` per input: a sensor with ``s_i = 2`` may err
twice as much for the same cost). It is implemented by rescaling the input layer: the
network ``N'(u) = N(s ∘ u)`` over the domain ``D / s`` (widened outward by one ulp so it
contains the image of D) is an ordinary Φ_m query, and its witness ``u`` maps back to
``x = s ∘ u``; ``||(x_b - x_a) / s|| = ||u_b - u_a||``. Witnesses are replayed in the
*original* network, exactly (premise margin ``>= ln alpha``, at least k classes
``>= y_m``), and their norm is recomputed there; ``tests/test_contract.py`` checks the
scaled Φ against the direct definition by brute force on tiny nets.

Only the public resilience API is used (:func:`nnresilience.resilience.phi_many`), so the
contract inherits its interval guarantees: ``lower`` proven, ``upper`` witnessed.
Schema: ``docs/contracts.md``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from nnresilience.errors import InputDataError, ShapeMismatchError

SCHEMA = "nnresilience.contract"
CHECK_SCHEMA = "nnresilience.contract-check"
SCHEMA_VERSION = 1
NORMS = ("l1", "linf")          # L2 comes with the MIQP objective (issue 14, second part)
Progress = Callable[[dict[str, Any]], None]
DEFAULT_MARGIN = 1e-3
_REPAIR_STEPS = (0.0, 1e-12, 1e-10, 1e-8, 1e-6)


# ---------------------------------------------------------------------- JSON helpers
def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float made JSON-safe: ±inf → ``"inf"``/``"-inf"``,
    NaN → None (strict JSON has neither), numpy values → Python values."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        obj = obj.item()
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
    return obj


def json_number(v: Any) -> float | None:
    """Read back a number written by :func:`strict_json` (``"inf"`` → ``math.inf``)."""
    if v is None:
        return None
    if isinstance(v, str):
        if v in ("inf", "-inf"):
            return float(v)
        raise InputDataError(f"not a number: {v!r}")
    return float(v)


def dumps(obj: Any) -> str:
    """Strict JSON text (``allow_nan=False``: a stray inf is a bug, not a silent token)."""
    return json.dumps(strict_json(obj), indent=2, allow_nan=False) + "\n"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------- per-input scale
def load_scale(path: str | Path, n_inputs: int) -> np.ndarray:
    """Per-input scales ``s_i > 0`` from a ``.npy``/``.csv`` file (one value per input,
    any shape holding ``n_inputs`` values)."""
    from nnresilience.io import load_inputs

    s = np.asarray(load_inputs(path), float).reshape(-1)
    return check_scale(s, n_inputs, str(path))


def check_scale(scale: Any, n_inputs: int, where: str = "per-input scale") -> np.ndarray:
    s = np.asarray(scale, float).reshape(-1)
    if s.size == 1 and n_inputs > 1:
        s = np.full(n_inputs, float(s[0]))
    if s.size != n_inputs:
        raise ShapeMismatchError(f"{where}: {s.size} values, the network has {n_inputs} "
                                 "inputs")
    bad = ~(np.isfinite(s) & (s > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputDataError(f"{where}: scale of input {i} is {s[i]!r}; every scale must "
                             "be a finite number > 0")
    return s


def scaled_network(network, scale: np.ndarray):
    """``N'(u) = N(scale ∘ u)``: a diagonal affine layer in front (folded into the first
    affine layer by :meth:`Network.merged`, which every query calls)."""
    from nnresilience.network import Network
    from nnresilience.network.layers import Affine

    s = np.asarray(scale, float)
    first = Affine(sp.diags(s, format="csr"), np.zeros(s.size))
    return Network([first, *network.layers], input_shape=network.input_shape,
                   softmax=network.softmax, name=f"{network.name}/scaled",
                   output_names=network.output_names)


def scaled_domain(lo: np.ndarray, hi: np.ndarray, scale: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``D / s`` widened outward by one ulp, so it contains ``{x / s : x in D}`` despite
    the rounding of the division (a lower bound over it is a lower bound over D)."""
    return (np.nextafter(lo / scale, -np.inf), np.nextafter(hi / scale, np.inf))


def weighted_norm(eps: np.ndarray, norm: str, scale: np.ndarray | None = None) -> float:
    e = np.abs(np.asarray(eps, float))
    if scale is not None:
        e = e / scale
    if norm == "l1":
        return float(e.sum())
    if norm == "linf":
        return float(e.max(initial=0.0))
    return float(np.sqrt((e * e).sum()))


# ------------------------------------------------------------------------ exact replay
def premise_margin(network, a: np.ndarray, m: int) -> float:
    """``min_{j != m} (y_m - y_j)`` at ``a`` through the float64 forward pass."""
    y = network.forward(np.asarray(a, float))
    return float(y[m] - np.delete(y, m).max())


def flip_count(network, b: np.ndarray, m: int) -> int:
    """Classes ``j != m`` with ``y_j >= y_m`` at ``b`` (m is out of the top-k iff >= k)."""
    y = network.forward(np.asarray(b, float))
    return int(np.sum(np.delete(y, m) >= y[m]))


def _slack(network, P: np.ndarray, m: int, k: int) -> np.ndarray:
    """k-th largest ``y_j - y_m`` (j != m) of each row: the flip holds iff >= 0."""
    Y = network.forward(P)
    D = np.delete(Y, m, axis=1) - Y[:, [m]]
    return -np.sort(-D, axis=1)[:, k - 1]


def _margin(network, P: np.ndarray, m: int) -> np.ndarray:
    Y = network.forward(P)
    return Y[:, m] - np.delete(Y, m, axis=1).max(axis=1)


def _nudges(x: np.ndarray, away: np.ndarray, fn, lo: np.ndarray, hi: np.ndarray):
    """Candidates near ``x``: along the segment direction ``away`` (growing steps), then
    up the numerical gradient of ``fn`` (one batched forward pass of 2d points) — the
    second helps where the segment is blocked by the domain's boundary."""
    for t in _REPAIR_STEPS:
        yield np.clip(x + t * away, lo, hi)
    d = x.size
    h = 1e-7 * np.maximum(1.0, hi - lo)
    P = np.repeat(x[None, :], 2 * d, axis=0)
    P[np.arange(d), np.arange(d)] += h
    P[d + np.arange(d), np.arange(d)] -= h
    v = fn(P)
    g = (v[:d] - v[d:]) / (2 * h)
    gn = float(np.linalg.norm(g))
    if gn > 0.0 and np.isfinite(gn):
        span = float(np.max(hi - lo, initial=1.0))
        for t in _REPAIR_STEPS[1:]:
            yield np.clip(x + t * span * g / gn, lo, hi)


def exact_pair(network, a, b, m: int, log_alpha: float, k: int, lo: np.ndarray,
               hi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The pair clipped into D and checked *exactly* in ``network`` (premise margin
    ``>= ln alpha``, flip count ``>= k``); a near miss (a solver point on the boundary,
    or one mapped back from the scaled network) is nudged by at most 1e-6 of the segment
    or of the domain's width: ``b`` further from ``a`` or up its flip slack, ``a`` away
    from ``b`` or up its premise margin. None if no nudge passes."""
    a = np.clip(np.asarray(a, float), lo, hi)
    b = np.clip(np.asarray(b, float), lo, hi)
    eps = b - a
    a_ok = _first(_nudges(a, -eps, lambda P: _margin(network, P, m), lo, hi),
                  lambda c: premise_margin(network, c, m) >= log_alpha)
    b_ok = _first(_nudges(b, eps, lambda P: _slack(network, P, m, k), lo, hi),
                  lambda c: flip_count(network, c, m) >= k)
    if a_ok is None or b_ok is None:
        return None
    return a_ok, b_ok


def _first(cands, ok) -> np.ndarray | None:
    return next((c for c in cands if ok(c)), None)


# ------------------------------------------------------------------------- budgeting
def worker_count(workers: Any) -> int:
    """How many tasks run at once for a ``workers`` spec (unknown remote cluster: 1, so the
    time shares stay conservative)."""
    if workers is None:
        return 1
    if isinstance(workers, int):
        return max(1, workers)
    s = str(workers)
    if s.isdigit():
        return max(1, int(s))
    if s.startswith("dask:") and s[5:].isdigit():
        return max(1, int(s[5:]))
    return 1


def is_parallel(workers: Any) -> bool:
    """Whether ``workers`` asks for an executor (a count > 1, a pool, a Dask cluster)
    rather than running here, one task after the other."""
    return workers not in (None, 1, "1", "inline", "serial")


# A resilience call given t seconds promises to return by t + max(1 s, 5 %) (the project's
# deadline rule): a caller with a slot of S seconds gives it min(S - 1, S / 1.05).
MIN_SLOT = 1.5


def call_timeout(slot: float) -> float | None:
    """The time limit for a resilience call that must end within ``slot`` seconds, or
    None when the slot is too short to start one (under 0.5 s of solver time)."""
    t = min(slot - 1.0, slot / 1.05)
    return t if t >= 0.5 else None


def next_slot(left: float, items_left: int) -> float | None:
    """The slot of the next of ``items_left`` serial calls when ``left`` seconds remain:
    an equal share, but at least :data:`MIN_SLOT` while that much is left (so a tight
    budget runs the first items properly rather than every item uselessly short); None
    when not even that is left."""
    if left < MIN_SLOT:
        return None
    return min(left, max(MIN_SLOT, left / max(1, items_left)))


def task_timeout(total: float | None, rounds: int, workers: Any = None) -> float | None:
    """Per-task time limit when ``rounds`` waves of executor tasks share ``total`` s.

    A worker pool is charged 3 s to start (spawned processes import the solver stack);
    each task's slot gets :func:`call_timeout`, never below 0.5 s (the tasks of a wave
    are all submitted, so a very tight budget is overrun rather than skipped).
    """
    if total is None:
        return None
    start = 3.0 if worker_count(workers) > 1 else 0.0
    slot = (float(total) - start - 0.3) / max(1, rounds)
    return call_timeout(slot) or 0.5


# ----------------------------------------------------------------------- Φ per class
def resolve_box(network, domain) -> tuple[np.ndarray, np.ndarray]:
    """The domain box D as two float arrays, checked (finite, non-empty, one bound per
    input) by :func:`nnresilience.validate.box`."""
    from nnresilience import validate
    from nnresilience.resilience import resolve_domain

    lo, hi = resolve_domain(network, domain)
    return validate.box(lo, hi, network.n_inputs, "the domain box D")


def check_query(network, alpha: float, k: int, norm: str) -> tuple[float, int, str]:
    """α / k / norm through :mod:`nnresilience.validate` (one rule for the CLI and the
    API), before anything runs or any file is written; returns them canonical."""
    from nnresilience import validate

    return (validate.alpha(alpha, "alpha"), validate.top_k(k, network.n_outputs, "k"),
            validate.norm(norm, "norm", NORMS))


def check_margin(margin: Any, name: str = "margin") -> float:
    """The relative margin of the tolerances: a number in [0, 1)."""
    from nnresilience import validate
    from nnresilience.errors import InvalidArgumentError

    m = validate.nonnegative(margin, name)
    if m >= 1.0:
        raise InvalidArgumentError(f"{name} must be in [0, 1), got {margin!r}")
    return m


def class_phis(network, classes, alpha: float, k: int, norm: str, lo: np.ndarray,
               hi: np.ndarray, *, scale: np.ndarray | None = None, settings=None,
               timeout: float | None = None, workers: Any = None,
               data: np.ndarray | None = None, progress: Progress | None = None
               ) -> list[dict[str, Any]]:
    """Φ_m of each class (optionally under a per-input scale), one dict per class:
    ``result`` (the :class:`ResilienceResult`, in scaled coordinates when scaled),
    ``lower``/``upper``/``optimal``/``feasible`` in the contract's norm, and ``a``/``b``:
    the witness pair in the *original* coordinates, replayed exactly (None if none).

    ``timeout`` is the budget of the whole call. Serially, each class gets an equal share
    of what is left when it starts, at least :data:`MIN_SLOT` (a class that finishes
    early leaves its time to the others), minus the slack its own deadline allows
    (:func:`call_timeout`); a class reached when less than that is left is not started
    (``result.message`` says so). With workers (a count, ``'dask:N'``,
    ``'tcp://...'``), all classes go to the executor at once and each gets the share of its
    wave (:func:`task_timeout`; a remote cluster of unknown size counts as one worker).

    ``progress`` gets a dict per class started and one per class finished; the latter
    carries the class's dict under ``"result"``, so a killed caller keeps the finished
    classes (:mod:`nnresilience.killable`).
    """
    from nnresilience.resilience import DEFAULT, phi_many

    settings = DEFAULT if settings is None else settings
    classes = [int(c) for c in classes]
    net_q, lo_q, hi_q, data_q = network, lo, hi, data
    if scale is not None:
        net_q = scaled_network(network, scale)
        lo_q, hi_q = scaled_domain(lo, hi, scale)
        data_q = None if data is None else np.asarray(data, float) / scale
    run = dict(settings=settings, data=data_q)
    n = len(classes)

    def replayed(r, done: int) -> dict[str, Any]:
        c = _replay_class(network, r, alpha, k, norm, lo, hi, scale, settings)
        if progress is not None:
            progress({"phase": "Phi_m", "cls": c["cls"], "done": done, "total": n,
                      "lower": c["lower"], "upper": c["upper"], "result": c})
        return c

    if is_parallel(workers):
        if progress is not None:
            progress({"phase": "Phi_m", "done": 0, "total": n, "workers": str(workers)})
        rounds = math.ceil(n / worker_count(workers))
        results = phi_many(net_q, classes, alpha, k, norm, (lo_q, hi_q), workers=workers,
                           timeout=task_timeout(timeout, rounds, workers), **run)
        return [replayed(r, i + 1) for i, r in enumerate(results)]
    deadline = None if timeout is None else time.perf_counter() + float(timeout) - 0.2
    out = []
    for i, c in enumerate(classes):
        share = None
        if deadline is not None:
            slot = next_slot(deadline - time.perf_counter(), n - i)
            if slot is None:
                out.append(replayed(not_run("phi", c, alpha, k, norm, "not run: less than "
                                            f"{MIN_SLOT:g} s of the time budget was left"),
                                    i + 1))
                continue
            share = call_timeout(slot)
        if progress is not None:
            progress({"phase": "Phi_m", "cls": c, "done": i, "total": n})
        r = phi_many(net_q, [c], alpha, k, norm, (lo_q, hi_q), timeout=share, **run)[0]
        out.append(replayed(r, i + 1))
    return out


def not_run(quantity: str, cls: int | None, alpha: float | None, k: int, norm: str,
            why: str):
    """A :class:`ResilienceResult` for a class or sample that got no solver time."""
    from nnresilience.results import ResilienceResult

    return ResilienceResult(quantity, None, None, False, True, cls=cls, alpha=alpha, k=k,
                            norm=norm, message=why)


def stopped_class(cls: int, alpha: float, k: int, norm: str,
                  why: str = "stopped at the deadline") -> dict[str, Any]:
    """The :func:`class_phis` entry of a class whose answer was lost when the work was
    killed: nothing proven, nothing witnessed."""
    return {"cls": int(cls), "result": not_run("phi", cls, alpha, k, norm, why),
            "feasible": True, "lower": None, "upper": None, "optimal": False, "a": None,
            "b": None, "message": why}


def _replay_class(network, r, alpha: float, k: int, norm: str, lo: np.ndarray,
                  hi: np.ndarray, scale: np.ndarray | None, settings) -> dict[str, Any]:
    """One class's entry of :func:`class_phis`: the witness mapped back to the original
    coordinates and replayed exactly; the interval in the contract's norm."""
    a = b = None
    upper = None
    note = r.message
    if r.a is not None and r.a_perturbed is not None:
        ua, ub = np.asarray(r.a, float), np.asarray(r.a_perturbed, float)
        xa, xb = (ua, ub) if scale is None else (ua * scale, ub * scale)
        pair = exact_pair(network, xa, xb, r.cls, math.log(alpha), k, lo, hi)
        if pair is None:
            note = "the solver's witness failed the exact float64 replay"
        else:
            a, b = pair
            upper = weighted_norm(b - a, norm, scale)
    lower = r.lower
    if lower is not None and upper is not None:
        lower = min(lower, upper)
    optimal = bool(r.optimal and upper is not None and lower is not None
                   and upper - lower <= settings.opt_tol * max(1.0, upper))
    if r.feasible and lower is not None and math.isinf(lower):
        optimal = True          # Φ = +inf: proven, no witness exists
    return {"cls": r.cls, "result": r, "feasible": bool(r.feasible), "lower": lower,
            "upper": upper, "optimal": optimal, "a": a, "b": b, "message": note}


def _proof(r, settings) -> dict[str, Any]:
    st = r.stats or {}
    return {"engine": "milp", "query": "MIP (6) of seed 000 (two network copies)",
            "bounds_method": st.get("bounds_method"), "backend": st.get("backend"),
            "solver_status": st.get("solver_status"), "n_binaries": st.get("n_binaries"),
            "seconds": round(float(r.seconds), 4), "message": r.message or "",
            "settings_preset": _preset_name(settings)}


def _preset_name(settings) -> str | None:
    from nnresilience.resilience import PRESETS

    return next((n for n, s in PRESETS.items() if s == settings), None)


def _tolerance(lower: float | None, feasible: bool, margin: float) -> float:
    """What a clause promises: every ``||ε|| < tolerance`` is tolerated."""
    if not feasible:
        return math.inf                 # no input reaches the confidence: vacuous
    if lower is None:
        return 0.0
    if math.isinf(lower):
        return math.inf
    return max(0.0, float(lower) * (1.0 - margin))


def _witness(a, b, network, m: int, norm: str, scale) -> dict[str, Any] | None:
    if a is None or b is None:
        return None
    return {"a": a.tolist(), "a_perturbed": b.tolist(),
            "epsilon_norm": weighted_norm(b - a, norm, scale),
            "label": int(m), "perturbed_label": int(np.argmax(network.forward(b))),
            "premise_margin": premise_margin(network, a, m),
            "flip_count": flip_count(network, b, m), "replayed": "exact float64"}


def _class_status(c: dict[str, Any]) -> str:
    if not c["feasible"]:
        return "vacuous"
    if c["optimal"]:
        return "optimal"
    if c["lower"] is not None or c["upper"] is not None:
        return "bounded"
    return "unknown"


def _model_block(network, model_path: str | Path | None) -> dict[str, Any]:
    d: dict[str, Any] = {"name": network.name, "content_hash": network.content_hash(),
                         "n_inputs": network.n_inputs, "n_outputs": network.n_outputs,
                         "input_shape": list(network.input_shape),
                         "output_names": network.output_names}
    if model_path is not None:
        d["path"] = str(model_path)
        d["file_sha256"] = file_sha256(model_path)
    return d


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# -------------------------------------------------------------------------- contract
def make_contract(network, alpha: float, k: int = 1, norm: str = "l1", domain=None, *,
                  scale: Any = None, scale_source: str | None = None, settings=None,
                  timeout: float | None = None, workers: Any = None,
                  margin: float = DEFAULT_MARGIN, model_path: str | Path | None = None,
                  data: np.ndarray | None = None, progress: Progress | None = None
                  ) -> dict[str, Any]:
    """Compute Φ_m of every class and Ξ and return the contract as a JSON-ready dict.

    ``timeout`` is the wall-clock budget of the whole call (shared by the classes);
    ``workers`` runs classes in parallel (an int, ``'dask:N'`` or ``'tcp://...'``).
    ``scale`` (one value per input, or a scalar) measures ε as ``ε_i / s_i``.
    ``progress``: see :func:`class_phis`.
    """
    from nnresilience.resilience import DEFAULT

    t0 = time.perf_counter()
    settings = DEFAULT if settings is None else settings
    q = contract_query(network, alpha, k, norm, domain, scale, margin)
    per = class_phis(network, range(network.n_outputs), q.alpha, q.k, q.norm, q.lo, q.hi,
                     scale=q.scale, settings=settings, timeout=timeout, workers=workers,
                     data=data, progress=progress)
    return assemble_contract(network, q, per, settings=settings, scale_source=scale_source,
                             timeout=timeout, workers=workers, model_path=model_path,
                             seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class Assumption:
    """The checked assumption of a contract: α, k, norm, the box D, the per-input scale."""

    alpha: float
    k: int
    norm: str
    lo: np.ndarray
    hi: np.ndarray
    scale: np.ndarray | None


@dataclass(frozen=True)
class ContractQuery(Assumption):
    """What :func:`make_contract` computes: the assumption and the tolerances' margin."""

    margin: float


def contract_query(network, alpha: float, k: int, norm: str, domain, scale: Any = None,
                   margin: float = DEFAULT_MARGIN) -> ContractQuery:
    """Check every parameter of a contract for ``network`` (bad input raises before any
    work starts)."""
    alpha, k, norm = check_query(network, alpha, k, norm)
    margin = check_margin(margin)
    lo, hi = resolve_box(network, domain)
    s = None if scale is None else check_scale(scale, network.n_inputs)
    return ContractQuery(alpha, k, norm, lo, hi, s, margin)


def assemble_contract(network, q: ContractQuery, per: list[dict[str, Any]], *, settings,
                      scale_source: str | None = None, timeout: float | None = None,
                      workers: Any = None, model_path: str | Path | None = None,
                      seconds: float = 0.0, killed: bool = False) -> dict[str, Any]:
    """The contract document from the per-class answers of :func:`class_phis` (cheap:
    a killed command assembles it from the classes that finished, see
    :func:`stopped_class`)."""
    from nnresilience import __version__

    clauses = []
    for c in per:
        m = c["cls"]
        name = (network.output_names[m] if network.output_names
                and len(network.output_names) == network.n_outputs else None)
        tol = _tolerance(c["lower"], c["feasible"], q.margin)
        clauses.append({
            "id": f"class:{m}", "class": m, "class_name": name,
            "status": _class_status(c), "tolerance": tol,
            "phi": {"lower": c["lower"], "upper": c["upper"], "optimal": c["optimal"]},
            "witness": _witness(c["a"], c["b"], network, m, q.norm, q.scale),
            "message": c["message"] or "", "proof": _proof(c["result"], settings)})
    tols = [cl["tolerance"] for cl in clauses]
    lowers = [c["lower"] if c["lower"] is not None else 0.0 for c in per if c["feasible"]]
    ups = [(c["upper"], c["cls"]) for c in per if c["feasible"] and c["upper"] is not None]
    xi_up = min(ups) if ups else None
    # Ξ is pinned down when its argmin class is optimal and no class can go below it
    xi_opt = xi_up is not None and all(
        (c["optimal"] if c["cls"] == xi_up[1] else
         not c["feasible"] or (c["lower"] is not None
                               and c["lower"] >= xi_up[0] * (1 - settings.opt_tol)))
        for c in per)
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": utc_now(),
        "tool": {"name": "nnresilience", "version": __version__},
        "model": _model_block(network, model_path),
        "assumption": {
            "alpha": float(q.alpha), "k": int(q.k), "norm": q.norm,
            "domain": {"lo": q.lo.tolist(), "hi": q.hi.tolist()},
            "per_input_scale": None if q.scale is None else q.scale.tolist(),
            "scale_source": scale_source,
        },
        "margin": float(q.margin),
        "clauses": clauses,
        "network": {
            "id": "network:xi", "tolerance": min(tols) if tols else math.inf,
            "xi": {"lower": min(lowers) if lowers else None,
                   "upper": None if xi_up is None else xi_up[0],
                   "argmin_class": None if xi_up is None else xi_up[1],
                   "optimal": xi_opt},
        },
        "settings": asdict(settings),
        "run": {"timeout": timeout, "workers": None if workers is None else str(workers),
                "seconds": round(seconds, 3), "killed": killed},
    }


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as strict JSON (:func:`dumps`) atomically: a reader never sees half a
    contract, a failed write leaves no file."""
    from nnresilience.io import write_atomic

    return write_atomic(path, dumps(obj))


write_contract = write_json


def load_contract(path: str | Path) -> dict[str, Any]:
    """Read and validate a contract file (:class:`InputDataError` naming what is wrong)."""
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{p}: no such contract file")
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{p}: not a JSON contract ({exc})") from exc
    validate_contract(d, str(p))
    return d


def validate_contract(d: Any, where: str = "contract") -> None:
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise InputDataError(f"{where}: not an nnresilience contract (schema must be "
                             f"{SCHEMA!r})")
    if d.get("schema_version") != SCHEMA_VERSION:
        raise InputDataError(f"{where}: contract schema version {d.get('schema_version')}, "
                             f"this nnresilience reads version {SCHEMA_VERSION}")
    try:
        asm = d["assumption"]
        alpha, k, norm = float(asm["alpha"]), int(asm["k"]), asm["norm"]
        lo = np.asarray(asm["domain"]["lo"], float)
        hi = np.asarray(asm["domain"]["hi"], float)
        for cl in d["clauses"]:
            int(cl["class"])
            json_number(cl["tolerance"])
        int(d["model"]["n_inputs"])
        int(d["model"]["n_outputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputDataError(f"{where}: malformed contract ({type(exc).__name__}: {exc})") \
            from exc
    if not (math.isfinite(alpha) and alpha >= 1.0) or k < 1 or norm not in NORMS:
        raise InputDataError(f"{where}: bad assumption alpha={alpha}, k={k}, norm={norm!r}")
    if lo.shape != hi.shape or lo.size != int(d["model"]["n_inputs"]):
        raise InputDataError(f"{where}: the domain does not match the model's input count")


# ----------------------------------------------------------------------------- check
def check_contract(network, contract: dict[str, Any], *, settings=None,
                   timeout: float | None = None, workers: Any = None,
                   model_path: str | Path | None = None, progress: Progress | None = None
                   ) -> dict[str, Any]:
    """Re-evaluate every clause of ``contract`` on ``network`` (a retrained model, say).

    A clause with tolerance T **holds** when the new proven lower bound of Φ_m is >= T
    (or the class's premise is empty: vacuous); it **fails** when a witness pair of the
    new model, replayed exactly here, has ``||ε|| < T``; otherwise it is **unknown**
    within ``timeout`` (the whole call's budget). The network clause uses Ξ's tolerance.
    ``progress``: see :func:`class_phis`.
    """
    from nnresilience.resilience import DEFAULT

    t0 = time.perf_counter()
    settings = DEFAULT if settings is None else settings
    q = check_query_of(network, contract)
    per = class_phis(network, q.classes, q.alpha, q.k, q.norm, q.lo, q.hi, scale=q.scale,
                     settings=settings, timeout=timeout, workers=workers,
                     progress=progress) if q.classes else []
    return assemble_check(network, contract, q, per, settings=settings, timeout=timeout,
                          workers=workers, model_path=model_path,
                          seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class CheckQuery(Assumption):
    """A contract's assumption, checked against the model it is re-checked on, with the
    tolerances promised and the classes that need a solve."""

    wanted: dict[int, float]
    net_tol: float
    classes: list[int]


def check_query_of(network, contract: dict[str, Any]) -> CheckQuery:
    """Validate ``contract`` and match it to ``network`` (sizes), before any work."""
    validate_contract(contract)
    asm = contract["assumption"]
    n_in, n_out = int(contract["model"]["n_inputs"]), int(contract["model"]["n_outputs"])
    if network.n_inputs != n_in or network.n_outputs != n_out:
        raise ShapeMismatchError(
            f"the contract is for a network with {n_in} inputs and {n_out} outputs; this "
            f"one has {network.n_inputs} and {network.n_outputs}")
    alpha, k, norm = check_query(network, float(asm["alpha"]), int(asm["k"]), asm["norm"])
    lo = np.asarray(asm["domain"]["lo"], float)
    hi = np.asarray(asm["domain"]["hi"], float)
    s = asm.get("per_input_scale")
    s = None if s is None else check_scale(s, n_in, "contract per_input_scale")
    wanted = {int(cl["class"]): json_number(cl["tolerance"]) for cl in contract["clauses"]}
    net_tol = json_number(contract.get("network", {}).get("tolerance"))
    if net_tol is None:
        net_tol = min(wanted.values()) if wanted else math.inf
    # a clause with tolerance 0 promises nothing ("||eps|| < 0" is empty): it holds
    # without a solve, and its class's time goes to the others (unless the network
    # clause needs that class)
    classes = sorted(m for m, t in wanted.items() if t > 0.0 or net_tol > 0.0)
    return CheckQuery(alpha, k, norm, lo, hi, s, wanted, net_tol, classes)


def assemble_check(network, contract: dict[str, Any], q: CheckQuery,
                   per: list[dict[str, Any]], *, settings, timeout: float | None = None,
                   workers: Any = None, model_path: str | Path | None = None,
                   seconds: float = 0.0, killed: bool = False) -> dict[str, Any]:
    """The check report from the per-class answers of :func:`class_phis` (a killed
    command assembles it from the classes that finished: the others are unknown)."""
    from nnresilience import __version__

    by_class = {c["cls"]: c for c in per}
    clauses = []
    for m in sorted(q.wanted):
        if m not in by_class:
            clauses.append({"id": f"class:{m}", "class": m, "tolerance": q.wanted[m],
                            "phi": None, "verdict": "holds", "witness": None,
                            "reason": "the clause promises nothing (tolerance 0)",
                            "proof": None})
            continue
        c = by_class[m]
        clauses.append({"id": f"class:{m}", "class": m,
                        **_verdict(c, q.wanted[m], network, q.norm, q.scale),
                        "proof": _proof(c["result"], settings)})
    network_clause = {"id": "network:xi",
                      **_network_verdict(per, q.net_tol, network, q.norm, q.scale)}
    counts = {v: sum(1 for cl in clauses if cl["verdict"] == v)
              for v in ("holds", "fails", "unknown")}
    new_hash = network.content_hash()
    return {
        "schema": CHECK_SCHEMA, "schema_version": SCHEMA_VERSION, "created": utc_now(),
        "tool": {"name": "nnresilience", "version": __version__},
        "contract": {"model": contract["model"], "created": contract.get("created"),
                     "assumption": contract["assumption"]},
        "model": _model_block(network, model_path),
        "model_changed": new_hash != contract["model"].get("content_hash"),
        "clauses": clauses, "network": network_clause, "summary": counts,
        "verdict": ("fails" if counts["fails"] or network_clause["verdict"] == "fails"
                    else "holds" if counts["holds"] == len(clauses)
                    and network_clause["verdict"] == "holds" else "unknown"),
        "settings": asdict(settings),
        "run": {"timeout": timeout, "workers": None if workers is None else str(workers),
                "seconds": round(seconds, 3), "killed": killed},
    }


def _verdict(c: dict[str, Any], tol: float, network, norm: str, scale) -> dict[str, Any]:
    """One class clause against the new Φ_m interval of that class."""
    phi_new = {"lower": c["lower"], "upper": c["upper"], "optimal": c["optimal"],
               "feasible": c["feasible"]}
    base = {"tolerance": tol, "phi": phi_new}
    if not c["feasible"]:
        return {**base, "verdict": "holds", "witness": None,
                "reason": "no input of the domain reaches the confidence ratio alpha for "
                          "this class: the clause holds vacuously"}
    if c["lower"] is not None and c["lower"] >= tol:
        return {**base, "verdict": "holds", "witness": None,
                "reason": "proven: the new Phi_m lower bound is at least the tolerance"}
    if c["upper"] is not None and c["upper"] < tol:
        return {**base, "verdict": "fails",
                "witness": _witness(c["a"], c["b"], network, c["cls"], norm, scale),
                "reason": "a replayed perturbation below the tolerance takes the class out "
                          "of the top-k"}
    return {**base, "verdict": "unknown", "witness": None,
            "reason": "the new Phi_m interval straddles the tolerance within the time "
                      "given" + (f" ({c['message']})" if c["message"] else "")}


def _network_verdict(per: list[dict[str, Any]], tol: float, network, norm: str, scale
                     ) -> dict[str, Any]:
    """The Ξ clause: every class must tolerate ``tol``; one witness below it breaks it.
    A tolerance of 0 promises nothing and holds (then ``per`` may lack classes)."""
    if tol <= 0.0:
        return {"tolerance": tol, "verdict": "holds", "witness": None,
                "reason": "the clause promises nothing (tolerance 0)"}
    below = [c for c in per if c["feasible"] and c["upper"] is not None and c["upper"] < tol]
    if below:
        c = min(below, key=lambda c: c["upper"])
        return {"tolerance": tol, "verdict": "fails",
                "witness": _witness(c["a"], c["b"], network, c["cls"], norm, scale),
                "reason": f"class {c['cls']} has a replayed perturbation below the network "
                          "tolerance"}
    if all((not c["feasible"]) or (c["lower"] is not None and c["lower"] >= tol)
           for c in per):
        return {"tolerance": tol, "verdict": "holds", "witness": None,
                "reason": "proven for every class"}
    return {"tolerance": tol, "verdict": "unknown", "witness": None,
            "reason": "some class is undecided within the time given"}
