"""load_inputs: .npy and .csv samples as (rows, values) float64; clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from nnresilience.errors import InputDataError
from nnresilience.io import load_inputs


def test_npy_shapes(tmp_path):
    np.save(tmp_path / "one.npy", np.arange(5.0))
    np.save(tmp_path / "img.npy", np.zeros((3, 1, 2, 2)))
    assert load_inputs(tmp_path / "one.npy").shape == (1, 5)
    assert load_inputs(tmp_path / "img.npy").shape == (3, 4)


def test_csv_with_header(tmp_path):
    (tmp_path / "x.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(load_inputs(tmp_path / "x.csv"), [[1, 2, 3], [4, 5, 6]])


def test_errors(tmp_path):
    with pytest.raises(InputDataError, match="no such"):
        load_inputs(tmp_path / "none.npy")
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan]))
    with pytest.raises(InputDataError, match="non-finite"):
        load_inputs(tmp_path / "nan.npy")
    (tmp_path / "r.csv").write_text("1,2\n3\n")
    with pytest.raises(InputDataError, match="different lengths"):
        load_inputs(tmp_path / "r.csv")
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(InputDataError, match="unknown input format"):
        load_inputs(tmp_path / "x.json")
