"""VNN-LIB reader/writer: benchmark files, DNF grouping, errors with line:column, round trip."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.errors import ShapeMismatchError, SpecParseError
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion
from nnresilience.spec.vnnlib import read_vnnlib, write_vnnlib

HEAD = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + \
       "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))\n"


def _read(text, **kw):
    return read_vnnlib("t.vnnlib", text=text, **kw)


def _same(p: Property, q: Property) -> None:
    assert len(p.cases) == len(q.cases)
    for a, b in zip(p.cases, q.cases, strict=True):
        np.testing.assert_array_equal(a.region.lo, b.region.lo)
        np.testing.assert_array_equal(a.region.hi, b.region.hi)
        assert len(a.unsafe.terms) == len(b.unsafe.terms)
        for s, t in zip(a.unsafe.terms, b.unsafe.terms, strict=True):
            np.testing.assert_array_equal(s.A, t.A)
            np.testing.assert_array_equal(s.b, t.b)


# ------------------------------------------------------------- benchmarks
@pytest.mark.benchmarks
def test_every_benchmark_file_parses_and_round_trips(shared_benchmarks, tmp_path):
    files = sorted(shared_benchmarks.glob("*/*.vnnlib"))
    assert len(files) >= 40
    for f in files:
        p = read_vnnlib(f)
        assert p.n_inputs in (5, 784) and p.n_outputs in (5, 10)
        # Round trip every ACAS Xu file and a sample of the (large, uniform) MNIST ones.
        if p.n_inputs == 5 or f.name.startswith("prop_1_"):
            out = tmp_path / f.name
            write_vnnlib(p, out)
            _same(p, read_vnnlib(out))


@pytest.mark.benchmarks
def test_acasxu_prop6_has_two_boxes(shared_benchmarks):
    p = read_vnnlib(shared_benchmarks / "acasxu" / "prop_6.vnnlib", n_inputs=5, n_outputs=5)
    assert len(p.cases) == 2
    assert p.cases[0].region.lo[1] > 0 > p.cases[1].region.hi[1]
    for c in p.cases:
        assert len(c.unsafe.terms) == 4
        # term j: Y_{j+1} - Y_0 <= 0
        A = c.unsafe.terms[0].A
        np.testing.assert_array_equal(A, [[-1, 1, 0, 0, 0]])


@pytest.mark.benchmarks
def test_acasxu_prop1_output_bound(shared_benchmarks):
    p = read_vnnlib(shared_benchmarks / "acasxu" / "prop_1.vnnlib")
    (case,) = p.cases
    (term,) = case.unsafe.terms
    assert term.A.shape == (1, 5) and term.A[0, 0] == -1.0   # Y_0 >= c  ->  -Y_0 <= -c
    assert term.b[0] < 0


@pytest.mark.benchmarks
def test_mnistfc_files(shared_benchmarks):
    f = shared_benchmarks / "mnistfc" / "prop_0_0.03.vnnlib"
    t0 = time.perf_counter()
    p = read_vnnlib(f, n_inputs=784, n_outputs=10)
    elapsed = time.perf_counter() - t0
    print(f"parse {f.name}: {elapsed * 1000:.1f} ms")
    (case,) = p.cases
    assert case.region.dim == 784 and len(case.unsafe.terms) == 9
    assert p.meta["label"] == 8
    assert np.all(case.region.lo >= 0) and np.all(case.region.hi <= 1)
    # the centre image is recoverable: multiples of 1/255
    with pytest.raises(ShapeMismatchError):
        read_vnnlib(f, n_inputs=5)
    with pytest.raises(ShapeMismatchError):
        read_vnnlib(f, n_outputs=5)


# ------------------------------------------------------------------ syntax
def test_linear_terms_and_nesting():
    text = HEAD + BOX + """
; a comment (with parentheses)
(assert (or (and (<= (+ Y_0 (* 2 Y_1)) (- 3)) (>= Y_2 (- Y_0 1.5)))
            (< (* -1 (- Y_1)) 0.25)))
"""
    p = _read(text)
    (case,) = p.cases
    np.testing.assert_array_equal(case.region.lo, [-1, 0])
    np.testing.assert_array_equal(case.region.hi, [1, 0.5])
    t0, t1 = case.unsafe.terms
    np.testing.assert_array_equal(t0.A, [[1, 2, 0], [1, 0, -1]])
    np.testing.assert_array_equal(t0.b, [-3, 1.5])
    np.testing.assert_array_equal(t1.A, [[0, 1, 0]])
    np.testing.assert_array_equal(t1.b, [0.25])
    assert p.meta["strict_relaxed"] is True
    y = np.array([-5.0, 0.0, 0.0])
    assert bool(case.unsafe.satisfied(y))


def test_no_output_constraint_is_always_unsafe():
    p = _read(HEAD + BOX)
    (term,) = p.cases[0].unsafe.terms
    assert term.A.shape == (0, 3)
    assert bool(p.cases[0].unsafe.satisfied(np.zeros(3)))


def test_scaled_bounds_and_equality():
    text = HEAD + "(assert (<= (* -2 X_0) 4))(assert (<= (* 2 X_0) 4))(assert (= X_1 0.5))"
    r = _read(text).cases[0].region
    np.testing.assert_array_equal(r.lo, [-2, 0.5])
    np.testing.assert_array_equal(r.hi, [2, 0.5])


@pytest.mark.parametrize("body, message, line", [
    ("(assert (<= X_0 1))", "X_0 has no lower bound", 1),
    ("(assert (<= (+ X_0 X_1) 1))", "single X variable", 6),
    ("(assert (<= X_0 Y_0))", "mixes input", 6),
    ("(assert (<= X_7 1))", "not declared", 6),
    ("(assert (foo X_0 1))", "unsupported logical operator", 6),
    ("(assert (<= X_0 1)", "unbalanced", 6),
    ("(assert (<= X_0 1)))", "unbalanced", 6),
    ("(assert (<= (* X_0 X_1) 1))", "non-linear", 6),
])
def test_errors_name_line_and_column(body, message, line):
    with pytest.raises(SpecParseError) as ei:
        _read(HEAD + body)
    e = ei.value
    assert message in str(e)
    assert e.path == "t.vnnlib" and e.line == line and e.column is not None
    assert str(e).startswith(f"t.vnnlib:{line}:{e.column}: ")


def test_error_column_points_at_token():
    with pytest.raises(SpecParseError) as ei:
        _read(HEAD + BOX + "(assert (<= Y_0 Z_3))")
    assert ei.value.line == 10 and ei.value.column == 17


def test_missing_file():
    with pytest.raises(SpecParseError, match="no such"):
        read_vnnlib("/nonexistent/p.vnnlib")


# --------------------------------------------------------------- round trip
def _prop(rng, n_cases, nx, ny, n_terms):
    cases = []
    for _ in range(n_cases):
        lo = rng.normal(size=nx)
        hi = lo + rng.uniform(0, 2, size=nx)
        terms = tuple(Conjunction(rng.normal(size=(r, ny)), rng.normal(size=r))
                      for r in rng.integers(1, 4, size=n_terms))
        cases.append(Case(InputRegion.box(lo, hi), OutputCondition(terms, ny)))
    return Property(tuple(cases))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_cases=st.integers(1, 3), nx=st.integers(1, 4),
       ny=st.integers(1, 4), n_terms=st.integers(1, 3))
def test_write_read_round_trip(tmp_path_factory, seed, n_cases, nx, ny, n_terms):
    p = _prop(np.random.default_rng(seed), n_cases, nx, ny, n_terms)
    path = tmp_path_factory.mktemp("rt") / "p.vnnlib"
    write_vnnlib(p, path)
    _same(p, read_vnnlib(path, n_inputs=nx, n_outputs=ny))
