"""``CrownBounder`` on the shared benchmark networks (MNIST-FC 256x2, ACAS Xu 1_1).

10^4 sampled inputs per domain (random vertices and uniform points; all 32 corners of an
ACAS box) never leave the spec-row bounds or any layer's box; the optimised bounds prove
more spec rows than symbolic back-substitution on an MNIST property.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.bounds import compute_bounds
from nnresilience.bounds.crown import CrownBounder

from .helpers import sample_box


def _spec(path, net):
    from nnresilience.spec.vnnlib import read_vnnlib

    case = read_vnnlib(path, net.n_inputs, net.n_outputs).cases[0]
    C = np.vstack([t.A for t in case.unsafe.terms])
    thr = np.concatenate([t.b for t in case.unsafe.terms])
    return case.region.lo, case.region.hi, C, thr


def _contains(net, res, C, d, X):
    vals = net.forward_all(X)
    assert np.all(res.lower[d] <= vals[-1] @ C.T)
    for e, v in enumerate(vals):
        assert np.all(res.pre_lo[e][d] <= v) and np.all(v <= res.pre_hi[e][d])


@pytest.mark.slow
def test_mnist_256x2_alpha_sound_and_proves_more_rows(shared_benchmarks, rng):
    from nnresilience.loaders import load_network
    from nnresilience.network.layers import Affine
    from nnresilience.network.model import Network

    net = load_network(shared_benchmarks / "mnistfc" / "mnist-net_256x2.onnx").merged()
    lo, hi, C, thr = _spec(shared_benchmarks / "mnistfc" / "prop_0_0.03.vnnlib", net)
    last = net.layers[-1]
    folded = Network(net.layers[:-1] + [Affine(C @ last.W, C @ last.b)])
    sym = compute_bounds(folded, (lo, hi), method="symbolic").lo[-1]
    res = CrownBounder(net, C, threshold=thr).bound(lo[None], hi[None], iters=20)
    assert np.all(res.lower[0] >= sym - 1e-8 * (1 + np.abs(sym)))
    assert int((res.lower[0] > thr).sum()) > int((sym > thr).sum())
    _contains(net, res, C, 0, sample_box(lo, hi, 10_000, rng))


@pytest.mark.slow
def test_acas_input_splits_sound(shared_benchmarks, rng):
    from nnresilience.loaders import load_network

    net = load_network(shared_benchmarks / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx")
    net = net.merged()
    lo, hi, C, thr = _spec(shared_benchmarks / "acasxu" / "prop_3.vnnlib", net)
    b = CrownBounder(net, C, threshold=thr)
    root = b.bound(lo[None], hi[None], iters=10)
    # 8 children: halve the three widest input dimensions
    k = np.argsort(hi - lo)[-3:]
    los = np.repeat(lo[None], 8, 0)
    his = np.repeat(hi[None], 8, 0)
    mid = 0.5 * (lo + hi)
    for d in range(8):
        for q, dim in enumerate(k):
            if (d >> q) & 1:
                los[d, dim] = mid[dim]
            else:
                his[d, dim] = mid[dim]
    kids = b.bound(los, his, iters=10, warm=root.state.select(np.zeros(8, dtype=int)))
    assert kids.stats["mode"] == "crown"
    assert np.all(kids.lower >= root.lower)
    for d in range(8):
        _contains(net, kids, C, d, sample_box(los[d], his[d], 2_000, rng))
