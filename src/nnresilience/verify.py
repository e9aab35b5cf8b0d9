"""``verify``: decide a property with falsifier, bounds and a complete engine, in that order.

Pipeline per property (one :class:`~nnresilience.spec.property.Case` at a time):

1. **Falsifier** on every case (cheap; a replayed counterexample ends the query).
2. **Bounds** of the chosen method on the case's input box. If, for every term
   ``A y <= b`` of the unsafe disjunction, some row has ``min_{y in output box} A y > b``,
   no output can be unsafe and the case *holds* (sound because every bound method
   contains the float64 forward values, see :mod:`nnresilience.bounds.types`).
3. **Complete engine** (MILP by default) with the time left, fed the same bounds.

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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnresilience.errors import EngineUnsupportedError, NNResError
from nnresilience.falsify import falsify, repair
from nnresilience.results import Counterexample, Status, VerificationResult

# Input splitting is used for boxes of at most this many inputs; a sub-box goes to the
# complete engine once it has at most LEAF_UNSTABLE unstable neurons.
SPLIT_MAX_DIM = 12
LEAF_UNSTABLE = 4
SMEAR_POINTS = 15
# Choose the split input by trying every input (two bound computations each) instead of
# the gradient smear: fewer boxes, more work per box.
SPLIT_LOOKAHEAD = True
LOOKAHEAD_DEPTH = 10


# ----------------------------------------------------------------------- replay
def replay(network, case_or_prop, x: np.ndarray) -> bool:
    """Does ``x`` violate the case (or any case of the property), exactly, in float64?"""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    cases = getattr(case_or_prop, "cases", None) or (case_or_prop,)
    y = network.forward(x)
    return any(c.region.contains(x) and bool(c.unsafe.satisfied(y)) for c in cases)


def _onnx_check(network, case, x: np.ndarray) -> bool | None:
    """onnxruntime's opinion of ``x`` (None when the network is not from ONNX)."""
    if network.source_format != "onnx" or not network.source:
        return None
    from nnresilience.loaders.onnx import onnxruntime_forward

    y = onnxruntime_forward(network, x)
    if y is None:
        return None
    return bool(case.unsafe.satisfied(np.asarray(y, dtype=np.float64).reshape(-1)))


def confirm(network, case, x: np.ndarray | None, onnx_replay: bool = True,
            deadline: float | None = None) -> Counterexample | None:
    """Turn a candidate into a replayed :class:`Counterexample`, or None if it is not one.

    The candidate is clipped into the region's box (and L1 ball), replayed in float64 and,
    if it misses the unsafe set, repaired by small ascent steps. Only an exactly violating
    point is returned.
    """
    if x is None:
        return None
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size != case.region.dim or not np.all(np.isfinite(x)):
        return None
    x = case.region.clip(x)
    if not replay(network, case, x):
        x = repair(network, case, x, deadline=deadline)
        if x is None or not replay(network, case, x):
            return None
    y = network.forward(x)
    ort = _onnx_check(network, case, x) if onnx_replay else None
    return Counterexample.from_arrays(x, y, ort)


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
    return case.region.norm != "l1" and case.region.dim <= SPLIT_MAX_DIM


def _proof_margin(condition, row_lo: np.ndarray) -> float:
    """``min over terms of max over rows (lower(A y) - b)``: > 0 means the box is proven."""
    worst = np.inf
    start = 0
    for term in condition.terms:
        r = term.A.shape[0]
        worst = min(worst, float(np.max(row_lo[start:start + r] - term.b)))
        start += r
    return worst


def _lookahead_split(network, spec_net, case, lo, hi, method, deadline, parent: float):
    """The input whose bisection most improves the worse half's proof margin.

    Returns ``(None, None)`` when no bisection improves on ``parent`` (the box's own
    proof margin); the caller then falls back to the gradient smear, so a useless input
    is never split forever.
    """
    best_d, best_score, best_halves = None, parent, None
    for d in np.flatnonzero(hi > lo):
        cut = lo[d] + (hi[d] - lo[d]) / 2.0
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[d], right_lo[d] = cut, cut
        halves = [_case_bounds(network, spec_net, case, a, b, method, _remaining(deadline))
                  for a, b in ((lo, left_hi), (right_lo, hi))]
        score = min(_proof_margin(case.unsafe, h[1]) for h in halves)
        if score > best_score + 1e-9 * (1.0 + abs(best_score)):
            best_d, best_score, best_halves = int(d), score, halves
    return best_d, best_halves


def _split_search(network, case, eng, deadline: float | None, method: str,
                  onnx_replay: bool, rng: np.random.Generator, engine_options: dict,
                  stats: dict) -> tuple[Status, Counterexample | None, str]:
    """Branch and bound over input sub-boxes (serial; see :func:`_split_core`)."""
    stack = [(case.region.lo.copy(), case.region.hi.copy(), 0, None)]
    return _split_core(network, case, eng, deadline, method, onnx_replay, rng,
                       engine_options, stats, stack)


def _split_core(network, case, eng, deadline: float | None, method: str,
                onnx_replay: bool, rng: np.random.Generator, engine_options: dict,
                stats: dict, stack: list, budget_end: float | None = None
                ) -> tuple[Status, Counterexample | None, str]:
    """Branch and bound over the input sub-boxes on ``stack`` ``(lo, hi, depth, cached)``.

    Each box is (a) proven safe by spec-folded bounds, (b) probed by a short gradient
    ascent from its centre, (c) handed to the complete engine once it has at most
    :data:`LEAF_UNSTABLE` unstable neurons (a small MILP), or (d) bisected. The input to
    bisect is chosen by look-ahead above depth :data:`LOOKAHEAD_DEPTH` (bound both halves
    for every input, keep the best worse half; those bounds are reused) and deeper by the
    gradient smear ``mean |d margin / d x_i| * width_i`` over :data:`SMEAR_POINTS` points
    (cheaper, and steers towards counterexamples). Every box that is not split is decided
    (holds) by a proof, so the case holds when the stack empties. Depth first, so memory
    stays ``O(depth)``.

    ``budget_end`` (monotonic time, default none) stops the search *between* boxes, once
    at least one box was processed (so a unit always makes progress), with
    ``(UNKNOWN, None, "budget")`` while boxes are still open; ``stack`` then holds exactly
    the open boxes (every popped box was decided or replaced by its two halves), so the
    boxes proven so far and ``stack`` cover the original boxes -- what the parallel search
    (:func:`_split_search_parallel`) relies on to hand the rest to other workers.
    """
    from nnresilience.falsify import _ascent, margin_and_grad
    from nnresilience.spec.property import Case
    from nnresilience.spec.region import InputRegion

    spec_net = _spec_network(network, case.unsafe)
    sub_method = method if method in ("interval", "symbolic") else "symbolic"
    n_boxes = n_proven = n_engine = max_depth = 0
    try:
        while stack:
            if deadline is not None and time.monotonic() >= deadline:
                return Status.UNKNOWN, None, "timeout"
            if budget_end is not None and n_boxes and time.monotonic() >= budget_end:
                return Status.UNKNOWN, None, "budget"  # after >= 1 box: always progress
            lo, hi, depth, cached = stack.pop()
            n_boxes += 1
            max_depth = max(max_depth, depth)
            nb, row_lo = cached or _case_bounds(network, spec_net, case, lo, hi, sub_method,
                                                _remaining(deadline))
            if spec_rows_exclude(case.unsafe, row_lo):
                n_proven += 1
                continue
            sub = Case(InputRegion(lo, hi), case.unsafe)
            mid = (lo + hi) / 2.0
            X = np.vstack([mid, sub.region.sample(3, rng)])
            t_probe = time.monotonic() + 0.05
            x = _ascent(network, sub, X, 8, 0.1, t_probe if deadline is None
                        else min(deadline, t_probe))
            if x is not None:
                cex = confirm(network, case, x, onnx_replay, deadline)
                if cex is not None:
                    return Status.VIOLATED, cex, "counterexample found by input splitting"
            if eng is not None and _n_unstable(network, nb) <= LEAF_UNSTABLE:
                n_engine += 1
                ans = eng.check(network, sub, nb, timeout=_remaining(deadline),
                                **engine_options)
                if ans.status is Status.HOLDS:
                    n_proven += 1
                    continue
                if ans.status is Status.VIOLATED:
                    cex = confirm(network, case, ans.x, onnx_replay, deadline)
                    if cex is not None:
                        return Status.VIOLATED, cex, f"counterexample found by {eng.name}"
                    return Status.UNKNOWN, None, "candidate failed replay"
                if deadline is not None and time.monotonic() >= deadline:
                    return Status.UNKNOWN, None, "timeout"
            width = hi - lo
            d, halves = None, None
            if SPLIT_LOOKAHEAD and depth < LOOKAHEAD_DEPTH:
                d, halves = _lookahead_split(network, spec_net, case, lo, hi, sub_method,
                                             deadline, _proof_margin(case.unsafe, row_lo))
            if d is None:
                # "smear": mean |d margin / d x_i| over points in the box, times width
                pts = np.vstack([mid, sub.region.sample(SMEAR_POINTS, rng)])
                _, g = margin_and_grad(network, sub, pts)
                score = np.abs(g).mean(axis=0) * width
                if not np.any(score > 0):
                    score = width / np.maximum(case.region.hi - case.region.lo, 1e-300)
                d = int(np.argmax(score))
            if width[d] <= 0.0:
                return Status.UNKNOWN, None, "input splitting cannot split further"
            cut = lo[d] + width[d] / 2.0
            left_hi, right_lo = hi.copy(), lo.copy()
            left_hi[d], right_lo[d] = cut, cut
            # explore the half whose centre looks more unsafe first (popped last-in)
            pair = [(lo, left_hi), (right_lo, hi)]
            cm = case.unsafe.max_margin(network.forward(
                np.vstack([(a + b) / 2.0 for a, b in pair])))
            for k in np.argsort(cm):
                stack.append((pair[k][0], pair[k][1], depth + 1,
                              None if halves is None else halves[k]))
        return Status.HOLDS, None, ""
    finally:
        stats.update({"split_boxes": n_boxes, "split_proven": n_proven,
                      "split_engine_calls": n_engine, "split_max_depth": max_depth})


# ------------------------------------------------------- parallel input splitting
# A work unit runs the serial search for about this long (s) before handing its open boxes
# back; shorter (SPLIT_UNIT_HUNGRY) while some worker has nothing to do.
SPLIT_UNIT_SECONDS = 1.0
SPLIT_UNIT_HUNGRY = 0.15
_SPLIT_COUNTERS = ("split_boxes", "split_proven", "split_engine_calls")


def _split_unit(network, case, engine: str | None, stack: list, method: str,
                onnx_replay: bool, seed: tuple, engine_options: dict,
                unit_seconds: float, time_left: float | None) -> tuple:
    """Executor task: the serial search (:func:`_split_core`) on ``stack`` for a while.

    Returns ``(status, counterexample, message, open boxes, stats)``. ``status`` is
    UNKNOWN with message ``"budget"`` when ``unit_seconds`` ran out with boxes still
    open; those boxes (with their cached bounds) come back for the parent to hand out.
    Time is measured in this process (monotonic clocks are not shared between processes):
    ``time_left`` is the global time remaining at submission.
    """
    t, cpu = time.monotonic(), time.process_time()
    deadline = None if time_left is None else t + time_left
    eng = None if engine is None else _resolve_engine(engine)
    stats: dict = {}
    try:
        status, cex, msg = _split_core(network, case, eng, deadline, method, onnx_replay,
                                       np.random.default_rng(list(seed)), engine_options,
                                       stats, stack, budget_end=t + unit_seconds)
    except NNResError as exc:
        status, cex, msg = Status.UNKNOWN, None, f"{type(exc).__name__}: {exc}"
    open_boxes = stack if msg == "budget" else []
    stats["split_unit_seconds"] = time.monotonic() - t
    stats["split_unit_cpu_seconds"] = time.process_time() - cpu
    return status, cex, msg, open_boxes, stats


def _split_search_parallel(network, case, engine: str | None, deadline: float | None,
                           method: str, onnx_replay: bool, seed: int, engine_options: dict,
                           stats: dict, executor) -> tuple[Status, Counterexample | None, str]:
    """The input-splitting search of :func:`_split_search`, its tree shared by workers.

    The parent keeps the frontier of open boxes as a stack (depth first, the more unsafe
    looking half on top, as the serial search orders it) and keeps every worker busy with
    a unit :func:`_split_unit`: the serial search on the top box for
    :data:`SPLIT_UNIT_SECONDS` (less when the frontier has fewer boxes than workers, so a
    starved worker gets work soon), returning either a verdict for that box or its open
    boxes, which go back on the frontier. Split choices are made inside the units by the
    serial code, so the tree is the serial one, explored by several workers.

    Soundness: a unit answers ``holds`` only when every box of its sub-tree is proven;
    with ``"budget"`` its proven boxes plus its returned boxes cover its input box. So
    the case holds only when the frontier is empty, nothing is in flight and no unit
    answered otherwise. A unit's counterexample is replayed again here (float64
    :func:`replay`) before it counts; the first one ends the search, the units still
    queued are cancelled and running ones end within their own budget or the deadline.
    """
    from nnresilience.divide.window import _wait_first

    workers = max(1, int(getattr(executor, "workers", 1)))
    frontier: list = [(case.region.lo.copy(), case.region.hi.copy(), 0, None)]
    inflight: dict = {}
    totals = dict.fromkeys(_SPLIT_COUNTERS, 0)
    totals["split_max_depth"] = 0
    totals["split_unit_seconds"] = totals["split_unit_cpu_seconds"] = 0.0
    n_units = 0
    t_start = time.monotonic()
    try:
        while frontier or inflight:
            rem = _remaining(deadline)
            if rem is not None and rem <= 0:
                return Status.UNKNOWN, None, "timeout"
            while frontier and len(inflight) < workers:
                hungry = len(frontier) < workers
                box = frontier.pop()
                n_units += 1
                fut = executor.submit(
                    _split_unit, network, case, engine, [box], method, onnx_replay,
                    (seed, n_units), engine_options,
                    SPLIT_UNIT_HUNGRY if hungry else SPLIT_UNIT_SECONDS, _remaining(deadline))
                inflight[fut] = box
            for fut in _wait_first(list(inflight), _remaining(deadline)):
                inflight.pop(fut)
                status, cex, msg, open_boxes, ustats = fut.result()
                for k in _SPLIT_COUNTERS:
                    totals[k] += int(ustats.get(k, 0))
                for k in ("split_unit_seconds", "split_unit_cpu_seconds"):
                    totals[k] += float(ustats.get(k, 0.0))
                totals["split_max_depth"] = max(totals["split_max_depth"],
                                                int(ustats.get("split_max_depth", 0)))
                if status is Status.VIOLATED:
                    if cex is not None and replay(network, case, cex.x_array):
                        return Status.VIOLATED, cex, msg
                    return Status.UNKNOWN, None, "candidate failed replay"
                if status is Status.UNKNOWN and msg != "budget":
                    return Status.UNKNOWN, None, msg
                if status is Status.UNKNOWN:
                    frontier.extend(open_boxes)
        return Status.HOLDS, None, ""
    finally:
        for fut in inflight:
            fut.cancel()
        for k in ("split_unit_seconds", "split_unit_cpu_seconds"):
            totals[k] = round(totals[k], 3)
        stats.update({**totals, "split_units": n_units, "split_workers": workers,
                      "split_abandoned": len(frontier) + len(inflight),
                      "split_wall_seconds": round(time.monotonic() - t_start, 3)})


def _resolve_split_executor(executor) -> tuple[Any, bool]:
    """``(executor or None, owned)``: None when the serial search should run."""
    if executor is None:
        return None, False
    from nnresilience.parallel import Executor, make_executor

    owned = not isinstance(executor, Executor)
    ex = make_executor(executor) if owned else executor
    if max(1, int(getattr(ex, "workers", 1))) < 2:
        if owned:
            ex.shutdown()
        return None, False
    return ex, owned


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


def verify(network, prop, engine: str = "auto", timeout: float | None = None,
           bounds_method: str = "symbolic", falsify_budget: float = 1.0, seed: int = 0,
           onnx_replay: bool = True, engine_options: dict[str, Any] | None = None,
           progress: Callable[[str], None] | None = None,
           input_split: bool | None = None, executor=None) -> VerificationResult:
    """Decide ``prop`` on ``network``: holds / violated (replayed witness) / unknown.

    Order per case: sound bounds first (cheap; a case they decide never reaches the
    falsifier), then the falsifier, then input splitting or the complete engine.
    ``timeout`` (seconds, whole query) is passed down as a deadline: the falsifier gets at
    most ``falsify_budget`` seconds per case (and at most a fifth of the time), the engine
    gets what is left. ``engine``: ``auto`` (= ``milp``), ``milp``, ``reluplex`` or
    ``none`` (falsifier, bounds and input splitting only). ``engine_options`` go to
    ``Engine.check``. ``input_split``: branch and bound over input boxes with engine calls
    at the leaves (default: for boxes of at most :data:`SPLIT_MAX_DIM` inputs).
    ``progress`` receives one-line status messages. ``executor``: an
    :class:`~nnresilience.parallel.Executor` with more than one worker (or a spec for
    :func:`~nnresilience.parallel.make_executor`, e.g. ``2``; then its workers are created
    for the input-splitting search and killed when it ends) shares the input-splitting
    search tree between the workers (:func:`_split_search_parallel`); ``None`` or one
    worker: the serial search.
    """
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + float(timeout)
    say = progress or (lambda _msg: None)
    prop.check_network(network)
    outcomes = [CaseOutcome(i) for i in range(len(prop.cases))]

    def finish(status: Status, message: str = "",
               cex: Counterexample | None = None) -> VerificationResult:
        methods = sorted({o.method for o in outcomes if o.method})
        stats = {"cases": [o.to_dict() for o in outcomes], "bounds_method": bounds_method,
                 "engine_requested": engine, "n_cases": len(outcomes)}
        deciding = methods
        if status is Status.VIOLATED and (cex is None or not replay(network, prop,
                                                                    cex.x_array)):
            # last line of defence: never report a witness the property does not accept
            status, cex, message = Status.UNKNOWN, None, "candidate failed replay"
        if status is Status.VIOLATED:
            deciding = [o.method for o in outcomes if o.status is Status.VIOLATED][:1]
        return VerificationResult(status, cex, engine="+".join(deciding),
                                  seconds=time.monotonic() - t0, message=message,
                                  stats=stats)

    # 1. sound bounds on every case: a case whose unsafe set the output bounds exclude
    #    holds at once (cheap with interval/symbolic bounds; most robustness cells end here).
    case_bounds: dict[int, tuple[Any, np.ndarray]] = {}
    for case, out in zip(prop.cases, outcomes, strict=True):
        if deadline is not None and time.monotonic() >= deadline:
            break
        t = time.monotonic()
        spec_net = _spec_network(network, case.unsafe)
        nb, row_lo = _case_bounds(network, spec_net, case, None, None, bounds_method,
                                  _remaining(deadline))
        out.stats["bounds_seconds"] = round(time.monotonic() - t, 6)
        out.stats["bounds_method"] = getattr(nb, "method", bounds_method)
        out.seconds += time.monotonic() - t
        if spec_rows_exclude(case.unsafe, row_lo) or output_box_excludes(case.unsafe,
                                                                         *nb.output):
            out.status, out.method = Status.HOLDS, "bounds"
            say(f"case {out.index}: holds by {out.stats['bounds_method']} bounds")
        else:
            case_bounds[out.index] = (nb, row_lo)
    if all(o.status is Status.HOLDS for o in outcomes):
        return finish(Status.HOLDS)

    # 2. falsifier on every open case: a replayed counterexample ends the query.
    for case, out in zip(prop.cases, outcomes, strict=True):
        if out.status is Status.HOLDS:
            continue
        rem = _remaining(deadline)
        budget = falsify_budget if rem is None else min(falsify_budget, 0.2 * rem)
        t = time.monotonic()
        x = falsify(network, case, rng=seed + out.index, budget_seconds=budget,
                    deadline=deadline)
        out.stats["falsify_seconds"] = round(time.monotonic() - t, 6)
        cex = confirm(network, case, x, onnx_replay, deadline)
        out.seconds += time.monotonic() - t
        if cex is not None:
            out.status, out.method, out.counterexample = Status.VIOLATED, "falsifier", cex
            say(f"case {out.index}: counterexample found by the falsifier")
            return finish(Status.VIOLATED, "counterexample found by the falsifier", cex)

    # 3. input splitting or the complete engine, case by case.
    eng = None
    eng_error = ""
    opts = dict(engine_options or {})
    for case, out in zip(prop.cases, outcomes, strict=True):
        if out.status is Status.HOLDS:
            continue
        t = time.monotonic()
        timed_out = deadline is not None and time.monotonic() >= deadline
        if timed_out or out.index not in case_bounds:
            out.message = "timeout"
            continue
        nb, row_lo = case_bounds[out.index]
        if engine != "none" and eng is None and not eng_error:
            eng = _resolve_engine(engine)
            if eng is not None:
                reason = eng.supports(network)
                if reason:
                    if engine != "auto":
                        raise EngineUnsupportedError(f"engine {eng.name!r}: {reason}")
                    eng, eng_error = None, f"engine {engine!r} cannot handle it: {reason}"
        work = reduced_case(case, row_lo)
        out.stats["terms_left"] = len(work.unsafe.terms)
        use_split = split_applies(network, case) if input_split is None else input_split
        try:
            if use_split:
                say(f"case {out.index}: input splitting"
                    + (f" with {eng.name} leaves" if eng is not None else ""))
                pex, owned = _resolve_split_executor(executor)
                if pex is None:
                    status, cex, msg = _split_search(
                        network, work, eng, deadline, bounds_method, onnx_replay,
                        np.random.default_rng(seed + out.index), opts, out.stats)
                else:
                    try:
                        status, cex, msg = _split_search_parallel(
                            network, work, None if eng is None else engine, deadline,
                            bounds_method, onnx_replay, seed + out.index, opts, out.stats,
                            pex)
                    finally:
                        if owned:
                            pex.terminate()
                out.method = "split" + (f"+{eng.name}" if eng is not None else "")
            elif eng is None:
                out.message = eng_error or "bounds inconclusive and no engine requested"
                out.seconds += time.monotonic() - t
                continue
            else:
                say(f"case {out.index}: running engine {eng.name}")
                status, cex, msg = _run_engine(eng, network, work, nb, deadline, onnx_replay,
                                               opts, out.stats)
                out.method = eng.name
        except NNResError as exc:
            if isinstance(exc, EngineUnsupportedError) and engine != "auto":
                raise
            status, cex, msg = Status.UNKNOWN, None, f"{type(exc).__name__}: {exc}"
        out.seconds += time.monotonic() - t
        out.status, out.counterexample, out.message = status, cex, msg
        if status is Status.VIOLATED:
            return finish(Status.VIOLATED, msg, cex)
        if msg == "candidate failed replay":
            say(f"case {out.index}: engine candidate failed replay")

    if all(o.status is Status.HOLDS for o in outcomes):
        return finish(Status.HOLDS)
    timed_out = deadline is not None and time.monotonic() >= deadline - 1e-3
    msgs = [o.message for o in outcomes if o.status is Status.UNKNOWN and o.message]
    if any(m == "candidate failed replay" for m in msgs):
        message = "candidate failed replay"
    elif timed_out or any("timeout" in m.lower() or "time limit" in m.lower() for m in msgs):
        message = "timeout"
    else:
        message = msgs[0] if msgs else "undecided"
    return finish(Status.UNKNOWN, message)
