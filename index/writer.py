"""The store's single writer thread: journal records → Tantivy documents + DuckDB rows.

Everything that mutates the Tantivy index or the DuckDB tables is issued from here, fed by a
queue (datasette's ``Database._execute_writes`` shape); Tantivy documents go through a sink
(``index.sinks``: a writer in this process or in a child process). Records are applied in
sequence order; each backend remembers the highest sequence it holds (``tantivy_max``/
``tables_max``), so a replay after a crash skips what a backend already committed: replay is
idempotent.

Commit policy: the first uncommitted document starts a clock; the index is committed and
the reader reloaded when ``commit_interval`` has elapsed (or on ``flush``), so an event is
searchable at most ``commit_interval`` + commit time after ``append`` returned. Timed commits
are asynchronous: the writer thread projects the next records and inserts their rows while
the sink commits, and the reader reloads when the commit is done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import tantivy

from index.errors import StoreClosedError, StoreError
from index.journal import JournalRecord
from index.schema import Projection, project_many
from index.sinks import TantivySink
from index.tables import Tables

__all__ = ["Indexer", "IndexerStats"]

logger = logging.getLogger(__name__)

_STOP = object()
_NO_LIMIT = 2**63
_GROUP_EVENTS = 20_000
_POLL = 0.05


@dataclass(frozen=True, slots=True)
class IndexerStats:
    """Counters of the writer thread."""

    tantivy_max: int
    tables_max: int
    pending: int
    commits: int
    last_commit: float
    error: str | None


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


class Indexer:
    """Owns the Tantivy sink and the DuckDB writer connection; runs the writer thread.

    Args:
        sink_factory: Opens the Tantivy sink (again, after the writer process died).
        replay: ``replay(after_seq)`` yields the journal records after a sequence number.
        floor: Sequence number up to which retention deleted everything (never replayed).

    Failures never lose acknowledged events: when anything fails (a group, a commit, a
    reindex, a retention delete, the writer process) the writer is *in a gap*: groups that
    arrive stay in the journal, and the next group (at most every ``repair_interval``
    seconds), an idle tick or ``commit``/``flush`` repairs: a new sink (uncommitted
    documents dropped), ``tantivy_max`` and ``tables_max`` read back from the backends (never
    below the retention floor), and the journal after the lower one applied again, each
    backend skipping what it holds.
    """

    def __init__(
        self,
        index: tantivy.Index,
        tables: Tables,
        sink_factory: Callable[[], TantivySink],
        *,
        replay: Callable[[int], Iterable[JournalRecord]],
        commit_interval: float,
        max_queue: int = 32,
        repair_interval: float = 10.0,
        floor: int = 0,
    ) -> None:
        self.index = index
        self._floor = floor  # NOTE(index): retention deleted everything up to here
        self.tables = tables
        self._sink_factory = sink_factory
        self._replay = replay
        self._repair_interval = repair_interval
        self._gap = False  # NOTE(index): a group failed; the journal must be replayed
        self._next_repair = 0.0
        self._commit_interval = commit_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.tantivy_max = max(self._tantivy_max_seq(), floor)
        self.tables_max = max(tables.max_seq(), floor)
        self._sink = sink_factory()  # NOTE(index): last: nothing after it can fail and leak it
        self._dirty_since: float | None = None
        self._commits = 0
        self._last_commit = 0.0
        self._error: str | None = None
        self._pending_commit: Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name="heron-index-writer", daemon=True)
        self._started = False
        self._stopping = False
        self._stop_lock = threading.Lock()

    def _tantivy_max_seq(self) -> int:
        self.index.reload()
        searcher = self.index.searcher()
        if searcher.num_docs == 0:
            return 0
        hits = searcher.search(
            tantivy.Query.all_query(),
            1,
            count=False,
            order_by_field="seq",
            order=tantivy.Order.Desc,
        ).hits
        return int(hits[0][0]) if hits else 0

    # -- public (any thread) ----------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._started = True
        self._thread.start()

    def submit(self, record: JournalRecord, encoded: list[bytes] | None = None) -> None:
        """Queue one journal record (blocks when the queue is full: back-pressure)."""
        self._queue.put((record, encoded))

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the writer thread after everything queued before it.

        After ``stop`` the future fails with :class:`StoreClosedError` (never hangs).
        """
        future: Future[Any] = Future()
        with self._stop_lock:
            if self._stopping:
                future.set_exception(StoreClosedError("the event store is closed"))
                return future
            self._queue.put(_Call(fn, future))
        return future

    @property
    def writer_pid(self) -> int | None:
        """Pid of the process that writes the Tantivy index."""
        return self._sink.pid

    def stats(self) -> IndexerStats:
        """Return the writer counters."""
        error = self._error or self._sink.last_error
        if not self.alive:
            error = f"the index writer thread stopped ({error})"
        return IndexerStats(
            self.tantivy_max,
            self.tables_max,
            self._queue.qsize(),
            self._commits,
            self._last_commit,
            error,
        )

    def stop(self, timeout: float | None = None) -> None:
        """Commit what is pending and stop the thread (idempotent)."""
        with self._stop_lock:
            already, self._stopping = self._stopping, True
        if not already and self._started and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        while True:  # NOTE(index): calls queued behind _STOP by a racing caller
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Call):
                item.future.set_exception(StoreClosedError("the event store is closed"))

    # -- writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as ex:  # noqa: BLE001 - only _STOP may end the writer thread
                self._fail("index writer thread error", ex)

    def _step(self) -> bool:
        """Wait for and do one piece of work; False after ``_STOP``."""
        try:
            item = self._queue.get(timeout=self._idle_timeout())
        except queue.Empty:
            self._on_idle()
            return True
        if item is _STOP:
            self._commit_safely()
            return False
        if isinstance(item, _Call):
            self._run_call(item)
            return True
        self._apply_group(item)
        if self._commit_due():
            self._begin_commit()
        return True

    def _idle_timeout(self) -> float | None:
        """How long the writer thread may wait for work before it has something to do."""
        timeout = None
        if self._dirty_since is not None and not self._gap:  # NOTE(index): no commit in a gap
            timeout = max(0.0, self._dirty_since + self._commit_interval - time.monotonic())
        if self._pending_commit is not None:  # NOTE(index): account for it when it ends
            timeout = _POLL if timeout is None else min(timeout, _POLL)
        if self._gap:  # NOTE(index): repair when idle too, not only when groups arrive
            due = max(0.0, self._next_repair - time.monotonic())
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def _on_idle(self) -> None:
        if self._gap:
            self._repair(before=_NO_LIMIT)
        if self._pending_commit is not None and self._pending_commit.done():
            self._finish_commit()
        if self._commit_due():
            self._begin_commit()

    def _commit_due(self) -> bool:
        return (
            self._dirty_since is not None
            and time.monotonic() - self._dirty_since >= self._commit_interval
        )

    def _apply_group(self, first: tuple[JournalRecord, list[bytes] | None]) -> None:
        """Apply ``first`` with the records queued behind it (up to ``_GROUP_EVENTS``)."""
        group = [first]
        size = first[0].count
        while size < _GROUP_EVENTS:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(nxt, tuple):
                self._apply_safely(group)
                group = []
                self._queue_front(nxt)
                break
            group.append(nxt)
            size += nxt[0].count
        if group:
            self._apply_safely(group)

    def _queue_front(self, item: Any) -> None:
        if item is _STOP:
            self._commit_safely()
            self._queue.put(_STOP)  # NOTE(index): nothing is queued after _STOP
            return
        self._run_call(item)

    def _run_call(self, call: _Call) -> None:
        try:
            call.future.set_result(call.fn())
        except BaseException as ex:  # noqa: BLE001 - handed to the caller
            call.future.set_exception(ex)

    def _apply_safely(self, group: list[tuple[JournalRecord, list[bytes] | None]]) -> None:
        if self._gap and not self._repair(before=group[0][0].first_seq):
            return  # NOTE(index): the group stays in the journal; a later repair replays it
        try:
            self.apply(group)
        except Exception as ex:  # noqa: BLE001 - the journal keeps the data; repaired later
            self._fail("indexing failed; the events stay in the journal", ex)

    def _commit_safely(self) -> None:
        try:
            self.commit()
        except Exception as ex:  # noqa: BLE001
            self._fail("index commit failed", ex)

    def _fail(self, what: str, ex: BaseException) -> None:
        self._error = f"{type(ex).__name__}: {ex}"
        self._gap = True
        logger.error("%s: %s", what, self._error, exc_info=True)

    def _repair(self, before: int, *, force: bool = False) -> bool:
        """Leave the gap: replace a dead sink, replay the journal up to ``before``."""
        now = time.monotonic()
        if not force and now < self._next_repair:
            return False
        self._next_repair = now + self._repair_interval
        try:
            # NOTE(index): whatever failed, start again from what the backends *hold*: a new
            # writer (uncommitted documents dropped) and both maxima read back.
            self._replace_sink()
            self.tables_max = max(self.tables.max_seq(), self._floor)
            after = max(min(self.tantivy_max, self.tables_max), self._floor)
            group: list[tuple[JournalRecord, list[bytes] | None]] = []
            for record in self._replay(after):
                if record.first_seq >= before:
                    break
                group.append((record, None))
                if len(group) >= 64:
                    self.apply(group)
                    group = []
            if group:
                self.apply(group)
        except Exception as ex:  # noqa: BLE001 - still in the gap; retried later
            self._fail("index repair failed", ex)
            return False
        self._gap = False
        self._error = None
        logger.warning("event index repaired: journal replayed after seq %d", after)
        return True

    def _replace_sink(self) -> None:
        old, self._pending_commit, self._dirty_since = self._sink, None, None
        try:
            old.close(timeout=5.0)
        except Exception:  # noqa: BLE001 - it is dead already
            pass
        self._sink = self._sink_factory()
        # NOTE(index): what the index committed (not below what retention already deleted)
        self.tantivy_max = max(self._tantivy_max_seq(), self._floor)
        logger.warning("index writer restarted (pid %s)", self._sink.pid)

    # -- operations (writer thread only) ----------------------------------------------

    def apply(self, group: list[tuple[JournalRecord, list[bytes] | None]]) -> None:
        """Index a group of records into both backends, skipping what each already has.

        PERF(index): the projection and the DuckDB insert run while a background commit of
        the previous documents may still be in flight (``_begin_commit``); only adding the
        documents to the Tantivy writer waits for it.
        """
        rows: list[tuple[Any, ...]] = []
        batches: list[tuple[Any, ...]] = []
        docs: list[bytes] = []
        raws: list[bytes] = []
        tantivy_max = self.tantivy_max
        for record, encoded in group:
            if record.last_seq <= min(tantivy_max, self.tables_max):
                continue
            for proj in _projections(record, encoded):
                if proj.seq > tantivy_max:
                    docs.append(proj.doc_json)
                    raws.append(proj.raw)
                if proj.seq > self.tables_max:
                    rows.append(proj.row)
            if record.batch_id is not None and record.last_seq > self.tables_max:
                batches.append(
                    (
                        record.endpoint.get("uuid", "").lower(),
                        record.batch_id,
                        record.first_seq,
                        record.count,
                        _utc(record.rt_ns),
                    )
                )
            tantivy_max = max(tantivy_max, record.last_seq)
        if rows or batches:
            self.tables.insert(rows, batches)
            self.tables_max = max(
                self.tables_max,
                max((r[0] for r in rows), default=0),
                max((b[2] + b[3] - 1 for b in batches), default=0),
            )
        if docs:
            self._sink.add(docs, raws)
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
        self.tantivy_max = tantivy_max

    def _begin_commit(self) -> None:
        """Ask the sink to commit what was added; the reader reloads when it is done.

        PERF(index): a commit (segment serialization + fsync) blocked the writer thread for
        a large part of every second at 10k+ events/s; the writer thread goes on projecting
        and inserting rows meanwhile. Visibility is unchanged: the commit still starts
        ``commit_interval`` after the first uncommitted document.
        """
        if self._dirty_since is None or self._gap:  # NOTE(index): the repair commits
            return
        self._finish_commit()
        self._dirty_since = None
        try:
            future = self._sink.commit_async()
        except Exception as ex:  # noqa: BLE001 - the journal keeps the data; repaired later
            self.mark_dirty()
            self._fail("index commit failed", ex)
            return
        future.add_done_callback(self._on_committed)
        self._pending_commit = future

    def _on_committed(self, future: Future[None]) -> None:
        """Reload the reader as soon as a commit is done (any thread; ``_finish_commit``
        reloads again on the writer thread before anyone is told the commit is done)."""
        if future.exception() is None:
            try:
                self.index.reload()
            except ValueError:
                logger.error("index reader reload failed", exc_info=True)

    def _finish_commit(self) -> None:
        """Wait for a pending commit and reload; on failure enter the gap (repaired later)."""
        future, self._pending_commit = self._pending_commit, None
        if future is None:
            return
        try:
            future.result()
            self.index.reload()
        except Exception as ex:  # noqa: BLE001 - the journal keeps the data
            self.mark_dirty()
            self._fail("index commit failed", ex)
            return
        self._committed()

    def _committed(self) -> None:
        self._commits += 1
        self._last_commit = time.time()
        if not self._gap:
            self._error = None

    def commit(self) -> None:
        """Commit the Tantivy writer and reload the reader (no-op when clean).

        Repairs first when a group failed or the sink died (``flush`` heals).

        Raises:
            StoreError: the commit or the repair failed.
        """
        self._finish_commit()
        try:
            self._sink.check()
        except StoreError as ex:
            self._fail("index writer lost", ex)
        if self._gap and not self._repair(before=_NO_LIMIT, force=True):
            raise StoreError(f"the event index could not be repaired: {self._error}")
        if self._dirty_since is None:
            return
        self._dirty_since = None
        try:
            self._sink.commit_async().result()
            self.index.reload()
        except Exception as ex:  # noqa: BLE001 - re-raised as StoreError
            self.mark_dirty()
            self._fail("index commit failed", ex)
            raise StoreError(f"Tantivy commit failed: {ex}") from ex
        self._committed()

    def mark_dirty(self) -> None:
        """Force the next ``commit`` to run (after deletes)."""
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()

    def delete_below(self, seq: int) -> None:
        """Delete every document with a sequence number below ``seq`` from both backends."""
        if seq <= 1:
            return
        self.commit()
        self._floor = max(self._floor, seq - 1)  # NOTE(index): before: a repair must not
        with self._failing("retention delete failed"):  # bring them back
            self._sink.delete_below(seq)
            self.index.reload()
            self.tables.execute_writes(
                [
                    ("DELETE FROM events WHERE seq < ?", (seq,)),
                    ("DELETE FROM batches WHERE first_seq + count <= ?", (seq,)),
                ]
            )

    def rebuild(self, records: Iterable[JournalRecord]) -> int:
        """Empty both backends and index ``records`` again (reindex); return the events."""
        self.commit()
        total = 0
        with self._failing("reindex failed"):  # NOTE(index): the repair finishes the job
            self._sink.delete_all()
            self.index.reload()
            self.tables.execute_writes([("DELETE FROM events", ()), ("DELETE FROM batches", ())])
            self.tantivy_max = self.tables_max = self._floor
            group: list[tuple[JournalRecord, list[bytes] | None]] = []
            for record in records:
                group.append((record, None))
                total += record.count
                if len(group) >= 64:
                    self.apply(group)
                    group = []
            if group:
                self.apply(group)
        self.commit()
        return total

    def merge(self) -> int:
        """Commit, wait for segment merges, collect garbage; return the segment count."""
        self.commit()
        with self._failing("segment merge failed"):
            self._sink.merge()
        self.index.reload()
        return int(self.index.searcher().num_segments)

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Enter the gap (and re-raise) when the block fails: a repair replays the journal."""
        try:
            yield
        except Exception as ex:
            self._fail(what, ex)
            raise

    @property
    def alive(self) -> bool:
        """False when the writer thread ended without being stopped."""
        return not self._started or self._thread.is_alive() or self._stopping

    def close_writer(self) -> None:
        """Release the Tantivy writer (after ``stop``)."""
        self._sink.close()


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC).replace(tzinfo=None)


def _projections(record: JournalRecord, encoded: list[bytes] | None) -> list[Projection]:
    endpoint = record.endpoint.get("uuid", "").lower()
    hostname = record.endpoint.get("hostname", "")
    rt = datetime.fromtimestamp(record.rt_ns // 1000 / 1e6, UTC)
    raws = encoded if encoded is not None else [orjson.dumps(event) for event in record.events]
    return project_many(
        record.events,
        first_seq=record.first_seq,
        rt=rt,
        endpoint=endpoint,
        hostname=hostname,
        raws=raws,
    )
