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
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import zstandard

from index.errors import StoreError

__all__ = ["Journal", "JournalRecord"]

logger = logging.getLogger(__name__)

_MAGIC = 0x314A5248  # "HRJ1"
_HEADER = struct.Struct("<IIIQI")
SEGMENT_BYTES = 64 * 1024 * 1024
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
    """Append-only, fsync'd, segmented batch log. Thread-safe for one process."""

    def __init__(self, root: Path, *, segment_bytes: int = SEGMENT_BYTES, fsync: bool = True):
        self.root = root
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._cctx = zstandard.ZstdCompressor(level=3)
        self._fh: Any = None
        self._size = 0  # bytes of the current segment that hold whole records
        self._broken: str | None = None
        self._current: Path | None = None
        try:
            created = not root.exists()
            root.mkdir(parents=True, exist_ok=True)
            if created and fsync:
                fsync_dir(root.parent)
            self._next_seq = self._recover()
        except OSError as ex:
            raise StoreError(f"cannot open journal {root}: {ex}") from ex

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
        """Sequence number the next appended event will get."""
        return self._next_seq

    def skip_to(self, seq: int) -> None:
        """Never hand out sequence numbers below ``seq`` (the backends hold them already:
        a journal that lost records to media corruption must not reuse their numbers)."""
        with self._lock:
            if seq > self._next_seq:
                logger.error(
                    "journal next seq %d is below what the index holds; skipping to %d",
                    self._next_seq,
                    seq,
                )
                self._next_seq = seq

    # -- writing --------------------------------------------------------------------

    def append(
        self,
        events: list[dict[str, Any]],
        *,
        endpoint: dict[str, str],
        batch_id: str | None,
        rt_ns: int,
        first_seq: int,
        encoded: list[bytes] | None = None,
    ) -> JournalRecord:
        """Write one record and fsync it; return the record (durable on return).

        Args:
            events: Final events.
            endpoint: Endpoint fields.
            batch_id: Agent batch id.
            rt_ns: Receipt time (epoch ns).
            first_seq: Must equal :attr:`next_seq` (the caller holds the store lock).
            encoded: The events already encoded as JSON (saves a second encoding).
        """
        if first_seq != self._next_seq:
            raise StoreError(f"journal sequence gap: {first_seq} != {self._next_seq}")
        parts = encoded if encoded is not None else [orjson.dumps(e) for e in events]
        head = orjson.dumps({"endpoint": endpoint, "batch_id": batch_id, "rt": rt_ns})
        body = b"".join((head[:-1], b',"events":[', b",".join(parts), b"]}"))
        payload = self._cctx.compress(body)
        header = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload), first_seq, len(events))
        with self._lock:
            if self._broken is not None:
                raise StoreError(self._broken)
            started = False
            data = header + payload
            try:
                fh = self._writable(first_seq)
                started = True
                view = memoryview(data)
                while view:  # unbuffered: a raw write may be partial
                    view = view[fh.write(view) :]
                if self._fsync:
                    _fsync(fh.fileno())
            except BaseException as ex:
                if started:
                    self._roll_back()
                if isinstance(ex, OSError):
                    raise StoreError(f"journal write failed: {ex}") from ex
                raise
            self._size += len(data)
            self._next_seq = first_seq + len(events)
            segment = self._current.name if self._current else ""
        return JournalRecord(first_seq, len(events), endpoint, batch_id, rt_ns, events, segment)

    def _roll_back(self) -> None:
        """Cut a failed (never acknowledged) write off the segment.

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
        self._fh, self._current, self._size = fh, path, size
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
        """Close the open segment (idempotent)."""
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.close()
                except Exception:  # noqa: BLE001 - close path
                    pass
                self._fh = None
