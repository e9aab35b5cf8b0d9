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

``EXTRA_FAMILIES`` (kept out of ``FAMILIES`` so the seed -> family map of the recorded
runs does not move; the sweep's ``--families`` picks them):

``conv_ops``  Conv with stride 2 / padding / dilation 2 / groups -> BatchNormalization ->
              Relu -> MaxPool with overlapping or padded windows, AveragePool with
              ``count_include_pad`` / ``ceil_mode``, or GlobalAveragePool -> Mul by a
              per-channel constant -> Flatten -> Gemm
``reshape_ops`` Reshape -> Transpose -> Reshape -> Gemm -> BatchNormalization -> Relu ->
              Mul -> Neg -> Unsqueeze -> Squeeze -> ``c - x`` (Sub, constant first) ->
              Div -> MatMul + Add -> Relu -> Gemm
``pinned``    a ReLU / LeakyRelu MLP on a box where 1 .. n-1 coordinates have
              ``lower == upper`` (degenerate boxes)
``far``       a ReLU MLP on inputs around +-1e5 .. 1e6 with box widths 1e-9 ... 1e-3,
              raw or behind a Sub / Div normalisation that blows the width up to O(1)
``ulp``       boxes whose every side is zero or one float64 step wide (inputs in [1, 2),
              1-4 free sides: 2-16 float points, all of them among the samples), a first
              layer ``2^52 (x - a)`` that is exact (0 or 1 per input), then a small ReLU
              MLP: the search cannot cut such a box, only bound it

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

With ``multi_case=True`` (:func:`variants`) one more query, ``multi``, has two input
boxes (VNN-LIB ``(or (and box_1 out_1) (and box_2 out_2))``, i.e. two
:class:`~nnresilience.spec.property.Case` objects): the box split along its first
non-degenerate coordinate at the ``tie`` point (which lies on the shared face), the
half holding the point with the near-tie terms, the other half with the drawn ones. It
is violated by that point (the other half's terms are moved 1e-3 of the logits past it,
so the point violates only the near-tie half); :func:`judge_property` checks answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FAMILIES = ("conv_max", "conv_avg", "conv_smooth", "deep", "smooth", "leaky", "matmul_norm",
            "huge")
#: the slopes of the ``leaky`` family (a module constant so a sweep can try others)
LEAKY_SLOPES: tuple[float, ...] = (0.01, 0.3, 0.9)
#: families whose every layer is piecewise linear (brute force applies)
#: families beyond the recorded runs (see the module docstring)
EXTRA_FAMILIES = ("conv_ops", "reshape_ops", "pinned", "far", "ulp")
ALL_FAMILIES = FAMILIES + EXTRA_FAMILIES
PIECEWISE_LINEAR = frozenset({"conv_max", "conv_avg", "deep", "leaky", "matmul_norm",
                              "huge", "conv_ops", "reshape_ops", "pinned", "far"})
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

    def const_i64(self, values) -> str:
        from onnx import numpy_helper

        name = self._name("i")
        self.inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def op(self, op: str, *extra: str, **attrs) -> None:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, [self.cur, *extra], [out], name=out, **attrs))
        self.cur = out

    def op_first(self, op: str, first: str) -> None:
        """``op(first, current)``: the constant is the first operand (``c - x``)."""
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, [first, self.cur], [out], name=out))
        self.cur = out

    def batchnorm(self, rng, channels: int) -> None:
        shape = [channels]
        self.op("BatchNormalization", self.const(rng.uniform(0.5, 2.0, shape)),
                self.const(rng.normal(0.0, 0.3, shape)), self.const(rng.normal(0.0, 0.3, shape)),
                self.const(rng.uniform(0.2, 2.0, shape)), epsilon=1e-3)

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


def _conv_ops(rng):
    """Conv attributes and pool kinds of :func:`_conv` does not draw (``conv_ops``)."""
    C = int(rng.integers(1, 3))
    H, W = int(rng.integers(4, 6)), int(rng.integers(4, 6))
    g = _Graph([1, C, H, W])
    oc = 2
    group = C if (C == 2 and rng.random() < 0.5) else 1
    kind = str(rng.choice(["stride", "dilation", "pad"]))
    stride, dil, pad = (2, 1, int(rng.integers(0, 2))) if kind == "stride" else (
        (1, 2, 0) if kind == "dilation" else (2, 1, 1))
    k = 2
    g.op("Conv", g.const(rng.normal(0.0, 1.0 / np.sqrt(C // group * k * k),
                                    (oc, C // group, k, k))),
         g.const(rng.normal(0.0, 0.3, oc)), kernel_shape=[k, k], strides=[stride, stride],
         dilations=[dil, dil], pads=[pad] * 4, group=group)
    ho = (H + 2 * pad - dil * (k - 1) - 1) // stride + 1
    wo = (W + 2 * pad - dil * (k - 1) - 1) // stride + 1
    g.batchnorm(rng, oc)
    g.act("relu")
    pool = str(rng.choice(["max_overlap", "max_pad", "avg_pad", "avg_ceil", "global"]))
    if pool == "max_overlap":           # windows of 2 with stride 1 share a row / column
        g.op("MaxPool", kernel_shape=[2, 2], strides=[1, 1])
        ho, wo = ho - 1, wo - 1
    elif pool == "max_pad":             # padded max windows (padding is -inf)
        g.op("MaxPool", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1])
        ho, wo = ho // 2 + 1, wo // 2 + 1
    elif pool == "avg_pad":
        inc = int(rng.integers(0, 2))
        g.op("AveragePool", kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0],
             count_include_pad=inc)
    elif pool == "avg_ceil":
        g.op("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
        ho, wo = -(-(ho - 2) // 2) + 1, -(-(wo - 2) // 2) + 1
    else:
        g.op("GlobalAveragePool")
        ho = wo = 1
    g.op("Mul", g.const(rng.uniform(-2.0, 2.0, (1, oc, 1, 1))))
    g.op("Flatten", axis=1)
    g.dense(rng, oc * ho * wo, 3, 1.0, 0.5, "gemm")
    return g.model(3), C * H * W, 3


def _reshape_ops(rng):
    """Shape operators around dense layers (``reshape_ops``)."""
    n = int(rng.choice([4, 6]))
    g = _Graph([1, n])
    g.op("Reshape", g.const_i64([1, 2, n // 2]))
    g.op("Transpose", perm=[0, 2, 1])
    g.op("Reshape", g.const_i64([1, n]))
    g.dense(rng, n, 5, 1.5, 0.5, "gemm")
    g.batchnorm(rng, 5)
    g.act("relu")
    g.op("Mul", g.const(rng.uniform(0.5, 2.0, (1, 5))))
    g.op("Neg")
    g.op("Unsqueeze", g.const_i64([1]))
    g.op("Squeeze", g.const_i64([1]))
    g.op_first("Sub", g.const(rng.normal(0.0, 0.5, (1, 5))))
    g.op("Div", g.const(rng.uniform(0.5, 2.0, (1, 5))))
    g.dense(rng, 5, 4, 1.5, 0.5, "matmul")
    g.act("relu")
    g.dense(rng, 4, 3, 1.0, 0.5, "gemm")
    return g.model(3), n, 3


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
    if family == "conv_ops":
        return _conv_ops(rng)
    if family == "reshape_ops":
        return _reshape_ops(rng)
    if family == "pinned":
        n = int(rng.integers(3, 6))
        kind = str(rng.choice(["relu", "leaky"]))
        return _mlp(rng, [n, 6, 5, 3], [kind], slope=float(rng.choice(LEAKY_SLOPES)),
                    scale=1.5), n, 3
    if family == "far":
        return _mlp(rng, [n, 5, 4, 3], ["relu"], scale=1.5), n, 3
    if family == "ulp":
        return None, int(rng.integers(2, 5)), 3     # built with its box (instance)
    raise ValueError(f"unknown family {family!r}")


def _ulp_model(rng, a: np.ndarray):
    """``2^52 (x - a)`` then a ReLU MLP, float64 weights and input (float32 would round
    the 1-ulp boxes away): ``a`` in [1, 2) has an integer ``2^52 a`` < 2^53, so the first
    layer is exact, 0 or 1 on each side of the box."""
    from onnx import TensorProto, helper, numpy_helper

    n = a.size
    k = 2.0 ** 52
    mats = [(np.diag(np.full(n, k)), -k * a)]
    for m, o in ((n, 5), (5, 4), (4, 3)):
        mats.append((rng.normal(0.0, 1.5 / np.sqrt(m), (o, m)), rng.normal(0.0, 0.5, o)))
    nodes, inits, cur = [], [], "x"
    for i, (W, b) in enumerate(mats):
        inits += [numpy_helper.from_array(W.astype(np.float64), f"W{i}"),
                  numpy_helper.from_array(b.astype(np.float64), f"b{i}")]
        out = f"g{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [out], transB=1))
        cur = out
        if 0 < i < len(mats) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
            cur = f"r{i}"
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, n])
    y = helper.make_tensor_value_info(cur, TensorProto.DOUBLE, [1, 3])
    g = helper.make_graph(nodes, "unseen_ulp", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8,
                             producer_name="nnresilience-unseen")


def _far_model(rng, n: int, centre: np.ndarray, width: np.ndarray):
    """The ``far`` net behind a Sub / Div normalisation that maps the box to O(1)."""
    g = _Graph([1, n])
    g.op("Sub", g.const(centre[None, :]))
    g.op("Div", g.const(width[None, :]))
    for i, (a, b) in enumerate([(n, 5), (5, 4), (4, 3)]):
        g.dense(rng, a, b, 1.5, 0.5, "gemm")
        if i < 2:
            g.act("relu")
    return g.model(3)


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

    return "\n".join(lines + [f"(assert {_disjunction(terms)})"]) + "\n"


def _atom(a: Atom) -> str:
    if a[0] == "le":
        return f"(<= Y_{a[1]} {float(a[2])!r})"
    _, i, j, c = a
    if j is None:
        return f"(>= Y_{i} {float(c)!r})"
    return f"(>= (- Y_{i} Y_{j}) {float(c)!r})"


def _disjunction(terms: list[list[Atom]]) -> str:
    parts = [_atom(c[0]) if len(c) == 1 else "(and " + " ".join(map(_atom, c)) + ")"
             for c in terms]
    return parts[0] if len(parts) == 1 else "(or " + " ".join(parts) + ")"


def vnnlib_cases_text(n_out: int, cases: list[tuple[np.ndarray, np.ndarray, list]]) -> str:
    """VNN-LIB text of a disjunction of ``(box, output disjunction)`` cases, one assert:
    ``(or (and <box 1> <terms 1>) (and <box 2> <terms 2>) ...)``."""
    n_in = len(cases[0][0])
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(n_out)]
    parts = []
    for lo, hi, terms in cases:
        box = " ".join(f"(>= X_{i} {float(a)!r}) (<= X_{i} {float(b)!r})"
                       for i, (a, b) in enumerate(zip(lo, hi, strict=True)))
        parts.append(f"(and {box} {_disjunction(terms)})")
    return "\n".join(lines + ["(assert (or " + " ".join(parts) + "))"]) + "\n"


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
    if family == "pinned":
        # 1 .. n-1 coordinates pinned to one value (lower == upper)
        pin = rng.permutation(n_in)[: int(rng.integers(1, n_in))]
        hi[pin] = lo[pin]
    elif family == "far":
        sign = rng.choice([-1.0, 1.0], n_in)
        # float32-exact centre and width: the normalisation constants are float32
        centre = (sign * 10 ** rng.uniform(5, 6, n_in)).astype(np.float32).astype(float)
        width = (10 ** rng.uniform(-9, -3, n_in)).astype(np.float32).astype(float)
        lo = centre - width / 2
        hi = lo + width
        if rng.random() < 0.5:
            model = _far_model(rng, n_in, centre, width)
    elif family == "ulp":
        lo = rng.uniform(1.0, 2.0, n_in)
        hi = lo.copy()
        free = rng.permutation(n_in)[: int(rng.integers(1, n_in + 1))]
        hi[free] = np.nextafter(lo[free], 3.0)
        model = _ulp_model(rng, lo)
    return Instance(family, seed, model, n_in, n_out, lo, hi)


def variants(inst: Instance, network, bruteforce_max=None, multi_case: bool = False
             ) -> list[Query]:
    """The ``rand``, ``tie`` and (with ``bruteforce_max(case) -> (value, x)``, for
    piecewise-linear families) ``tie_bf`` / ``tie_hold`` queries of an instance, and
    with ``multi_case`` the two-box ``multi`` query (module docstring)."""
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
    # a known violation is one the replay's single-row forward pass confirms: on the
    # ``far`` / ``ulp`` nets the batch pass sums in another order and differs by O(1)
    for k in np.argsort(-mm)[: 16]:
        if mm[k] >= 0 and bool(case.unsafe.satisfied(network.forward(X[k]))):
            q.truth, q.witness = "violated", X[k]
            break
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
    if multi_case:
        x = X[int(np.argmax(mm))]
        # the margin of the single-row forward pass (the replay's): on the far nets the
        # batch pass sums in another order, and differs by far more than the tie
        m1 = float(case.unsafe.max_margin(network.forward(x)[None, :])[0])
        q = _multi_query(inst, network, terms, x, m1, rel)
        if q is not None:
            out.append(q)
    inst.queries = out
    return out


def _multi_query(inst: Instance, network, terms, x: np.ndarray, m: float, rel: float
                 ) -> Query | None:
    """Two cases split at ``x`` along the first free coordinate; ``x`` violates the
    near-tie terms of one of them (drawn from a separate stream, so the other queries of
    a seed do not change when this one is added)."""
    from nnresilience.spec.vnnlib import read_vnnlib

    free = np.flatnonzero(inst.hi > inst.lo)
    if free.size == 0:
        return None
    d = int(free[0])
    left_hi, right_lo = inst.hi.copy(), inst.lo.copy()
    left_hi[d] = right_lo[d] = x[d]
    scale = max(1.0, float(np.abs(network.forward(x)).max()))
    tie = _shift(terms, rel * scale - m)
    # the other half: the same terms 1e-3 of the logits harder, so x (on the shared face)
    # does not violate them and the answer rests on the near-tie half alone
    other = _shift(terms, -m - 1e-3 * scale)
    cases = [(inst.lo, left_hi, other), (right_lo, inst.hi, tie)]
    if np.random.default_rng(inst.seed + 20_000).random() < 0.5:
        cases = [(inst.lo, left_hi, tie), (right_lo, inst.hi, other)]
    text = vnnlib_cases_text(inst.n_outputs, cases)
    prop = read_vnnlib("unseen", text=text)
    ok = prop_replays(network, prop, x)
    return Query(f"multi{rel:g}", text, "violated" if ok else None, x if ok else None)


def prop_replays(network, prop, x) -> bool:
    """Does ``x`` lie in some case's region (no tolerance) and violate that case?"""
    x = np.asarray(x, dtype=np.float64)
    y = network.forward(x)
    return any(x.shape == c.region.lo.shape and c.region.contains(x, 0.0)
               and bool(c.unsafe.satisfied(y)) for c in prop.cases)


def judge_property(network, prop, status: str, x, truth: str | None) -> str:
    """:func:`judge` for a property of any number of cases."""
    if len(prop.cases) == 1:
        return judge(network, prop.cases[0], status, x, truth)
    if status == "violated":
        if x is None:
            return "violated without a counterexample"
        if not prop_replays(network, prop, x):
            return "counterexample outside every box or does not replay"
        if truth == "holds":
            return "violated on a brute-force hold"
    if status == "holds" and truth == "violated":
        return "holds on a known violation"
    return ""


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
