"""Cluster mode: the fleet store on PostgreSQL behind the embedded store's interfaces.

``PgDatabase`` offers what the table classes (``fleet``, ``content``, ``reports``) use of
``Database`` — ``write(fn)`` with a cursor taking ``?`` parameters, ``query``, ``query_dicts``,
``close`` — so the very same table code runs on either engine. Differences are absorbed here:

* dialect: ``?`` → ``%s``; DuckDB's ``INSERT OR REPLACE`` → ``INSERT … ON CONFLICT (pk) DO
  UPDATE``; a DML statement's ``fetchone()`` gives ``(rowcount,)`` as DuckDB's does; DDL
  types (``DOUBLE``, ``BLOB``);
* concurrency: several front-ends write the same rows, so every write function runs in a
  ``SERIALIZABLE`` transaction and is re-run on a serialization failure; the
  read-modify-write functions (command delivery, token consumption) stay correct without
  locking SQL of their own;
* caches: a revocation or a new certificate, an endpoint change, a rules change, an IoC change,
  a score change, and a change of a Sysmon config or a tool are announced with ``NOTIFY
  heron_fleet, 'certs' | 'endpoints' | 'rules' | 'iocs' | 'reports' | 'sysmon' | 'tools'``;
  every front-end ``LISTEN``s and drops its cached revoked set, verified certificates, served
  rules, IoC bodies, scores and /updates hashes (``ClusterStore``, ``Store.changes``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from ..core.errors import ClosedError, StoreError
from . import Store
from .alerts import DDL as ALERTS_DDL
from .content import Documents, Iocs, RulesTable, Tools
from .database import Database, DbState
from .fleet import Certs, Endpoints
from .models import CertRecord, Endpoint
from .reports import Reports
from .schema import SCHEMA

__all__ = ["ClusterStore", "PgDatabase", "pg_schema"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
CHANNEL = "heron_fleet"
# what a NOTIFY on CHANNEL names
TOPICS = ("certs", "endpoints", "rules", "iocs", "reports", "sysmon", "tools", "misp")
_RETRIES = 20
_TABLE_RE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\);", re.S)
_UPSERT_RE = re.compile(r"^\s*INSERT OR REPLACE INTO (\w+) ", re.I)


def pg_schema() -> str:
    """The fleet DDL in PostgreSQL's dialect."""
    return SCHEMA.replace("DOUBLE", "DOUBLE PRECISION").replace("BLOB", "BYTEA")


def _keys() -> dict[str, tuple[list[str], list[str]]]:
    """Per table: (columns in order, primary key columns), read from the shared DDL."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for table, body in _TABLE_RE.findall(SCHEMA + ALERTS_DDL):  # every table class's DDL
        pk: list[str] = []
        cols: list[str] = []
        flat = " ".join(body.split())
        match = re.search(r"PRIMARY KEY \(([^)]*)\)", flat)
        if match:
            pk = [c.strip() for c in match.group(1).split(",")]
            flat = flat[: match.start()].rstrip(", ")
        for part in flat.split(","):
            words = part.split()
            if not words:
                continue
            cols.append(words[0])
            if "PRIMARY" in words[1:]:
                pk = [words[0]]
        out[table] = (cols, pk)
    return out


_KEYS = _keys()


def translate(sql: str) -> str:
    """DuckDB dialect of the table classes → PostgreSQL (parameters become ``%s``)."""
    if "CREATE TABLE" in sql:  # a table class's own DDL (e.g. alerts)
        sql = re.sub(r"\bDOUBLE\b", "DOUBLE PRECISION", sql).replace("BLOB", "BYTEA")
    upsert = _UPSERT_RE.match(sql)
    if upsert:
        table = upsert.group(1)
        cols, pk = _KEYS[table]
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in pk)
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) "
            + sql[upsert.end() :]
            + f" ON CONFLICT ({', '.join(pk)}) DO "
            + (f"UPDATE SET {sets}" if sets else "NOTHING")
        )
    sql = sql.replace(" AS DOUBLE)", " AS DOUBLE PRECISION)")  # CAST (presence touches)
    return sql.replace("%", "%%").replace("?", "%s")


class _Cursor:
    """A psycopg cursor that takes the table classes' DuckDB-style statements."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Any = ()) -> _Cursor:
        self._cur.execute(translate(sql), list(params or ()))
        return self

    @property
    def description(self) -> Any:
        return self._cur.description

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._cur.description is None:  # DML: DuckDB answers with the affected row count
            return (self._cur.rowcount,)
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self._cur.description is None:
            return [(self._cur.rowcount,)]
        return self._cur.fetchall()


class PgDatabase(Database):
    """The fleet database on PostgreSQL (``dsn``): same methods as the DuckDB ``Database``.

    NOTE: subclasses ``Database`` for its type only; nothing of DuckDB is opened.
    """

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self.path = dsn
        self._dsn = dsn
        self._timeout = connect_timeout
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._conns: list[psycopg.Connection[Any]] = []
        self._conns_lock = threading.Lock()
        self.state = DbState.OPEN
        self.writes = 0
        self.failed_writes = 0  # heron_store_write_failures_total
        try:
            self._wconn = self._open_writer()
        except psycopg.Error as ex:
            raise StoreError(f"cannot connect to PostgreSQL: {ex}", where=_where(dsn)) from ex

    def _open_writer(self) -> psycopg.Connection[Any]:
        conn = self._connect(autocommit=False)
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        return conn

    @property
    def pending_writes(self) -> int:
        """Always 0: writes run inline on the caller's thread."""
        return 0

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, autocommit=autocommit, connect_timeout=int(self._timeout))
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def create_schema(self) -> None:
        """Create the fleet tables (idempotent)."""
        with self._connect(autocommit=True) as conn:
            conn.execute(pg_schema())  # NOTE: trusted constant DDL

    # -- writes --------------------------------------------------------------------

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(cursor)`` in one SERIALIZABLE transaction (re-run on conflicts, and once
        on a new connection when the old one broke: PostgreSQL restarted, a network cut).

        A failure is counted (``failed_writes``) and raised as StoreError.
        """
        try:
            return self._write(fn)
        except StoreError:
            self.failed_writes += 1
            raise

    def _write(self, fn: Callable[[Any], T]) -> T:
        if self.state is DbState.CLOSED:
            raise ClosedError("store is closed", where=_where(self._dsn))
        with self._write_lock:
            reconnected = False
            for attempt in range(_RETRIES):
                try:
                    if self._wconn.broken or self._wconn.closed:
                        self._wconn = self._open_writer()
                    with self._wconn.transaction(), self._wconn.cursor() as cur:
                        result = fn(_Cursor(cur))
                    self.writes += 1
                    return result
                except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected):
                    time.sleep(min(0.2, 0.005 * 2**attempt))
                except psycopg.OperationalError as ex:
                    # NOTE: a COMMIT whose answer was lost may have been applied: the re-run
                    # then repeats it (a duplicate row beats a lost one).
                    if reconnected or not (self._wconn.broken or self._wconn.closed):
                        raise StoreError(str(ex), where=_where(self._dsn)) from ex
                    reconnected = True
                    logger.warning("PostgreSQL write connection lost (reconnecting): %s", ex)
                except psycopg.Error as ex:
                    raise StoreError(str(ex), where=_where(self._dsn)) from ex
        raise StoreError("write kept conflicting with other front-ends", where=_where(self._dsn))

    def submit(self, fn: Callable[[Any], T]) -> Future[T]:
        """``write`` now (PostgreSQL writes run inline), for callers that do not wait on the
        future (detections, audit, presence, scores): a failure is logged, counted and raised
        to the caller instead of resting in a future nobody reads."""
        future: Future[T] = Future()
        try:
            future.set_result(self.write(fn))
        except StoreError as ex:
            logger.error("PostgreSQL write failed: %s", ex)
            raise
        return future

    def notify(self, payload: str) -> None:
        """Tell every front-end (``LISTEN heron_fleet``) that ``payload`` changed."""
        self.write(lambda cur: cur.execute("SELECT pg_notify(?, ?)", [CHANNEL, payload]))

    # -- reads ---------------------------------------------------------------------

    def _reader(self) -> psycopg.Connection[Any]:
        if self.state is DbState.CLOSED:
            raise ClosedError("store is closed", where=_where(self._dsn))
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect(autocommit=True)
            self._local.conn = conn
        return conn

    def _read(self, fn: Callable[[_Cursor], T]) -> T:
        """Run a read on this thread's connection; once more on a new one if it broke."""
        for attempt in range(2):
            conn = self._reader()
            try:
                with conn.cursor() as cur:
                    return fn(_Cursor(cur))
            except psycopg.OperationalError as ex:
                if attempt or not (conn.broken or conn.closed):
                    raise StoreError(str(ex), where=_where(self._dsn)) from ex
            except psycopg.Error as ex:
                raise StoreError(str(ex), where=_where(self._dsn)) from ex
        raise AssertionError("unreachable")

    def query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda cur: cur.execute(sql, params).fetchall())

    def query_dicts(
        self, sql: str, params: list[Any] | tuple[Any, ...] = ()
    ) -> list[dict[str, Any]]:
        def rows(cur: _Cursor) -> list[dict[str, Any]]:
            wrapped = cur.execute(sql, params)
            names = [d[0] for d in wrapped.description or ()]
            return [dict(zip(names, row, strict=True)) for row in wrapped.fetchall()]

        return self._read(rows)

    def close(self) -> None:
        if self.state is DbState.CLOSED:
            return
        self.state = DbState.CLOSED
        with self._write_lock, self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - close path
                    pass


def _where(dsn: str) -> str:
    """The DSN without a password (for messages)."""
    return re.sub(r"password=\S+", "password=***", dsn)


class _ClusterCerts(Certs):
    def add(self, rec: CertRecord) -> None:
        super().add(rec)  # enrollment, re-enrollment, renewal: verified caches start over
        if isinstance(self.db, PgDatabase):
            self.db.notify("certs")

    def revoke(self, *, uuid: str | None = None, serial: str | None = None, now: float) -> int:
        count = super().revoke(uuid=uuid, serial=serial, now=now)
        if isinstance(self.db, PgDatabase):
            self.db.notify("certs")
        return count


class _ClusterEndpoints(Endpoints):
    """Announces what a cached endpoint record shows (group, status, config…); presence
    touches are not announced (``touch``: nothing cached reads them)."""

    def create(self, ep: Endpoint) -> Endpoint:
        out = super().create(ep)
        self._announce()
        return out

    def update(self, uuid: str, **changes: Any) -> Endpoint:
        out = super().update(uuid, **changes)
        if changes:
            self._announce()
        return out

    def delete(self, uuid: str) -> None:
        super().delete(uuid)
        self._announce()

    def _announce(self) -> None:
        if isinstance(self.db, PgDatabase):
            self.db.notify("endpoints")


class _ClusterReports(Reports):
    def merge(
        self,
        endpoint: str,
        fn: Callable[[dict[str, Any] | None], dict[str, Any]],
        now: float,
    ) -> dict[str, Any]:
        out = super().merge(endpoint, fn, now)
        self._announce()
        return out

    def take(self, endpoint: str) -> dict[str, Any] | None:
        out = super().take(endpoint)
        self._announce()
        return out

    def archive(self, endpoint: str, stats: dict[str, Any], now: float) -> None:
        super().archive(endpoint, stats, now)
        self._announce()

    def _announce(self) -> None:
        if isinstance(self.db, PgDatabase):
            self.db.notify("reports")


class _ClusterRules(RulesTable):
    def upsert(self, rules: dict[str, str], now: float) -> None:
        super().upsert(rules, now)
        if rules and isinstance(self.db, PgDatabase):
            self.db.notify("rules")

    def delete(self, name: str) -> None:
        super().delete(name)
        if isinstance(self.db, PgDatabase):
            self.db.notify("rules")


class _ClusterIocs(Iocs):
    def _bump(self) -> None:
        super()._bump()
        if isinstance(self.db, PgDatabase):
            self.db.notify("iocs")

    def changed_elsewhere(self) -> None:
        super()._bump()  # the cached /iocs body and hash are rebuilt at the next request


class _ClusterDocuments(Documents):
    def _bump(self, kind: str) -> None:
        super()._bump(kind)
        if kind.startswith("sysmon:") and isinstance(self.db, PgDatabase):
            self.db.notify("sysmon")


class _ClusterTools(Tools):
    def _bump(self) -> None:
        super()._bump()
        if isinstance(self.db, PgDatabase):
            self.db.notify("tools")


class ClusterStore(Store):
    """Every fleet table over PostgreSQL; listens for other front-ends' changes."""

    shared = True

    def __init__(self, dsn: str, *, create: bool = True) -> None:
        db = PgDatabase(dsn)
        if create:
            db.create_schema()
        super().__init__(db=db)
        self.certs = _ClusterCerts(db)
        self.endpoints = _ClusterEndpoints(db)
        self.reports = _ClusterReports(db)
        self.rules = _ClusterRules(db)
        self.iocs = self._iocs = _ClusterIocs(db)
        self.documents = _ClusterDocuments(db)
        self.tools = _ClusterTools(db)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._listener = threading.Thread(
            target=self._listen, args=(dsn,), name="heron-pg-listen", daemon=True
        )
        self._listener.start()
        self._listening.wait(10)

    def _listen(self, dsn: str) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")  # constant
                    # a notification may have been missed while not listening: drop everything
                    for topic in TOPICS:
                        self._changed(topic)
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._changed(note.payload)
            except psycopg.Error as ex:
                logger.warning("PostgreSQL LISTEN failed (retrying): %s", ex)
                self._stop.wait(1.0)

    def _changed(self, topic: str) -> None:
        """Another front-end (or this one) changed `topic`: drop what is cached of it."""
        if topic == "certs":
            self.certs.invalidate()
        elif topic == "iocs":
            self._iocs.changed_elsewhere()
        elif topic == "sysmon":
            self.documents.changed_elsewhere("sysmon")
        elif topic == "tools":
            self.tools.changed_elsewhere()
        elif topic == "endpoints":  # a config among them: /updates hashes start over
            self.endpoints.changed_elsewhere()
        self.changes.announce(topic)

    def close(self) -> None:
        self._stop.set()
        self._listener.join(5)
        super().close()
