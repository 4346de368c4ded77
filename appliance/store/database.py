"""The DuckDB file the manager owns: one writer thread fed by a queue, per-thread read cursors.

Writes are functions handed to `write(fn)`; the writer drains whatever is queued and runs it in one
transaction (batched), falling back to one transaction per function when the batch fails, so one
bad write never sinks its neighbours. Every `duckdb.Error` is translated into `StoreError` here.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from ..core.errors import ClosedError, StoreError
from .schema import SCHEMA

__all__ = ["Database", "DbState"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
Conn = duckdb.DuckDBPyConnection
_SHUTDOWN = object()
MAX_BATCH = 512


class DbState(enum.Enum):
    OPEN = "open"  # writer thread running
    CLOSED = "closed"  # close() called; every call raises ClosedError


class Database:
    """One DuckDB database (file or `:memory:`) with a single writer thread."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.path = str(path)
        try:
            self._con = duckdb.connect(self.path, config={"autoinstall_known_extensions": False})
            self._con.execute(SCHEMA)
        except duckdb.Error as ex:
            raise StoreError(str(ex), where=self.path) from ex
        self._local = threading.local()
        self._queue: queue.Queue[Any] = queue.Queue()
        self.state = DbState.OPEN
        self.writes = 0
        self.failed_writes = 0  # heron_store_write_failures_total
        self._writer = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._writer.start()

    # --- writes -------------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        """Writes queued for the writer thread and not started yet (`heron_store_queue`)."""
        return self._queue.qsize()

    def write(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn(cursor)` on the writer thread (inside a transaction) and return its result."""
        return self.submit(fn).result()

    def submit(self, fn: Callable[[Conn], T]) -> Future[T]:
        """Queue `fn` for the writer thread without waiting."""
        if self.state is DbState.CLOSED:
            raise ClosedError("store is closed", where=self.path)
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    def _failed(self, fut: Future[Any], ex: StoreError) -> None:
        """Count and log a write the database refused before handing it over (``write``
        raises it; a ``submit`` caller may never look at its future)."""
        self.failed_writes += 1
        logger.warning("fleet store write failed: %s", ex)
        fut.set_exception(ex)

    def _run(self) -> None:
        cur = self._con.cursor()
        while True:
            item = self._queue.get()
            if item is _SHUTDOWN:
                break
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _SHUTDOWN:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(cur, batch)
            if stop:
                break
        cur.close()

    def _run_batch(self, cur: Conn, batch: list[tuple[Callable[[Conn], Any], Future[Any]]]) -> None:
        if len(batch) > 1:
            try:
                cur.execute("BEGIN")
                results = [fn(cur) for fn, _ in batch]
                cur.execute("COMMIT")
            except Exception:  # noqa: BLE001 - retried one by one below
                self._rollback(cur)
            else:
                self.writes += len(batch)
                for (_, fut), res in zip(batch, results, strict=True):
                    fut.set_result(res)
                return
        for fn, fut in batch:
            try:
                cur.execute("BEGIN")
                res = fn(cur)
                cur.execute("COMMIT")
            except duckdb.Error as ex:
                self._rollback(cur)
                self._failed(fut, StoreError(str(ex), where=self.path))
            except Exception as ex:  # noqa: BLE001 - handed to the caller (Conflict, …)
                self._rollback(cur)
                fut.set_exception(ex)
            else:
                self.writes += 1
                fut.set_result(res)

    @staticmethod
    def _rollback(cur: Conn) -> None:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error:
            pass

    # --- reads --------------------------------------------------------------------------

    def _cursor(self) -> Conn:
        if self.state is DbState.CLOSED:
            raise ClosedError("store is closed", where=self.path)
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    def query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on this thread's cursor."""
        try:
            return self._cursor().execute(sql, params).fetchall()
        except duckdb.Error as ex:
            raise StoreError(str(ex), where=self.path) from ex

    def query_dicts(
        self, sql: str, params: list[Any] | tuple[Any, ...] = ()
    ) -> list[dict[str, Any]]:
        """Like `query`, rows as dicts keyed by column name."""
        try:
            cur = self._cursor().execute(sql, params)
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except duckdb.Error as ex:
            raise StoreError(str(ex), where=self.path) from ex

    def close(self) -> None:
        """Flush queued writes, stop the writer and close the file (idempotent)."""
        if self.state is DbState.CLOSED:
            return
        self.state = DbState.CLOSED
        self._queue.put(_SHUTDOWN)
        self._writer.join(timeout=30)
        try:
            self._con.close()
        except Exception:  # noqa: BLE001 - close path
            pass

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
