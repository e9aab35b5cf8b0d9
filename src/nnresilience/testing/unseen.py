"""Small ONNX models of shapes the other generators do not build, with near-tie properties.

Why a separate generator: :mod:`~nnresilience.testing.planted` and
:mod:`~nnresilience.testing.bruteforce` build IR networks directly, so the ONNX loader and
the shapes it produces (convolutions become sparse affine maps, average pooling a
matrix, input normalisation a diagonal scale and shift, ``MatMul`` + ``Add`` one affine
layer) are never part of those sweeps. Here every instance is an ONNX graph
(``ir_version`` 8, opset 13) loaded through :func:`~nnresilience.loaders.load_network`,
and the property is a VNN-LIB text read back through
:func:`~nnresilience.spec.vnnlib.read_vnnlib`:

``conv_max``  Conv(+bias) -> Relu -> MaxPool -> Flatten -> Gemm
``conv_avg``  Conv(+bias, padded) -> Relu -> AveragePool -> Flatten -> Gemm
``conv_smooth`` Conv -> Sigmoid/Tanh -> MaxPool/AveragePool -> Flatten -> Gemm
``deep``      8-10 ReLU layers of width 3-6
``smooth``    Sigmoid / Tanh / Atan / Relu hidden layers mixed
``leaky``     LeakyRelu with slope 0.01, 0.3 or 0.9 (``LEAKY_SLOPES``; the sweep's
              ``--leaky-slopes`` swaps in e.g. the edges 1e-6 and 0.999)
``matmul_norm`` Sub/Div input normalisation, then MatMul + Add layers
``huge``      a first layer with weights and biases of 1e6 ... 1e12

The property is a box and a disjunction of 1-3 terms, each a conjunction of 1-2 atoms
(``Y_i - Y_j >= c``, ``Y_i >= c``, ``Y_i <= c``) with constants at quantiles of sampled
outputs. Its variants (:func:`variants`) shift every atom by the same amount:

* ``rand``: as drawn; the truth is known when a sample violates it, or by brute force
  (:func:`~nnresilience.testing.bruteforce.brute_force_max_margin`) on piecewise-linear
  families;
* ``tie``: the unsafe margin of a known point (the best of 4,000 samples, or the brute
  force maximiser) is set to ``+rel * max(1, |y|)`` for ``rel`` in 1e-12 ... 1e-3, so the
  property is **violated** with that point as a float64 witness (checked), by a near tie;
* ``tie_hold`` (piecewise-linear families): the brute-force maximum is moved to
  ``-rel * max(1, |y|)`` (at least 1e-7 relative): almost surely holds, but only
  up to the brute force's LP accuracy, so only ``violated`` answers are judged there
  (their witness must replay).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FAMILIES = ("conv_max", "conv_avg", "conv_smooth", "deep", "smooth", "leaky", "matmul_norm",
            "huge")
#: the slopes of the ``leaky`` family (a module constant so a sweep can try others)
LEAKY_SLOPES: tuple[float, ...] = (0.01, 0.3, 0.9)
#: families whose every layer is piecewise linear (brute force applies)
PIECEWISE_LINEAR = frozenset({"conv_max", "conv_avg", "deep", "leaky", "matmul_norm",
                              "huge"})
TIE_REL = (1e-12, 1e-9, 1e-6, 1e-3)
N_SAMPLES = 4000


class _Graph:
    """A chain of ONNX nodes from input ``x`` (float32 initializers)."""

    def __init__(self, in_shape: list[int]) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.k = 0
        self.in_shape = in_shape
        self.cur = "x"

    def _name(self, prefix: str) -> str:
        self.k += 1
        return f"{prefix}{self.k}"

    def const(self, arr) -> str:
        from onnx import numpy_helper

        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def op(self, op: str, *extra: str, **attrs) -> None:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, [self.cur, *extra], [out], name=out, **attrs))
        self.cur = out

    def act(self, kind: str, slope: float | None = None) -> None:
        ops = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "atan": "Atan"}
        if kind == "leaky":
            self.op("LeakyRelu", alpha=float(slope))
        else:
            self.op(ops[kind])

    def dense(self, rng, n_in: int, n_out: int, scale: float, bscale: float,
              style: str) -> None:
        W = rng.normal(0.0, scale / np.sqrt(n_in), (n_out, n_in))
        b = rng.normal(0.0, bscale, n_out)
        if style == "gemm":
            self.op("Gemm", self.const(W), self.const(b), transB=1)
        else:
            self.op("MatMul", self.const(W.T))
            self.op("Add", self.const(b))

    def model(self, n_out: int):
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.in_shape))
        y = helper.make_tensor_value_info(self.cur, TensorProto.FLOAT, [1, n_out])
        g = helper.make_graph(self.nodes, "unseen", [x], [y], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                                 ir_version=8, producer_name="nnresilience-unseen")


def _mlp(rng, sizes: list[int], acts: list[str], slope: float | None = None,
         style: str = "gemm", scale: float = 1.0, norm: bool = False,
         big: float | None = None):
    g = _Graph([1, sizes[0]])
    if norm:
        g.op("Sub", g.const(rng.uniform(-0.5, 0.5, (1, sizes[0]))))
        g.op("Div", g.const(rng.uniform(0.3, 2.0, (1, sizes[0]))))
    for i in range(len(sizes) - 1):
        s, bs = (big, big) if (big is not None and i == 0) else (scale, 0.5)
        g.dense(rng, sizes[i], sizes[i + 1], s, bs, style)
        if i < len(sizes) - 2:
            g.act(acts[i % len(acts)], slope)
    return g.model(sizes[-1])


def _conv(rng, pool: str, C: int, H: int, W: int, stride: int, n_out: int, act: str,
          pads: int = 0):
    g = _Graph([1, C, H, W])
    oc, k, pk = 2, 2, 2
    g.op("Conv", g.const(rng.normal(0.0, 1.0 / np.sqrt(C * k * k), (oc, C, k, k))),
         g.const(rng.normal(0.0, 0.3, oc)), kernel_shape=[k, k], pads=[pads] * 4)
    g.act(act)
    g.op("MaxPool" if pool == "max" else "AveragePool", kernel_shape=[pk, pk],
         strides=[stride, stride])
    ho = (H + 2 * pads - k + 1 - pk) // stride + 1
    wo = (W + 2 * pads - k + 1 - pk) // stride + 1
    g.op("Flatten", axis=1)
    g.dense(rng, oc * ho * wo, n_out, 1.0, 0.5, "gemm")
    return g.model(n_out)


def build_model(family: str, rng: np.random.Generator):
    """An ONNX model of ``family`` drawn from ``rng``: ``(model, n_inputs, n_outputs)``."""
    if family == "conv_max":
        C, H, W = int(rng.integers(1, 3)), int(rng.integers(3, 5)), int(rng.integers(3, 5))
        return _conv(rng, "max", C, H, W, int(rng.integers(1, 3)), 3, "relu"), C * H * W, 3
    if family == "conv_avg":
        return _conv(rng, "avg", 1, 4, 4, int(rng.integers(1, 3)), 3, "relu",
                     pads=int(rng.integers(0, 2))), 16, 3
    if family == "conv_smooth":
        pool = str(rng.choice(["max", "avg"]))
        return _conv(rng, pool, 1, 3, 3, 1, 2, str(rng.choice(["sigmoid", "tanh"]))), 9, 2
    n = int(rng.integers(2, 4))
    if family == "deep":
        depth, width = int(rng.integers(8, 11)), int(rng.integers(3, 7))
        return _mlp(rng, [n] + [width] * depth + [3], ["relu"], scale=1.6), n, 3
    if family == "smooth":
        acts = [str(a) for a in rng.choice(["sigmoid", "tanh", "atan", "relu"], size=2)]
        return _mlp(rng, [n, 6, 5, 3], acts, scale=2.0), n, 3
    if family == "leaky":
        slope = float(rng.choice(list(LEAKY_SLOPES)))
        return _mlp(rng, [n, 5, 4, 3], ["leaky"], slope=slope), n, 3
    if family == "matmul_norm":
        return _mlp(rng, [n, 5, 5, 3], ["relu"], style="matmul", norm=True), n, 3
    if family == "huge":
        big = float(10 ** rng.uniform(6, 12))
        style = str(rng.choice(["gemm", "matmul"]))
        return _mlp(rng, [n, 5, 4, 3], ["relu"], big=big, style=style), n, 3
    raise ValueError(f"unknown family {family!r}")


# ------------------------------------------------------------------ properties
Atom = tuple  # ("ge", i, j, c): Y_i - Y_j >= c; ("ge", i, None, c): Y_i >= c; ("le", i, c)


def _draw_terms(rng, n_out: int, Y: np.ndarray) -> list[list[Atom]]:
    terms = []
    for _ in range(int(rng.integers(1, 4))):
        conj: list[Atom] = []
        for _ in range(int(rng.integers(1, 3))):
            r, i = rng.random(), int(rng.integers(n_out))
            if r < 0.5:
                j = int((i + rng.integers(1, n_out)) % n_out)
                q = float(np.quantile(Y[:, i] - Y[:, j], rng.uniform(0.7, 1.0)))
                conj.append(("ge", i, j, q))
            elif r < 0.8:
                conj.append(("ge", i, None, float(np.quantile(Y[:, i], rng.uniform(0.7, 1.0)))))
            else:
                conj.append(("le", i, float(np.quantile(Y[:, i], rng.uniform(0.0, 0.3)))))
        terms.append(conj)
    return terms


def _shift(terms: list[list[Atom]], s: float) -> list[list[Atom]]:
    """Every atom's margin grows by ``s``."""
    return [[("le", a[1], a[2] + s) if a[0] == "le" else ("ge", a[1], a[2], a[3] - s)
             for a in conj] for conj in terms]


def vnnlib_text(lo: np.ndarray, hi: np.ndarray, n_out: int, terms: list[list[Atom]]) -> str:
    """VNN-LIB text of the box ``[lo, hi]`` and the disjunction ``terms`` (exact reprs)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    lines += [f"(declare-const Y_{i} Real)" for i in range(n_out)]
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        lines += [f"(assert (>= X_{i} {float(a)!r}))", f"(assert (<= X_{i} {float(b)!r}))"]

    def atom(a: Atom) -> str:
        if a[0] == "le":
            return f"(<= Y_{a[1]} {float(a[2])!r})"
        _, i, j, c = a
        if j is None:
            return f"(>= Y_{i} {float(c)!r})"
        return f"(>= (- Y_{i} Y_{j}) {float(c)!r})"

    parts = [atom(c[0]) if len(c) == 1 else "(and " + " ".join(map(atom, c)) + ")"
             for c in terms]
    body = parts[0] if len(parts) == 1 else "(or " + " ".join(parts) + ")"
    return "\n".join(lines + [f"(assert {body})"]) + "\n"


@dataclass
class Query:
    """One property on one instance: its VNN-LIB text and what is known about it.

    ``truth``: ``violated`` (``witness`` replays in float64), ``holds`` (brute force,
    with a margin of 1e-6 of the logits), or ``None`` (only ``violated`` answers are
    judged, by replaying them)."""

    name: str
    text: str
    truth: str | None = None
    witness: np.ndarray | None = None


@dataclass
class Instance:
    family: str
    seed: int
    model: object                  # onnx.ModelProto
    n_inputs: int
    n_outputs: int
    lo: np.ndarray
    hi: np.ndarray
    queries: list[Query] = field(default_factory=list)


def instance(family: str, seed: int, bruteforce: bool = True) -> Instance:
    """Model and box of ``(family, seed)``; the queries are added by :func:`variants`
    once the model is loaded (they need its forward pass)."""
    rng = np.random.default_rng(seed)
    model, n_in, n_out = build_model(family, rng)
    lo = rng.uniform(-1.0, 0.2, n_in)
    hi = lo + rng.uniform(0.1, 1.0, n_in)
    return Instance(family, seed, model, n_in, n_out, lo, hi)


def variants(inst: Instance, network, bruteforce_max=None) -> list[Query]:
    """The ``rand``, ``tie`` and (with ``bruteforce_max(case) -> (value, x)``, for
    piecewise-linear families) ``tie_bf`` / ``tie_hold`` queries of an instance."""
    from nnresilience.spec.vnnlib import read_vnnlib

    rng = np.random.default_rng(inst.seed + 10_000)
    X = rng.uniform(inst.lo, inst.hi, (N_SAMPLES, inst.n_inputs))
    Y = network.forward(X)
    terms = _draw_terms(rng, inst.n_outputs, Y)
    rel = float(rng.choice(TIE_REL))

    def case_of(tt):
        text = vnnlib_text(inst.lo, inst.hi, inst.n_outputs, tt)
        return text, read_vnnlib("unseen", text=text).cases[0]

    out = []
    text, case = case_of(terms)
    mm = case.unsafe.max_margin(Y)
    q = Query("rand", text)
    if np.any(mm >= 0):
        k = int(np.argmax(mm))
        q.truth, q.witness = "violated", X[k]
    bf = None
    if bruteforce_max is not None:
        bf = bruteforce_max(case)
        if bf is not None and q.truth is None and np.isfinite(bf[0]):
            scale = max(1.0, float(np.abs(network.forward(bf[1])).max()))
            if bf[0] >= 0.0 and bool(case.unsafe.satisfied(network.forward(bf[1]))):
                q.truth, q.witness = "violated", bf[1]
            elif bf[0] < -1e-6 * scale:
                q.truth = "holds"
    out.append(q)
    points = [("tie", X[int(np.argmax(mm))], float(mm.max()))]
    if bf is not None and np.isfinite(bf[0]):
        points.append(("tie_bf", bf[1], float(bf[0])))
    for name, x, m in points:
        scale = max(1.0, float(np.abs(network.forward(x)).max()))
        text, c2 = case_of(_shift(terms, rel * scale - m))
        ok = bool(c2.unsafe.satisfied(network.forward(x)))
        out.append(Query(f"{name}{rel:g}", text, "violated" if ok else None,
                         x if ok else None))
    if bf is not None and np.isfinite(bf[0]):
        scale = max(1.0, float(np.abs(network.forward(bf[1])).max()))
        text, _ = case_of(_shift(terms, -bf[0] - max(rel, 1e-7) * scale))
        out.append(Query(f"tie_hold{rel:g}", text))
    inst.queries = out
    return out


def judge(network, case, status: str, x, truth: str | None) -> str:
    """``""`` if the answer is acceptable, else why it is wrong (``x``: the reported
    counterexample, replayed through :meth:`Network.forward` without tolerance)."""
    if status == "violated":
        if x is None:
            return "violated without a counterexample"
        x = np.asarray(x, dtype=np.float64)
        if x.shape != case.region.lo.shape or not case.region.contains(x, 0.0):
            return "counterexample outside the box"
        if not bool(case.unsafe.satisfied(network.forward(x))):
            return "counterexample does not replay"
        if truth == "holds":
            return "violated on a brute-force hold"
    if status == "holds" and truth == "violated":
        return "holds on a known violation"
    return ""
