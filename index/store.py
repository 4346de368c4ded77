"""``EventStore``: the manager's event store (journal + Tantivy + DuckDB) and its API.

Lifecycle: ``EventStore(root)`` recovers the journal tail, opens (or rebuilds) the Tantivy
index and the DuckDB tables, queues every journal record that a backend has not committed
yet (idempotent replay), and starts the writer thread. ``append`` is durable on return;
``search``/``sql``/``iter_events`` read from any thread; ``close`` is idempotent.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: Tantivy's writer lock still guards the index
    fcntl = None  # type: ignore[assignment]

import orjson
import tantivy

from index.errors import IndexQueryError, StoreClosedError, StoreError
from index.finalize import finalize_event
from index.journal import Journal, JournalRecord, fsync_dir
from index.query import QueryTranslator
from index.results import (
    AppendResult,
    EndpointRef,
    SearchPage,
    StoreState,
    decode_cursor,
    encode_cursor,
    rfc3339_ns,
)
from index.schema import SCHEMA_VERSION, build_schema, register_analyzers, to_micros
from index.sinks import LocalWriter, TantivySink, WriterProcess
from index.tables import SqlResult, Tables
from index.timewin import TimeLike, parse_datetime
from index.writer import Indexer

__all__ = ["AppendResult", "EndpointRef", "EventStore", "SearchPage", "StoreState"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Q = tantivy.Query
Occur = tantivy.Occur
_ITER_WINDOW = 20_000
MAX_LIMIT = 10_000


def _lock_root(root: Path) -> Any:
    """Hold an exclusive lock on ``root/LOCK`` for the life of the store (one owner process)."""
    handle = (root / "LOCK").open("a+")
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as ex:
            handle.close()
            raise StoreError(f"event store {root} is in use by another process") from ex
    return handle


class _Closer:
    """Adapts a close function to the ``close()`` of the parts opened so far."""

    def __init__(self, close: Callable[[], None]) -> None:
        self.close = close


def _stored_event(searcher: tantivy.Searcher, addr: tantivy.DocAddress) -> dict[str, Any]:
    raw = searcher.doc(addr).get_first("raw")
    if not isinstance(raw, bytes):
        raise StoreError("index document without its stored event")
    event: dict[str, Any] = orjson.loads(raw)
    return event


class EventStore:
    """Durable, searchable event store; one per manager process.

    Args:
        root: Directory holding ``journal/``, ``index/`` and ``events.duckdb``.
        clock: Returns epoch seconds (receipt times, retention).
        commit_interval: Seconds between index commits (events searchable within it).
        heap_size: Tantivy writer heap in bytes.
        index_threads: Tantivy indexing threads.
        fsync: Fsync the journal before ``append`` returns (only tests turn it off).
        journal_segment_bytes: Size at which the journal starts a new segment file.
        index_process: Write the Tantivy index from a child process (``index.sinks``); the
            manager does, so that indexing uses another core.
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
        index_process: bool = False,
        memory_limit: str = "2GB",
        sql_threads: int | None = None,
    ) -> None:
        self.root = Path(root)
        self._clock = clock
        self._state = StoreState.OPEN
        self._append_lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_root(self.root)
        opened: list[Any] = []
        try:
            self._state_path = self.root / "store.json"
            state = self._load_state()
            self._min_seq: int = int(state.get("min_seq", 1))
            ratio = state.get("size_ratio")
            self._size_ratio: float | None = float(ratio) if ratio else None
            self.journal = Journal(
                self.root / "journal", segment_bytes=journal_segment_bytes, fsync=fsync
            )
            opened.append(self.journal)
            self._index = self._open_index(self.root / "index")
            self._schema = self._index.schema
            self._translator = QueryTranslator(self._schema)
            self.tables = Tables(
                self.root / "events.duckdb", memory_limit=memory_limit, threads=sql_threads
            )
            opened.append(self.tables)

            def open_sink() -> TantivySink:
                if index_process:
                    return WriterProcess(
                        self.root / "index", heap_size=heap_size, num_threads=index_threads
                    )
                return LocalWriter(self._index, heap_size=heap_size, num_threads=index_threads)

            self._indexer = Indexer(
                self._index,
                self.tables,
                open_sink,
                replay=self._journal_after,
                commit_interval=commit_interval,
                floor=self._min_seq - 1,
            )
            opened.append(_Closer(self._indexer.close_writer))
            self._batches: dict[tuple[str, str], tuple[int, int]] = {
                (ep, bid): (first, count) for ep, bid, first, count in self.tables.batch_keys()
            }
        except BaseException:
            for part in reversed(opened):
                part.close()
            self._lock_file.close()
            raise
        self._indexer.start()
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

    def _load_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_path.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as ex:
            raise StoreError(f"unreadable {self._state_path}: {ex}") from ex

    def _save_state(self) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        state: dict[str, Any] = {"min_seq": self._min_seq, "schema": SCHEMA_VERSION}
        if self._size_ratio is not None:
            state["size_ratio"] = self._size_ratio
        with tmp.open("w") as fh:  # NOTE(index): the retention floor must survive a power cut
            fh.write(json.dumps(state))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self._state_path)
        fsync_dir(self.root)

    def _open_index(self, path: Path) -> tantivy.Index:
        marker = path / "heron-schema.json"
        try:
            version = json.loads(marker.read_text()).get("version") if marker.exists() else None
            if version != SCHEMA_VERSION and path.exists():
                logger.warning(
                    "index schema %s != %s: rebuilding from the journal", version, SCHEMA_VERSION
                )
                shutil.rmtree(path)
            path.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(build_schema(), path=str(path), reuse=True)
            marker.write_text(json.dumps({"version": SCHEMA_VERSION}))
        except (OSError, ValueError) as ex:
            raise StoreError(f"cannot open index {path}: {ex}") from ex
        register_analyzers(index)
        return index

    def _finish_retention(self) -> None:
        """Finish a retention pass a crash or a failure interrupted (events below ``min_seq``).

        Raises:
            StoreError: the backends' deletes failed (the journal is dropped already).
        """
        if self._min_seq <= 1:
            return
        self.journal.drop_before(self._min_seq)  # NOTE(index): first: frees the most space
        with self._append_lock:
            self._batches = {k: v for k, v in self._batches.items() if sum(v) > self._min_seq}
        if self.tables.read("SELECT count(*) FROM events WHERE seq < ?", (self._min_seq,))[0][0]:
            self._on_writer(lambda: self._indexer.delete_below(self._min_seq))
            logger.warning("finished an interrupted retention pass below seq %d", self._min_seq)

    def _journal_after(self, seq: int) -> Iterator[JournalRecord]:
        """Journal records after ``seq`` that retention kept (the writer's repairs)."""
        return self.journal.read(after_seq=max(seq, self._min_seq - 1))

    def _replay(self) -> int:
        stats = self._indexer.stats()
        count = 0
        for record in self._journal_after(min(stats.tantivy_max, stats.tables_max)):
            if record.batch_id is not None:
                key = (record.endpoint.get("uuid", "").lower(), record.batch_id)
                self._batches[key] = (record.first_seq, record.count)
            self._indexer.submit(record)
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

    def close(self) -> None:
        """Index what is queued, commit, and release every file (idempotent)."""
        with self._append_lock:  # NOTE(index): no append is between fsync and submit
            if self._state is StoreState.CLOSED:
                return
            self._state = StoreState.CLOSED
        self._indexer.stop()
        self._indexer.close_writer()
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
        self, events: list[dict[str, Any]], *, endpoint: EndpointRef, batch_id: str | None = None
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
        self, events: list[dict[str, Any]], *, endpoint: EndpointRef, batch_id: str | None = None
    ) -> AppendResult:
        """Store retro-hunt detections (``EdrData.Event.Retro = true``) as new events.

        ``events`` are stored events re-matched by ``rules.Engine`` (their ``Detection`` set);
        they get new sequence numbers and keep their event hash. Search them with
        ``retro:true`` or ``detections_only=True``.
        """
        return self._append(events, endpoint=endpoint, batch_id=batch_id, retro=True)

    def _append(
        self,
        events: list[dict[str, Any]],
        *,
        endpoint: EndpointRef,
        batch_id: str | None,
        retro: bool,
    ) -> AppendResult:
        self._check_open()
        key = (endpoint.uuid.lower(), batch_id) if batch_id is not None else None
        hit = self._batches.get(key) if key is not None else None  # NOTE: retention swaps it
        if hit is not None:
            return AppendResult(hit[0], hit[1], duplicate=True)
        if not events:
            return AppendResult(0, 0)
        rt_ns = int(self._clock() * 1e9)
        receipt = rfc3339_ns(rt_ns)
        edr_endpoint = endpoint.to_edr()
        finals: list[dict[str, Any]] = []
        encoded: list[bytes] = []
        for i, ev in enumerate(events):
            final, blob = finalize_event(ev, i, edr_endpoint, receipt, retro)
            finals.append(final)
            encoded.append(blob)
        with self._append_lock:
            self._check_open()
            hit = self._batches.get(key) if key is not None else None
            if hit is not None:
                return AppendResult(hit[0], hit[1], duplicate=True)
            first = self.journal.next_seq
            record = self.journal.append(
                finals,
                endpoint=asdict(endpoint),
                batch_id=batch_id,
                rt_ns=rt_ns,
                first_seq=first,
                encoded=encoded,
            )
            if key is not None:
                self._batches[key] = (first, len(finals))
            self._indexer.submit(record, encoded)
        return AppendResult(first, len(finals))

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything appended so far is committed and searchable.

        Raises:
            StoreError: the commit or a repair failed, or it took longer than ``timeout``
                (a long backlog being replayed; the events stay durable in the journal).
        """
        self._check_open()
        try:
            self._indexer.call(self._indexer.commit).result(timeout)
        except TimeoutError as ex:
            raise StoreError(f"the event index did not catch up within {timeout} s") from ex

    # -- reading ----------------------------------------------------------------------

    def _filters(
        self,
        query: str,
        since: TimeLike,
        until: TimeLike,
        endpoint: str | None,
        detections_only: bool,
    ) -> list[tuple[tantivy.Occur, tantivy.Query]]:
        clauses = [(Occur.Must, self._translator.translate(query))]
        start = None if since in (None, "") else parse_datetime(since)
        end = None if until in (None, "") else parse_datetime(until)
        if start is not None and end is not None and start > end:
            raise IndexQueryError("since is after until")
        if start is not None or end is not None:
            clauses.append(
                (
                    Occur.Must,
                    Q.range_query(
                        self._schema,
                        "ts",
                        tantivy.FieldType.Integer,
                        None if start is None else to_micros(start),
                        None if end is None else to_micros(end),
                    ),
                )
            )
        if endpoint:
            clauses.append((Occur.Must, Q.term_query(self._schema, "endpoint", endpoint.lower())))
        if detections_only:
            clauses.append((Occur.Must, Q.term_query(self._schema, "det", 1)))
        return clauses

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
        limit = max(1, min(int(limit), MAX_LIMIT))
        clauses = self._filters(query, since, until, endpoint, detections_only)
        seen: set[int] = set()
        total = -1
        if cursor:
            boundary, seen, total = decode_cursor(cursor)
            clauses.append(
                (
                    Occur.Must,
                    Q.range_query(self._schema, "ts", tantivy.FieldType.Integer, None, boundary),
                )
            )
        searcher = self._index.searcher()
        try:
            result = searcher.search(
                Q.boolean_query(clauses),
                limit + 1 + len(seen),
                count=total < 0,
                order_by_field="ts",
                order=tantivy.Order.Desc,
            )
        except ValueError as ex:
            raise IndexQueryError(f"search failed: {ex}", query=query) from ex
        if total < 0:
            total = int(result.count or 0)  # type: ignore[attr-defined]  # NOTE: stub lacks it
        seqs = [
            int(s or 0)
            for s in searcher.fast_field_values("seq", [addr for _, addr in result.hits])
        ]
        picked = [
            (key, seq, addr)
            for (key, addr), seq in zip(result.hits, seqs, strict=True)
            if seq not in seen
        ][:limit]
        picked.sort(key=lambda h: (h[0], h[1]), reverse=True)
        events = [_stored_event(searcher, addr) for _, _, addr in picked]
        next_cursor = None
        if len(picked) == limit and len(result.hits) > limit + len(seen):
            last_ts = picked[-1][0]
            at_boundary = [s for k, s, _ in picked if k == last_ts]
            if picked[0][0] == last_ts:
                at_boundary += list(seen)
            next_cursor = encode_cursor(last_ts, at_boundary, total)
        return SearchPage(events, next_cursor, total)

    def count(self, query: str = "", **filters: Any) -> int:
        """Return the number of matching events (same filters as ``search``)."""
        self._check_open()
        clauses = self._filters(
            query,
            filters.get("since"),
            filters.get("until"),
            filters.get("endpoint"),
            bool(filters.get("detections_only")),
        )
        result = self._index.searcher().search(Q.boolean_query(clauses), 1, count=True)
        return int(result.count or 0)  # type: ignore[attr-defined]

    def iter_events(
        self,
        *,
        since: TimeLike = None,
        until: TimeLike = None,
        endpoint: str | None = None,
        query: str = "",
        detections_only: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Yield every matching stored event in store order (retro-hunt input).

        PERF(index): the store is walked in windows of ``_ITER_WINDOW`` sequence numbers (an
        inverted-index range on ``seq``), so a hunt over N events costs O(N), not O(N²).
        """
        self._check_open()
        base = self._filters(query, since, until, endpoint, detections_only)
        lo = self._min_seq
        while lo < self.journal.next_seq:
            hi = lo + _ITER_WINDOW - 1
            window = Q.range_query(
                self._schema, "seq", tantivy.FieldType.Unsigned, lo, hi, use_inverted_index=True
            )
            searcher = self._index.searcher()
            hits = searcher.search(
                Q.boolean_query([*base, (Occur.Must, window)]),
                _ITER_WINDOW,
                count=False,
                order_by_field="seq",
                order=tantivy.Order.Asc,
            ).hits
            for _, addr in hits:
                yield _stored_event(searcher, addr)
            lo = hi + 1

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
        result: T = self._indexer.call(fn).result(timeout)
        return result

    def reindex(self) -> int:
        """Rebuild the Tantivy index and the tables from the journal; return events indexed."""

        def run() -> int:
            return self._indexer.rebuild(self._journal_after(0))

        with self._append_lock:  # NOTE(index): appends wait; the journal must not move
            count = self._on_writer(run)
        logger.info("reindexed %d events from the journal", count)
        return count

    def merge_segments(self) -> int:
        """Merge Tantivy segments and purge deleted documents; return the segment count."""
        return self._on_writer(self._indexer.merge)

    def apply_retention(
        self, *, max_age: timedelta | None = None, max_bytes: int | None = None
    ) -> int:
        """Drop the oldest events (by receipt order) past an age or a disk budget.

        ``max_bytes`` is compared with an *estimate* of the bytes the live events take, not with
        ``disk_usage()["total"]``: DuckDB's file and Tantivy's segments do not shrink when rows
        are deleted (a DuckDB checkpoint can even grow the file with no new events), so the raw
        total would make every pass delete more old events even when the live data fits. Only
        the journal really shrinks (whole segments are dropped) and grows in proportion to the
        events. So the estimate is ``journal bytes x ratio``: the ratio is measured at the first
        pass (disk total / journal bytes) and, after every pass, recomputed as the estimate
        scaled to the events kept / the journal bytes left, then saved in ``store.json``
        (``size_ratio``). A second pass with the same cap and no new events removes nothing
        (same journal, same estimate, already under the cap); new events grow the journal and
        push the oldest out. See ``_estimate_live_bytes``.

        Returns:
            The new lowest kept sequence number.
        """
        self.flush()
        self._finish_retention()  # NOTE(index): a previous pass that failed half-way
        cutoff = self._min_seq
        if max_age is not None:
            limit = datetime.fromtimestamp(self._clock(), UTC) - max_age
            rows = self.tables.read(
                "SELECT max(seq) FROM events WHERE rt < ?", (limit.replace(tzinfo=None),)
            )
            if rows and rows[0][0] is not None:
                cutoff = max(cutoff, int(rows[0][0]) + 1)
        estimate = live_before = 0
        if max_bytes is not None:
            estimate = self._estimate_live_bytes()
            live_before = int(self.tables.read("SELECT count(*) FROM events")[0][0])
            if estimate > max_bytes and live_before:
                drop = int((estimate - max_bytes) / (estimate / live_before)) + 1
                rows = self.tables.read(
                    "SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (drop,)
                )
                cutoff = max(cutoff, int(rows[0][0]) if rows else self.journal.next_seq)
        changed = cutoff > self._min_seq
        if changed:
            # NOTE(index): write-ahead: the new floor is saved before anything is deleted, so
            # a crash in between cannot replay the deleted events (the open finishes it).
            self._min_seq = cutoff
            self._save_state()
            self._on_writer(lambda: self._indexer.delete_below(cutoff))
            dropped = self.journal.drop_before(cutoff)
            with self._append_lock:
                self._batches = {k: v for k, v in self._batches.items() if sum(v) > cutoff}
            logger.info(
                "retention: kept seq >= %d, dropped %d journal segments", cutoff, len(dropped)
            )
        if max_bytes is not None:
            live_after = int(self.tables.read("SELECT count(*) FROM events")[0][0])
            kept = estimate * live_after / live_before if live_before else 0.0
            journal = self.disk_usage()["journal"]
            if kept > 0 and journal > 0:  # else keep the last ratio (0 would disable the cap)
                self._size_ratio = kept / journal
            self._save_state()
        return self._min_seq

    def _estimate_live_bytes(self) -> int:
        """Estimate the bytes the live events take (for ``apply_retention(max_bytes=...)``).

        Without a saved ratio (first size pass): the measured disk total. With one: journal
        bytes x ``size_ratio`` (store bytes per journal byte at the end of the last pass),
        never more than the measured disk total.
        """
        usage = self.disk_usage()
        if self._size_ratio is None:
            return usage["total"]
        return min(usage["total"], int(usage["journal"] * self._size_ratio))

    def disk_usage(self) -> dict[str, int]:
        """Return bytes on disk per component and in total."""

        def size(path: Path) -> int:
            # NOTE(index): the writer deletes files meanwhile (merged segments, rows file)
            total = 0
            for file in [path] if not path.is_dir() else path.rglob("*"):
                try:
                    if file.is_file():
                        total += file.stat().st_size
                except OSError:
                    pass
            return total

        usage = {
            "journal": size(self.root / "journal"),
            "index": size(self.root / "index"),
            "tables": sum(
                size(p)
                for p in self.root.glob("events.duckdb*")
                if not p.name.endswith(".rows.json")
            ),
        }
        usage["total"] = sum(usage.values())
        return usage

    def health(self) -> dict[str, Any]:
        """Cheap indexing state for /healthz and /metrics (no disk walk, unlike ``stats``).

        ``backlog``: journaled events not yet handed to both backends; ``error``: the current
        indexing failure (events stay in the journal; the writer repairs), or None.
        """
        self._check_open()
        writer = self._indexer.stats()
        indexed = min(writer.tantivy_max, writer.tables_max)
        backlog = max(0, self.journal.next_seq - 1 - max(indexed, self._min_seq - 1))
        return {"backlog": backlog, "error": writer.error, "writer_pid": self._indexer.writer_pid}

    def stats(self) -> dict[str, Any]:
        """Return counters: events, segments, pending records, bytes, last commit, and the
        pid of the process writing the Tantivy index."""
        self._check_open()
        searcher = self._index.searcher()
        writer = self._indexer.stats()
        return {
            "events": int(searcher.num_docs),
            "segments": int(searcher.num_segments),
            "next_seq": self.journal.next_seq,
            "min_seq": self._min_seq,
            "pending": writer.pending,
            "commits": writer.commits,
            "last_commit": writer.last_commit,
            "indexer_error": writer.error,
            "writer_pid": self._indexer.writer_pid,
            "bytes": self.disk_usage(),
        }
