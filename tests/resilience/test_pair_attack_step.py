"""The L1 step of the pair attack on a huge need over a tiny gradient: capped by the box
room, without a float overflow warning reaching the user (seen in the resilience sweep
on a sigmoid/tanh net with logits of 1e8)."""

from __future__ import annotations

import warnings

import numpy as np

from nnresilience.resilience.pair_attack import _step_to


def test_l1_step_with_a_tiny_gradient_is_capped_without_a_warning():
    x = np.array([[0.0, 0.5]])
    g = np.array([[1e-300, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _step_to(x, np.array([-1e10]), g, 0.0, np.zeros(2), np.ones(2), "l1")
    assert out.tolist() == [[1.0, 0.5]]      # the room of coordinate 0, nothing else
