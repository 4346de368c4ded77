"""``EventStore``: the manager's event store (journal + Tantivy + DuckDB) and its API.

Lifecycle: ``EventStore(root)`` recovers the journal tail, opens (or rebuilds) the Tantivy
index and the DuckDB tables, queues every journal record that a backend has not committed
yet (idempotent replay), and starts the writer thread. ``append`` is durable on return;
``search``/``sql``/``iter_events`` read from any thread; ``close`` is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from index.batchids import BatchIds
from index.errors import StoreClosedError, StoreError
from index.finalize import finalize_batch
from index.journal import Journal, JournalRecord
from index.mapped import MAPPED_LIMIT, MappedTrimmer
from index.reader import Reader
from index.results import (
    AppendResult,
    EndpointRef,
    IndexHealth,
    IndexState,
    SearchPage,
    StoreState,
    rfc3339_ns,
)
from index.sinks import LocalWriter, TantivySink, WriterProcess
from index.storefiles import Closer, lock_root, open_versioned_index
from index.storeretention import RetentionPasses
from index.tables import SqlResult, Tables
from index.timewin import TimeLike
from index.writer import Indexer

__all__ = [
    "AppendResult",
    "EndpointRef",
    "EventStore",
    "IndexHealth",
    "IndexState",
    "SearchPage",
    "StoreState",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class EventStore(RetentionPasses):
    """Durable, searchable event store; one per manager process.

    Args:
        root: Directory holding ``journal/``, ``index/`` and ``events.duckdb``.
        clock: Returns epoch seconds (receipt times, retention).
        commit_interval: Seconds between index commits (events searchable within it).
        heap_size: Tantivy writer heap in bytes.
        index_threads: Tantivy indexing threads.
        fsync: Fsync the journal before ``append`` returns (only tests turn it off).
        journal_segment_bytes: Size at which the journal starts a new segment file.
        index_process: Write the Tantivy index from a child process (``index.sinks``), as
            the manager does, so that indexing uses another core; False keeps the writer in
            this process (tests and tools).
        memory_limit: DuckDB ``memory_limit``; sql_threads: its threads.
        queue_bytes: Estimated memory of the batches journaled but not yet indexed; ``append``
            waits beyond it (back-pressure on ingest instead of unbounded growth).

    Attributes:
        writer: The writer thread (``index.writer.Indexer``): its public methods are the
            store's test hooks (inject a failure, defer a repair, run a call on the thread).
    """

    def __init__(
        self,
        root: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        commit_interval: float = 1.0,
        heap_size: int = 128_000_000,
        index_threads: int = 1,
        fsync: bool = True,
        journal_segment_bytes: int = 64 * 1024 * 1024,
        index_process: bool = True,
        memory_limit: str = "2GB",
        sql_threads: int | None = None,
        queue_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.root = Path(root)
        self._clock = clock
        self._state = StoreState.OPEN
        self._append_lock = threading.Lock()  # batch id check + journal write (not the fsync)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = lock_root(self.root)
        opened: list[Any] = []
        try:
            self._state_path = self.root / "store.json"
            state = self._load_state()
            self._min_seq: int = int(state.get("min_seq", 1))
            ratio = state.get("size_ratio")
            self._size_ratio: float | None = float(ratio) if ratio else None
            self.journal = Journal(
                self.root / "journal",
                segment_bytes=journal_segment_bytes,
                fsync=fsync,
                on_durable=self._on_durable,
            )
            opened.append(self.journal)
            self._index = open_versioned_index(self.root / "index")
            self._reader = Reader(self._index)
            # searches (a retro-hunt reads every stored event) map index pages: bounded
            self._trimmer = MappedTrimmer(self.root / "index", MAPPED_LIMIT).start()
            opened.append(Closer(self._trimmer.stop))
            self.tables = Tables(
                self.root / "events.duckdb", memory_limit=memory_limit, threads=sql_threads
            )
            opened.append(self.tables)

            def open_sink(on_failure: Callable[[str], None]) -> TantivySink:
                if index_process:
                    return WriterProcess(
                        self.root / "index",
                        heap_size=heap_size,
                        num_threads=index_threads,
                        on_failure=on_failure,
                    )
                return LocalWriter(self._index, heap_size=heap_size, num_threads=index_threads)

            self.writer = Indexer(
                self._index,
                self.tables,
                open_sink,
                replay=self._journal_after,
                commit_interval=commit_interval,
                max_queue_bytes=queue_bytes,
                floor=self._min_seq - 1,
            )
            opened.append(Closer(self.writer.close_writer))
            self._batches = BatchIds(self.tables.batch_keys())
        except BaseException:
            for part in reversed(opened):
                part.close()
            self._lock_file.close()
            raise
        self.writer.start()
        try:
            try:
                self._finish_retention()
            except Exception as ex:  # noqa: BLE001 - never keep the manager from starting
                logger.error(
                    "could not finish an interrupted retention pass (the next pass retries): %s", ex
                )
            replayed = self._replay()
        except BaseException:
            self.close()
            raise
        logger.info(
            "event store open at %s (next seq %d, %d records replayed)",
            self.root,
            self.journal.next_seq,
            replayed,
        )

    # -- opening ----------------------------------------------------------------------

    def _journal_after(self, seq: int) -> Iterator[JournalRecord]:
        """Journal records after ``seq`` that retention kept (the writer's repairs)."""
        return self.journal.read(after_seq=max(seq, self._min_seq - 1))

    def _replay(self) -> int:
        stats = self.writer.stats()
        count = 0
        for record in self._journal_after(min(stats.tantivy_max, stats.tables_max)):
            self._batches.durable((record,))
            self.writer.submit(record)
            count += 1
        self.journal.skip_to(max(stats.tantivy_max, stats.tables_max) + 1)
        return count

    # -- lifecycle --------------------------------------------------------------------

    @property
    def state(self) -> StoreState:
        """Current lifecycle state."""
        return self._state

    def _check_open(self) -> None:
        if self._state is StoreState.CLOSED:
            raise StoreClosedError(f"event store {self.root} is closed")

    def close(self, *, drain: bool = True) -> None:
        """Index what is queued, commit, and release every file (idempotent).

        ``drain=False``: what is queued is not indexed now but replayed from the journal at
        the next open (a quick stop; nothing acknowledged is lost).
        """
        with self._append_lock:  # no append is between fsync and submit
            if self._state is StoreState.CLOSED:
                return
            self._state = StoreState.CLOSED
            self.journal.drain()  # every written record durable (or refused) and queued
        self.writer.stop(drain=drain)
        self.writer.close_writer()
        self._trimmer.stop()
        self.tables.close()
        self.journal.close()
        self._lock_file.close()
        logger.info("event store closed at %s", self.root)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------

    def append(
        self,
        events: Sequence[Mapping[str, object]],
        *,
        endpoint: EndpointRef,
        batch_id: str | None = None,
    ) -> AppendResult:
        """Journal a batch (fsync'd on return) and queue it for indexing.

        Idempotent on ``(endpoint.uuid, batch_id)``: a repeated batch returns the first
        result with ``duplicate=True``. Sets ``Event.EdrData`` on stored copies.

        Raises:
            InvalidEventError: an event is not a ``{"Event": {...}}`` dict.
            StoreError: the journal could not be written (nothing was acknowledged).
        """
        return self._append(events, endpoint=endpoint, batch_id=batch_id, retro=False)

    def append_detections(
        self,
        events: Sequence[Mapping[str, object]],
        *,
        endpoint: EndpointRef,
        batch_id: str | None = None,
    ) -> AppendResult:
        """Store retro-hunt detections (``EdrData.Event.Retro = true``) as new events.

        ``events`` are stored events re-matched by ``rules.Engine`` (their ``Detection`` set);
        they get new sequence numbers and keep their event hash. Search them with
        ``retro:true`` or ``detections_only=True``.
        """
        return self._append(events, endpoint=endpoint, batch_id=batch_id, retro=True)

    def _append(
        self,
        events: Sequence[Mapping[str, object]],
        *,
        endpoint: EndpointRef,
        batch_id: str | None,
        retro: bool,
    ) -> AppendResult:
        self._check_open()
        key = (endpoint.uuid.lower(), batch_id) if batch_id is not None else None
        hit = self._batches.get(key) if key is not None else None
        if hit is not None:
            return AppendResult(hit[0], hit[1], duplicate=True)
        if not events:
            return AppendResult(0, 0)
        rt_ns = int(self._clock() * 1e9)
        finals, encoded = finalize_batch(events, endpoint.to_edr(), rfc3339_ns(rt_ns), retro)
        prepared = self.journal.encode(  # outside the lock: see Journal.encode
            finals, endpoint=asdict(endpoint), batch_id=batch_id, rt_ns=rt_ns, encoded=encoded
        )
        while True:
            with self._append_lock:
                self._check_open()
                hit, pending = self._batches.lookup(key) if key is not None else (None, None)
                if hit is not None:
                    return AppendResult(hit[0], hit[1], duplicate=True)
                if pending is None or pending.error is not None:
                    ticket = self.journal.write_encoded(prepared)
                    if key is not None:
                        self._batches.writing(key, ticket)
                    break
            try:  # the same batch is being stored by another request: its outcome is ours
                record = self.journal.commit(pending)
            except StoreError:
                continue  # it was refused: store this one
            return AppendResult(record.first_seq, record.count, duplicate=True)
        try:
            record = self.journal.commit(ticket)  # one fsync shared with concurrent batches
        except BaseException:
            if key is not None:
                self._batches.refused(key, ticket)
            raise
        return AppendResult(record.first_seq, len(finals))

    def _on_durable(self, group: list[tuple[JournalRecord, list[bytes] | None]]) -> None:
        """The journal's group commit, in journal order, before any record is acknowledged:
        remember the batch ids and queue the records for indexing."""
        self._batches.durable(record for record, _ in group)
        try:
            for record, encoded in group:
                self.writer.submit(record, encoded)
        except Exception as ex:  # the journal holds them: a repair replays them
            self.writer.fail(f"queueing durable records failed: {ex}")
            raise

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything appended so far is committed and searchable.

        Raises:
            StoreError: the commit or a repair failed, or it took longer than ``timeout``
                (a long backlog being replayed; the events stay durable in the journal).
        """
        self._check_open()
        try:
            self.writer.call(self.writer.commit).result(timeout)
        except TimeoutError as ex:
            raise StoreError(f"the event index did not catch up within {timeout} s") from ex

    # -- reading ----------------------------------------------------------------------

    def search(
        self,
        query: str = "",
        *,
        since: TimeLike = None,
        until: TimeLike = None,
        endpoint: str | None = None,
        detections_only: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SearchPage:
        """Return matching events, newest event time first, ``limit`` per page.

        Raises:
            IndexQueryError: malformed query, time or cursor.
        """
        self._check_open()
        return self._reader.search(query, since, until, endpoint, detections_only, limit, cursor)

    def count(
        self,
        query: str = "",
        *,
        since: TimeLike = None,
        until: TimeLike = None,
        endpoint: str | None = None,
        detections_only: bool = False,
    ) -> int:
        """Return the number of matching events (same filters as ``search``)."""
        self._check_open()
        return self._reader.count(query, since, until, endpoint, detections_only)

    def iter_events(
        self,
        *,
        since: TimeLike = None,
        until: TimeLike = None,
        endpoint: str | None = None,
        query: str = "",
        detections_only: bool = False,
    ) -> Iterator[dict[str, object]]:
        """Yield every matching stored event in store order (retro-hunt input)."""
        self._check_open()
        yield from self._reader.iter_events(
            query,
            since,
            until,
            endpoint,
            detections_only,
            first_seq=self._min_seq,
            next_seq=lambda: self.journal.next_seq,
        )

    def sql(
        self,
        query: str,
        *,
        timeout: float = 10.0,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> SqlResult:
        """Run one read-only SQL statement over the ``events`` table.

        Rows past ``max_rows`` or ``max_bytes`` (JSON) are left out (``truncated``).

        Raises:
            SqlError: not a single SELECT, failed, or timed out.
        """
        self._check_open()
        return self.tables.sql(query, timeout=timeout, max_rows=max_rows, max_bytes=max_bytes)

    # -- maintenance ------------------------------------------------------------------

    def _on_writer(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        self._check_open()
        result: T = self.writer.call(fn).result(timeout)
        return result

    def reindex(self) -> int:
        """Rebuild the Tantivy index and the tables from the journal; return events indexed."""

        def run() -> int:
            return self.writer.rebuild(self._journal_after(0))

        with self._append_lock:  # appends wait; the journal must not move
            self.journal.drain()
            count = self._on_writer(run)
        logger.info("reindexed %d events from the journal", count)
        return count

    def merge_segments(self, *, wait: bool = True) -> int:
        """Merge Tantivy segments and purge deleted documents; return the segment count
        (``wait=False``: commit and collect files, no wait for merges: indexing would stop)."""
        return self._on_writer(lambda: self.writer.merge(wait=wait))

    def health(self) -> IndexHealth:
        """The event index's one health value (/healthz, /metrics; no disk walk, unlike
        ``stats``): its state and why, the journaled events not yet handed to both backends
        (``backlog``), and the pid writing the Tantivy index. In a gap the events stay in the
        journal and the writer repairs.
        """
        self._check_open()
        state, reason = self.writer.health()
        writer = self.writer.stats()
        indexed = min(writer.tantivy_max, writer.tables_max)
        backlog = max(0, self.journal.next_seq - 1 - max(indexed, self._min_seq - 1))
        return IndexHealth(state, reason, backlog, self.writer.pid)

    def stats(self) -> dict[str, object]:
        """Return counters: events, segments, pending records, bytes, last commit, and the
        pid of the process writing the Tantivy index."""
        self._check_open()
        searcher = self._index.searcher()
        writer = self.writer.stats()
        return {
            "events": int(searcher.num_docs),
            "segments": int(searcher.num_segments),
            "next_seq": self.journal.next_seq,
            "min_seq": self._min_seq,
            "pending": writer.pending,
            "commits": writer.commits,
            "journal_syncs": self.journal.syncs,
            "last_commit": writer.last_commit,
            "indexer_error": self.writer.health()[1],
            "writer_pid": self.writer.pid,
            "bytes": self.disk_usage(),
        }
