"""The write-ahead journal: every accepted batch, fsync'd before it is acknowledged.

Layout: ``journal/<first-seq:020d>.wal`` segments. Each record is a 24-byte header
(``magic, payload length, crc32, first seq, event count``) followed by a zstd-compressed
orjson payload ``{"endpoint": {...}, "batch_id": str|None, "rt": ns, "events": [...]}``
whose events are final (``EdrData`` set), so replaying a record is deterministic.

Crash safety: a record is acknowledged only after ``fsync``; on open, the tail of the last
segment is scanned and a torn or corrupt record (short header, short payload, bad crc) is
truncated away. Records before it are intact because they were fsync'd first.
The journal doubles as the event archive: ``reindex`` replays it; retention drops whole
segments.

Group commit: ``write`` appends a record without syncing it; ``commit`` waits until one
``fsync`` covers it. The first waiter that finds no fsync running leads: it syncs every record
written so far and hands them, in journal order, to ``on_durable`` before any of them is
acknowledged; records written meanwhile wait for the next fsync (at most one cycle behind).
A failed fsync fails every record not yet durable and cuts them off the segment.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zstandard

from index.errors import StoreError

__all__ = ["EncodedRecord", "Journal", "JournalRecord", "JournalTicket", "OnDurable"]

logger = logging.getLogger(__name__)

_MAGIC = 0x314A5248  # "HRJ1"
_HEADER = struct.Struct("<IIIQI")
SEGMENT_BYTES = 64 * 1024 * 1024
COMPRESSORS = 4  # zstd contexts shared by the writers (see Journal._compress)
GROUP_BYTES = 8 * 1024 * 1024  # written but not yet fsync'd: writers wait beyond it
_SUFFIX = ".wal"


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One journaled batch.

    Attributes:
        first_seq: Sequence number of the first event; events are numbered consecutively.
        count: Number of events.
        endpoint: ``EndpointRef`` fields as a dict (``uuid``, ``hostname``, ``ip``, ``group``).
        batch_id: The agent's batch id (``None`` when the caller gave none).
        rt_ns: Receipt time (epoch nanoseconds).
        events: The final events (with ``EdrData``).
        segment: Segment file holding the record (bookkeeping).
    """

    first_seq: int
    count: int
    endpoint: dict[str, str]
    batch_id: str | None
    rt_ns: int
    events: list[dict[str, Any]]
    segment: str = ""

    @property
    def last_seq(self) -> int:
        """Sequence number of the last event of the record."""
        return self.first_seq + self.count - 1


OnDurable = Callable[[list[tuple[JournalRecord, "list[bytes] | None"]]], None]
"""Told each group of records once they are durable, in journal order, before any is
acknowledged (the store queues them for indexing)."""


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """A record compressed ahead of its write (``Journal.encode``): everything but its sequence
    numbers, so that only the ``write(2)`` runs under the writers' lock."""

    events: list[dict[str, Any]] = field(repr=False)
    endpoint: dict[str, str]
    batch_id: str | None
    rt_ns: int
    payload: bytes = field(repr=False)
    crc: int
    encoded: list[bytes] | None = field(default=None, repr=False)


@dataclass(eq=False, slots=True)
class JournalTicket:
    """A written record waiting for the fsync that makes it durable (``Journal.commit``).

    Attributes:
        record: The record (its sequence numbers are final unless the fsync fails).
        encoded: The events' JSON, handed to ``on_durable`` with the record.
        done: The fsync covering it ended (``error`` says whether it failed).
        error: Why the record was not made durable (it is no longer in the journal).
        sync: The number (``Journal.syncs``) of the group fsync that made it durable.
    """

    record: JournalRecord
    encoded: list[bytes] | None = field(default=None, repr=False)
    done: bool = False
    error: str | None = None
    sync: int = 0


@dataclass(frozen=True, slots=True)
class _Header:
    length: int
    crc: int
    first_seq: int
    count: int


def _read_header(fh: Any) -> _Header | None:
    raw = fh.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        return None
    magic, length, crc, first_seq, count = _HEADER.unpack(raw)
    if magic != _MAGIC:
        return None
    return _Header(length, crc, first_seq, count)


def _fsync(fd: int) -> None:
    """``os.fsync`` (a module function, so tests can fail the journal's fsyncs alone)."""
    os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (POSIX; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Append-only, fsync'd, segmented batch log with group commit. Thread-safe for one
    process.

    Args:
        root: The segments' directory.
        segment_bytes: Size at which a new segment starts.
        fsync: Sync records before they are acknowledged (only tests turn it off).
        group_bytes: Bytes that may be written but not yet synced; a writer waits beyond it
            (bounds one fsync's work and the records it holds in memory).
        on_durable: See :data:`OnDurable`.
    """

    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        fsync: bool = True,
        group_bytes: int = GROUP_BYTES,
        on_durable: OnDurable | None = None,
    ):
        self.root = root
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._group_bytes = group_bytes
        self._on_durable = on_durable
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._cctxs: queue.SimpleQueue[zstandard.ZstdCompressor] = queue.SimpleQueue()
        self._cctx_lock = threading.Lock()
        self._cctx_count = 0
        self._fh: Any = None
        self._size = 0  # bytes of the current segment that hold whole records (written)
        self._durable_size = 0  # of those, bytes fsync'd
        self._broken: str | None = None
        self._current: Path | None = None
        self._unsynced: list[JournalTicket] = []  # written, not yet taken by a sync
        self._unsynced_bytes = 0
        self._syncing = False  # a leader is syncing a group and handing it over
        self.syncs = 0  # group fsyncs (metrics, benchmarks)
        try:
            created = not root.exists()
            root.mkdir(parents=True, exist_ok=True)
            if created and fsync:
                fsync_dir(root.parent)
            self._next_seq = self._recover()  # durable: readers never go past it
        except OSError as ex:
            raise StoreError(f"cannot open journal {root}: {ex}") from ex
        self._write_seq = self._next_seq  # the next record's first sequence number

    # -- recovery -------------------------------------------------------------------

    def segments(self) -> list[Path]:
        """Return the segment files, oldest first."""
        return sorted(self.root.glob("*" + _SUFFIX))

    def _recover(self) -> int:
        segments = self.segments()
        if not segments:
            return 1
        last = segments[-1]
        next_seq = int(last.stem)
        good = 0
        with last.open("rb") as fh:
            while True:
                header = _read_header(fh)
                if header is None:
                    break
                payload = fh.read(header.length)
                if len(payload) < header.length or zlib.crc32(payload) != header.crc:
                    break
                good = fh.tell()
                next_seq = header.first_seq + header.count
        size = last.stat().st_size
        if good < size:
            logger.warning("journal %s: truncating torn tail (%d bytes)", last.name, size - good)
            with last.open("r+b") as fh:
                fh.truncate(good)
                _fsync(fh.fileno())
        return next_seq

    @property
    def next_seq(self) -> int:
        """Sequence number after the last durable record (records below it are readable)."""
        return self._next_seq

    @property
    def unsynced(self) -> int:
        """Records written and waiting for an fsync that has not started yet."""
        return len(self._unsynced)

    def skip_to(self, seq: int) -> None:
        """Never hand out sequence numbers below ``seq`` (the backends hold them already:
        a journal that lost records to media corruption must not reuse their numbers).
        Called on open, before any write."""
        with self._lock:
            if seq > self._write_seq:
                logger.error(
                    "journal next seq %d is below what the index holds; skipping to %d",
                    self._write_seq,
                    seq,
                )
                self._write_seq = self._next_seq = seq

    # -- writing --------------------------------------------------------------------

    def append(
        self,
        events: list[dict[str, Any]],
        *,
        endpoint: dict[str, str],
        batch_id: str | None,
        rt_ns: int,
        first_seq: int | None = None,
        encoded: list[bytes] | None = None,
    ) -> JournalRecord:
        """Write one record and wait for its fsync; return it (durable on return)."""
        ticket = self.write(
            events,
            endpoint=endpoint,
            batch_id=batch_id,
            rt_ns=rt_ns,
            first_seq=first_seq,
            encoded=encoded,
        )
        return self.commit(ticket)

    def write(
        self,
        events: list[dict[str, Any]],
        *,
        endpoint: dict[str, str],
        batch_id: str | None,
        rt_ns: int,
        first_seq: int | None = None,
        encoded: list[bytes] | None = None,
    ) -> JournalTicket:
        """Write one record (not durable yet: ``commit`` the ticket before acknowledging).

        Args:
            events: Final events.
            endpoint: Endpoint fields.
            batch_id: Agent batch id.
            rt_ns: Receipt time (epoch ns).
            first_seq: When given, must be the next sequence number (a caller's check).
            encoded: The events already encoded as JSON (saves a second encoding).

        Raises:
            StoreError: the write failed (nothing of it is left in the segment).
        """
        record = self.encode(
            events, endpoint=endpoint, batch_id=batch_id, rt_ns=rt_ns, encoded=encoded
        )
        return self.write_encoded(record, first_seq=first_seq)

    def encode(
        self,
        events: list[dict[str, Any]],
        *,
        endpoint: dict[str, str],
        batch_id: str | None,
        rt_ns: int,
        encoded: list[bytes] | None = None,
    ) -> EncodedRecord:
        """Compress a record ahead of ``write_encoded`` (any thread, no journal lock).

        Performance: zstd and crc32 release the GIL; done under a lock, each release made the
        holder queue for the GIL again behind every request thread (a lock convoy).
        """
        parts = encoded if encoded is not None else [orjson.dumps(e) for e in events]
        head = orjson.dumps({"endpoint": endpoint, "batch_id": batch_id, "rt": rt_ns})
        body = b"".join((head[:-1], b',"events":[', b",".join(parts), b"]}"))
        payload = self._compress(body)
        return EncodedRecord(
            events, endpoint, batch_id, rt_ns, payload, zlib.crc32(payload), encoded
        )

    def _compress(self, body: bytes) -> bytes:
        """Compress with a pooled context (one is not thread-safe; each holds memory sized by
        the largest batch it saw, so at most ``COMPRESSORS`` exist)."""
        try:
            cctx = self._cctxs.get_nowait()
        except queue.Empty:
            with self._cctx_lock:
                grow = self._cctx_count < COMPRESSORS
                self._cctx_count += grow
            cctx = zstandard.ZstdCompressor(level=3) if grow else self._cctxs.get()
        try:
            return bytes(cctx.compress(body))
        finally:
            self._cctxs.put(cctx)

    def write_encoded(self, rec: EncodedRecord, *, first_seq: int | None = None) -> JournalTicket:
        """Write an encoded record (see ``write``)."""
        size = _HEADER.size + len(rec.payload)
        count = len(rec.events)
        with self._cond:
            self._wait_room(size)
            if self._broken is not None:
                raise StoreError(self._broken)
            seq = self._write_seq
            if first_seq is not None and first_seq != seq:
                raise StoreError(f"journal sequence gap: {first_seq} != {seq}")
            data = _HEADER.pack(_MAGIC, len(rec.payload), rec.crc, seq, count) + rec.payload
            started = False
            try:
                fh = self._writable(seq)
                started = True
                view = memoryview(data)
                while view:  # unbuffered: a raw write may be partial
                    view = view[fh.write(view) :]
            except BaseException as ex:
                if started:
                    self._roll_back()
                if isinstance(ex, OSError):
                    raise StoreError(f"journal write failed: {ex}") from ex
                raise
            self._size += size
            self._write_seq = seq + count
            segment = self._current.name if self._current else ""
            record = JournalRecord(
                seq, count, rec.endpoint, rec.batch_id, rec.rt_ns, rec.events, segment
            )
            ticket = JournalTicket(record, rec.encoded)
            self._unsynced.append(ticket)
            self._unsynced_bytes += size
        return ticket

    def commit(self, ticket: JournalTicket) -> JournalRecord:
        """Wait until an fsync covers the ticket's record (leading one when none runs).

        Raises:
            StoreError: that fsync failed: the record is not in the journal.
        """
        with self._cond:
            while not ticket.done:
                if self._syncing:
                    self._cond.wait()
                else:
                    self._lead()
        if ticket.error is not None:
            raise StoreError(ticket.error)
        return ticket.record

    def drain(self) -> None:
        """Wait until every record written so far is durable or failed (and handed over)."""
        with self._cond:
            while self._syncing or self._unsynced:
                if self._syncing:
                    self._cond.wait()
                else:
                    self._lead()

    def _wait_room(self, size: int) -> None:
        """Wait (lock held) until a record of ``size`` bytes may be written: the group is
        under ``group_bytes``, and a new segment starts only when no sync uses the old one."""
        while True:
            if self._broken is not None:
                return
            rolling = self._fh is not None and self._size >= self._segment_bytes
            if rolling:
                if not (self._syncing or self._unsynced):
                    return
            elif not self._unsynced or self._unsynced_bytes + size <= self._group_bytes:
                return
            if self._syncing:
                self._cond.wait()
            else:
                self._lead()

    def _lead(self) -> None:
        """Sync every written record as one group (lock held; released during the fsync and
        the hand-over). Its waiters are woken when it ends; a failure fails the group and
        everything written after it."""
        self._syncing = True
        group, self._unsynced, self._unsynced_bytes = self._unsynced, [], 0
        fh, end_size, end_seq = self._fh, self._size, self._write_seq
        error: BaseException | None = None
        interrupted: BaseException | None = None
        self._cond.release()
        try:
            if self._fsync and group and fh is not None:
                _fsync(fh.fileno())
        except BaseException as ex:  # noqa: BLE001 - every waiter is told below
            error = ex
        if error is None and group:
            self._next_seq = end_seq  # readable now (a repair may replay it: idempotent)
            interrupted = self._hand_over(group)
        self._cond.acquire()
        if group:
            self.syncs += 1
        if error is None:
            self._durable_size = end_size
            for ticket in group:
                ticket.done, ticket.sync = True, self.syncs
        else:
            self._fail_unsynced(group, error)
        self._syncing = False
        self._cond.notify_all()
        for failure in (error, interrupted):
            if failure is not None and not isinstance(failure, Exception):
                raise failure  # KeyboardInterrupt and the like, after the bookkeeping

    def _hand_over(self, group: list[JournalTicket]) -> BaseException | None:
        if self._on_durable is None:
            return None
        try:
            self._on_durable([(t.record, t.encoded) for t in group])
        except Exception:  # durable already: acknowledged; the callback's owner repairs
            logger.exception("journal: handing over %d durable records failed", len(group))
        except BaseException as ex:  # noqa: BLE001 - re-raised by _lead after its bookkeeping
            return ex
        return None

    def _fail_unsynced(self, group: list[JournalTicket], error: BaseException) -> None:
        """Cut every record that is not durable off the segment (lock held)."""
        failed = group + self._unsynced
        self._unsynced, self._unsynced_bytes = [], 0
        reason = f"journal write failed: {error}"
        logger.error("%s (%d records refused)", reason, len(failed))
        self._size = self._durable_size
        self._write_seq = self._next_seq
        self._roll_back()
        for ticket in failed:
            ticket.error, ticket.done = reason, True

    def _roll_back(self) -> None:
        """Cut a failed (never acknowledged) write off the segment (lock held).

        Security: left in place, its bytes would carry the next record's sequence
        numbers and a replay would index them instead of acknowledged events. When the cut
        itself fails the journal refuses appends until the store is opened again (the open
        truncates a torn tail).
        """
        if self._fh is None:
            return
        try:  # to the size we wrote (tell() is stale on an O_APPEND handle)
            os.ftruncate(self._fh.fileno(), self._size)
            os.lseek(self._fh.fileno(), self._size, os.SEEK_SET)
            if self._fsync:
                _fsync(self._fh.fileno())
        except OSError as ex:
            self._broken = f"journal unusable after a failed write ({ex}); reopen the store"
            logger.error("%s", self._broken)

    def _writable(self, first_seq: int) -> Any:
        """The segment to write to (lock held; a new one only when nothing is unsynced)."""
        if self._fh is not None and self._size < self._segment_bytes:
            return self._fh
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        segments = self.segments()
        if segments and segments[-1].stat().st_size < self._segment_bytes and self._current is None:
            path = segments[-1]
        else:
            path = self.root / f"{first_seq:020d}{_SUFFIX}"
        fh = path.open("ab", buffering=0)  # see _roll_back
        try:
            if self._fsync:  # before use: a new segment's entry must be durable
                fsync_dir(self.root)
            size = os.fstat(fh.fileno()).st_size
        except BaseException:
            fh.close()
            raise
        self._fh, self._current, self._size, self._durable_size = fh, path, size, size
        return self._fh

    # -- reading --------------------------------------------------------------------

    def read(self, *, after_seq: int = 0) -> Iterator[JournalRecord]:
        """Yield durable records whose last event is after ``after_seq``, oldest first.

        Only records appended (fsync'd) before the call: a write in progress, which may
        still be rolled back, is never returned.
        """
        limit = self._next_seq
        dctx = zstandard.ZstdDecompressor()
        segments = self.segments()
        for i, path in enumerate(segments):
            if i + 1 < len(segments) and int(segments[i + 1].stem) <= after_seq + 1:
                continue
            yield from self._read_segment(path, after_seq, limit, dctx)

    def _read_segment(
        self, path: Path, after_seq: int, limit: int, dctx: zstandard.ZstdDecompressor
    ) -> Iterator[JournalRecord]:
        try:
            fh = path.open("rb")
        except FileNotFoundError:  # dropped by retention meanwhile
            return
        with fh:
            while True:
                header = _read_header(fh)
                if header is None or header.first_seq >= limit:
                    return
                if header.first_seq + header.count - 1 <= after_seq:
                    fh.seek(header.length, os.SEEK_CUR)
                    continue
                payload = fh.read(header.length)
                if len(payload) < header.length or zlib.crc32(payload) != header.crc:
                    return
                body = orjson.loads(dctx.decompress(payload))
                yield JournalRecord(
                    header.first_seq,
                    header.count,
                    body["endpoint"],
                    body["batch_id"],
                    body["rt"],
                    body["events"],
                    path.name,
                )

    def drop_before(self, seq: int) -> list[Path]:
        """Delete whole segments whose events are all below ``seq``; return them."""
        dropped: list[Path] = []
        with self._lock:
            segments = self.segments()
            for path, nxt in zip(segments, segments[1:], strict=False):
                if int(nxt.stem) <= seq and path != self._current:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as ex:  # kept; the next pass tries again
                        logger.warning("cannot drop journal segment %s: %s", path, ex)
                        continue
                    dropped.append(path)
        return dropped

    def close(self) -> None:
        """Sync what is written, close the open segment (idempotent)."""
        self.drain()
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.close()
                except Exception:  # noqa: BLE001 - close path
                    pass
                self._fh = None
