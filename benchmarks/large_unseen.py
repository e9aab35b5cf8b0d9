"""Larger unseen networks: deadlines, peak memory and wrong answers, measured from outside.

The other sweeps build tiny nets; users bring MNIST/CIFAR-sized ones. This script generates
six ONNX networks (``ir_version`` 8, opset 13, random weights from a fixed seed, scaled so
the hidden units are neither all dead nor saturated; the table of shapes prints the measured
fraction of active / saturated units at the sample):

``mnist_conv``   1x28x28 Conv(8)+BatchNorm+Relu+MaxPool, Conv(16)+BatchNorm+Relu+AveragePool,
                 Flatten, Gemm 100, Relu, Gemm 10
``cifar_conv``   3x32x32 Conv(16, stride 2)+BatchNorm+Relu, Conv(32, stride 2)+Relu, MaxPool,
                 Reshape, Gemm 128, Relu, Gemm 10
``deep_sigmoid`` 784 -> 10 x 100 Sigmoid -> 10
``deep_tanh``    50 -> 12 x 64 Tanh -> 10
``wide_leaky``   784 -> 2000 -> 1500 -> 1000 LeakyRelu(0.1) -> 10
``mnist_relu8``  784 -> 8 x 256 Relu (MatMul + Add) -> 10

and two properties per net: an L-inf ball around a sample x0 in [0, 1]^n (clipped to the
domain) and "output 0 stays the top class" (the output bias is shifted so that class 0 wins
at x0). ``hold`` uses a small epsilon, ``viol`` the smallest epsilon of a ladder where an
independent PGD attack (torch, on a torch copy of the weights, not the tool's code) finds a
violation that replays in float64.

Every entry point runs in a fresh subprocess (``python -m nnresilience ...`` for the CLI,
``python -c`` for the API), timed from outside; peak RSS is the child's ``ru_maxrss``
(``os.wait4``). A row is **within** when the process ends by T + max(1 s, 5 %) (the API rows:
the call, measured inside; the process time adds start-up). A row is **WRONG** when it says
``holds`` and the attack found a violation, or ``violated`` with a counterexample that does
not violate the property in float64 (the tool's forward pass) and in onnxruntime. A traceback
on stderr is a failure whatever the exit code.

    python benchmarks/large_unseen.py                      # everything, T = 2, 5, 10 (~35 min)
    python benchmarks/large_unseen.py --timeouts 5 --nets deep_tanh --rows "verify"
    python benchmarks/large_unseen.py --shapes             # only the shapes table
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 2026
NETS = ("mnist_conv", "cifar_conv", "deep_sigmoid", "deep_tanh", "wide_leaky", "mnist_relu8")
#: nets on which the whole-domain resilience queries run too
RESILIENCE_NETS = ("deep_tanh", "mnist_relu8", "mnist_conv")
EPS_HOLD = 1e-4
EPS_LADDER = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


# ------------------------------------------------------------------ networks as layer specs
def _spec(name: str, rng: np.random.Generator) -> tuple[list[int], list[tuple]]:
    """``(input shape, layers)``; a layer is a tuple ``(kind, params...)``."""
    def conv(cin, cout, k, s, p, gain=np.sqrt(2.0)):
        W = rng.normal(0.0, gain / np.sqrt(cin * k * k), (cout, cin, k, k))
        return ("conv", W, rng.normal(0.0, 0.1, cout), s, p)

    def bn(c):
        return ("bn", rng.uniform(0.5, 1.5, c), rng.normal(0.0, 0.1, c),
                rng.normal(0.0, 0.2, c), rng.uniform(0.5, 2.0, c))

    def gemm(n_in, n_out, gain=np.sqrt(2.0), bs=0.1):
        return ("gemm", rng.normal(0.0, gain / np.sqrt(n_in), (n_out, n_in)),
                rng.normal(0.0, bs, n_out))

    if name == "mnist_conv":
        return [1, 1, 28, 28], [conv(1, 8, 3, 1, 1), bn(8), ("relu",), ("maxpool", 2, 2),
                                conv(8, 16, 3, 1, 1), bn(16), ("relu",), ("avgpool", 2, 2),
                                ("flatten",), gemm(784, 100), ("relu",), gemm(100, 10)]
    if name == "cifar_conv":
        return [1, 3, 32, 32], [conv(3, 16, 4, 2, 1), bn(16), ("relu",),
                                conv(16, 32, 4, 2, 1), ("relu",), ("maxpool", 2, 2),
                                ("reshape",), gemm(512, 128), ("relu",), gemm(128, 10)]
    if name in ("deep_sigmoid", "deep_tanh"):
        n, depth, width, act = ((784, 10, 100, "sigmoid") if name == "deep_sigmoid"
                                else (50, 12, 64, "tanh"))
        layers, prev = [], n
        for _ in range(depth):
            # zero-mean inputs to each layer: sigmoid outputs sit around 0.5, so the bias
            # cancels the mean drive (otherwise deep sigmoid stacks saturate)
            gain = 6.0 if act == "sigmoid" else 2.0
            W = rng.normal(0.0, gain / np.sqrt(prev), (width, prev))
            centre = 0.5 if (act == "sigmoid" or prev == n) else 0.0
            b = -W.sum(axis=1) * centre + rng.normal(0.0, 0.1, width)
            layers += [("gemm", W, b), (act,)]
            prev = width
        return [1, n], layers + [gemm(prev, 10, gain=1.0)]
    if name == "wide_leaky":
        sizes, layers = [784, 2000, 1500, 1000], []
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [gemm(a, b), ("leaky", 0.1)]
        return [1, 784], layers + [gemm(1000, 10, gain=1.0)]
    if name == "mnist_relu8":
        layers, prev = [], 784
        for _ in range(8):
            layers += [("matmul",) + gemm(prev, 256)[1:], ("relu",)]
            prev = 256
        return [1, 784], layers + [("matmul",) + gemm(256, 10, gain=1.0)[1:]]
    raise ValueError(name)


def _onnx(in_shape: list[int], layers: list[tuple]):
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, cur = [], [], "x"

    def const(a, dtype=np.float32):
        name = f"c{len(inits)}"
        inits.append(numpy_helper.from_array(np.asarray(a, dtype), name))
        return name

    def op(kind, *extra, **attrs):
        nonlocal cur
        out = f"{kind.lower()}{len(nodes)}"
        nodes.append(helper.make_node(kind, [cur, *extra], [out], name=out, **attrs))
        cur = out

    for L in layers:
        k = L[0]
        if k == "conv":
            _, W, b, s, p = L
            op("Conv", const(W), const(b), kernel_shape=list(W.shape[2:]), strides=[s, s],
               pads=[p] * 4)
        elif k == "bn":
            op("BatchNormalization", *(const(a) for a in L[1:]), epsilon=1e-5)
        elif k in ("relu", "sigmoid", "tanh"):
            op({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[k])
        elif k == "leaky":
            op("LeakyRelu", alpha=float(L[1]))
        elif k in ("maxpool", "avgpool"):
            op("MaxPool" if k == "maxpool" else "AveragePool", kernel_shape=[L[1]] * 2,
               strides=[L[2]] * 2)
        elif k == "flatten":
            op("Flatten", axis=1)
        elif k == "reshape":
            op("Reshape", const(np.array([1, -1]), np.int64))
        elif k == "gemm":
            op("Gemm", const(L[1]), const(L[2]), transB=1)
        elif k == "matmul":
            op("MatMul", const(L[1].T))
            op("Add", const(L[2]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, 10])
    g = helper.make_graph(nodes, "large_unseen", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8,
                             producer_name="nnresilience-large-unseen")


def _torch(in_shape: list[int], layers: list[tuple]):
    """The same network in torch (float32 weights as stored in the ONNX file): the attack's
    forward pass, independent of the tool's."""
    import torch
    from torch import nn

    mods: list = [nn.Unflatten(1, tuple(in_shape[1:]))]
    for L in layers:
        k = L[0]
        if k == "conv":
            _, W, b, s, p = L
            c = nn.Conv2d(W.shape[1], W.shape[0], W.shape[2], stride=s, padding=p)
            c.weight.data = torch.tensor(W, dtype=torch.float32)
            c.bias.data = torch.tensor(b, dtype=torch.float32)
            mods.append(c)
        elif k == "bn":
            bn = nn.BatchNorm2d(len(L[1]), eps=1e-5)
            for t, a in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), L[1:],
                            strict=True):
                t.data = torch.tensor(a, dtype=torch.float32)
            mods.append(bn)
        elif k == "relu":
            mods.append(nn.ReLU())
        elif k == "sigmoid":
            mods.append(nn.Sigmoid())
        elif k == "tanh":
            mods.append(nn.Tanh())
        elif k == "leaky":
            mods.append(nn.LeakyReLU(L[1]))
        elif k == "maxpool":
            mods.append(nn.MaxPool2d(L[1], L[2]))
        elif k == "avgpool":
            mods.append(nn.AvgPool2d(L[1], L[2]))
        elif k in ("flatten", "reshape"):
            mods.append(nn.Flatten())
        elif k in ("gemm", "matmul"):
            lin = nn.Linear(L[1].shape[1], L[1].shape[0])
            lin.weight.data = torch.tensor(L[1], dtype=torch.float32)
            lin.bias.data = torch.tensor(L[2], dtype=torch.float32)
            mods.append(lin)
    return nn.Sequential(*mods).eval()


def _activity(model, x0: np.ndarray) -> str:
    """Fraction of active (ReLU/Leaky > 0) or unsaturated (sigmoid/tanh slope > 0.05)
    hidden units at ``x0``: evidence the scaling is neither all-dead nor saturated."""
    import torch
    from torch import nn

    act, tot, h = 0, 0, torch.tensor(x0[None], dtype=torch.float32)
    with torch.no_grad():
        for m in model:
            pre = h
            h = m(h)
            if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
                act += int((pre > 0).sum())
                tot += pre.numel()
            elif isinstance(m, (nn.Sigmoid, nn.Tanh)):
                slope = h * (1 - h) if isinstance(m, nn.Sigmoid) else 1 - h * h
                act += int((slope > 0.05).sum())
                tot += pre.numel()
    return f"{act / max(tot, 1):.2f} of {tot}"


# ------------------------------------------------------------------ attack (independent)
def _margin(y, target: int = 0):
    """max_j y_j - y_0 over j != 0: > = 0 means class 0 is not the strict top (unsafe)."""
    import torch
    others = torch.cat([y[:, :target], y[:, target + 1:]], dim=1)
    return others.max(dim=1).values - y[:, target]


def pgd(model, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, steps: int = 100,
        restarts: int = 16, seed: int = 0) -> np.ndarray | None:
    """Batched multi-restart PGD on the unsafe margin; a point whose float64 margin
    (torch, double) is >= 0, or None."""
    import copy

    import torch

    g = torch.Generator().manual_seed(seed)
    tlo, thi = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    x = tlo + (thi - tlo) * torch.rand((restarts, len(lo)), generator=g)
    x[0] = torch.tensor(x0, dtype=torch.float32).clamp(tlo, thi)
    step = (thi - tlo) / 8
    for i in range(steps):
        x.requires_grad_(True)
        m = _margin(model(x))
        (grad,) = torch.autograd.grad(m.sum(), x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x + step * grad.sign(), tlo), thi)
        if i % 25 == 24:
            step = step / 2
    md = copy.deepcopy(model).double()
    with torch.no_grad():
        xd = x.double()
        m = _margin(md(xd))
    k = int(torch.argmax(m))
    return xd[k].numpy() if float(m[k]) >= 0 else None


# ------------------------------------------------------------------ instances
def build(name: str, folder: Path) -> dict:
    """Write ``name``.onnx, its properties (VNN-LIB), the sample (.npy); return the facts."""
    import onnx
    import torch

    torch.set_num_threads(1)  # the attack is small; more threads only contend on 2 cores
    rng = np.random.default_rng([SEED, NETS.index(name)])
    in_shape, layers = _spec(name, rng)
    n = int(np.prod(in_shape[1:]))
    x0 = rng.uniform(0.0, 1.0, n)
    model = _torch(in_shape, layers)
    with torch.no_grad():
        y = model(torch.tensor(x0[None], dtype=torch.float32))[0].double().numpy()
    # class 0 wins at x0 by a margin of half the spread of the logits (at least 0.5)
    shift = float(np.max(y[1:]) - y[0]) + max(0.5, 0.5 * float(np.std(y)))
    last = layers[-1]
    b = last[-1].copy()
    b[0] += shift
    layers[-1] = last[:-1] + (b,)
    model = _torch(in_shape, layers)
    path = folder / f"{name}.onnx"
    onnx.save(_onnx(in_shape, layers), str(path))
    np.save(folder / f"{name}_x0.npy", x0[None])
    facts = {"name": name, "model": str(path), "n": n, "x0": x0, "torch": model,
             "active": _activity(model, x0), "props": {},
             "pwl": not any(L[0] in ("sigmoid", "tanh") for L in layers)}
    eps_viol = None
    for eps in EPS_LADDER:
        lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
        if pgd(model, x0, lo, hi, steps=40, restarts=8) is not None:
            eps_viol = eps
            break
    for tag, eps in (("hold", EPS_HOLD), ("viol", eps_viol)):
        if eps is None:
            continue
        lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
        attack = pgd(model, x0, lo, hi, steps=100, restarts=16, seed=1)
        p = folder / f"{name}_{tag}.vnnlib"
        p.write_text(_vnnlib(lo, hi))
        facts["props"][tag] = {"path": str(p), "eps": eps, "lo": lo, "hi": hi,
                               "attack": attack}
    return facts


def _vnnlib(lo: np.ndarray, hi: np.ndarray) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        lines += [f"(assert (>= X_{i} {float(a)!r}))", f"(assert (<= X_{i} {float(b)!r}))"]
    terms = " ".join(f"(and (>= Y_{j} Y_0))" for j in range(1, 10))
    return "\n".join(lines + [f"(assert (or {terms}))"]) + "\n"


def replays(facts: dict, tag: str, x) -> str:
    """'' when ``x`` is in the box and violates the property in float64 (the tool's forward)
    and in onnxruntime; otherwise why not."""
    from nnresilience.loaders import load_network
    from nnresilience.loaders.onnx import onnxruntime_forward

    pr = facts["props"][tag]
    x = np.asarray(x, np.float64).ravel()
    if x.shape != pr["lo"].shape or np.any(x < pr["lo"]) or np.any(x > pr["hi"]):
        return "counterexample outside the box"
    net = facts.setdefault("_net", load_network(facts["model"]))
    y64 = net.forward(x)
    if np.max(y64[1:]) < y64[0]:
        return f"float64 margin {np.max(y64[1:]) - y64[0]:.3g} < 0"
    yo = onnxruntime_forward(net, x)
    if yo is not None and np.max(yo[1:]) < yo[0] - 1e-5 * max(1.0, float(np.max(np.abs(yo)))):
        return f"onnxruntime margin {np.max(yo[1:]) - yo[0]:.3g} < 0"
    return ""


# ------------------------------------------------------------------ rows
_API = {
    "verify": """
from nnresilience.verify import verify
net = load_network(MODEL); prop = read_vnnlib(PROP, net.n_inputs, net.n_outputs)
t = time.monotonic(); r = verify(net, prop, engine=ENGINE, timeout=T); dt = time.monotonic() - t
ce = None if r.counterexample is None else list(r.counterexample.x)
print(json.dumps({"call": dt, "answer": r.status.value, "x": ce}))
""",
    "compute_bounds": """
from nnresilience.bounds import compute_bounds
net = load_network(MODEL); prop = read_vnnlib(PROP, net.n_inputs, net.n_outputs)
t = time.monotonic(); b = compute_bounds(net, prop.cases[0].region, method=ENGINE, timeout=T)
dt = time.monotonic() - t
print(json.dumps({"call": dt, "answer": f"timed_out={b.stats.get('timed_out')}"}))
""",
}
_API_SETUP = """
import json, time
from nnresilience.loaders import load_network
from nnresilience.spec.vnnlib import read_vnnlib
"""


def rows_for(facts: dict, T: float, folder: Path) -> list[tuple[str, str, str | None, list]]:
    """``(label, kind, prop tag, argv)``: kind 'api' (argv = [snippet, engine]) or 'cli'."""
    m, name, out = facts["model"], facts["name"], []
    for tag, pr in facts["props"].items():
        p = pr["path"]
        out.append((f"verify(engine=auto) API [{tag}]", "api", tag, ["verify", "auto", p]))
        for eng in ("auto", "bab", "milp", "reluplex"):
            if (tag == "viol" and eng != "auto") or (eng == "reluplex" and not facts["pwl"]):
                continue
            ce = str(folder / f"{name}_{tag}_{eng}_{T:g}.json")
            out.append((f"nnres verify --engine {eng} [{tag}]", "cli", tag,
                        ["verify", m, p, "--engine", eng, "--timeout", f"{T:g}", "-q",
                         "--counterexample", ce]))
        if tag == "hold":
            out.append((f"nnres vnncomp [{tag}]", "cli", None,
                        ["vnncomp", m, p, str(folder / f"{name}_{T:g}.res"), f"{T:g}"]))
            for meth in ("interval", "symbolic", "lp", "milp:1"):
                out.append((f"nnres bounds -m {meth}", "cli", None,
                            ["bounds", m, p, "--method", meth, "--timeout", f"{T:g}", "-q"]))
            out.append(("compute_bounds(lp) API", "api", None, ["compute_bounds", "lp", p]))
    if name in RESILIENCE_NETS:
        x0 = str(folder / f"{name}_x0.npy")
        js = str(folder / f"{name}_{T:g}")
        out += [
            ("nnres resilience -m 0 --norm linf", "cli", None,
             ["resilience", m, "--class", "0", "--alpha", "1.5", "--norm", "linf", "--domain",
              "0:1", "--timeout", f"{T:g}", "-q", "--json", f"{js}_res.json"]),
            ("nnres alpha-max -m 0", "cli", None,
             ["alpha-max", m, "--class", "0", "--domain", "0:1", "--timeout", f"{T:g}", "-q",
              "--json", f"{js}_amax.json"]),
            ("nnres min-perturbation --norm linf", "cli", None,
             ["min-perturbation", m, "--data", x0, "--norm", "linf", "--domain", "0:1",
              "--timeout", f"{T:g}", "-q", "--json", f"{js}_minp.json"]),
        ]
    return out


def run_child(argv: list[str], budget: float) -> tuple[float, float, int, str, str]:
    """``(wall s, peak RSS MiB, exit code, stdout, stderr)`` of one fresh process.

    Peak RSS comes from ``/usr/bin/time`` (GNU time, "%M"): ``ru_maxrss`` read by this
    process would include the RSS of this (torch-loaded) parent, which a forked child
    inherits as its high-water mark until it execs."""
    timer = ["/usr/bin/time", "-f", "%M", "-o"] if Path("/usr/bin/time").exists() else []
    with tempfile.TemporaryDirectory() as td:
        fo, fe, fr = (Path(td) / n for n in ("out", "err", "rss"))
        with open(fo, "wb") as so, open(fe, "wb") as se:
            t0 = time.monotonic()
            p = subprocess.Popen(timer + [str(fr)] * bool(timer) + argv, stdout=so, stderr=se,
                                 start_new_session=True)
            try:
                code = p.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                code = -9
            wall = time.monotonic() - t0
        out, err = fo.read_text(errors="replace"), fe.read_text(errors="replace")
        rss_txt = fr.read_text().strip().splitlines() if fr.exists() else []
    try:
        rss = float(rss_txt[-1]) / 1024.0
    except (IndexError, ValueError):
        rss = float("nan")
    return wall, rss, code, out, err


def _answer_cli(argv: list[str], out: str) -> tuple[str, dict | None]:
    """The answer in a few words, and the first result of a ``--json`` file if any."""
    if argv[0] == "vnncomp":
        try:
            return Path(argv[3]).read_text().split("\n")[0].strip(), None
        except OSError:
            return "(no result file)", None
    lines = [s for s in out.strip().splitlines() if s.strip()]
    if argv[0] == "verify":
        return (lines[0].split()[0] if lines else "(no output)"), None
    if argv[0] == "bounds":
        tail = [s for s in lines if "timed out" in s.lower()]
        return ("timed out (sound so far)" if tail else "complete"), None
    try:
        r = json.loads(Path(argv[argv.index("--json") + 1]).read_text())["results"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return "(no json)", None
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    return f"[{fmt(r['lower'])}, {fmt(r['upper'])}]{' optimal' if r['optimal'] else ''}", r


def _check_interval(f: dict, argv: list[str], r: dict) -> str:
    """Cross-checks of the resilience answers against what the attack and x0 show."""
    import math

    lower, upper = r.get("lower"), r.get("upper")
    if lower is not None and upper is not None and lower > upper * (1 + 1e-9):
        return f"WRONG: lower {lower} > upper {upper}"
    viol = f["props"].get("viol")
    if argv[0] in ("min-perturbation", "resilience") and viol and viol["attack"] is not None:
        d = float(np.max(np.abs(viol["attack"] - f["x0"])))
        if lower is not None and lower > d * (1 + 1e-9):
            return f"WRONG: lower {lower:.4g} > attack distance {d:.4g}"
        return f"lower <= attack distance {d:.3g}"
    if argv[0] == "alpha-max":
        from nnresilience.loaders import load_network
        net = f.setdefault("_net", load_network(f["model"]))
        y = net.forward(f["x0"])
        ratio = math.exp(float(y[0] - np.max(y[1:])))
        if upper is not None and upper < ratio * (1 - 1e-9):
            return f"WRONG: upper {upper:.4g} < ratio at x0 {ratio:.4g}"
        return f"upper >= ratio at x0 {ratio:.3g}"
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeouts", default="2,5,10")
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--rows", default="", help="substring filter on the row labels")
    ap.add_argument("--shapes", action="store_true", help="only build and print the shapes")
    ap.add_argument("--dir", default=None, help="keep the generated files here")
    args = ap.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="nnres_large_"))
    folder.mkdir(parents=True, exist_ok=True)
    nets = [n for n in args.nets.split(",") if n]
    from nnresilience.loaders import load_network

    shapes = ["| net | inputs | layers (IR) | params | active / unsaturated units at x0 | "
              "hold eps: attack | viol eps: attack |", "|---|---:|---:|---:|---|---|---|"]
    built = []
    for name in nets:
        f = build(name, folder)
        net = load_network(f["model"])
        params = sum(int(p.numel()) for p in f["torch"].parameters())
        cells = []
        for tag in ("hold", "viol"):
            pr = f["props"].get(tag)
            cells.append("-" if pr is None else
                         f"{pr['eps']:g}: {'violation' if pr['attack'] is not None else 'none'}")
        shapes.append(f"| {name} | {f['n']} | {len(net.layers)} | {params} | {f['active']} | "
                      f"{cells[0]} | {cells[1]} |")
        print(shapes[-1], flush=True)
        built.append(f)
    if args.shapes:
        print("\n".join(shapes))
        return 0
    table = ["| net | entry point | T (s) | limit (s) | call (s) | process (s) | peak RSS (MiB) "
             "| answer | within | check |", "|---|---|---:|---:|---:|---:|---:|---|:---:|---|"]
    problems = 0
    for T in (float(t) for t in args.timeouts.split(",")):
        limit = T + max(1.0, 0.05 * T)
        for f in built:
            for label, kind, tag, a in rows_for(f, T, folder):
                if args.rows and args.rows not in label:
                    continue
                if kind == "api":
                    snippet, eng, prop = a
                    code = (_API_SETUP + f"MODEL = {f['model']!r}\nPROP = {prop!r}\n"
                            f"T = {T}\nENGINE = {eng!r}\n" + _API[snippet])
                    wall, rss, rc, out, err = run_child([sys.executable, "-c", code],
                                                        4 * T + 60)
                    try:
                        info = json.loads(out.strip().splitlines()[-1])
                        call, answer, x = info["call"], info["answer"], info.get("x")
                    except (json.JSONDecodeError, KeyError, IndexError):
                        call, answer, x = None, f"exit {rc}", None
                    ok = call is not None and call <= limit
                    res = None
                else:
                    wall, rss, rc, out, err = run_child(
                        [sys.executable, "-m", "nnresilience", *a], 4 * T + 60)
                    call, x = None, None
                    answer, res = _answer_cli(a, out)
                    if a[0] == "verify" and answer == "violated":
                        try:
                            x = json.loads(Path(a[a.index("--counterexample") + 1])
                                           .read_text())["x"]
                        except (OSError, KeyError, json.JSONDecodeError):
                            x = "missing"
                    ok = wall <= limit and rc in (0, 130)
                check = ""
                if kind == "cli" and res is not None:
                    check = _check_interval(f, a, res)
                if "Traceback" in err or rc not in (0, 130):
                    check = f"FAIL exit {rc}: {(err.strip().splitlines() or [''])[-1][:70]}"
                elif answer in ("holds", "unsat") and tag and \
                        f["props"][tag]["attack"] is not None:
                    check = "WRONG: attack found a violation"
                elif answer == "violated" and tag:
                    why = "no counterexample" if x in (None, "missing") else replays(f, tag, x)
                    check = f"WRONG: {why}" if why else "replays (f64 + ort)"
                elif answer in ("holds", "unsat"):
                    check = "attack: none found"
                if check.startswith(("FAIL", "WRONG")) or not ok:
                    problems += 1
                table.append(f"| {f['name']} | {label} | {T:g} | {limit:.2f} | "
                             f"{'-' if call is None else f'{call:.2f}'} | {wall:.2f} | "
                             f"{rss:.0f} | {answer} | {'yes' if ok else 'NO'} | {check} |")
                print(table[-1], flush=True)
    print()
    print("\n".join(shapes))
    print()
    print("\n".join(table))
    print(f"\n{problems} problem rows (overrun, failure or wrong answer); files in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
