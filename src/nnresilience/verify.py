"""``verify``: decide a property with falsifier, bounds and a complete engine, in that order.

Pipeline per property (one :class:`~nnresilience.spec.property.Case` at a time):

1. **Bounds** of the chosen method on every case's input box. If, for every term
   ``A y <= b`` of the unsafe disjunction, some row has ``min_{y in output box} A y > b``,
   no output can be unsafe and the case *holds* (sound because every bound method
   contains the float64 forward values, see :mod:`nnresilience.bounds.types`).
2. **Falsifier** on every case the bounds left open (a replayed counterexample ends the
   query).
3. **Engine** on what is left, with the time left: ``bab`` (the branch-and-bound search of
   :mod:`nnresilience.search`), ``milp`` or ``reluplex`` -- on a low-dimensional box the
   latter two run at the leaves of the search's input splitting -- chosen by ``auto``
   from the network and the property (:func:`choose_engine`, table in ``docs/verify.md``).

Soundness rules enforced here, whatever the engine does:

- ``violated`` is reported only for a point that :func:`confirm` accepts: clipped into
  the region box (solvers overshoot bounds by ~1e-9), inside the region, and whose float64
  :meth:`Network.forward` output satisfies the unsafe condition *exactly*. A candidate
  that misses by rounding error gets a few small gradient steps
  (:func:`nnresilience.falsify.repair`); if it still fails, the case is ``unknown`` with
  message ``candidate failed replay`` -- never ``violated``.
- For networks loaded from ONNX the point is also run through onnxruntime; the verdict
  rests on the float64 replay, and ``Counterexample.replayed_onnxruntime`` records whether
  onnxruntime (float32) agrees.
- ``holds`` comes only from the output-bound test above or an engine's proof.
- The property is violated if any case is, holds if all cases hold, else unknown.
- The result names what decided it, and only what was called: ``bounds (symbolic)``,
  ``falsifier``, ``bab: 1234 domains, 3 MILP leaves``, ``milp on 2 leaves, bounds
  (symbolic) over 180 boxes``, ``milp``, ``reluplex``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.errors import EngineUnsupportedError, NNResError
from nnresilience.falsify import _onnx_check, confirm, falsify, replay
from nnresilience.results import Counterexample, Status, VerificationResult

__all__ = ["CaseOutcome", "choose_engine", "confirm", "excluded_terms",
           "output_box_excludes", "reduced_case", "replay", "spec_rows_exclude",
           "split_applies", "verify", "_onnx_check"]

# Input splitting is used for boxes of at most this many inputs.
SPLIT_MAX_DIM = 12
# ``auto`` without the optimised bounder: piecewise-linear cases with at most this many
# unstable neurons after the root bounds go to one MILP, larger ones to ``bab`` (measured
# on MNIST-FC 256x2 at eps 0.03: MILP 12/15, bab with the fallback bounds 10/15; the table
# is in docs/verify.md).
AUTO_MILP_UNSTABLE = 200
# The falsifier's share of the time left (at most ``falsify_budget`` seconds per case).
FALSIFY_SHARE = 0.2


# ------------------------------------------------------------------------ bounds
def _compute_bounds(network, region, method: str, timeout: float | None):
    from nnresilience.bounds import compute_bounds

    return compute_bounds(network, region, method=method, timeout=timeout)


def output_box_excludes(condition, lo: np.ndarray, hi: np.ndarray) -> bool:
    """True if no ``y`` in the box ``[lo, hi]`` satisfies any term of ``condition``.

    The replay tests ``fl(A y) <= b`` in float64, so a row excludes the term when a lower
    bound of ``fl(A y)`` over the box exceeds ``b``: the float64 minimum ``A+ lo + A- hi``
    minus the rounding of computing it and of the replay's own ``A y``, each
    :func:`~nnresilience.bounds.rounding.sum_error` of ``|A| max(|lo|, |hi|)``
    (docs/bounds.md, "Floating-point soundness").
    """
    from nnresilience.bounds.rounding import down, maxabs, sum_error

    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    mag = maxabs(lo, hi)
    for term in condition.terms:
        A = term.A
        with np.errstate(invalid="ignore", over="ignore"):
            row_min = np.clip(A, 0, None) @ lo + np.clip(A, None, 0) @ hi
            safe = down(row_min - 2.0 * sum_error(np.abs(A) @ mag, 2 * A.shape[1] + 1))
        if not np.any(safe > term.b):
            return False
    return True


# ------------------------------------------------------------------------ engine
def _resolve_engine(name: str):
    from nnresilience.engines import get_engine

    eng = get_engine("milp" if name == "auto" else name)
    return eng() if isinstance(eng, type) else eng


def _spec_network(network, condition):
    """``network`` followed by one affine layer computing every row ``A y`` of ``condition``.

    Back-substituting through this extra layer bounds ``A y`` directly (much tighter than
    taking ``A`` over the output box, which ignores correlations between outputs). The
    first ``len(layers) + 1`` entries of its bounds are exactly those of ``network``.
    """
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network

    A = np.vstack([t.A for t in condition.terms])
    return Network(list(network.layers) + [Affine(A, np.zeros(A.shape[0]))],
                   input_shape=network.input_shape, name=network.name)


def excluded_terms(condition, row_lo: np.ndarray) -> np.ndarray:
    """Per term: does some row have a proven lower bound of ``A y`` above ``b``?

    ``row_lo`` comes from bounds of the network extended by the rows ``A y``
    (:func:`_spec_network`), so it already bounds the float64 value of ``A y`` in any
    summation order (docs/bounds.md, "Floating-point soundness"): no slack is needed.
    """
    out = np.zeros(len(condition.terms), dtype=bool)
    start = 0
    for k, term in enumerate(condition.terms):
        r = term.A.shape[0]
        lo = row_lo[start:start + r]
        start += r
        out[k] = bool(np.any(lo > term.b))
    return out


def spec_rows_exclude(condition, row_lo: np.ndarray) -> bool:
    """True if, for every term, some row has a proven lower bound of ``A y`` above ``b``."""
    return bool(np.all(excluded_terms(condition, row_lo)))


def reduced_case(case, row_lo: np.ndarray):
    """The case without the disjunction terms the bounds exclude (same unsafe inputs).

    Sound because an excluded term has no input of the region satisfying it; the engine
    then encodes fewer disjuncts (MNIST misclassification: often 1-2 of 9).
    """
    from nnresilience.spec.condition import OutputCondition
    from nnresilience.spec.property import Case

    gone = excluded_terms(case.unsafe, row_lo)
    if not np.any(gone) or np.all(gone):
        return case
    keep = tuple(t for t, g in zip(case.unsafe.terms, gone, strict=True) if not g)
    return Case(case.region, OutputCondition(keep, case.unsafe.n_outputs))


def _case_bounds(network, spec_net, case, lo, hi, method: str, timeout: float | None):
    """``(bounds of network, lower bounds of the A y rows)`` on the box ``[lo, hi]``."""
    from nnresilience.bounds.types import NetworkBounds
    from nnresilience.spec.region import InputRegion

    region = case.region if lo is None else InputRegion(lo, hi)
    nb = _compute_bounds(spec_net, region, method, timeout)
    own = NetworkBounds(nb.lo[:-1], nb.hi[:-1], method=nb.method, seconds=nb.seconds,
                        stats=dict(nb.stats))
    return own, nb.lo[-1]


def _n_unstable(network, nb) -> int:
    total = 0
    for i, layer in enumerate(network.layers):
        if layer.kind in ("relu", "leaky_relu"):
            total += int(np.sum(nb.unstable_mask(i)))
        elif layer.kind != "affine":
            total += layer.out_size
    return total


def split_applies(network, case) -> bool:
    """Input splitting pays off on low-dimensional boxes (ACAS Xu: 5 inputs)."""
    return case.region.norm not in ("l1", "l2") and case.region.dim <= SPLIT_MAX_DIM


def choose_engine(network, case, nb, engine: str) -> str:
    """The engine ``auto`` stands for on this case (see the table in docs/verify.md).

    Low-dimensional boxes: ``bab`` (input splitting, MILP leaves). S-shaped networks:
    ``bab`` (interval splitting and refinement; one MILP only solves a relaxation).
    Other piecewise-linear cases: ``bab`` (neuron splitting) when the optimised bounder
    (``bounds/crown.py``) is installed; without it, one ``milp`` when the root bounds
    leave at most :data:`AUTO_MILP_UNSTABLE` unstable neurons, else ``bab``.
    """
    if engine != "auto":
        return engine
    if split_applies(network, case):
        return "bab"
    if any(la.kind in ("sigmoid", "tanh", "arctan") for la in network.layers):
        return "bab"
    from nnresilience.search.bounder import crown_available

    if crown_available():
        return "bab"
    return "milp" if _n_unstable(network, nb) <= AUTO_MILP_UNSTABLE else "bab"


# ------------------------------------------------------------------- orchestration
@dataclass
class CaseOutcome:
    """What happened to one case: verdict, deciding method, witness, timings."""

    index: int
    status: Status = Status.UNKNOWN
    method: str = ""
    counterexample: Counterexample | None = None
    message: str = ""
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "status": self.status.value, "method": self.method,
                "message": self.message, "seconds": round(self.seconds, 6),
                **self.stats}


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Progress:
    """Forwards progress dicts to the caller's callback, at least once a second.

    The search reports after each batch; a helper thread repeats the latest snapshot
    (with fresh ``elapsed``/``time_left``) when nothing was reported for half a second,
    e.g. during a long MILP leaf. The callback is thus called from two threads.
    """

    PERIOD = 0.5

    def __init__(self, callback: Callable[[dict], None] | None, t0: float,
                 deadline: float | None) -> None:
        self.callback, self.t0, self.deadline = callback, t0, deadline
        self.snapshot: dict[str, Any] = {"phase": "start"}
        self.last = 0.0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if callback is not None:
            self._thread = threading.Thread(target=self._tick, daemon=True,
                                            name="nnres-progress")
            self._thread.start()

    def __call__(self, update: dict[str, Any]) -> None:
        if self.callback is None:
            return
        with self.lock:
            self.snapshot = {**self.snapshot, **update}
        self._emit()

    def _emit(self) -> None:
        now = time.monotonic()
        with self.lock:
            snap = dict(self.snapshot)
            self.last = now
        snap["elapsed"] = round(now - self.t0, 3)
        snap["time_left"] = None if self.deadline is None else round(
            max(0.0, self.deadline - now), 3)
        self.callback(snap)

    def _tick(self) -> None:
        while not self._stop.wait(self.PERIOD / 2):
            if time.monotonic() - self.last >= self.PERIOD:
                self._emit()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


def _run_engine(eng, network, case, nb, deadline, onnx_replay, opts, stats
                ) -> tuple[Status, Counterexample | None, str]:
    """One complete-engine call on the whole case, its candidate replayed."""
    if deadline is not None and time.monotonic() >= deadline:
        return Status.UNKNOWN, None, "timeout"
    ans = eng.check(network, case, nb, timeout=_remaining(deadline), **opts)
    stats["engine_seconds"] = round(float(ans.seconds), 6)
    stats["engine_stats"] = dict(ans.stats)
    if ans.status is Status.HOLDS:
        return Status.HOLDS, None, ""
    if ans.status is Status.VIOLATED:
        cex = confirm(network, case, ans.x, onnx_replay, deadline)
        if cex is None:
            return Status.UNKNOWN, None, "candidate failed replay"
        return Status.VIOLATED, cex, f"counterexample found by {eng.name}"
    return Status.UNKNOWN, None, ans.message or "engine gave no answer"


def _search(network, case, leaf, rule, deadline, bounds_method, opts, seed, onnx_replay,
            device, executor, report, out: CaseOutcome, bab: bool
            ) -> tuple[Status, Counterexample | None, str]:
    """The search of :mod:`nnresilience.search` on one case, its label set honestly."""
    from nnresilience.search.decide import SearchSettings, decide_case, describe
    from nnresilience.search.parallel import resolve_pool

    # the search's own bounder: the optimised one when installed (``alpha`` insists on
    # it); engine_options={"bounder": "symbolic"} forces the numpy fallback
    bounder = "alpha" if bounds_method == "alpha" else "auto"
    search_opts = {k: opts.pop(k) for k in list(opts)
                   if k in SearchSettings.__dataclass_fields__}
    search_opts.setdefault("bounder", bounder)
    settings = SearchSettings(rule=rule, device=device, seed=seed, onnx_replay=onnx_replay,
                              engine_options=opts, **search_opts)
    pool, owned = resolve_pool(executor)
    try:
        ans = decide_case(network, case, leaf, settings, deadline, report=report,
                          executor=pool, stats=out.stats)
    finally:
        if owned:
            pool.terminate()
    leaf_name = leaf if isinstance(leaf, str) or leaf is None else leaf.name
    out.method = describe(out.stats, leaf_name, bab=bab)
    return ans.status, ans.counterexample, ans.message


def verify(network, prop, engine: str = "auto", timeout: float | None = None,
           bounds_method: str = "symbolic", falsify_budget: float = 1.0, seed: int = 0,
           onnx_replay: bool = True, engine_options: dict[str, Any] | None = None,
           progress: Callable[[dict], None] | None = None,
           input_split: bool | None = None, executor=None,
           device: str = "cpu") -> VerificationResult:
    """Decide ``prop`` on ``network``: holds / violated (replayed witness) / unknown.

    ``timeout`` (seconds, whole query) is a deadline for everything below; the falsifier
    gets at most ``falsify_budget`` seconds per case (and at most a fifth of the time).
    ``engine``: ``auto`` (:func:`choose_engine`), ``bab`` (or ``bab:<leaf engine>``),
    ``milp`` / ``milp:<backend>``, ``reluplex``, or ``none`` (bounds, falsifier and input
    splitting with no engine at the leaves). ``engine_options`` go to the engine (for
    ``bab`` and input splitting also the search knobs of
    :class:`~nnresilience.search.decide.SearchSettings`). ``input_split``: force the
    input-splitting search with ``engine`` at its leaves on (True) or off (False); default:
    on for boxes of at most :data:`SPLIT_MAX_DIM` inputs. ``executor``: an
    :class:`~nnresilience.parallel.Executor` with more than one worker (or a spec such as
    ``2``, whose workers are then created for the search and killed when it ends) shares
    the search frontier between the workers. ``device``: torch device of the bounds and
    the falsifier where they use torch. ``progress`` receives small dicts (``phase``,
    ``case``, ``open``, ``closed``, ``best_lower``, ``elapsed``, ``time_left``, ...) at
    least once a second while the query runs.
    """
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + float(timeout)
    tell = _Progress(progress, t0, deadline)
    try:
        return _verify(network, prop, engine, deadline, bounds_method, falsify_budget, seed,
                       onnx_replay, dict(engine_options or {}), tell, input_split, executor,
                       device, t0)
    finally:
        tell.close()


def _verify(network, prop, engine, deadline, bounds_method, falsify_budget, seed,
            onnx_replay, opts, tell, input_split, executor, device, t0
            ) -> VerificationResult:
    prop.check_network(network)
    outcomes = [CaseOutcome(i) for i in range(len(prop.cases))]
    work = list(zip(prop.cases, outcomes, strict=True))

    def finish(status: Status, message: str = "",
               cex: Counterexample | None = None) -> VerificationResult:
        stats = {"cases": [o.to_dict() for o in outcomes], "bounds_method": bounds_method,
                 "engine_requested": engine, "n_cases": len(outcomes)}
        deciding = sorted({o.method for o in outcomes if o.method})
        if status is Status.VIOLATED and (cex is None or not replay(network, prop,
                                                                    cex.x_array)):
            # last line of defence: never report a witness the property does not accept
            status, cex, message = Status.UNKNOWN, None, "candidate failed replay"
        if status is Status.VIOLATED:
            deciding = [o.method for o in outcomes if o.status is Status.VIOLATED][:1]
        tell({"phase": "done", "status": status.value})
        return VerificationResult(status, cex, engine="+".join(deciding),
                                  seconds=time.monotonic() - t0, message=message,
                                  stats=stats)

    # 0. a term without output rows (a VNN-LIB file that constrains only the inputs) is
    #    met by every output: any input of the box violates, and it has no row to bound
    found = _unconstrained_stage(network, work, onnx_replay, deadline)
    if found is not None:
        return finish(Status.VIOLATED, "the unsafe condition has a term without output "
                      "constraints: every input of the box violates it", found)
    # 1. sound bounds on every case (a case they prove holds at once). They leave the
    #    falsifier its share of the time: on a wide net (784-2000-1500-1000 LeakyReLU) the
    #    symbolic bounds alone take more than 5 s, and with the whole budget the falsifier
    #    never ran on a property that PGD violates in well under a second.
    rem = _remaining(deadline)
    reserve = 0.0 if rem is None or falsify_budget <= 0 else min(falsify_budget,
                                                                  FALSIFY_SHARE * rem)
    root = _bounds_stage(network, work, deadline, bounds_method, tell, reserve)
    if all(o.status is Status.HOLDS for o in outcomes):
        return finish(Status.HOLDS)
    # 2. the falsifier on every open case: a replayed counterexample ends the query
    found = _falsify_stage(network, work, deadline, falsify_budget, seed, onnx_replay,
                           device, tell, reserve)
    if found is not None:
        return finish(Status.VIOLATED, "counterexample found by the falsifier", found)
    # 3. the engine (or the search with an engine at its leaves), case by case
    for case, out in work:
        if out.status is Status.HOLDS:
            continue
        if (deadline is not None and time.monotonic() >= deadline) or out.index not in root:
            out.message = "timeout"
            continue
        t = time.monotonic()
        nb, row_lo = root[out.index]
        reduced = reduced_case(case, row_lo)
        out.stats["terms_left"] = len(reduced.unsafe.terms)
        name = choose_engine(network, case, nb, engine)
        out.stats["engine"] = name
        tell({"phase": "engine", "case": out.index, "engine": name})
        try:
            status, cex, msg = _engine_stage(network, reduced, nb, name, engine, input_split,
                                             deadline, bounds_method, dict(opts), seed,
                                             onnx_replay, device, executor, tell, out)
        except NNResError as exc:
            if isinstance(exc, EngineUnsupportedError) and engine != "auto":
                raise
            status, cex, msg = Status.UNKNOWN, None, f"{type(exc).__name__}: {exc}"
        out.seconds += time.monotonic() - t
        out.status, out.counterexample, out.message = status, cex, msg
        if status is Status.VIOLATED:
            return finish(Status.VIOLATED, msg, cex)
    if all(o.status is Status.HOLDS for o in outcomes):
        return finish(Status.HOLDS)
    return finish(Status.UNKNOWN, _unknown_message(outcomes, deadline))


def _unconstrained_stage(network, work, onnx_replay, deadline) -> Counterexample | None:
    """The centre of the first case whose unsafe condition has a term with no rows (the
    empty conjunction, true of every output), confirmed like any counterexample."""
    for case, out in work:
        if not any(t.A.shape[0] == 0 for t in case.unsafe.terms):
            continue
        x = case.region.clip((case.region.lo + case.region.hi) / 2.0)
        cex = confirm(network, case, x, onnx_replay, deadline)
        if cex is not None:
            out.status, out.method, out.counterexample = (Status.VIOLATED,
                                                          "no output constraint", cex)
            return cex
    return None


def _bounds_stage(network, work, deadline, bounds_method, tell,
                  reserve: float = 0.0) -> dict[int, tuple]:
    """Root bounds of every case; a case whose unsafe rows they exclude holds. Returns
    ``{case index: (bounds, lower bounds of the A y rows)}`` of the open cases. The bounds
    end ``reserve`` seconds before ``deadline`` (the falsifier's share)."""
    open_cases: dict[int, tuple[Any, np.ndarray]] = {}
    for case, out in work:
        if deadline is not None and time.monotonic() >= deadline:
            break
        tell({"phase": "bounds", "case": out.index})
        t = time.monotonic()
        spec_net = _spec_network(network, case.unsafe)
        rem = _remaining(deadline)
        nb, row_lo = _case_bounds(network, spec_net, case, None, None, bounds_method,
                                  None if rem is None else max(rem - reserve, 1e-3))
        out.stats["bounds_seconds"] = round(time.monotonic() - t, 6)
        out.stats["bounds_method"] = getattr(nb, "method", bounds_method)
        out.seconds += time.monotonic() - t
        if spec_rows_exclude(case.unsafe, row_lo) or output_box_excludes(case.unsafe,
                                                                         *nb.output):
            out.status = Status.HOLDS
            out.method = f"bounds ({out.stats['bounds_method']})"
        else:
            open_cases[out.index] = (nb, row_lo)
    return open_cases


def _falsify_stage(network, work, deadline, falsify_budget, seed, onnx_replay, device,
                   tell, reserve: float = 0.0) -> Counterexample | None:
    """The falsifier on each open case (at most ``falsify_budget`` s and a fifth of the
    time left each, but not less than the ``reserve`` the bounds left it); the first
    replayed counterexample is returned. A budget of 0 turns the stage off, so "falsifier
    off" runs show what the engines decide on their own."""
    if falsify_budget <= 0:
        return None
    for case, out in work:
        if out.status is Status.HOLDS:
            continue
        tell({"phase": "falsify", "case": out.index})
        rem = _remaining(deadline)
        budget = falsify_budget if rem is None else min(falsify_budget,
                                                        max(FALSIFY_SHARE * rem, reserve))
        t = time.monotonic()
        x = falsify(network, case, rng=seed + out.index, budget_seconds=budget,
                    deadline=deadline, device=device)
        out.stats["falsify_seconds"] = round(time.monotonic() - t, 6)
        cex = confirm(network, case, x, onnx_replay, deadline)
        out.seconds += time.monotonic() - t
        if cex is not None:
            out.status, out.method, out.counterexample = Status.VIOLATED, "falsifier", cex
            return cex
    return None


def _unknown_message(outcomes, deadline) -> str:
    timed_out = deadline is not None and time.monotonic() >= deadline - 1e-3
    msgs = [o.message for o in outcomes if o.status is Status.UNKNOWN and o.message]
    if any(m == "candidate failed replay" for m in msgs):
        return "candidate failed replay"
    if timed_out or any("timeout" in m.lower() or "time limit" in m.lower() for m in msgs):
        return "timeout"
    return msgs[0] if msgs else "undecided"


def _engine_stage(network, work, nb, name, requested, input_split, deadline, bounds_method,
                  opts, seed, onnx_replay, device, executor, tell, out
                  ) -> tuple[Status, Counterexample | None, str]:
    """Run engine ``name`` on one (reduced) case: the search for ``bab`` and for input
    splitting, else one call of the engine on the whole case."""
    def report(snapshot: dict) -> None:
        tell({**snapshot, "case": out.index})

    if name == "none":
        if input_split is False or not (input_split or split_applies(network, work)):
            return Status.UNKNOWN, None, "bounds inconclusive and no engine requested"
        return _search(network, work, None, "input", deadline, bounds_method, opts, seed,
                       onnx_replay, device, executor, report, out, bab=False)
    if name == "bab" or name.startswith("bab:"):
        leaf_name = name.partition(":")[2] or "milp"
        eng = _resolve_engine(leaf_name)
        _check_supported(eng, network, requested)
        rule = opts.pop("rule", "input" if input_split else (
            "neuron" if input_split is False else "auto"))
        return _search(network, work, eng, rule, deadline, bounds_method, opts, seed,
                       onnx_replay, device, executor, report, out, bab=True)
    eng = _resolve_engine(name)
    if not _check_supported(eng, network, requested):
        return Status.UNKNOWN, None, f"engine {name!r} cannot handle it"
    use_split = split_applies(network, work) if input_split is None else input_split
    if use_split:
        return _search(network, work, eng, "input", deadline, bounds_method, opts, seed,
                       onnx_replay, device, executor, report, out, bab=False)
    out.method = eng.name
    return _run_engine(eng, network, work, nb, deadline, onnx_replay, opts, out.stats)


def _check_supported(eng, network, requested: str) -> bool:
    reason = eng.supports(network)
    if reason and requested != "auto":
        raise EngineUnsupportedError(f"engine {eng.name!r}: {reason}")
    return not reason
