"""The campaign store: one SQLite file holding every finished answer of a campaign.

Why SQLite (stdlib ``sqlite3``): a single file that many readers can open while one
writer appends, with transactions that survive the writer being killed. The store is
opened in WAL journal mode with ``synchronous=FULL`` and every answer is committed in its
own transaction the moment it arrives, so a campaign killed with SIGKILL (or a power cut)
loses no finished answer and never leaves a corrupt file; re-running the campaign skips
what is stored and computes only the rest.

An answer is keyed by ``(network_hash, property_hash, params_hash)``, UNIQUE:

* ``network_hash`` — :meth:`Network.content_hash` (the same weights in two files are one
  network; a retrained model with the same file name is another);
* ``property_hash`` — :meth:`Property.content_hash` for decision queries, or the stable
  JSON hash of a query description (``{"query": "phi", "cls": 3}``) for optimisation ones;
* ``params_hash`` — stable JSON hash of the parameters that change the answer (engine,
  timeout, δ, α, k, norm, settings, ...).

:meth:`CampaignStore.put` is ``INSERT OR IGNORE``: storing an answer twice (a re-run that
raced a previous one, a duplicated unit) keeps the first and never duplicates a row.

Re-running a campaign with other *settings* (a longer timeout, another engine or solver)
is a new answer to the same *question*, stored next to the old one. Readers keep them
apart through :attr:`StoredResult.query_id` -- the hash of network, property, kind and
the parameters minus :data:`SETTING_KEYS` -- and by default show the latest answer per
question (``latest=True`` of :meth:`CampaignStore.all`), all of them on request.

Schema version 2 adds the columns ``property_path`` (the VNN-LIB file, for exports) and
``info`` (descriptive JSON such as feature names, never part of a key); a version-1 store
is upgraded in place when opened for writing and read as it is otherwise.
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnresilience.errors import StoreError
from nnresilience.results import ResilienceResult, VerificationResult

SCHEMA_VERSION = 2
READABLE_VERSIONS = ("1", "2")
APPLICATION = "nnresilience"
# Unit parameters that say *how* a question is answered, not *what* is asked: answers that
# differ only in these are answers to the same question (see StoredResult.query_id).
SETTING_KEYS = frozenset({"engine", "timeout", "options", "settings", "bounds", "solver",
                          "falsify_budget", "seed", "workers"})

Key = tuple[str, str, str]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    network_hash  TEXT NOT NULL,
    property_hash TEXT NOT NULL,
    params_hash   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    network_name  TEXT,
    network_path  TEXT,
    property_name TEXT,
    params        TEXT NOT NULL,
    status        TEXT,
    lower         REAL,
    upper         REAL,
    result        TEXT NOT NULL,
    seconds       REAL,
    engine        TEXT,
    created_at    TEXT NOT NULL,
    property_path TEXT,
    info          TEXT,
    UNIQUE (network_hash, property_hash, params_hash)
);
CREATE INDEX IF NOT EXISTS queries_kind ON queries(kind);
"""

_COLUMNS = ("network_hash", "property_hash", "params_hash", "kind", "network_name",
            "network_path", "property_name", "params", "status", "lower", "upper", "result",
            "seconds", "engine", "created_at", "property_path", "info")
_V2_COLUMNS = ("property_path", "info")


# ------------------------------------------------------------------------- hashing
def _jsonable(o: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON values (for hashing/storing)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        np = None
    if np is not None:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.floating, np.integer, np.bool_)):
            return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, enum.Enum):
        return o.value
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def stable_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, floats by ``repr`` (round-trip exact).

    Two parameter dicts that are equal as JSON values give the same text, whatever the
    insertion order; ``1`` and ``1.0`` differ on purpose (an int ``k`` vs a float δ).
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable,
                      allow_nan=True)


def stable_hash(obj: Any) -> str:
    """SHA-256 hex digest of :func:`stable_json`."""
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()


def query_key(network: Any, prop_or_query: Any, params: dict[str, Any] | None) -> Key:
    """The store key of one query.

    ``network``: a :class:`~nnresilience.network.Network` (its ``content_hash()``) or an
    already computed hash string. ``prop_or_query``: a
    :class:`~nnresilience.spec.property.Property` (its ``content_hash()``), or any JSON
    value describing an optimisation query (hashed with :func:`stable_hash`). ``params``: the
    parameters of the computation, hashed with :func:`stable_hash`.
    """
    net_hash = network if isinstance(network, str) else network.content_hash()
    if hasattr(prop_or_query, "content_hash"):
        prop_hash = prop_or_query.content_hash()
    else:
        prop_hash = stable_hash(prop_or_query)
    return (net_hash, prop_hash, stable_hash(params or {}))


# ------------------------------------------------------------------------- records
def result_status(result: VerificationResult | ResilienceResult | dict[str, Any]) -> str:
    """The status word stored for a result.

    Decision results: ``holds``/``violated``/``unknown``. Optimisation results:
    ``optimal`` (a single proven number), ``bounded`` (a proven interval), ``infeasible``
    (no input satisfies the premise) or ``unknown`` (no bound at all).
    """
    d = result if isinstance(result, dict) else result.to_dict()
    if "quantity" not in d:
        return str(d.get("status", "unknown"))
    if not d.get("feasible", True):
        return "infeasible"
    if d.get("optimal"):
        return "optimal"
    if d.get("lower") is not None or d.get("upper") is not None:
        return "bounded"
    return "unknown"


def result_from_dict(d: dict[str, Any]) -> VerificationResult | ResilienceResult:
    """Rebuild the result dataclass from its ``to_dict()`` form."""
    if "quantity" in d:
        return ResilienceResult.from_dict(d)
    return VerificationResult.from_dict(d)


@dataclass(frozen=True)
class StoredResult:
    """One row of the store, decoded (``params``/``result`` as dicts)."""

    key: Key
    kind: str
    network_name: str | None
    network_path: str | None
    property_name: str | None
    params: dict[str, Any]
    status: str | None
    lower: float | None
    upper: float | None
    result: dict[str, Any]
    seconds: float | None
    engine: str | None
    created_at: str
    property_path: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    row_id: int = 0

    def to_result(self) -> VerificationResult | ResilienceResult:
        return result_from_dict(self.result)

    @property
    def query_id(self) -> str:
        """The question this row answers: network, property, kind and the parameters
        minus :data:`SETTING_KEYS` (so a re-run with a longer timeout has the same id)."""
        return query_id(self.key[0], self.key[1], self.kind, self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"key": list(self.key), "query_id": self.query_id, "kind": self.kind,
                "network_name": self.network_name, "network_path": self.network_path,
                "property_name": self.property_name, "property_path": self.property_path,
                "params": self.params, "status": self.status, "lower": self.lower,
                "upper": self.upper, "seconds": self.seconds, "engine": self.engine,
                "created_at": self.created_at, "info": self.info, "result": self.result}


def query_id(network_hash: str, property_hash: str, kind: str,
             params: dict[str, Any]) -> str:
    """Hash of a question, independent of the settings used to answer it."""
    what = {k: v for k, v in (params or {}).items() if k not in SETTING_KEYS}
    return stable_hash([network_hash, property_hash, kind, what])[:32]


def latest_per_query(records: list[StoredResult]) -> list[StoredResult]:
    """The most recently stored answer of every question, in storage order."""
    last: dict[str, StoredResult] = {}
    for r in records:
        last[r.query_id] = r          # records come in storage order: later wins
    keep = {id(r) for r in last.values()}
    return [r for r in records if id(r) in keep]


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- store
class CampaignStore:
    """A SQLite campaign store (see the module docstring for the guarantees).

    One writer at a time (the campaign runner in the main process; workers never write),
    any number of readers (``nnres campaign show``/``nnres report`` while a campaign runs).
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise StoreError(f"{self.path}: no such campaign store")
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a campaign store")
        try:
            if readonly:
                uri = f"file:{self.path.resolve()}?mode=ro"
                self._con = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._con = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open campaign store ({exc})") from exc
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._con.close()
            raise StoreError(f"{self.path}: not a readable campaign store ({exc})") from exc
        except StoreError:
            self._con.close()
            raise

    def _setup(self) -> None:
        con = self._con
        tables = {r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if not self.readonly:
            # WAL: readers do not block the writer; FULL: a committed answer is on disk.
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
        if not tables:
            if self.readonly:
                raise StoreError(f"{self.path}: empty file, not a campaign store")
            con.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                now = _now()
                con.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                                [("schema_version", str(SCHEMA_VERSION)),
                                 ("application", APPLICATION), ("created_at", now)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._select = ", ".join(_COLUMNS)
            return
        if "meta" not in tables or "queries" not in tables:
            raise StoreError(f"{self.path}: an SQLite file, but not an nnresilience campaign "
                             f"store (tables: {', '.join(sorted(tables))})")
        meta = dict(con.execute("SELECT key, value FROM meta"))
        if meta.get("application") != APPLICATION:
            raise StoreError(f"{self.path}: not an nnresilience campaign store")
        version = meta.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise StoreError(f"{self.path}: campaign store schema version {version}, this "
                             f"nnresilience reads versions {', '.join(READABLE_VERSIONS)}")
        cols = {r[1] for r in con.execute("PRAGMA table_info(queries)")}
        if version != str(SCHEMA_VERSION) and not self.readonly:
            con.execute("BEGIN IMMEDIATE")
            try:
                for c in _V2_COLUMNS:
                    if c not in cols:
                        con.execute(f"ALTER TABLE queries ADD COLUMN {c} TEXT")
                con.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                            (str(SCHEMA_VERSION),))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            cols |= set(_V2_COLUMNS)
        self._select = ", ".join(c if c in cols else f"NULL AS {c}" for c in _COLUMNS)

    # ---------------------------------------------------------------- access
    def has(self, key: Key) -> bool:
        row = self._con.execute(
            "SELECT 1 FROM queries WHERE network_hash=? AND property_hash=? AND params_hash=?",
            tuple(key)).fetchone()
        return row is not None

    def keys(self) -> set[Key]:
        """Every stored key (one query: the runner's skip list)."""
        return {tuple(r) for r in self._con.execute(
            "SELECT network_hash, property_hash, params_hash FROM queries")}

    def get(self, key: Key) -> StoredResult | None:
        row = self._con.execute(
            f"SELECT id, {self._select} FROM queries WHERE network_hash=? AND "
            "property_hash=? AND params_hash=?", tuple(key)).fetchone()
        return None if row is None else self._decode(row)

    def put(self, key: Key, kind: str,
            result: VerificationResult | ResilienceResult | dict[str, Any],
            meta: dict[str, Any] | None = None) -> bool:
        """Store one answer in its own transaction; return False if the key was stored.

        ``meta`` may carry ``network_name``, ``network_path``, ``property_name``,
        ``property_path``, ``params`` (dict, stored as JSON: keep the centre of robustness
        queries here so the report can draw the original next to the counterexample),
        ``info`` (dict of descriptive data, e.g. ``feature_names``), ``engine`` and
        ``seconds`` (default: taken from the result).
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        meta = dict(meta or {})
        d = result if isinstance(result, dict) else result.to_dict()
        result_text = stable_json(d)
        status = result_status(d)
        lower = _finite(d.get("lower"))
        upper = _finite(d.get("upper"))
        seconds = _finite(meta.get("seconds", d.get("seconds")))
        engine = meta.get("engine", d.get("engine") or (d.get("stats") or {}).get("engine"))
        row = (*[str(k) for k in key], str(kind), meta.get("network_name"),
               None if meta.get("network_path") is None else str(meta["network_path"]),
               meta.get("property_name"), stable_json(meta.get("params", {})), status,
               lower, upper, result_text, seconds, None if engine is None else str(engine),
               _now(), None if meta.get("property_path") is None else
               str(meta["property_path"]), stable_json(meta.get("info") or {}))
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute(
                f"INSERT OR IGNORE INTO queries({', '.join(_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(_COLUMNS))})", row)
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot store an answer ({exc})") from exc
        return cur.rowcount == 1

    def all(self, kind: str | None = None, latest: bool = False) -> list[StoredResult]:
        """Stored answers (of one ``kind`` if given) in the order they were stored;
        ``latest``: only the most recent answer of each question (module docstring)."""
        rows = list(self.iter(kind))
        return latest_per_query(rows) if latest else rows

    def iter(self, kind: str | None = None) -> Iterator[StoredResult]:
        sql = f"SELECT id, {self._select} FROM queries"
        args: tuple = ()
        if kind is not None:
            sql += " WHERE kind=?"
            args = (kind,)
        for row in self._con.execute(sql + " ORDER BY id", args):
            yield self._decode(row)

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return self._con.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
        return self._con.execute("SELECT COUNT(*) FROM queries WHERE kind=?",
                                 (kind,)).fetchone()[0]

    def summary(self, latest: bool = False) -> dict[str, dict[str, int]]:
        """``{kind: {status: count}}`` (``latest``: one answer per question)."""
        if latest:
            out: dict[str, dict[str, int]] = {}
            for r in sorted(self.all(latest=True), key=lambda r: (r.kind, r.status or "")):
                d = out.setdefault(r.kind, {})
                d[r.status or "unknown"] = d.get(r.status or "unknown", 0) + 1
            return out
        out = {}
        for kind, status, n in self._con.execute(
                "SELECT kind, status, COUNT(*) FROM queries GROUP BY kind, status "
                "ORDER BY kind, status"):
            out.setdefault(kind, {})[status or "unknown"] = n
        return out

    def meta(self) -> dict[str, str]:
        return dict(self._con.execute("SELECT key, value FROM meta"))

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``'ok'`` for a sound file)."""
        return self._con.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()
            self._con = None

    def __enter__(self) -> CampaignStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def _decode(self, row: tuple) -> StoredResult:
        d = dict(zip(("id", *_COLUMNS), row, strict=True))
        try:
            params = json.loads(d["params"]) if d["params"] else {}
            result = json.loads(d["result"])
            info = json.loads(d["info"]) if d["info"] else {}
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.path}: a stored row is not valid JSON ({exc})") from exc
        return StoredResult(
            key=(d["network_hash"], d["property_hash"], d["params_hash"]), kind=d["kind"],
            network_name=d["network_name"], network_path=d["network_path"],
            property_name=d["property_name"], params=params, status=d["status"],
            lower=d["lower"], upper=d["upper"], result=result, seconds=d["seconds"],
            engine=d["engine"], created_at=d["created_at"], property_path=d["property_path"],
            info=info, row_id=int(d["id"]))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
