"""Small unseen instances for the resilience queries (Φ_m, Ξ, α_max, minimum perturbation)
and the checks every answer must pass, for ``benchmarks/resilience_sweep.py``.

Why a separate generator: :mod:`~nnresilience.testing.unseen` sweeps ``verify``; the
resilience queries answer an *interval* with a witness pair, so what can be wrong differs:
a certified ``lower`` above the truth, a witness that does not replay, ``optimal`` on an
interval that misses the truth, ``infeasible`` / ``+inf`` where a point or pair exists.

Families (every net is tiny so that brute force, :mod:`.phi_bruteforce`, applies when the
pattern count allows; weights are rounded to float32, so :func:`save_onnx` writes exactly
the network that is checked and the CLI sees the same model):

``relu``    2 inputs, ReLU hidden layers of width 3-4, 3 classes
``leaky``   2 inputs, LeakyReLU with slope 0.01, 0.3 or 0.9
``maxpool`` 2 inputs, ReLU followed by a max over pairs (no ONNX form: API only)
``conv``    an ONNX Conv -> Relu -> MaxPool / AveragePool -> Gemm net on 1x3x3 inputs
``huge``    2 inputs, first layer with weights and biases of 1e4 ... 1e8
``onein``   1 input (ReLU or LeakyReLU): the exact reference of every norm, L2 included
            (:mod:`.phi_reference`: Φ_m is the gap between intervals)

Extra families (not in the default set, so the seeds of the six above keep their
instances; ``EXTRA_FAMILIES``):

``smooth``  2 inputs, sigmoid / tanh / arctan hidden layers; one draw in three has a first
            layer scaled by 1e2 ... 1e5 (saturated activations, near-step margins), one
            in four a last layer scaled by 1e4 ... 1e8 (large logits), one in four a
            crafted near tie (output 1 = output 0 perturbed by 1e-9 ... 1e-6, relative)
``smooth1`` the same with 1 input: the premise and flip sets are gridded finely
``edge``    LeakyReLU slopes at the edges (1e-6, 0.999), a ReLU net with outputs 0 and 1
            tied to 1e-9 ... 1e-6 (relative), or a ReLU net whose inputs live
            around 1e3 ... 1e6 (first-layer biases ~ -W·c put the kinks in the domain),
            with the extra ``micro`` domain (half-width 1e-9 ... 1e-6: a few float64 ulps
            of the centre at 1e6)
``deep``    2 inputs, 5-7 ReLU or LeakyReLU (0.01 / 0.3) layers of width 3-4 (brute force
            when the patterns allow, else the grid)

Ground truth on S-shaped nets (and where the brute-force LPs' tolerance is coarser than
the question: micro domains, tied outputs): brute force over activation patterns does
not apply, so the truth is one-sided — every float64-replayed pair / flipped point found by dense
sampling (a KD-tree over a grid of the 2-input box, or the crossings of a 1-input grid
of 200,001 points, nudged by ulps until they replay) is an upper bound of the quantity,
and a reported ``lower`` (``optimal`` included) must not exceed it.

Domains: ``unit`` ([-1, 1]), ``large`` (half-width 10 ... 1000) and ``tiny`` (half-width
1e-4 ... 1e-2 around a point where two classes tie, so both still win somewhere).

Near ties (planted): :func:`tie_samples` returns inputs where the top two logits differ by
``rel * max(1, |y|)``, ``rel`` in 1e-9 ... 1e-3 (found by bisection on a segment between
two inputs of different classes), for the minimum perturbation and the δ-check; Φ_m queries
get α just below and just above α_max (``ln α = ln α_max ∓ rel``) next to α = 1, 1 + 1e-6
and larger α.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nnresilience.network.layers import Affine, Arctan, LeakyReLU, MaxPool, ReLU, Sigmoid, Tanh
from nnresilience.network.model import Network
from nnresilience.resilience.replay import flip_count, norm_of, premise_margin

FAMILIES = ("relu", "leaky", "maxpool", "conv", "huge", "onein")
#: not in the default sweep (their seeds would shift the six above): pass them by name
EXTRA_FAMILIES = ("smooth", "smooth1", "edge", "deep")
ALL_FAMILIES = FAMILIES + EXTRA_FAMILIES
DOMAINS = ("unit", "tiny", "large")
SMOOTH = {"sigmoid": Sigmoid, "tanh": Tanh, "arctan": Arctan}
EDGE_SLOPES = (1e-6, 0.999)
TIE_REL = (1e-9, 1e-6, 1e-3)
#: brute force runs only below this many activation patterns (Φ_m costs their square)
MAX_PATTERNS = 60
#: ground-truth tolerance: the brute-force LPs are solved to HiGHS's tolerances
BF_ABS = 1e-6
BF_REL = 1e-5


@dataclass
class ResInstance:
    """A network, its domain and what the generator knows about it."""

    seed: int
    family: str
    domain_kind: str
    network: Network
    lo: np.ndarray
    hi: np.ndarray
    model: object | None = None        # an ONNX ModelProto when the family is built as one
    info: dict = field(default_factory=dict)

    @property
    def exportable(self) -> bool:
        return self.family != "maxpool"

    @property
    def smooth(self) -> bool:
        """S-shaped layers: no pattern brute force, one-sided (sampled) truth only."""
        return any(la.kind in SMOOTH for la in self.network.layers)

    def describe(self) -> str:
        sizes = "x".join(map(str, self.network.layer_sizes()))
        w = float(np.max(self.hi - self.lo))
        return f"seed={self.seed} {self.family}/{self.domain_kind} net={sizes} width={w:.3g}"


def _f32(a) -> np.ndarray:
    return np.asarray(np.asarray(a, np.float64).astype(np.float32), np.float64)


def _mlp(rng, sizes: list[int], act: str, slope: float = 0.0, first_scale: float | None = None,
         pool: bool = False) -> Network:
    layers = []
    for i in range(len(sizes) - 1):
        n_in, n_out = sizes[i], sizes[i + 1]
        W = rng.normal(0.0, 2.0 / np.sqrt(n_in), (n_out, n_in))
        b = rng.normal(0.0, 1.0, n_out)
        if i == 0 and first_scale is not None:
            W = W * first_scale
            b = b * first_scale
        layers.append(Affine(_f32(W), _f32(b)))
        if i < len(sizes) - 2:
            # the slope as ONNX stores it (a float32 attribute), like the weights
            if act in SMOOTH:
                layers.append(SMOOTH[act](n_out))
            else:
                layers.append(LeakyReLU(n_out, slope=float(np.float32(slope)))
                              if act == "leaky" else ReLU(n_out))
            if pool:
                groups = np.stack([np.arange(0, n_out, 2), np.minimum(np.arange(0, n_out, 2) + 1,
                                                                     n_out - 1)], axis=1)
                layers.append(MaxPool(groups, n_in=n_out))
                sizes = list(sizes)
                sizes[i + 1] = groups.shape[0]
    return Network(layers, name=f"res-{act}")


def _tied_outputs(net: Network, rng, rel: float) -> Network:
    """``net`` with output 1 a copy of output 0 perturbed by ``rel`` (relative, per
    weight): classes 0 and 1 nearly (or, after float32 rounding, exactly) tie on the whole
    domain, a crafted near-tie net."""
    last = net.layers[-1]
    W, b = last.W.copy(), last.b.copy()
    W[1] = W[0] * (1 + rel * rng.choice([-1.0, 1.0], W.shape[1]))
    b[1] = b[0] + rel * max(1.0, abs(b[0])) * rng.choice([-1.0, 1.0])
    # float32 like every weight (ONNX): below ~6e-8 the two rows round to an exact tie
    return Network(net.layers[:-1] + [Affine(_f32(W), _f32(b))], name=net.name + "-tied")


def _build(family: str, rng) -> tuple[Network, object | None, dict]:
    if family == "relu":
        return _mlp(rng, [2, int(rng.integers(3, 5)), 3, 3], "relu"), None, {}
    if family == "leaky":
        slope = float(rng.choice([0.01, 0.3, 0.9]))
        return _mlp(rng, [2, 4, 3, 3], "leaky", slope=slope), None, {"slope": slope}
    if family == "maxpool":
        return _mlp(rng, [2, 4, 3], "relu", pool=True), None, {}
    if family == "huge":
        big = float(10 ** rng.uniform(4, 8))
        return _mlp(rng, [2, 4, 3, 3], "relu", first_scale=big), None, {"first_layer": big}
    if family == "onein":
        act = str(rng.choice(["relu", "leaky"]))
        slope = float(rng.choice([0.01, 0.3, 0.9])) if act == "leaky" else 0.0
        return _mlp(rng, [1, 5, 4, 3], act, slope=slope), None, {"slope": slope}
    if family in ("smooth", "smooth1"):
        act = str(rng.choice(list(SMOOTH)))
        big = float(10 ** rng.uniform(2, 5)) if rng.random() < 1 / 3 else None
        sizes = [2, 4, 3, 3] if family == "smooth" else [1, 5, 4, 3]
        net = _mlp(rng, sizes, act, first_scale=big)
        out = float(10 ** rng.uniform(4, 8)) if rng.random() < 0.25 else None
        if out is not None:     # logits of 1e4 ... 1e8 from activations in [-π/2, π/2]
            last = net.layers[-1]
            net = Network(net.layers[:-1] + [Affine(_f32(last.W * out), _f32(last.b * out))],
                          name=net.name)
        tie = float(10 ** rng.uniform(-9, -6)) if rng.random() < 0.25 else None
        if tie is not None:
            net = _tied_outputs(net, rng, tie)
        return net, None, {"act": act, "first_layer": big, "last_layer": out, "tie_net": tie}
    if family == "edge":
        u = rng.random()
        if u < 0.4:
            slope = float(rng.choice(EDGE_SLOPES))
            return _mlp(rng, [2, 4, 3, 3], "leaky", slope=slope), None, {"slope": slope}
        if u < 0.6:
            tie = float(10 ** rng.uniform(-9, -6))
            return _tied_outputs(_mlp(rng, [2, 4, 3, 3], "relu"), rng, tie), None, \
                {"tie_net": tie}
        c = float(10 ** rng.uniform(3, 6))
        net = _mlp(rng, [2, 4, 3, 3], "relu")
        first = net.layers[0]
        # kinks at W x + b = 0 for x near c: the bias absorbs -W c (float32, as ONNX)
        net.layers[0] = Affine(first.W, _f32(first.b - first.W @ np.full(2, c)))
        return Network(net.layers, name="res-offset"), None, {"center": c}
    if family == "deep":
        depth = int(rng.integers(5, 8))
        act = str(rng.choice(["relu", "leaky"]))
        slope = float(rng.choice([0.01, 0.3])) if act == "leaky" else 0.0
        sizes = [2] + [int(rng.integers(3, 5))] * depth + [3]
        return _mlp(rng, sizes, act, slope=slope), None, {"depth": depth, "slope": slope}
    if family == "conv":
        import tempfile
        from pathlib import Path

        import onnx

        from nnresilience.loaders import load_network
        from nnresilience.testing.unseen import _conv

        pool = str(rng.choice(["max", "avg"]))
        model = _conv(rng, pool, 1, 3, 3, 1, 3, "relu")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "conv.onnx"
            onnx.save(model, str(path))
            net = load_network(path)
        return net, model, {"pool": pool}
    raise ValueError(f"unknown family {family!r}")


def _tie_point(net: Network, rng, lo, hi) -> np.ndarray | None:
    """A point of the box where the two top classes tie (bisection between two inputs of
    different predicted classes), or None."""
    X = rng.uniform(lo, hi, (256, lo.size))
    pred = np.argmax(net.forward(X), axis=1)
    idx = np.flatnonzero(pred != pred[0])
    if idx.size == 0:
        return None
    a, b = X[0], X[int(idx[0])]
    ca = pred[0]
    for _ in range(80):
        mid = 0.5 * (a + b)
        if int(np.argmax(net.forward(mid))) == ca:
            a = mid
        else:
            b = mid
    return 0.5 * (a + b)


def res_instance(family: str, seed: int, domain_kind: str | None = None) -> ResInstance:
    """Instance ``seed`` of ``family`` (deterministic): the first draw from ``seed`` on
    where at least two classes win somewhere in the domain."""
    if family not in ALL_FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    for attempt in range(50):
        rng = np.random.default_rng([seed, attempt])
        net, model, info = _build(family, rng)
        if family == "edge":
            kind = domain_kind or str(rng.choice(DOMAINS + ("micro",), p=[0.3, 0.2, 0.2, 0.3]))
        else:
            kind = domain_kind or str(rng.choice(DOMAINS, p=[0.5, 0.25, 0.25]))
        d = net.n_inputs
        c = float(info.get("center", 0.0))
        if kind == "unit" or family == "conv":
            kind = "unit" if family == "conv" else kind
            lo, hi = c - np.ones(d), c + np.ones(d)
        elif kind == "large":
            w = float(10 ** rng.uniform(1, 3))
            lo, hi = c - w * np.ones(d), c + w * np.ones(d)
        else:
            p = _tie_point(net, rng, c - np.ones(d), c + np.ones(d))
            if p is None:
                continue
            w = float(10 ** (rng.uniform(-4, -2) if kind == "tiny" else rng.uniform(-9, -6)))
            lo, hi = p - w, p + w
        X = rng.uniform(lo, hi, (2000, d))
        if np.unique(np.argmax(net.forward(X), axis=1)).size >= 2:
            return ResInstance(seed, family, kind, net, lo, hi, model, dict(info))
    raise AssertionError(f"no {family} instance with two winning classes from seed {seed}")


# ----------------------------------------------------------------------- ground truth
@dataclass
class Truth:
    """What brute force (or the 1-input reference) says; ``None`` where it could not run."""

    phi: float | None = None
    feasible: bool | None = None
    pair: tuple | None = None


def brute_force_ok(inst: ResInstance) -> bool:
    from nnresilience.testing.phi_bruteforce import pattern_count

    if inst.smooth:
        return False            # no finite set of linear pieces to enumerate
    if float(np.max(inst.hi - inst.lo)) < 1e-5:
        # micro domains: the LPs' absolute feasibility tolerance is wider than the whole
        # box (brute force said Φ = 0 where every pair of D is 4.1e-8 apart in L∞)
        return False
    if inst.info.get("tie_net") is not None:
        # the tied logits differ by less than the brute-force LPs' tolerance: they would
        # call a premise feasible (or a flip reachable) that is 3e-8 short everywhere
        return False
    if "patterns" not in inst.info and inst.network.n_inputs > 4:
        inst.info["patterns"] = math.inf    # conv nets: hundreds of patterns, squared
    if "patterns" not in inst.info:
        try:
            inst.info["patterns"] = pattern_count(inst.network, inst.lo, inst.hi,
                                                  limit=_max_patterns(inst))
        except (ValueError, RuntimeError):
            inst.info["patterns"] = math.inf
    return inst.info["patterns"] <= _max_patterns(inst)


def _max_patterns(inst: ResInstance) -> int:
    """Deep nets: each pattern LP has ~30 rows per layer and Φ costs the square of the
    count, so brute force stops at 16 there (the grid covers the rest)."""
    return 16 if inst.family == "deep" else MAX_PATTERNS


def true_phi(inst: ResInstance, m: int, alpha: float, k: int, norm: str) -> Truth:
    """Φ_m by brute force (L1/L∞, small pattern counts) or by the 1-input reference (any
    norm; every norm is |ε| there). Nothing on S-shaped nets: :func:`sample_pairs` is
    their (one-sided) truth."""
    if inst.smooth:
        return Truth()
    if inst.network.n_inputs == 1:
        from nnresilience.testing.phi_reference import (
            flip_slacks,
            interval_distance,
            intervals_1d,
            premise_margins,
        )

        la = math.log(alpha)
        lo, hi = float(inst.lo[0]), float(inst.hi[0])
        P = intervals_1d(lambda X: premise_margins(inst.network, X, m) - la, lo, hi)
        F = intervals_1d(lambda X: flip_slacks(inst.network, X, m, k), lo, hi)
        return Truth(interval_distance(P, F) if P else None, bool(P))
    if norm == "l2" or not brute_force_ok(inst):
        return Truth()
    from nnresilience.testing.phi_bruteforce import brute_force_phi_pair

    try:
        v, a, b, feas = brute_force_phi_pair(inst.network, m, alpha, k, norm, inst.lo, inst.hi)
    except RuntimeError:        # an LP in numerical trouble: no truth
        return Truth()
    return Truth(v if feas else None, feas, None if a is None else (a, b))


def true_min_perturbation(inst: ResInstance, x, label: int, k: int, norm: str
                          ) -> float | None:
    """The minimum perturbation by brute force (every norm on 1-input nets), else None."""
    if not brute_force_ok(inst) or (norm == "l2" and inst.network.n_inputs > 1):
        return None
    from nnresilience.testing.phi_bruteforce import brute_force_min_perturbation

    try:
        return brute_force_min_perturbation(inst.network, x, label, k,
                                            "l1" if norm == "l2" else norm, inst.lo, inst.hi)[0]
    except RuntimeError:
        return None


def true_ln_alpha_max(inst: ResInstance, m: int) -> float | None:
    """``ln α_max(m)`` by brute force, or None."""
    if not brute_force_ok(inst):
        return None
    from nnresilience.testing.phi_bruteforce import brute_force_alpha_max

    try:
        return brute_force_alpha_max(inst.network, m, inst.lo, inst.hi)[0]
    except RuntimeError:
        return None


def tolerance(value: float, inst: ResInstance) -> float:
    """How far a brute-force value may sit from the truth (LP tolerances), in the norm's
    units; scaled by the domain so tiny domains are not judged at 1e-6 absolute."""
    span = float(np.max(inst.hi - inst.lo))
    return BF_ABS * min(1.0, span) + BF_REL * (abs(value) if math.isfinite(value) else 0.0)


def tie_samples(inst: ResInstance, rng, rels=TIE_REL) -> list[tuple[np.ndarray, int, float]]:
    """``(x, label, rel)``: inputs of the domain whose top two logits differ by about
    ``rel * max(1, |y|)``, ``label`` the (barely) winning class."""
    net, lo, hi = inst.network, inst.lo, inst.hi
    out = []
    for rel in rels:
        X = rng.uniform(lo, hi, (256, lo.size))
        pred = np.argmax(net.forward(X), axis=1)
        idx = np.flatnonzero(pred != pred[0])
        if idx.size == 0:
            continue
        a, b = X[0], X[int(idx[0])]
        ca = int(pred[0])

        def gap(x, ca=ca):
            y = net.forward(x)
            return float(y[ca] - np.delete(y, ca).max()), float(np.abs(y).max())

        for _ in range(200):
            g, s = gap(a)
            if g <= 2.0 * rel * max(1.0, s):
                break
            mid = 0.5 * (a + b)
            if np.array_equal(mid, a) or np.array_equal(mid, b):
                break
            gm, sm = gap(mid)
            if gm >= rel * max(1.0, sm):
                a = mid
            else:
                b = mid
        g, s = gap(a)
        if g >= 0.0:
            out.append((np.clip(a, lo, hi), ca, g / max(1.0, s)))
    return out


# ----------------------------------------------------------------------------- checks
def dense_grid(inst: ResInstance) -> np.ndarray:
    """The grid of the one-sided truth where brute force does not apply (S-shaped nets,
    micro domains, tied outputs, too many patterns): 200,001 points of a 1-input domain,
    301 x 301 of a 2-input one (empty where brute force gives the exact truth, and for
    more inputs)."""
    lo, hi = inst.lo, inst.hi
    if lo.size > 2 or brute_force_ok(inst):
        return np.empty((0, lo.size))
    axes = [np.linspace(lo[i], hi[i], 200_001 if lo.size == 1 else 301) for i in range(lo.size)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, lo.size)


def _nearest_pairs(A: np.ndarray, B: np.ndarray, norm: str, n: int) -> list:
    """The ``n`` pairs (a of A, its nearest b of B in ``norm``) of smallest distance."""
    from scipy.spatial import cKDTree

    p = {"l1": 1, "linf": np.inf, "l2": 2}[norm]
    dist, j = cKDTree(B).query(A, k=1, p=p)
    order = np.argsort(dist)[:n]
    return [(A[i], B[j[i]]) for i in order]


def sample_pairs(inst: ResInstance, m: int, alpha: float, k: int, norm: str, rng,
                 n: int = 1500, extra: list | None = None) -> tuple[float, bool, bool]:
    """``(sampled upper bound of Φ_m, a confident input seen, a flipped input seen)``:
    the shortest float64-replayed pair among samples, shortened by bisection along the
    segment (every pair it returns replays exactly, so Φ_m is at most its norm)."""
    net, lo, hi = inst.network, inst.lo, inst.hi
    la = math.log(alpha)
    X = np.vstack([rng.uniform(lo, hi, (n, lo.size))] + (extra or []) + [dense_grid(inst)])
    Y = net.forward(X)
    marg = Y[:, m] - np.delete(Y, m, axis=1).max(axis=1)
    D = np.delete(Y, m, axis=1) - Y[:, [m]]
    slack = -np.sort(-D, axis=1)[:, k - 1]
    A, B = X[marg >= la], X[slack >= 0.0]
    if len(A) == 0 or len(B) == 0:
        return math.inf, len(A) > 0, len(B) > 0
    if inst.smooth:
        cand = _nearest_pairs(A, B, norm, 20)
    else:
        A, B = A[:300], B[:300]
        diff = A[:, None, :] - B[None, :, :]
        if norm == "l1":
            dist = np.abs(diff).sum(-1)
        elif norm == "linf":
            dist = np.abs(diff).max(-1)
        else:
            dist = np.sqrt((diff ** 2).sum(-1))
        cand = [(A[i], B[j]) for i, j in zip(*np.unravel_index(
            np.argsort(dist, axis=None)[:10], dist.shape), strict=True)]
    def premise(z):
        return premise_margin(net.forward(z), m) >= la

    def flipped(z):
        return flip_count(net.forward(z), m) >= k

    best = math.inf
    for a0, b0 in cand:
        a, b = a0.copy(), b0.copy()
        for _ in range(60):
            mid = 0.5 * (a + b)
            if premise(mid):
                a = mid
            elif flipped(mid):
                b = mid
            else:       # a gap on the segment: move each end to its own boundary
                a, b = _bisect(premise, a, mid), _bisect(flipped, b, mid)
                break
        best = min(best, norm_of(b - a, norm))
    return best, True, True


def _bisect(inside, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The point of the segment [p, q] nearest q found by bisection with ``inside``
    true (``inside(p)`` holds, ``inside(q)`` does not): every point it returns replays."""
    for _ in range(60):
        mid = 0.5 * (p + q)
        if np.array_equal(mid, p) or np.array_equal(mid, q):
            break
        if inside(mid):
            p = mid
        else:
            q = mid
    return p


def check_interval(res, inst: ResInstance, norm: str, opt_tol: float = 1e-5) -> list[str]:
    """Conditions every interval answer must meet on its own."""
    out = []
    lo_, up = res.lower, res.upper
    if lo_ is not None and up is not None and lo_ > up:
        out.append(f"lower {lo_!r} > upper {up!r}")
    if lo_ is not None and lo_ < 0:
        out.append(f"lower {lo_!r} < 0")
    if res.optimal:
        if lo_ == math.inf and up is None:
            pass    # min_perturbation: "no point of D flips" (checked against the truth)
        elif lo_ is None or up is None:
            out.append(f"optimal with [{lo_!r}, {up!r}]")
        elif math.isfinite(up) and up - lo_ > opt_tol * max(1.0, up) * (1 + 1e-9):
            out.append(f"optimal but [{lo_!r}, {up!r}] wider than opt_tol")
    return out


def check_phi(res, inst: ResInstance, m: int, alpha: float, k: int, norm: str,
              truth: Truth, sampled: tuple[float, bool, bool]) -> list[str]:
    """Every way a Φ_m answer can be wrong, against ``truth`` and ``sampled``."""
    net, lo, hi = inst.network, inst.lo, inst.hi
    la = math.log(alpha)
    out = check_interval(res, inst, norm)
    su, seen_a, seen_b = sampled
    if not res.feasible:
        if seen_a:
            out.append("feasible=False but a sampled input reaches α")
        if truth.feasible:
            out.append("feasible=False but brute force finds a confident input")
        return out
    if res.upper is not None and math.isfinite(res.upper):
        if res.a is None or res.a_perturbed is None:
            out.append(f"upper {res.upper!r} without a witness pair")
        else:
            a, b = np.asarray(res.a, float), np.asarray(res.a_perturbed, float)
            if np.any(a < lo) or np.any(a > hi) or np.any(b < lo) or np.any(b > hi):
                out.append("witness outside the domain")
            if premise_margin(net.forward(a), m) < la:
                out.append(f"witness a misses the premise by "
                           f"{la - premise_margin(net.forward(a), m):.3g}")
            if flip_count(net.forward(b), m) < k:
                out.append("witness b does not flip")
            nb = norm_of(b - a, norm)
            if nb > res.upper * (1 + 1e-12) + 1e-300:
                out.append(f"witness norm {nb!r} > upper {res.upper!r}")
    if res.upper == math.inf and (su < math.inf or (truth.phi is not None
                                                    and math.isfinite(truth.phi))):
        out.append(f"Φ = +inf but a pair exists (sampled {su:.6g}, brute force {truth.phi})")
    if res.lower is not None and su < math.inf and res.lower > su * (1 + 1e-9) + 1e-15:
        out.append(f"lower {res.lower!r} above a replayed sampled pair {su!r}")
    if truth.phi is not None:
        v = truth.phi
        tol = tolerance(v if math.isfinite(v) else 0.0, inst)
        if res.lower is not None and math.isfinite(v) and res.lower > v + tol:
            out.append(f"lower {res.lower!r} above the true Φ {v!r}")
        if res.upper is not None and math.isfinite(res.upper) and res.upper < v - tol:
            out.append(f"upper {res.upper!r} below the true Φ {v!r}")
        if res.optimal and res.upper is not None and math.isfinite(v) and not (
                res.lower - tol <= v <= res.upper + tol):
            out.append(f"optimal [{res.lower!r}, {res.upper!r}] misses the true Φ {v!r}")
        if res.optimal and res.upper == math.inf and math.isfinite(v):
            out.append(f"optimal +inf but the true Φ is {v!r}")
    return out


def check_min_perturbation(res, inst: ResInstance, x, label: int, k: int, norm: str,
                           truth: float | None, sampled: float) -> list[str]:
    net, lo, hi = inst.network, inst.lo, inst.hi
    out = check_interval(res, inst, norm)
    if res.upper is not None and math.isfinite(res.upper):
        if res.a_perturbed is None:
            out.append(f"upper {res.upper!r} without a witness")
        else:
            b = np.asarray(res.a_perturbed, float)
            if np.any(b < lo) or np.any(b > hi):
                out.append("witness outside the domain")
            if flip_count(net.forward(b), label) < k:
                out.append("witness does not flip")
            nb = norm_of(b - np.asarray(x, float), norm)
            if nb > res.upper * (1 + 1e-12) + 1e-300:
                out.append(f"witness norm {nb!r} > upper {res.upper!r}")
    if res.lower is not None and sampled < math.inf and res.lower > sampled * (1 + 1e-9) + 1e-15:
        out.append(f"lower {res.lower!r} above a replayed sampled point {sampled!r}")
    if truth is not None:
        tol = tolerance(truth if math.isfinite(truth) else 0.0, inst)
        if res.lower is not None and math.isfinite(truth) and res.lower > truth + tol:
            out.append(f"lower {res.lower!r} above the true minimum {truth!r}")
        if res.upper is not None and math.isfinite(res.upper) and res.upper < truth - tol:
            out.append(f"upper {res.upper!r} below the true minimum {truth!r}")
        if res.optimal and res.upper is not None and res.lower is not None \
                and math.isfinite(truth) and not (res.lower - tol <= truth <= res.upper + tol):
            out.append(f"optimal [{res.lower!r}, {res.upper!r}] misses the true {truth!r}")
    return out


def sample_flip(inst: ResInstance, x, label: int, k: int, norm: str, rng, n: int = 3000
                ) -> float:
    """Norm of the nearest float64-replayed flipped input found by sampling and bisection
    towards ``x`` (an upper bound of the minimum perturbation)."""
    net, lo, hi = inst.network, inst.lo, inst.hi
    x = np.asarray(x, float)
    span = hi - lo
    X = np.vstack([rng.uniform(lo, hi, (n, lo.size)),
                   np.clip(x + rng.normal(0, 1, (n, lo.size)) * span * 1e-3, lo, hi),
                   dense_grid(inst)])
    Y = net.forward(X)
    D = np.delete(Y, label, axis=1) - Y[:, [label]]
    ok = -np.sort(-D, axis=1)[:, k - 1] >= 0.0
    B = X[ok]
    if len(B) == 0:
        return math.inf
    E = np.abs(B - x)
    dist = E.sum(1) if norm == "l1" else E.max(1) if norm == "linf" \
        else np.sqrt((E ** 2).sum(1))
    best = math.inf
    for i in np.argsort(dist)[:10]:
        a, b = x.copy(), B[i].copy()
        for _ in range(60):
            mid = 0.5 * (a + b)
            if flip_count(net.forward(mid), label) >= k:
                b = mid
            else:
                a = mid
        best = min(best, norm_of(b - x, norm))
    return best


def check_alpha_max(res, inst: ResInstance, m: int, truth: float | None, sampled: float
                    ) -> list[str]:
    """``truth``, ``sampled``: ``ln α_max`` by brute force / the best sampled margin."""
    out = []
    net = inst.network

    def ln(v):
        return -math.inf if v <= 0 else math.log(v)

    if res.lower is not None and res.upper is not None and res.lower > res.upper:
        out.append(f"lower {res.lower!r} > upper {res.upper!r}")
    if res.upper is not None and math.isfinite(res.upper) and \
            ln(res.upper) < sampled - 1e-9 * max(1.0, abs(sampled)):
        out.append(f"upper {res.upper!r} below a sampled ratio e^{sampled!r}")
    if res.a is not None and res.lower is not None and res.lower > 0:
        got = premise_margin(net.forward(np.asarray(res.a, float)), m)
        if got < ln(res.lower) - 1e-12 * max(1.0, abs(got)):
            out.append(f"witness reaches e^{got!r} < lower {res.lower!r}")
    if truth is not None:
        tol = 1e-6 * max(1.0, abs(truth))
        if res.lower is not None and res.lower > 0 and ln(res.lower) > truth + tol:
            out.append(f"lower {res.lower!r} above the true e^{truth!r}")
        if res.upper is not None and math.isfinite(res.upper) and ln(res.upper) < truth - tol:
            out.append(f"upper {res.upper!r} below the true e^{truth!r}")
    if res.optimal and (res.lower is None or res.upper is None
                        or res.upper - res.lower > 1e-3 * max(1.0, res.upper)):
        out.append(f"optimal but [{res.lower!r}, {res.upper!r}]")
    return out
