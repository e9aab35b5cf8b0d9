"""Filtered smart branching: the cheap split estimates track the sound bounds of the
children they stand for, and the split chosen by them is one whose better child is (up to
the estimate's float32 slack) the best of the candidates, soundly re-bounded."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.search.decide import CaseProblem, SearchSettings
from nnresilience.search.rules import filtered_choice, split_candidates
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion
from nnresilience.testing.bruteforce import random_network

pytest.importorskip("torch")


def _problem(seed: int, kind: str):
    rng = np.random.default_rng(seed)
    net = random_network(rng, [4, 10, 10, 3], kind)
    case = Case(InputRegion(-np.ones(4), np.ones(4)),
                OutputCondition((Conjunction(rng.normal(size=(1, 3)), np.zeros(1)),), 3))
    return CaseProblem(net, case, settings=SearchSettings(bounder="alpha", rule="neuron",
                                                          branch_candidates=6))


def _children(problem, doms, res, layer: int, neuron: int):
    """The two children of one split, bounded soundly from the parent's state (no
    optimisation steps: the float64 pass of the parent's parameters)."""
    width = problem.net.layers[layer].in_size
    kids = doms.take([0, 0])
    clo, chi = kids.clamp_arrays(layer, width)
    chi[0, neuron] = min(chi[0, neuron], 0.0)
    clo[1, neuron] = max(clo[1, neuron], 0.0)
    kids.clamps[layer] = (clo, chi)
    warm = res.select([0, 0]).state
    out = problem.bounder.bound(kids.lo, kids.hi, kids.clamps, iters=0, warm=warm)
    return out.lower[:, 0]


@pytest.mark.parametrize("seed,kind", [(3, "relu"), (11, "leaky"), (29, "relu")])
def test_estimates_track_the_sound_children_and_the_choice_is_the_best(seed, kind):
    problem = _problem(seed, kind)
    doms = problem.root()
    res = problem.bound(doms, None).result
    cands = split_candidates(problem.net, res, doms)
    layers, neurons = [], []
    for i, s in cands.items():
        for j in np.flatnonzero(s[0] >= 0):
            layers.append(i)
            neurons.append(int(j))
    assert len(layers) >= 4, "the random net should have unstable neurons"
    est = problem.bounder.split_estimates(res, np.zeros(len(layers), int), layers, neurons)
    assert est.shape == (len(layers), 2, 1)
    sound = np.array([_children(problem, doms, res, i, j)
                      for i, j in zip(layers, neurons, strict=True)])
    # the estimate is the sound bound's start without a multiplier on the new split, in
    # float32 and on the (slightly wider) reported boxes: never meaningfully above it
    tol = 1e-4 * (1.0 + np.abs(sound))
    assert np.all(est[:, :, 0] <= sound + tol)
    # ... and not a constant: the children really differ between candidates
    assert np.ptp(est[:, :, 0].max(axis=1)) > 1e-6

    got = filtered_choice(problem, res, cands, 6)
    assert got is not None
    cl, cj = int(got[0][0]), int(got[1][0])
    # the chosen neuron is one of the 6 best-scored unstable neurons
    flat = sorted(((cands[i][0, j], i, j) for i, j in zip(layers, neurons, strict=True)),
                  reverse=True)
    top = [(i, j) for _, i, j in flat[:6]]
    assert (cl, cj) in top
    # it is the candidate with the best estimated better child ...
    index = {(i, j): k for k, (i, j) in enumerate(zip(layers, neurons, strict=True))}
    est_top = np.array([est[index[c]].max() for c in top])
    pick = top.index((cl, cj))
    assert est_top[pick] == est_top.max()
    # ... and, soundly re-bounded, its better child is at least that estimate
    best_sound = _children(problem, doms, res, cl, cj).max()
    assert best_sound >= est_top.max() - 1e-4 * (1.0 + abs(best_sound))
