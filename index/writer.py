"""The store's single writer thread: journal records → Tantivy documents + DuckDB rows.

Everything that mutates the Tantivy index or the DuckDB tables is issued from here, fed by a
queue (datasette's ``Database._execute_writes`` shape), through ``index.backends.Backends``
(Tantivy documents go through a sink: the writer child process, or a writer in this process).
Records are applied in sequence order and replay is idempotent (``index.backends``).

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
from itertools import takewhile
from typing import Any

import tantivy

from index.backends import Backends, Group, SinkFactory
from index.errors import StoreClosedError, StoreError
from index.journal import JournalRecord
from index.results import IndexState
from index.sinks import TantivySink
from index.tables import Tables

__all__ = ["Indexer", "IndexerStats", "SinkFactory"]

logger = logging.getLogger(__name__)

_STOP = object()
_NO_LIMIT = 2**63
_GROUP_EVENTS = 20_000
_POLL = 0.05
_QUEUE_FACTOR = 4  # bytes of memory per byte of encoded event JSON while queued
_QUEUE_EVENT_DEFAULT = 4096  # per event when the encoded form is not at hand


@dataclass(frozen=True, slots=True)
class IndexerStats:
    """Counters of the writer thread."""

    tantivy_max: int
    tables_max: int
    pending: int
    commits: int
    last_commit: float


class _Failure:
    """The writer's one failure state (the gap): set from any thread, cleared by a repair."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.count = 0

    def set(self, reason: str) -> None:
        with self._lock:
            self.reason, self.count = reason, self.count + 1

    def clear(self, since: int) -> None:
        """Clear unless it was set again after ``count`` was ``since``."""
        with self._lock:
            if self.count == since:
                self.reason = None


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


class Indexer:
    """Runs the writer thread over the backends (Tantivy sink + DuckDB writer connection).

    Args:
        sink_factory: Opens the Tantivy sink (again, after a failure).
        replay: ``replay(after_seq)`` yields the journal records after a sequence number.
        floor: Sequence number up to which retention deleted everything (never replayed).

    Failures never lose acknowledged events: when anything fails (a group, a commit, a
    reindex, a retention delete, the writer process) the writer is *in a gap* (``health``):
    groups that arrive stay in the journal, and the next group (at most every
    ``repair_interval`` seconds), an idle tick or ``commit``/``flush`` repairs: a new sink
    (uncommitted documents dropped), ``tantivy_max`` and ``tables_max`` read back from the
    backends (never below the retention floor), and the journal after the lower one applied
    again, each backend skipping what it holds.

    Public for tests and tools (``EventStore.writer``): ``call``, ``stats``, ``health``,
    ``pid``, ``sink``, ``fail``, ``defer_repair``, ``idle_timeout``, ``mark_dirty``; the
    operations (``commit``, ``delete_below``, ``rebuild``, ``merge``) run on the writer thread
    only (through ``call``).
    """

    def __init__(
        self,
        index: tantivy.Index,
        tables: Tables,
        sink_factory: SinkFactory,
        *,
        replay: Callable[[int], Iterable[JournalRecord]],
        commit_interval: float,
        max_queue: int = 0,
        max_queue_bytes: int = 256 * 1024 * 1024,
        repair_interval: float = 10.0,
        floor: int = 0,
    ) -> None:
        self._failure = _Failure()
        self._replay = replay
        self._repair_interval = repair_interval
        self._next_repair = 0.0
        self._commit_interval = commit_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        # Performance: the queue is bounded by the estimated memory of what it holds (a share
        # of the manager's memory budget), not by a count of batches of any size.
        self._max_queue_bytes = max_queue_bytes
        self._queued_bytes = 0
        self._room = threading.Condition()
        self.backends = Backends(index, tables, sink_factory, self._failure.set, floor)
        self._thread = threading.Thread(target=self._run, name="heron-index-writer", daemon=True)
        self._started = False
        self._stopping = False
        self._stop_lock = threading.Lock()

    # -- public (any thread) ----------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._started = True
        self._thread.start()

    def submit(self, record: JournalRecord, encoded: list[bytes] | None = None) -> None:
        """Queue one journal record; blocks while the queue holds `max_queue_bytes` of
        estimated memory (back-pressure; a record larger than that waits for an empty queue)."""
        cost = _queued_cost(record, encoded)
        with self._room:
            self._room.wait_for(
                lambda: (
                    self._stopping
                    or self._queued_bytes == 0
                    or self._queued_bytes + cost <= self._max_queue_bytes
                )
            )
            self._queued_bytes += cost
        self._queue.put((record, encoded))

    def _drop_queued(self) -> None:
        """Empty the queue: records stay in the journal; calls fail as after a stop."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._dequeued(item)
            if isinstance(item, _Call):
                item.future.set_exception(StoreClosedError("the event store is closed"))

    def _dequeued(self, item: Any) -> None:
        if isinstance(item, tuple):
            with self._room:
                self._queued_bytes -= _queued_cost(*item)
                self._room.notify_all()

    @property
    def queued_bytes(self) -> int:
        """Estimated memory of the records waiting to be indexed."""
        return self._queued_bytes

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
    def pid(self) -> int | None:
        """Pid of the process that writes the Tantivy index."""
        return self.backends.sink.pid

    @property
    def sink(self) -> TantivySink:
        """The current Tantivy sink (replaced by every repair)."""
        return self.backends.sink

    def health(self) -> tuple[IndexState, str | None]:
        """The writer's state and, unless ``OK``, why."""
        reason = self._failure.reason
        if not self.alive:
            return IndexState.STOPPED, f"the index writer thread stopped ({reason})"
        return (IndexState.OK, None) if reason is None else (IndexState.GAP, reason)

    def fail(self, reason: str) -> None:
        """Enter the gap (any thread): nothing is indexed until a repair replays the journal."""
        self._failure.set(reason)

    def defer_repair(self, seconds: float) -> None:
        """Make the next repair wait ``seconds`` (except a ``flush``)."""
        self._next_repair = time.monotonic() + seconds

    def mark_dirty(self) -> None:
        """Make the next commit run."""
        self.backends.mark_dirty()

    def stats(self) -> IndexerStats:
        """Return the writer counters."""
        b = self.backends
        return IndexerStats(
            b.tantivy_max, b.tables_max, self._queue.qsize(), b.commits, b.last_commit
        )

    def stop(self, timeout: float | None = None, *, drain: bool = True) -> None:
        """Commit what is pending and stop the thread (idempotent).

        ``drain=False`` (a manager stopping): records still queued are left to the journal,
        which the next open replays, so stopping does not wait for a long indexing backlog.
        """
        with self._stop_lock:
            already, self._stopping = self._stopping, True
        if not drain:
            self._drop_queued()
        with self._room:
            self._room.notify_all()  # a submit waiting for room gives up
        if not already and self._started and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        while True:  # calls queued behind _STOP by a racing caller
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Call):
                item.future.set_exception(StoreClosedError("the event store is closed"))

    @property
    def alive(self) -> bool:
        """False when the writer thread ended without being stopped."""
        return not self._started or self._thread.is_alive() or self._stopping

    def close_writer(self) -> None:
        """Release the Tantivy writer (after ``stop``)."""
        self.backends.sink.close()

    # -- writer thread ----------------------------------------------------------------

    @property
    def _gap(self) -> bool:
        return self._failure.reason is not None

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
            item = self._queue.get(timeout=self.idle_timeout())
        except queue.Empty:
            self._on_idle()
            return True
        self._dequeued(item)
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

    def idle_timeout(self) -> float | None:
        """How long the writer thread may wait for work before it has something to do."""
        timeout = None
        dirty_since = self.backends.dirty_since
        if dirty_since is not None and not self._gap:  # no commit in a gap
            timeout = max(0.0, dirty_since + self._commit_interval - time.monotonic())
        if self.backends.pending is not None:  # account for it when it ends
            timeout = _POLL if timeout is None else min(timeout, _POLL)
        if self._gap:  # repair when idle too, not only when groups arrive
            due = max(0.0, self._next_repair - time.monotonic())
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def _on_idle(self) -> None:
        if self._gap:
            self._repair(before=_NO_LIMIT)
        pending = self.backends.pending
        if pending is not None and pending.done():
            self._finish_commit()
        if self._commit_due():
            self._begin_commit()

    def _commit_due(self) -> bool:
        dirty_since = self.backends.dirty_since
        return dirty_since is not None and time.monotonic() - dirty_since >= self._commit_interval

    def _apply_group(self, first: tuple[JournalRecord, list[bytes] | None]) -> None:
        """Apply ``first`` with the records queued behind it (up to ``_GROUP_EVENTS``)."""
        group = [first]
        size = first[0].count
        while size < _GROUP_EVENTS:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            self._dequeued(nxt)
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
            self._queue.put(_STOP)  # nothing is queued after _STOP
            return
        self._run_call(item)

    def _run_call(self, call: _Call) -> None:
        try:
            call.future.set_result(call.fn())
        except BaseException as ex:  # noqa: BLE001 - handed to the caller
            call.future.set_exception(ex)

    def _apply_safely(self, group: Group) -> None:
        if self._gap and not self._repair(before=group[0][0].first_seq):
            return  # the group stays in the journal; a later repair replays it
        with self._failing("indexing failed; the events stay in the journal", reraise=False):
            self.backends.apply(group)

    def _begin_commit(self) -> None:
        if self.backends.dirty_since is None or self._gap:  # the repair commits
            return
        with self._failing("index commit failed", reraise=False):
            self.backends.begin_commit()

    def _finish_commit(self) -> None:
        with self._failing("index commit failed", reraise=False):
            self.backends.finish_commit()

    def _commit_safely(self) -> None:
        with self._failing("index commit failed", reraise=False):
            self.commit()

    def _fail(self, what: str, ex: BaseException) -> None:
        self._failure.set(f"{type(ex).__name__}: {ex}")
        logger.error("%s: %s", what, self._failure.reason, exc_info=True)

    @contextmanager
    def _failing(self, what: str, *, reraise: bool = True) -> Iterator[None]:
        """Enter the gap when the block fails (the journal keeps the data; a repair replays)."""
        try:
            yield
        except Exception as ex:
            self._fail(what, ex)
            if reraise:
                raise

    def _repair(self, before: int, *, force: bool = False) -> bool:
        """Leave the gap: replace the sink, replay the journal up to ``before``."""
        now = time.monotonic()
        if not force and now < self._next_repair:
            return False
        self._next_repair = now + self._repair_interval
        since = self._failure.count
        try:
            # whatever failed, start again from what the backends *hold*.
            after = self.backends.replace_sink()
            self.backends.apply_all(takewhile(lambda r: r.first_seq < before, self._replay(after)))
        except Exception as ex:  # noqa: BLE001 - still in the gap; retried later
            self._fail("index repair failed", ex)
            return False
        self._failure.clear(since)
        logger.warning("event index repaired: journal replayed after seq %d", after)
        return True

    def _heal(self) -> None:
        """Wait for a pending commit; repair now when in the gap.

        Raises:
            StoreError: the repair failed.
        """
        self._finish_commit()
        if self._gap and not self._repair(before=_NO_LIMIT, force=True):
            raise StoreError(f"the event index could not be repaired: {self._failure.reason}")

    # -- operations (writer thread only) ----------------------------------------------

    def commit(self) -> None:
        """Commit the Tantivy writer and reload the reader (no-op when clean).

        Repairs first when a group failed or the sink died (``flush`` heals).

        Raises:
            StoreError: the commit or the repair failed.
        """
        self._heal()
        try:
            self.backends.commit()
        except Exception as ex:
            self._fail("index commit failed", ex)
            raise StoreError(f"Tantivy commit failed: {ex}") from ex

    def delete_below(self, seq: int) -> None:
        """Delete every event with a sequence number below ``seq`` from both backends."""
        if seq <= 1:
            return
        self._heal()
        with self._failing("retention delete failed"):
            self.backends.delete_below(seq)

    def rebuild(self, records: Iterable[JournalRecord]) -> int:
        """Empty both backends and index ``records`` again (reindex); return the events."""
        self.commit()
        with self._failing("reindex failed"):  # the repair finishes the job
            self.backends.clear()
            total = self.backends.apply_all(records)
        self.commit()
        return total

    def merge(self, *, wait: bool = True) -> int:
        """Commit, wait for segment merges (unless not ``wait``), collect garbage; return the
        segment count."""
        self.commit()
        with self._failing("segment merge failed"):
            return self.backends.merge(wait=wait)


def _queued_cost(record: JournalRecord, encoded: list[bytes] | None) -> int:
    """Estimated memory of a queued record: its final events as Python objects (about 3x
    their JSON) plus their encoded JSON."""
    if encoded is not None:
        return _QUEUE_FACTOR * sum(len(b) for b in encoded) + 64 * len(encoded)
    return record.count * _QUEUE_EVENT_DEFAULT
