"""Adversarial instances with a *planted* answer: tiny nets built to sit on a knife edge.

Each instance is a tiny network (2-4 inputs, 1-3 hidden layers of 2-8 units, 2-4 outputs;
ReLU, LeakyReLU or max-pool), an input box and an unsafe output condition, built so that
the answer is decided by a margin of ``1e-7 ... 1e-4`` of the logits, with the magnitudes
that break floating-point reasoning:

* weights up to ``1e3``; biases up to ``1e6`` on units that are always active (or always
  inactive), cancelled exactly (in real arithmetic) by the next layer's bias, so the float64
  forward pass rounds at ``1e6`` while the values that matter are small (magnitude
  ``large``; ``extreme`` goes on to ``1e8 ... 1e13``, past the issue's range, and
  ``unit`` keeps everything near 1);
* logits up to ``1e4`` whose differences are the margin (``y_j - y_m`` of two ``1e4``
  numbers);
* a "tent" ``|x_i - p_i|`` (two units per chosen input) subtracted from the margin, so
  the maximiser ``x*`` sits at an interior kink of the network (on the boundary of
  activation patterns), not at a box corner.

What is *planted*: :func:`~nnresilience.testing.certified.certified_max_margin` enumerates
the activation patterns and finds the maximiser ``x*`` of the unsafe margin over the box;
then the output bias is shifted along a direction that moves every row of the condition
alike, so that the float64 margin at ``x*`` is

* ``+delta`` (**violated**): ``x*`` is a witness; ``case.unsafe.satisfied(network.forward(x*))``
  holds exactly and ``x*`` lies in the box. The violating set is tiny (the margin is at
  most ``certified_upper`` anywhere), so a falsifier has to find a needle.
* ``-delta`` (**holds**): the certified enumeration proves that the float64 margin is
  ``< 0`` everywhere in the box (``certified_upper < 0``, a rigorous bound that covers the
  exact network and the float64 forward pass); ``delta`` is raised (x10, at most to
  ``1e-2`` of the logits) until that proof goes through, or the draw is replaced.

``delta`` is drawn log-uniformly in ``[1e-7, 1e-4]`` times the logit magnitude ``max(1,
max |y(x*)|)``; the float64 margin at ``x*`` is within 1 % of the target.

Limits, stated so nobody reads more into "planted" than there is:

* A planted *violation* is a fact about the float64 forward pass (the witness replays).
  Its exact-arithmetic margin at ``x*`` is also positive whenever ``delta`` exceeds the
  float error bound (``float_error``, recorded), which is the usual case but not forced.
* A planted *hold* is proved for both the exact network and the float64 forward pass,
  via the certified bound; ``certified_upper`` says by how much.
* ``x*`` is the maximiser up to the enumeration's LP accuracy: the true maximum lies in
  ``[margin, certified_upper]`` (recorded); for violated instances other violating
  points may exist near ``x*``.
* Instances are deterministic by seed (numpy ``default_rng`` and HiGHS are deterministic);
  a seed whose draws cannot be planted is redrawn from ``(seed, attempt)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnresilience.network.layers import Affine, LeakyReLU, MaxPool, ReLU
from nnresilience.network.model import Network
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition, misclassification
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion
from nnresilience.testing.certified import (
    CertificationError,
    certified_max_margin,
    margin_float_error,
    sound_boxes,
)

KINDS = ("relu", "leaky", "maxpool")
MAGNITUDES = ("unit", "large", "extreme")
#: how often each magnitude is drawn when none is asked for
MAGNITUDE_WEIGHTS = (0.4, 0.45, 0.15)
DELTA_REL = (1e-7, 1e-4)
DELTA_REL_MAX = 1e-2
MAX_UNSTABLE_PLANTED = 6
MAX_WEIGHT = 1e3
_ATTEMPTS = 30


@dataclass(frozen=True, eq=False)
class PlantedInstance:
    """A network, a case and its planted answer (see the module docstring).

    ``point`` is the maximiser ``x*`` of the unsafe margin (the witness of a violated
    instance, the nearest miss of a holding one); ``margin`` its float64 margin (``+delta``
    or ``-delta``); ``certified_upper`` a rigorous upper bound of the float64 (and exact)
    margin over the box.
    """

    seed: int
    network: Network
    case: Case
    status: Status
    point: np.ndarray
    margin: float
    logit_scale: float
    certified_upper: float
    kind: str
    magnitude: str
    family: str
    at_corner: bool
    float_error: float
    info: dict = field(default_factory=dict)

    @property
    def prop(self) -> Property:
        return Property((self.case,), name=f"planted-{self.seed}-{self.status.value}")

    @property
    def witness(self) -> np.ndarray | None:
        return self.point.copy() if self.status is Status.VIOLATED else None

    @property
    def delta_rel(self) -> float:
        return abs(self.margin) / self.logit_scale

    def describe(self) -> str:
        sizes = "x".join(map(str, self.network.layer_sizes()))
        return (f"seed={self.seed} {self.status.value} {self.kind}/{self.magnitude}/"
                f"{self.family} net={sizes} margin={self.margin:.3g} "
                f"(rel {self.delta_rel:.2g}) upper={self.certified_upper:.3g}")


# --------------------------------------------------------------------------- networks
@dataclass
class _Draw:
    """The parameters of one attempt (kept so a failed attempt can be reported)."""

    kind: str
    magnitude: str
    weight_scale: float
    bias_scale: float
    logit_scale: float


def _draw(rng: np.random.Generator, kind: str | None, magnitude: str | None) -> _Draw:
    kind = kind or str(rng.choice(KINDS))
    magnitude = magnitude or str(rng.choice(MAGNITUDES, p=MAGNITUDE_WEIGHTS))
    if magnitude == "unit":
        return _Draw(kind, magnitude, 1.0, 0.0, float(10 ** rng.uniform(0.0, 1.0)))
    # "extreme" goes past the 1e6 biases (to 1e8 .. 1e13, like issue 11 item 3):
    # the cancelled terms then round at 1e-8 .. 1e-3, where bound pads that scale with
    # the result rather than the terms fall short
    big = (3.0, 6.0) if magnitude == "large" else (8.0, 13.0)
    return _Draw(kind, magnitude, float(10 ** rng.uniform(1.0, 3.0)),
                 float(10 ** rng.uniform(*big)), float(10 ** rng.uniform(2.0, 4.0)))


def _condition(rng: np.random.Generator, n_out: int) -> tuple[OutputCondition, np.ndarray,
                                                                str]:
    """An unsafe condition and a bias direction ``d`` that moves every row's margin alike.

    Misclassification of label ``m`` (``d = e_m``: raising ``y_m`` lowers every
    ``y_j - y_m``), or one conjunction of 1-2 random rows with ``A d = 1`` (least squares).
    """
    if rng.uniform() < 0.6:
        m = int(rng.integers(n_out))
        d = np.zeros(n_out)
        d[m] = 1.0
        return misclassification(m, n_out), d, "misclassification"
    rows = int(rng.integers(1, min(2, n_out - 1) + 1))
    A = np.round(rng.normal(size=(rows, n_out)), 3)
    A[np.abs(A) < 0.1] = 0.5
    d = np.linalg.lstsq(A, np.ones(rows), rcond=None)[0]
    # margin_r = b_r - a_r y; y += s d changes margin_r by -s a_r.d = -s
    return OutputCondition((Conjunction(A, np.zeros(rows)),), n_out), d, "conjunction"


def _activation(kind: str, width: int, rng: np.random.Generator):
    if kind == "leaky" or (kind == "maxpool" and rng.uniform() < 0.5):
        return LeakyReLU(width, slope=float(rng.uniform(0.01, 0.5)))
    return ReLU(width)


def _build(rng: np.random.Generator, dr: _Draw, lo: np.ndarray, hi: np.ndarray,
           d: np.ndarray, n_out: int) -> Network:
    """Layers with tents, cancelling big biases and a bounded number of unstable units.

    Units have roles: ``tent`` (``|x_i - p_i|`` halves, then passed through, always
    active), ``big`` (offset ``+B`` or ``-B``, always on one side of 0, offset cancelled
    by the next layer), ``free`` (a random hyperplane through the box: unstable).
    ``offset`` tracks the deliberately added constant of every unit, which the next
    layer subtracts in its bias (exact in real arithmetic, rounded in float64).
    """
    n_in = lo.size
    depth = int(rng.integers(1, 4))
    widths = [int(rng.integers(2, 9)) for _ in range(depth)]
    budget = int(rng.integers(3, MAX_UNSTABLE_PLANTED + 1))
    S = np.vstack([(lo + hi) / 2.0, rng.uniform(lo, hi, size=(96, n_in))])
    layers: list = []
    H = S.copy()                       # sample values entering the next affine layer
    Hlo, Hhi = lo.copy(), hi.copy()    # (exact-arithmetic) box of the same values
    roles = ["x"] * n_in
    offset = np.zeros(n_in)
    ws = dr.weight_scale
    use_tent = rng.uniform() < 0.85
    tent_cols: list[int] = []
    for li, width in enumerate(widths):
        W = np.zeros((width, H.shape[1]))
        b = np.zeros(width)
        new_roles: list[str] = []
        new_off = np.zeros(width)
        r = 0
        if li == 0 and use_tent:
            n_tent = min(int(rng.integers(1, 3)), width // 2, n_in)
            for i in rng.choice(n_in, size=n_tent, replace=False):
                p = lo[i] + rng.uniform(0.2, 0.8) * (hi[i] - lo[i])
                s = ws * float(rng.uniform(0.5, 1.0))
                for sign in (1.0, -1.0):
                    W[r, i] = sign * s
                    b[r] = -sign * s * p
                    new_roles.append("tent")
                    r += 1
        elif li > 0:
            for j in tent_cols:               # pass tents through, kept strictly active
                if r >= width:
                    break
                W[r, j] = float(rng.uniform(0.5, 2.0))
                new_off[r] = float(rng.uniform(0.5, 1.0)) * max(1.0, dr.bias_scale * 1e-3)
                new_roles.append("tent")
                r += 1
        while r < width:
            w = rng.normal(0.0, 1.0, H.shape[1]) / np.sqrt(H.shape[1])
            w[[k for k, role in enumerate(roles) if role == "big"]] *= 0.3
            w *= ws if li == 0 else float(10 ** rng.uniform(-1.0, np.log10(max(ws, 10.0))))
            w = np.clip(w, -MAX_WEIGHT, MAX_WEIGHT)
            z = (H - offset) @ w
            if budget > 0 and rng.uniform() < 0.7:
                b[r] = -float(np.quantile(z, rng.uniform(0.25, 0.75)))
                new_roles.append("free")
                budget -= 1
            else:
                # far enough from 0 that interval bounds already see the unit stable
                slo, shi = Affine(w[None, :], np.zeros(1)).interval(Hlo - offset, Hhi - offset)
                span = max(abs(float(slo[0])), abs(float(shi[0]))) + 1.0
                big = max(2.0 * span, dr.bias_scale * float(rng.uniform(0.5, 1.0)))
                new_off[r] = big if rng.uniform() < 0.75 else -big
                new_roles.append("big")
            W[r] = w
            r += 1
        b = b + new_off - W @ offset              # cancel the previous offsets
        layers.append(Affine(W, b))
        act = _activation(dr.kind if dr.kind != "maxpool" else "maxpool", width, rng)
        layers.append(act)
        Z = H @ W.T + b
        A = act.forward(Z)
        Hlo, Hhi = act.interval(*layers[-2].interval(Hlo, Hhi))
        # stable units carry their offset through the activation (times k when inactive)
        k = act.slope if isinstance(act, LeakyReLU) else 0.0
        off = np.where(new_off >= 0.0, new_off, k * new_off)
        roles_out, off_out, cols = new_roles, off, list(range(width))
        if dr.kind == "maxpool":
            free = [j for j, role in enumerate(new_roles) if role == "free"]
            rng.shuffle(free)
            groups = [[j, j] for j, role in enumerate(new_roles) if role != "free"]
            groups += [[free[i], free[min(i + 1, len(free) - 1)]]
                       for i in range(0, len(free), 2)]
            budget -= len(free) // 2          # each pooled pair is one more decision
            groups_arr = np.array(groups, dtype=np.int64)
            pool = MaxPool(groups_arr, n_in=width)
            layers.append(pool)
            A = pool.forward(A)
            Hlo, Hhi = pool.interval(Hlo, Hhi)
            roles_out = [new_roles[g[0]] for g in groups]
            off_out = off[groups_arr[:, 0]]
            cols = list(range(len(groups)))
        tent_cols = [c for c in cols if roles_out[c] == "tent"]
        H, roles, offset = A, roles_out, off_out
    # ---- output layer: baseline ~ logit scale, variable part, tent along -d
    Y = dr.logit_scale
    var = Y * float(10 ** rng.uniform(-2.0, 0.0))
    Hs = H - offset
    spread = np.std(Hs, axis=0)
    live = spread > 1e-6 * (float(np.max(spread)) + 1e-300)     # dead units get no weight
    Wo = np.where(live, rng.normal(size=(n_out, H.shape[1])), 0.0)
    Wo = Wo / np.where(live, spread, 1.0) / np.sqrt(H.shape[1]) * var
    tent = [c for c in range(H.shape[1]) if roles[c] == "tent"]
    Wo[:, tent] = 0.0
    if tent:
        tsum = Hs[:, tent].sum(axis=1)
        rho = float(10 ** rng.uniform(-0.5, 1.0))
        tau = rho * var / (float(np.ptp(tsum)) + 1e-12)
        Wo[:, tent] += np.outer(d, np.full(len(tent), tau))
    Wo = np.clip(Wo, -MAX_WEIGHT, MAX_WEIGHT)
    bo = Y * rng.uniform(-1.0, 1.0, n_out) - Wo @ offset
    layers.append(Affine(Wo, bo))
    return Network(layers, name="planted")


def _with_output_bias(net: Network, b: np.ndarray) -> Network:
    last = net.layers[-1]
    return Network(list(net.layers[:-1]) + [Affine(last.W, b)], name=net.name)


def _margin(net: Network, case: Case, x: np.ndarray) -> float:
    return float(case.unsafe.max_margin(net.forward(x)))


def _plant(net: Network, case: Case, d: np.ndarray, x: np.ndarray, target: float
           ) -> Network | None:
    """Shift the output bias along ``-d`` until the float64 margin at ``x`` is ``target``."""
    b0 = net.layers[-1].b
    shift = target - _margin(net, case, x)
    for _ in range(8):
        cand = _with_output_bias(net, b0 - shift * d)
        got = _margin(cand, case, x)
        if abs(got - target) <= 0.01 * abs(target):
            return cand
        shift += target - got
    return None


def _shifted_upper(term_upper: np.ndarray, case: Case, b_old: np.ndarray,
                   b_new: np.ndarray) -> np.ndarray:
    """Per-term exact-margin bound after the output bias moved from ``b_old`` to ``b_new``.

    Exactly, ``y`` moves by ``b_new - b_old`` (each entry within one ulp of its float64
    difference), so row ``r``'s margin moves by ``-a_r . (b_new - b_old)``, and
    ``min_r (m_r - s_r) <= min_r m_r - min_r s_r``.
    """
    from nnresilience.bounds.rounding import down, sum_error, up

    diff = b_new - b_old
    dlo, dhi = down(diff), up(diff)
    out = []
    for u, term in zip(term_upper, case.unsafe.terms, strict=True):
        Ap, An = np.clip(term.A, 0, None), np.clip(term.A, None, 0)
        s_lo = Ap @ dlo + An @ dhi
        s_lo = s_lo - sum_error(np.abs(term.A) @ np.maximum(np.abs(dlo), np.abs(dhi)),
                                term.A.shape[1])
        out.append(float(up(u - float(np.min(s_lo)))))
    return np.asarray(out)


def _at_corner(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    w = hi - lo
    return bool(np.all((x - lo <= 1e-9 * (1 + w)) | (hi - x <= 1e-9 * (1 + w))))


def planted_instance(seed: int, status: Status | str | None = None, kind: str | None = None,
                     magnitude: str | None = None,
                     delta_rel: tuple[float, float] = DELTA_REL) -> PlantedInstance:
    """The planted instance of ``seed`` (deterministic).

    ``status``: ``violated`` or ``holds`` (default: drawn, half each); ``kind``: one of
    :data:`KINDS`; ``magnitude``: ``unit`` (weights ~1, logits 1-10), ``large`` (weights
    up to 1e3, cancelling biases 1e3-1e6, logits 1e2-1e4) or ``extreme`` (the same with
    biases 1e8-1e13); default drawn (:data:`MAGNITUDE_WEIGHTS`).
    ``delta_rel``: the range the relative margin is drawn from (log-uniform); narrower
    than the default only to stress an engine beyond the issue's range.
    """
    if isinstance(status, str):
        status = Status(status)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if magnitude is not None and magnitude not in MAGNITUDES:
        raise ValueError(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
    last = ""
    for attempt in range(_ATTEMPTS):
        rng = np.random.default_rng([int(seed), attempt])
        want = status or (Status.VIOLATED if rng.uniform() < 0.5 else Status.HOLDS)
        try:
            inst = _attempt(rng, int(seed), want, kind, magnitude, delta_rel)
        except CertificationError as exc:
            last = str(exc)
            continue
        if inst is not None:
            inst.info["attempt"] = attempt
            return inst
        last = "could not plant"
    raise RuntimeError(f"seed {seed}: no plantable draw in {_ATTEMPTS} attempts ({last})")


def _attempt(rng: np.random.Generator, seed: int, want: Status, kind: str | None,
             magnitude: str | None, drel: tuple[float, float]) -> PlantedInstance | None:
    dr = _draw(rng, kind, magnitude)
    n_in = int(rng.integers(2, 5))
    n_out = int(rng.integers(2, 5))
    center = rng.uniform(-1.0, 1.0, n_in)
    half = rng.uniform(0.05, 1.0, n_in)
    lo, hi = center - half, center + half
    cond, d, family = _condition(rng, n_out)
    net = _build(rng, dr, lo, hi, d, n_out)
    case = Case(InputRegion(lo, hi), cond)
    cm = certified_max_margin(net, case, seed=seed)
    x = cm.point
    y = net.forward(x)
    delta_rel = float(10 ** rng.uniform(np.log10(drel[0]), np.log10(drel[1])))
    b_old = net.layers[-1].b
    sign = 1.0 if want is Status.VIOLATED else -1.0
    while delta_rel <= DELTA_REL_MAX:
        scale = max(1.0, float(np.max(np.abs(y))))
        for _ in range(2):               # the shift changes the logit scale: plant twice
            planted = _plant(net, case, d, x, sign * delta_rel * scale)
            if planted is None:
                return None
            scale = max(1.0, float(np.max(np.abs(planted.forward(x)))))
        margin = _margin(planted, case, x)
        boxes = sound_boxes(planted, lo, hi)
        err = margin_float_error(case, boxes)
        upper_exact = _shifted_upper(cm.term_upper_exact, case, b_old, planted.layers[-1].b)
        upper = float(np.max(upper_exact + err))
        if want is Status.VIOLATED:
            if not (margin > 0.0 and bool(case.unsafe.satisfied(planted.forward(x)))
                    and case.region.contains(x, 0.0)):
                return None
            break
        if upper < 0.0:
            break
        delta_rel *= 10.0
    else:
        return None
    return PlantedInstance(
        seed=seed, network=planted, case=case, status=want, point=x.copy(),
        margin=margin, logit_scale=scale, certified_upper=upper, kind=dr.kind,
        magnitude=dr.magnitude, family=family, at_corner=_at_corner(x, lo, hi),
        float_error=float(np.max(err)),
        info={"weight_scale": dr.weight_scale, "bias_scale": dr.bias_scale,
              "target_logit_scale": dr.logit_scale, "unstable": cm.stats["unstable"],
              "lp_solves": cm.stats["lp_solves"], "leaves": cm.stats["leaves"],
              "max_abs_weight": max(float(np.max(np.abs(la.dense_W())))
                                    for la in planted.layers if isinstance(la, Affine)),
              "max_abs_bias": max(float(np.max(np.abs(la.b)))
                                  for la in planted.layers if isinstance(la, Affine))})


def planted_instances(n: int, seed: int = 0, **kw) -> list[PlantedInstance]:
    """``n`` instances of seeds ``seed, seed + 1, ...`` (see :func:`planted_instance`)."""
    return [planted_instance(seed + i, **kw) for i in range(n)]
