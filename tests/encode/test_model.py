"""MilpModel assembles sparse blocks with global column indices."""

import numpy as np
import pytest
import scipy.sparse as sp

from nnresilience.encode.model import MilpModel


def test_blocks_stack_into_one_matrix():
    m = MilpModel()
    x = m.add_vars(2, lb=0, ub=1, name="x")
    b = m.add_binaries(1)
    m.add_terms([0, 0], [x[0], x[1]], [1.0, 1.0], 1, -np.inf, 1.5)
    m.add_rows(sp.coo_matrix(([2.0, -1.0], ([0, 0], [x[0], b[0]])), shape=(1, 3)), 0, 0)
    m.set_objective(x, [1.0, -1.0], offset=2.0)
    m.set_priority(b, 5)
    m.set_start(x, [0.5, 0.5])
    a = m.arrays()
    assert a.A.shape == (2, 3)
    assert np.allclose(a.A.toarray(), [[1, 1, 0], [2, 0, -1]])
    assert list(a.integer) == [False, False, True]
    assert np.allclose(a.c, [1, -1, 0]) and a.offset == 2.0
    assert a.priority[2] == 5 and a.priority[0] == 0
    assert np.isnan(a.start[2]) and a.start[0] == 0.5
    assert a.names[0] == "x[0]" and a.n_integer == 1


def test_block_referencing_unknown_column_is_rejected():
    m = MilpModel()
    m.add_vars(1)
    with pytest.raises(ValueError):
        m.add_rows(sp.coo_matrix(np.ones((1, 3))), 0, 1)
