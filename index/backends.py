"""The two backends the writer thread writes: the Tantivy sink and the DuckDB tables.

Writer thread only. Each backend remembers the highest sequence it holds (``tantivy_max``/
``tables_max``), so applying a record again skips what a backend already has: replay is
idempotent. Every method raises on failure; ``index.writer.Indexer`` turns that into the gap
and repairs with ``replace_sink`` and a replay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import orjson
import tantivy

from index.journal import JournalRecord
from index.schema import Projection, project_many
from index.sinks import TantivySink
from index.tables import Tables

__all__ = ["Backends", "Group", "SinkFactory"]

logger = logging.getLogger(__name__)

SinkFactory = Callable[[Callable[[str], None]], TantivySink]
"""Opens a Tantivy sink; its argument is told why, when the sink dies between operations."""
Group = list[tuple[JournalRecord, list[bytes] | None]]
"""Journal records with their events' JSON when the caller has it (else encoded again)."""


class Backends:
    """The Tantivy sink, the DuckDB tables, what each holds, and the commit in flight.

    Args:
        on_failure: Told why when the sink dies between operations (the writer's gap).
        floor: Sequence number up to which retention deleted everything (never replayed).
    """

    def __init__(
        self,
        index: tantivy.Index,
        tables: Tables,
        sink_factory: SinkFactory,
        on_failure: Callable[[str], None],
        floor: int,
    ) -> None:
        self.index = index
        self.tables = tables
        self.floor = floor  # retention deleted everything up to here
        self._sink_factory = sink_factory
        self._on_failure = on_failure
        self.tantivy_max = max(self._committed_max(), floor)
        self.tables_max = max(tables.max_seq(), floor)
        self.sink = sink_factory(on_failure)  # last: nothing can fail after it
        self.dirty_since: float | None = None  # first uncommitted document
        self.pending: Future[None] | None = None  # the commit in flight
        self.commits = 0
        self.last_commit = 0.0

    def _committed_max(self) -> int:
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

    def replace_sink(self) -> int:
        """A new sink (uncommitted documents dropped), both maxima read back from what the
        backends hold; return the sequence to replay the journal after."""
        old, self.pending, self.dirty_since = self.sink, None, None
        try:
            old.close(timeout=5.0)
        except Exception:  # noqa: BLE001 - it is dead already
            pass
        self.sink = self._sink_factory(self._on_failure)
        # what the index committed (not below what retention already deleted)
        self.tantivy_max = max(self._committed_max(), self.floor)
        self.tables_max = max(self.tables.max_seq(), self.floor)
        logger.warning("index writer restarted (pid %s)", self.sink.pid)
        return max(min(self.tantivy_max, self.tables_max), self.floor)

    def apply(self, group: Group) -> None:
        """Index a group of records into both backends, skipping what each already has.

        Performance: the projection and the DuckDB insert run while a background commit of
        the previous documents may still be in flight (``begin_commit``); only adding the
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
            self.sink.add(docs, raws)
            self.mark_dirty()
        self.tantivy_max = tantivy_max

    def apply_all(self, records: Iterable[JournalRecord]) -> int:
        """Apply journal records in groups of 64; return their events."""
        total = 0
        group: Group = []
        for record in records:
            group.append((record, None))
            total += record.count
            if len(group) >= 64:
                self.apply(group)
                group = []
        if group:
            self.apply(group)
        return total

    def mark_dirty(self) -> None:
        """Make the next commit run (it starts the commit clock when it is not running)."""
        if self.dirty_since is None:
            self.dirty_since = time.monotonic()

    def begin_commit(self) -> None:
        """Ask the sink to commit what was added; the reader reloads when it is done.

        Performance: a commit (segment serialization + fsync) blocked the writer thread for
        a large part of every second at 10k+ events/s; the writer thread goes on projecting
        and inserting rows meanwhile.
        """
        self.finish_commit()
        self.dirty_since = None
        try:
            future = self.sink.commit_async()
        except Exception:
            self.mark_dirty()
            raise
        future.add_done_callback(self._on_committed)
        self.pending = future

    def _on_committed(self, future: Future[None]) -> None:
        """Reload the reader as soon as a commit is done (any thread; ``finish_commit``
        reloads again on the writer thread before anyone is told the commit is done)."""
        if future.exception() is None:
            try:
                self.index.reload()
            except ValueError:
                logger.error("index reader reload failed", exc_info=True)

    def finish_commit(self) -> None:
        """Wait for the commit in flight and reload the reader."""
        future, self.pending = self.pending, None
        if future is None:
            return
        try:
            future.result()
            self.index.reload()
        except Exception:
            self.mark_dirty()
            raise
        self._count_commit()

    def commit(self) -> None:
        """Commit what was added and reload the reader (no-op when clean)."""
        self.finish_commit()
        if self.dirty_since is not None:
            self.begin_commit()
            self.finish_commit()

    def _count_commit(self) -> None:
        self.commits += 1
        self.last_commit = time.time()

    def delete_below(self, seq: int) -> None:
        """Delete every event with a sequence number below ``seq`` from both backends.

        Performance: one round trip to the sink: its delete commits what was added before it
        with the deletion (no separate commit first).
        """
        self.finish_commit()
        self.floor = max(self.floor, seq - 1)  # first: a repair must not bring
        self.sink.delete_below(seq)  # them back
        self.dirty_since = None
        self.index.reload()
        self._count_commit()
        self.tables.execute_writes(
            [
                ("DELETE FROM events WHERE seq < ?", (seq,)),
                ("DELETE FROM batches WHERE first_seq + count <= ?", (seq,)),
            ]
        )

    def clear(self) -> None:
        """Empty both backends (a reindex; the caller applies the journal again)."""
        self.sink.delete_all()
        self.index.reload()
        self.tables.execute_writes([("DELETE FROM events", ()), ("DELETE FROM batches", ())])
        self.tantivy_max = self.tables_max = self.floor

    def merge(self, *, wait: bool = True) -> int:
        """Commit, wait for segment merges (unless not ``wait``), collect garbage; return the
        segment count."""
        self.commit()
        self.sink.merge(wait=wait)
        self.index.reload()
        return int(self.index.searcher().num_segments)


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
