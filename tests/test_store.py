"""The SQLite campaign store: keys, idempotent puts, round trips, refusing foreign files."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnresilience.errors import StoreError
from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.results import Counterexample, ResilienceResult, Status, VerificationResult
from nnresilience.spec.property import robustness
from nnresilience.store import (
    SCHEMA_VERSION,
    CampaignStore,
    query_key,
    result_status,
    stable_hash,
)


def _net(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    return Network([Affine(rng.standard_normal((4, 3)), rng.standard_normal(4)), ReLU(4),
                    Affine(rng.standard_normal((2, 4)), rng.standard_normal(2))], name="t")


def _violated() -> VerificationResult:
    ce = Counterexample.from_arrays(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0]))
    return VerificationResult(Status.VIOLATED, ce, engine="milp", seconds=0.5,
                              stats={"nodes": np.int64(3)})


def _phi() -> ResilienceResult:
    return ResilienceResult("phi", 0.25, 0.5, False, cls=1, alpha=1.0, k=1, norm="l1",
                            a=(0.1, 0.2), a_perturbed=(0.3, 0.2), seconds=1.5)


def test_round_trip_and_columns(tmp_path):
    net = _net()
    prop = robustness(np.zeros(3), 0, 0.1, 2)
    k1 = query_key(net, prop, {"engine": "milp", "timeout": 10})
    k2 = query_key(net, {"query": "phi", "cls": 1}, {"alpha": 1.0})
    with CampaignStore(tmp_path / "s.sqlite") as s:
        assert not s.has(k1)
        assert s.put(k1, "verify", _violated(), {"network_name": "t", "property_name": "p",
                                                  "params": {"center": [0.0, 0.0, 0.0]}})
        assert s.put(k2, "phi", _phi(), {"network_name": "t"})
        assert s.has(k1) and s.has(k2) and len(s) == 2
    with CampaignStore(tmp_path / "s.sqlite", readonly=True) as s:
        r1 = s.get(k1)
        assert r1.status == "violated" and r1.engine == "milp" and r1.seconds == 0.5
        assert r1.params == {"center": [0.0, 0.0, 0.0]}
        back = r1.to_result()
        assert isinstance(back, VerificationResult) and back.status is Status.VIOLATED
        assert back.counterexample.x == (0.1, 0.2, 0.3)
        r2 = s.get(k2)
        assert (r2.status, r2.lower, r2.upper) == ("bounded", 0.25, 0.5)
        assert r2.to_result() == _phi()
        assert [r.kind for r in s.all()] == ["verify", "phi"]
        assert [r.kind for r in s.all("phi")] == ["phi"]
        assert s.summary() == {"phi": {"bounded": 1}, "verify": {"violated": 1}}
        assert s.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert s.integrity_check() == "ok"
        with pytest.raises(StoreError):
            s.put(k1, "verify", _violated())


def test_put_is_idempotent(tmp_path):
    key = ("n", "p", stable_hash({}))
    with CampaignStore(tmp_path / "s.sqlite") as s:
        first = VerificationResult(Status.HOLDS, engine="a")
        assert s.put(key, "verify", first) is True
        assert s.put(key, "verify", VerificationResult(Status.UNKNOWN, engine="b")) is False
        assert len(s) == 1
        assert s.get(key).status == "holds"   # the first answer is kept


def test_wal_mode_and_unique_constraint(tmp_path):
    path = tmp_path / "s.sqlite"
    with CampaignStore(path) as s:
        s.put(("a", "b", "c"), "verify", VerificationResult(Status.HOLDS))
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO queries(network_hash, property_hash, params_hash, kind, params,"
                    " result, created_at) VALUES ('a','b','c','verify','{}','{}','now')")
    con.close()


def test_query_key_depends_on_what_matters():
    net, other = _net(0), _net(1)
    prop = robustness(np.zeros(3), 0, 0.1, 2)
    prop2 = robustness(np.zeros(3), 0, 0.2, 2)
    base = query_key(net, prop, {"a": 1, "b": [1.0, 2.0]})
    assert base == query_key(net.content_hash(), prop, {"b": [1.0, 2.0], "a": 1})
    assert base != query_key(other, prop, {"a": 1, "b": [1.0, 2.0]})
    assert base != query_key(net, prop2, {"a": 1, "b": [1.0, 2.0]})
    assert base != query_key(net, prop, {"a": 2, "b": [1.0, 2.0]})
    # numpy values hash like the equal plain values
    assert query_key(net, prop, {"a": np.int64(1), "b": np.array([1.0, 2.0])}) == base


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.floats(
    allow_nan=False), st.text(max_size=5), st.lists(st.integers(), max_size=3)), max_size=6))
def test_stable_hash_ignores_insertion_order(d):
    reordered = dict(reversed(list(d.items())))
    assert stable_hash(d) == stable_hash(reordered)


def test_result_status_words():
    assert result_status(VerificationResult(Status.HOLDS)) == "holds"
    assert result_status(ResilienceResult("phi", 1.0, 1.0, True)) == "optimal"
    assert result_status(ResilienceResult("phi", 0.5, None, False)) == "bounded"
    assert result_status(ResilienceResult("phi", None, None, False)) == "unknown"
    assert result_status(ResilienceResult("phi", None, None, False, feasible=False)) == \
        "infeasible"


def test_refuses_foreign_and_broken_files(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="junk.sqlite"):
        CampaignStore(junk)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users(name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not an nnresilience campaign store"):
        CampaignStore(other)
    with pytest.raises(StoreError, match="no such campaign store"):
        CampaignStore(tmp_path / "missing.sqlite", readonly=True)
    with pytest.raises(StoreError):
        CampaignStore(tmp_path)


def test_refuses_newer_schema(tmp_path):
    path = tmp_path / "s.sqlite"
    CampaignStore(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 999"):
        CampaignStore(path)
