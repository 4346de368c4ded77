"""The DuckDB analytics tables: one ``events`` row per stored event, plus ``batches``.

One writer (the store's writer thread) inserts whole groups of rows: the rows are written as
one JSON array to ``<db>.rows.json`` and DuckDB's JSON reader inserts them. Performance: the
appender converts every value while holding the GIL (≈ 7 µs/row, half of it GIL-bound on this
machine); ``orjson`` writes the rows in ≈ 1 µs/row and DuckDB parses them with the GIL
released, so the request threads keep running (``executemany`` is ~400× slower,
docs/reference/deps.md §5).
Readers run on their own cursors. Analyst SQL is read-only: exactly one ``SELECT``/``EXPLAIN``
statement, file access disabled (``enable_external_access=false``, except that one rows file,
whose rows are in the table anyway), configuration locked, a timeout enforced with
``interrupt()`` and a row cap. ``duckdb.Error`` is translated here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson

from index.errors import SqlError, StoreError
from index.fields import COLUMNS_ONLY, HASH_ALGOS, PROMOTED
from index.sqlguard import check_functions, scrub

__all__ = ["EVENT_COLUMNS", "SqlResult", "Tables"]

logger = logging.getLogger(__name__)

_DATA_COLUMNS: dict[str, str] = {**PROMOTED, **COLUMNS_ONLY}
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "UBIGINT NOT NULL"),
    ("ts", "TIMESTAMP NOT NULL"),
    ("rt", "TIMESTAMP NOT NULL"),
    ("endpoint", "VARCHAR NOT NULL"),
    ("hostname", "VARCHAR"),
    ("channel", "VARCHAR"),
    ("event_id", "INTEGER"),
    ("computer", "VARCHAR"),
    *((col, "VARCHAR") for col in _DATA_COLUMNS.values()),
    *((algo, "VARCHAR") for algo in HASH_ALGOS),
    ("signatures", "VARCHAR[]"),
    ("criticality", "UTINYINT"),
    ("detection", "BOOLEAN"),
    ("retro", "BOOLEAN"),
    ("event_hash", "VARCHAR"),
    # added after the first release: _create adds them to an older file (ALTER TABLE appends)
    ("techniques", "VARCHAR[]"),
    ("tactics", "VARCHAR[]"),
)
_ADDED_COLUMNS = ("techniques", "tactics")
_ALLOWED_SQL = {"SELECT", "EXPLAIN"}
_FETCH = 256  # rows fetched (and measured) at a time
# Security: DuckDB measures each row's JSON and leaves out (NULL) one over the cap, so
# Python never builds it: one `list(range(1000))` row of 40,000 lists was 1.4 GB of ints.
_SIZED = (
    "SELECT strlen(to_json(_q)::VARCHAR) AS __heron_n, "
    "CASE WHEN __heron_n > {max_bytes} THEN NULL ELSE _q END FROM ({inner}) _q"
)


def _json_select(columns: tuple[tuple[str, str], ...]) -> str:
    """The SELECT list reading one JSON array per row (``r``) into ``columns``' types."""
    out = []
    for i, (_, ddl) in enumerate(columns, start=1):
        sql_type = ddl.removesuffix(" NOT NULL")
        out.append(
            f"r[{i}]::{sql_type}" if sql_type.endswith("[]") else f"(r[{i}]->>'$')::{sql_type}"
        )
    return ", ".join(out)


_ROWS_SELECT = _json_select(EVENT_COLUMNS)


@dataclass(frozen=True, slots=True)
class SqlResult:
    """Rows of a read-only SQL query.

    Attributes:
        columns: Column names.
        rows: Row tuples (at most ``max_rows``).
        truncated: True when more rows existed than ``max_rows``.
    """

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


class Tables:
    """Owner of ``events.duckdb``; writes only from the store's writer thread."""

    def __init__(
        self, path: Path | str, *, threads: int | None = None, memory_limit: str = "2GB"
    ) -> None:
        self._path = str(path)
        self._rows_file = Path(f"{self._path}.rows.json")
        try:
            self._con = duckdb.connect(self._path, config={"memory_limit": memory_limit})
            if threads:
                self._con.execute(f"SET threads={int(threads)}")
            self._create()
            self._con.execute("SET allowed_paths=?", [[str(self._rows_file)]])
            for setting in (
                "SET enable_external_access=false",
                "SET autoinstall_known_extensions=false",
                "SET autoload_known_extensions=false",
                "SET lock_configuration=true",
            ):
                self._con.execute(setting)
            # readers derive cursors from a connection that never runs queries,
            # so they never meet "connection is busy" from the writer (docs/reference/deps.md §5).
            self._reader_root = self._con.cursor()
        except duckdb.Error as ex:
            raise StoreError(f"cannot open {self._path}: {ex}") from ex
        self._reader_lock = threading.Lock()
        self._closed = False

    def _create(self) -> None:
        cols = ", ".join(f"{name} {ddl}" for name, ddl in EVENT_COLUMNS)
        self._con.execute(f"CREATE TABLE IF NOT EXISTS events ({cols})")
        ddl = dict(EVENT_COLUMNS)
        for name in _ADDED_COLUMNS:
            self._con.execute(f"ALTER TABLE events ADD COLUMN IF NOT EXISTS {name} {ddl[name]}")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS batches (endpoint VARCHAR NOT NULL, batch_id VARCHAR "
            "NOT NULL, first_seq UBIGINT NOT NULL, count UINTEGER NOT NULL, rt TIMESTAMP)"
        )

    # -- writer side ------------------------------------------------------------------

    def insert(self, rows: Sequence[tuple[Any, ...]], batches: Iterable[tuple[Any, ...]]) -> None:
        """Append event rows (``EVENT_COLUMNS`` order) and batch keys in one transaction."""
        batch_rows = list(batches)
        try:
            if rows:
                self._rows_file.write_bytes(orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC))
            self._con.execute("BEGIN")
            if rows:
                try:
                    self._con.execute(
                        f"INSERT INTO events SELECT {_ROWS_SELECT} FROM read_json(?, "
                        "format='array', records=false, columns={'r': 'JSON[]'})",
                        [str(self._rows_file)],
                    )
                finally:
                    with contextlib.suppress(OSError):  # the insert stands
                        self._rows_file.unlink(missing_ok=True)
            if batch_rows:
                appender = self._con.appender("batches")
                appender.append_rows(batch_rows)
                appender.flush()
            self._con.execute("COMMIT")
        except (duckdb.Error, OSError) as ex:
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise StoreError(f"DuckDB insert failed: {ex}") from ex

    def execute_write(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one write statement on the writer connection."""
        self.execute_writes([(sql, params)])

    def execute_writes(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run write statements in one transaction (all or nothing)."""
        try:
            self._con.execute("BEGIN")
            for sql, params in statements:
                self._con.execute(sql, list(params))
            self._con.execute("COMMIT")
        except duckdb.Error as ex:
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise StoreError(f"DuckDB write failed: {ex}") from ex

    def max_seq(self) -> int:
        """Return the highest stored sequence number (0 when empty)."""
        return int(self._scalar("SELECT coalesce(max(seq), 0) FROM events"))

    def batch_keys(self) -> list[tuple[str, str, int, int]]:
        """Return every ``(endpoint, batch_id, first_seq, count)`` known to the table."""
        try:
            rows = self._con.execute(
                "SELECT endpoint, batch_id, first_seq, count FROM batches"
            ).fetchall()
            return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]
        except duckdb.Error as ex:
            raise StoreError(f"DuckDB read failed: {ex}") from ex

    def _scalar(self, sql: str) -> Any:
        try:
            row = self._con.execute(sql).fetchone()
        except duckdb.Error as ex:
            raise StoreError(f"DuckDB read failed: {ex}") from ex
        return row[0] if row else None

    def checkpoint(self) -> None:
        """Force a DuckDB checkpoint (compacts the WAL into the file)."""
        self.execute_write("CHECKPOINT")

    # -- reader side ------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._reader_lock:
            return self._reader_root.cursor()

    def sql(
        self,
        query: str,
        *,
        timeout: float = 10.0,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> SqlResult:
        """Run one read-only statement with a timeout, a row cap and a result byte cap.

        The timeout covers fetching and converting the rows too; rows past `max_bytes` (their
        JSON size) are left out like rows past `max_rows` (`truncated`).

        Raises:
            SqlError: not exactly one SELECT/EXPLAIN, a function not allowed
                (`index.sqlguard`), a syntax error, or the timeout; never with server paths.
        """
        try:
            return self._sql(query, timeout, max_rows, max_bytes)
        except SqlError as ex:
            ex.message = scrub(ex.message, self._path, str(Path(self._path).parent))
            ex.args = (ex.message,)
            raise

    def _sql(self, query: str, timeout: float, max_rows: int, max_bytes: int) -> SqlResult:
        cur = self._cursor()
        try:
            statements = cur.extract_statements(query)
            if len(statements) != 1:
                raise SqlError(
                    f"expected exactly one statement, got {len(statements)}", query=query
                )
            kind = statements[0].type.name
            if kind not in _ALLOWED_SQL:
                raise SqlError(f"only SELECT statements are allowed, not {kind}", query=query)
            check_functions(cur, query)
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                cur.interrupt()

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
            try:
                if kind == "SELECT":
                    inner = query.strip().rstrip(";")
                    cur.execute(f"SELECT * FROM ({inner}) _q LIMIT 0")
                    columns = [d[0] for d in cur.description or ()]
                    cur.execute(_SIZED.format(inner=inner, max_bytes=int(max_bytes)))
                    rows, truncated = _fetch(cur, max_rows, max_bytes, expired)
                else:
                    cur.execute(query)
                    columns = [d[0] for d in cur.description or ()]
                    rows, truncated = _fetch_plain(cur, max_rows, expired)
            finally:
                timer.cancel()
            if expired.is_set():
                raise duckdb.InterruptException("timeout")
        except duckdb.InterruptException as ex:
            raise SqlError(f"query exceeded the {timeout:g} s timeout", query=query) from ex
        except duckdb.Error as ex:
            raise SqlError(f"SQL failed: {ex}", query=query) from ex
        finally:
            cur.close()
        return SqlResult(columns, rows, truncated)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run an internal read query on a fresh cursor."""
        cur = self._cursor()
        try:
            return [tuple(r) for r in cur.execute(sql, list(params)).fetchall()]
        except duckdb.Error as ex:
            raise StoreError(f"DuckDB read failed: {ex}") from ex
        finally:
            cur.close()

    def close(self) -> None:
        """Checkpoint and close (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for con in (self._reader_root, self._con):
            try:
                con.close()
            except Exception:  # noqa: BLE001 - close path
                pass
        self._rows_file.unlink(missing_ok=True)


def _fetch(
    cur: duckdb.DuckDBPyConnection, max_rows: int, max_bytes: int, expired: threading.Event
) -> tuple[list[tuple[Any, ...]], bool]:
    """Rows of a `_SIZED` query up to `max_rows` and `max_bytes` of JSON, in small chunks."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    while len(rows) <= max_rows and not expired.is_set():
        chunk = cur.fetchmany(min(_FETCH, max_rows + 1 - len(rows)))
        if not chunk:
            return rows, False
        for length, row in chunk:
            size += int(length) + 1
            if row is None or size > max_bytes or len(rows) >= max_rows:
                return rows, True
            rows.append(tuple(row.values()))
    return rows, True


def _fetch_plain(
    cur: duckdb.DuckDBPyConnection, max_rows: int, expired: threading.Event
) -> tuple[list[tuple[Any, ...]], bool]:
    """Rows of an EXPLAIN (small), up to `max_rows`."""
    rows = [tuple(r) for r in cur.fetchmany(max_rows + 1)]
    return rows[:max_rows], len(rows) > max_rows
