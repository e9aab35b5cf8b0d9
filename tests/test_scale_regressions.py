"""Deadlines and memory on larger networks (benchmarks/large_unseen.py, RESULTS §10).

Each test reproduces, at the smallest size that still shows it, a problem the sweep of
larger unseen networks found: a back-substitution chunk or an LP presolve that ran past
the deadline, a falsifier that densified convolution matrices, and root bounds that left
the falsifier no time.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import nnresilience.verify as V
from nnresilience.bounds import compute_bounds
from nnresilience.network.layers import Affine, LeakyReLU, ReLU
from nnresilience.network.model import sequential
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition, misclassification
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion


def _promise(T: float) -> float:
    return T + max(1.0, 0.05 * T)


def _mlp(sizes: list[int], act, seed: int) -> object:
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(Affine(rng.normal(0.0, np.sqrt(2.0 / a), (b, a)), rng.normal(0, .1, b)))
        if i < len(sizes) - 2:
            layers.append(act(b))
    return sequential(layers)


def test_symbolic_chunks_fit_in_the_time_left():
    """3072-2000-2000-2000-2000-10: one back-substitution chunk of the fourth hidden layer
    (651 rows through three 2000-wide layers and 2000 x 3072) takes seconds; the clock used
    to be read only between chunks, so a chunk started just before the deadline ran to its
    end (3.4 s for compute_bounds(timeout=2) on the sweep's 784-2000-1500-1000 net)."""
    from nnresilience.bounds.interval import interval_bounds
    from nnresilience.bounds.symbolic import RelaxationCache, symbolic_entry

    net = _mlp([3072, 2000, 2000, 2000, 2000, 10], lambda n: LeakyReLU(n, 0.1), seed=0)
    x = np.random.default_rng(1).uniform(0, 1, 3072)
    lo0, hi0 = np.clip(x - 0.02, 0, 1), np.clip(x + 0.02, 0, 1)
    ib = interval_bounds(net, lo0, hi0)
    cache = RelaxationCache(net.layers, list(ib.lo), list(ib.hi))
    T = 0.2
    t = time.perf_counter()
    got = symbolic_entry(net.layers, 7, cache, lo0, hi0, deadline=t + T)
    took = time.perf_counter() - t
    assert got is None                        # 2000 rows do not fit in 0.2 s
    assert took <= _promise(T)
    # the rows that fit are still bounded the same way (soundness is not traded for time)
    rows = np.arange(4)
    lo, hi = symbolic_entry(net.layers, 7, cache, lo0, hi0, rows=rows,
                            deadline=time.perf_counter() + 60)
    y = net.forward_all(x[None, :])[6][0][rows]
    assert np.all(lo <= y) and np.all(y <= hi)


def test_lp_bounds_keep_the_deadline_despite_presolve():
    """784 inputs, 8 x 256 ReLU (the sweep's ``mnist_relu8``: same draws, float32 weights as
    in its ONNX file), a box of radius 1e-4: HiGHS's LP presolve of a 1536-row LP with
    dense 784-wide rows does not read the clock; it ran 4.5 s past a 0.5 s limit."""
    rng = np.random.default_rng([2026, 5])
    layers, prev = [], 784
    for n in [256] * 8 + [10]:
        gain = np.sqrt(2.0) if n == 256 else 1.0
        W = rng.normal(0.0, gain / np.sqrt(prev), (n, prev)).astype(np.float32)
        b = rng.normal(0.0, 0.1, n).astype(np.float32)
        layers += [Affine(W.astype(np.float64), b.astype(np.float64))]
        if n == 256:
            layers.append(ReLU(n))
        prev = n
    net = sequential(layers)
    x = rng.uniform(0.0, 1.0, 784)
    region = InputRegion(np.clip(x - 1e-4, 0, 1), np.clip(x + 1e-4, 0, 1))
    T = 2.0
    t = time.monotonic()
    nb = compute_bounds(net, region, method="lp", timeout=T)
    took = time.monotonic() - t
    assert took <= _promise(T)
    y = net.forward(x)
    assert np.all(nb.output[0] <= y) and np.all(y <= nb.output[1])


def _conv_like_net(seed: int):
    """A 3072 -> 4096 sparse first layer (1 % dense, like a strided convolution)."""
    rng = np.random.default_rng(seed)
    nnz = 4096 * 31
    W1 = sp.csr_matrix((rng.normal(0.0, 0.3, nnz), (rng.integers(0, 4096, nnz),
                                                     rng.integers(0, 3072, nnz))),
                       shape=(4096, 3072))
    return sequential([Affine(W1, rng.normal(0, 0.1, 4096)), ReLU(4096),
                       Affine(rng.normal(0, 0.05, (10, 4096)), np.zeros(10))])


def test_falsifier_keeps_convolution_matrices_sparse():
    """Densified, the falsifier's float32 copy of such a layer is a 50 MB array (100 MB
    in float64 on the way); sparse it is under 2 MB, and the gradients are the same."""
    from nnresilience.falsify import _f32_layers, _Numpy32Grad, term_margin_and_grad

    net = _conv_like_net(4)
    tracemalloc.start()
    layers = _f32_layers(net)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert layers[0][0] == "sparse_affine"
    assert peak < 20e6
    rng = np.random.default_rng(5)
    case = Case(InputRegion(np.zeros(3072), np.ones(3072)), misclassification(0, 10))
    X = rng.uniform(0, 1, size=(4, 3072))
    term = np.arange(4) % 9
    _, g64 = term_margin_and_grad(net, case, X, term)
    g32 = _Numpy32Grad(net, case, term).margin(X)
    assert np.allclose(g32, g64, atol=1e-4, rtol=1e-3)
    pytest.importorskip("torch")
    from nnresilience.falsify import _TorchGrad
    assert np.allclose(_TorchGrad(net, case, term, "cpu").margin(X), g64, atol=1e-4,
                       rtol=1e-3)


def test_slow_root_bounds_leave_the_falsifier_its_share(monkeypatch):
    """Root bounds that use all the time they are given (a wide net) must not starve the
    falsifier. Here the unsafe set is a thin slice near the corner that maximises a
    linear output: a few gradient steps reach it, the box's centre does not."""
    w = np.array([1.0, -2.0, 0.5, 3.0])
    net = sequential([Affine(w[None, :], np.zeros(1))])
    lo, hi = np.zeros(4), np.ones(4)
    top = float(np.maximum(w * lo, w * hi).sum())
    # unsafe: y >= top - 0.05  (A y <= b with A = -1)
    cond = OutputCondition((Conjunction(np.array([[-1.0]]), np.array([-(top - 0.05)])),), 1)
    prop = Property((Case(InputRegion(lo, hi), cond),))
    real = V._compute_bounds
    given = []

    def slow(network, region, method, timeout):
        given.append(timeout)
        time.sleep(max(0.0, timeout or 0.0))       # what a 2000-wide net's bounds do
        return real(network, region, "interval", None)

    monkeypatch.setattr(V, "_compute_bounds", slow)
    T = 1.5
    t = time.monotonic()
    r = V.verify(net, prop, engine="milp", timeout=T)
    assert time.monotonic() - t <= _promise(T)
    # the bounds were given the time left minus the falsifier's share (1 s or a fifth)
    assert given and given[0] <= T - min(1.0, V.FALSIFY_SHARE * T) + 0.05
    assert r.status is Status.VIOLATED
    assert r.stats["cases"][0]["method"] == "falsifier"


def test_bab_root_bounds_of_a_wide_conv_layer_stop_at_the_deadline():
    """The batched bounder of ``bab`` back-substituted the identity of a 6272-unit layer
    (a 12544 x 6272 matrix) in one piece: 13 s and 2 GB at the root of a search with
    3.5 s left (``mnist_conv`` of benchmarks/large_unseen.py). In unit chunks with the
    clock read between them it stops at the deadline, and what it returns is sound."""
    from nnresilience.search.bounder import SymbolicBounder

    rng = np.random.default_rng(7)

    def conv_like(n_out, n_in):
        cols = rng.integers(0, n_in, 9 * n_out)
        return sp.csr_matrix((rng.normal(0.0, 0.4, 9 * n_out),
                              (np.repeat(np.arange(n_out), 9), cols)), shape=(n_out, n_in))

    net = sequential([Affine(conv_like(1568, 784), rng.normal(0, 0.1, 1568)), ReLU(1568),
                      Affine(conv_like(6272, 1568), rng.normal(0, 0.1, 6272)), ReLU(6272),
                      Affine(rng.normal(0, 0.02, (10, 6272)), np.zeros(10))])
    x = rng.uniform(0, 1, 784)
    lo, hi = np.clip(x - 0.05, 0, 1)[None, :], np.clip(x + 0.05, 0, 1)[None, :]
    C = np.eye(10)[1:] - np.eye(10)[0]
    b = SymbolicBounder(net, C)
    T = 0.2
    t = time.monotonic()
    tracemalloc.start()
    res = b.bound(lo, hi, deadline=t + T)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.monotonic() - t <= _promise(T)
    assert peak < 400e6                       # one 12544 x 6272 float64 array is 630 MB
    y = net.forward(x)
    assert np.all(res.lower[0] <= C @ y)
    for k, v in enumerate(net.forward_all(x[None, :])):
        assert np.all(res.pre_lo[k][0] <= v[0]) and np.all(v[0] <= res.pre_hi[k][0])
