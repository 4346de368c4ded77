"""The durable on-disk event queue (spool) between the pipeline and the forwarder.

This module is the queue's policy: lanes and their order, batching, eviction, disk trouble and
rejected batches. The file format (segments, their repair after a crash) is
`agent.link.segments`, the index of sealed segments `agent.link.sealed`, the data disk's state
`agent.link.diskhealth`; the health events it reports are `agent.link.health`.

Guarantees:
- Every `submit` is written through to the open segment with `os.write`, so a killed agent
  (`kill -9`) loses nothing; `fsync` runs at most every `fsync_interval` seconds and on sealing,
  which bounds what a power cut can lose.
- A sealed segment never changes, so its batch id names the same events across restarts and
  the manager can deduplicate a batch re-sent after a crash between its 200 and our delete.
- Detections (events carrying `Event.Detection`) and the spool's own health reports live in a
  priority lane that drains before bulk events; each lane replays in order.
- Size is bounded by `max_bytes`. When full, the oldest bulk segments are evicted first, then the
  oldest detection segments. Every eviction is counted, logged at WARNING and reported to the
  manager as a `Heron-Agent` health event in the priority lane.
- The disk is not trusted: a record is written whole or not at all (a short or failed write is
  cut back with `ftruncate`). When the data disk is full (or below `min_free_bytes` free) the
  oldest bulk segments are evicted to make room; an event that still cannot be written is
  dropped and counted (`agent.link.diskhealth`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rules import wire

from .diskhealth import DISK_FULL, DiskHealth
from .errors import SpoolError
from .health import HEALTH_EVICTED, HEALTH_OVERSIZE, HEALTH_REJECTED, health_event
from .sealed import SealedSegments
from .segments import Lane, OpenSegment, close_segment, open_segment, write_seq, write_whole

__all__ = ["Batch", "Spool", "SpoolStats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Batch:
    """A sealed segment ready to send."""

    batch_id: str
    seq: int
    lane: Lane
    path: Path
    data: bytes
    count: int


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counters reported by `Spool.stats()`."""

    queued_events: int
    queued_bytes: int
    segments: int
    submitted: int
    evicted_events: int
    evicted_segments: int
    oversize_dropped: int
    rejected_batches: int
    health_reports: int = 0
    disk_dropped: int = 0  # events lost to a full or failing data disk (total)
    disk_state: str = "ok"  # ok | full | io-error
    disk_error: str = ""
    lost_segments: int = 0  # segments that vanished from disk under us (counted, skipped)


class Spool:
    """Segment-file queue; thread-safe. Use as a context manager or call `close()`."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 4 << 20,
        segment_events: int = 10_000,
        max_batch_delay: float = 1.0,
        fsync_interval: float = 1.0,
        hostname: str = "",
        clock: Callable[[], float] = time.monotonic,
        uuidgen: Callable[[], uuid.UUID] = uuid.uuid4,
        min_free_bytes: int = 0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max(max_bytes // 4, 1024))
        self.segment_events = segment_events
        self.max_batch_delay = max_batch_delay
        self.fsync_interval = fsync_interval
        self.hostname = hostname
        self.clock = clock
        self._lock = threading.Lock()
        self._open: dict[Lane, OpenSegment | None] = {lane: None for lane in Lane}
        self._segs = SealedSegments(self.root)
        self._total = 0  # bytes queued, open segments included
        self._last_fsync = clock()
        self._dirty = False  # written since the last fsync
        self._closed = False
        self._submitted = self._evicted = self._evicted_segs = self._oversize = 0
        self._rejected = 0
        self._reports = 0
        self.min_free_bytes = min_free_bytes
        self.wall = wall
        self._disk = DiskHealth(self.root, wall=wall, report=self._report)
        self._lost_segments = 0
        self._disk_evicted = (0, 0)  # (events, segments) evicted for disk space, not reported
        try:
            self._recover(uuidgen)
        except OSError as ex:
            raise SpoolError(f"cannot open spool at {self.root}: {ex}") from ex

    # ---------------------------------------------------------------- recovery
    def _recover(self, uuidgen: Callable[[], uuid.UUID]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "rejected").mkdir(exist_ok=True)
        id_file = self.root / "id"
        if not id_file.exists():
            tmp = id_file.with_suffix(".tmp")
            tmp.write_text(uuidgen().hex, encoding="ascii")
            os.replace(tmp, id_file)
        self.spool_id = id_file.read_text(encoding="ascii").strip()
        seq_file = self.root / "seq"
        top = int(seq_file.read_text() or 0) if seq_file.exists() else 0
        self._next_seq = max(top, self._segs.recover()) + 1
        self._total = sum(size for _, size, _ in self._segs.sizes.values())

    # ---------------------------------------------------------------- writing
    def submit(self, event: dict[str, Any]) -> None:
        """Queue one event durably (EventSink)."""
        line = orjson.dumps(event, default=str) + b"\n"
        ev = event.get("Event") if isinstance(event, dict) else None
        priority = isinstance(ev, dict) and bool(ev.get("Detection"))
        self.submit_line(line, Lane.DETECTIONS if priority else Lane.EVENTS)

    def submit_line(self, line: bytes, lane: Lane = Lane.EVENTS) -> None:
        """Queue one NDJSON line (must end with a newline) in `lane`."""
        if len(line) > wire.MAX_EVENT_LINE:
            with self._lock:
                self._oversize += 1
            logger.warning(
                "spool: dropped a %d-byte event (limit %d)", len(line), wire.MAX_EVENT_LINE
            )
            self._report(
                HEALTH_OVERSIZE,
                "event larger than the wire limit dropped",
                DroppedEvents=1,
                Size=len(line),
            )
            return
        try:
            evicted = self._append(line, lane)
        except OSError as ex:
            self._disk_failed(ex, line, lane)
            return
        self._disk.written()
        if self._disk_evicted[0]:
            self._report_disk_evictions()
        if evicted:
            events, segs = evicted
            logger.warning(
                "spool full (%d bytes): evicted %d events in %d oldest segments",
                self.max_bytes,
                events,
                segs,
            )
            self._report(
                HEALTH_EVICTED,
                "queue full: oldest events evicted",
                DroppedEvents=events,
                DroppedBatches=segs,
                MaxBytes=self.max_bytes,
                TotalDropped=self._evicted,
            )

    def _report(self, event_id: int, message: str, **data: Any) -> None:
        line = orjson.dumps(health_event(event_id, message, self.hostname, **data)) + b"\n"
        try:
            self._append(line, Lane.DETECTIONS)
        except OSError:
            return  # the disk state change is logged by the caller's path; nothing to add
        with self._lock:
            self._reports += 1

    # ---------------------------------------------------------------- disk trouble
    def _disk_failed(self, ex: OSError, line: bytes, lane: Lane) -> None:
        """Policy: evict the oldest bulk segments to make room, retry once, else drop."""
        if ex.errno in DISK_FULL:
            with self._lock:
                freed = self._evict_bulk(max(len(line), self.segment_bytes))
            if freed:
                self._report_disk_evictions()
                try:
                    self._append(line, lane)
                    self._disk.written()
                    return
                except OSError as again:
                    ex = again
        self._disk.dropped_one(ex)

    def _evict_bulk(self, need: int) -> int:
        """Evict oldest sealed bulk segments (never in flight) until `need` bytes are freed."""
        freed, events, segs = self._segs.evict(Lane.EVENTS, need)
        self._total -= freed
        if segs:
            self._evicted += events
            self._evicted_segs += segs
            self._disk_evicted = (self._disk_evicted[0] + events, self._disk_evicted[1] + segs)
            logger.warning(
                "spool: data disk low: evicted %d oldest bulk events (%d segments)", events, segs
            )
        return freed

    def _report_disk_evictions(self) -> None:
        """Report evictions made for disk space (the caller holds no lock)."""
        with self._lock:
            (events, segs), self._disk_evicted = self._disk_evicted, (0, 0)
        if events:
            self._report(
                HEALTH_EVICTED,
                "data disk low: oldest events evicted",
                DroppedEvents=events,
                DroppedBatches=segs,
                MaxBytes=self.max_bytes,
                TotalDropped=self._evicted,
            )

    def _check_free(self) -> None:
        """Keep `min_free_bytes` free on the data disk by evicting the oldest bulk segments."""
        if self.min_free_bytes <= 0:
            return
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free < self.min_free_bytes:
            self._evict_bulk(self.min_free_bytes - free)

    def _append(self, line: bytes, lane: Lane) -> tuple[int, int] | None:
        with self._lock:
            if self._closed:
                raise SpoolError("spool is closed")
            evicted = (
                self._make_room(len(line)) if self._total + len(line) > self.max_bytes else None
            )
            seg = self._open[lane]
            if seg is not None and (
                seg.size + len(line) > self.segment_bytes or seg.count >= self.segment_events
            ):
                self._seal(lane)
                seg = None
            if seg is None:
                self._check_free()
                seg = self._new_segment(lane)
            write_whole(seg, line)
            seg.size += len(line)
            seg.count += 1
            self._dirty = True
            self._total += len(line)
            self._submitted += 1
            now = self.clock()
            if now - self._last_fsync >= self.fsync_interval:
                self._fsync_open()
                self._last_fsync = now
            return evicted

    def _new_segment(self, lane: Lane) -> OpenSegment:
        seq = self._next_seq
        self._next_seq += 1
        write_seq(self.root, seq)
        seg = open_segment(self.root, lane, seq, self.clock())
        self._open[lane] = seg
        return seg

    def _seal(self, lane: Lane) -> None:
        seg = self._open[lane]
        if seg is None:
            return
        self._open[lane] = None
        if close_segment(seg, lane, self.root):
            self._segs.add(lane, seg.seq, seg.size, seg.count)

    def _fsync_open(self) -> None:
        if not self._dirty:
            return
        for seg in self._open.values():
            if seg is not None:
                try:
                    os.fsync(seg.fd)
                except OSError as ex:
                    logger.debug("fsync of %s failed: %s", seg.path, ex)
        self._dirty = False

    def _make_room(self, need: int) -> tuple[int, int]:
        """Evict oldest sealed segments (bulk lane first) until `need` bytes fit."""
        events = segs = 0
        for lane in (Lane.EVENTS, Lane.DETECTIONS):
            if self._total + need <= self.max_bytes:
                break
            if self._open[lane] is not None and not self._segs.seqs[lane]:
                self._seal(lane)
            freed, e, n = self._segs.evict(lane, self._total + need - self.max_bytes)
            self._total -= freed
            events += e
            segs += n
        self._evicted += events
        self._evicted_segs += segs
        return events, segs

    def _forget(self, lane: Lane, seq: int) -> None:
        self._total -= self._segs.forget(lane, seq)

    # ---------------------------------------------------------------- reading
    def next_batch(self, *, force: bool = False) -> Batch | None:
        """Return the oldest sealed batch of the highest-priority lane, or None.

        An open segment is sealed once it is `max_batch_delay` old (or at once with `force`).
        The returned batch stays queued until `ack()`.
        """
        with self._lock:
            for lane in Lane:
                seqs = self._segs.ready(lane)
                if not seqs:
                    seg = self._open[lane]
                    if seg is None or seg.count == 0:
                        continue
                    if not force and self.clock() - seg.created < self.max_batch_delay:
                        continue
                    self._seal(lane)
                    seqs = [seg.seq]
                for seq in seqs:
                    path, count = self._segs.path(lane, seq), self._segs.count(seq)
                    try:
                        data = path.read_bytes()
                    except FileNotFoundError:  # removed behind our back: count, skip, go on
                        self._forget(lane, seq)
                        self._lost_segments += 1
                        logger.warning(
                            "spool: segment %s vanished from disk (%d events lost)",
                            path.name,
                            count,
                        )
                        continue
                    self._segs.inflight.add(seq)
                    return Batch(f"{self.spool_id}-{seq}", seq, lane, path, data, count)
        return None

    def ack(self, batch: Batch) -> None:
        """Delete a batch the manager acknowledged."""
        with self._lock:
            batch.path.unlink(missing_ok=True)
            if batch.seq in self._segs.sizes:
                self._forget(batch.lane, batch.seq)

    def release(self, batch: Batch) -> None:
        """Give a batch back after a failed send (it stays first in line)."""
        with self._lock:
            self._segs.inflight.discard(batch.seq)

    def reject(self, batch: Batch, reason: str) -> None:
        """Move a batch the manager refused as malformed to `rejected/`, count and report it."""
        with self._lock:
            os.replace(batch.path, self.root / "rejected" / batch.path.name)
            if batch.seq in self._segs.sizes:
                self._forget(batch.lane, batch.seq)
            self._rejected += 1
        logger.warning(
            "manager rejected batch %s (%d events): %s; kept in %s",
            batch.batch_id,
            batch.count,
            reason,
            self.root / "rejected",
        )
        if batch.lane is Lane.EVENTS or b'"Channel":"Heron-Agent"' not in batch.data:
            self._report(
                HEALTH_REJECTED,
                "manager rejected a batch",
                BatchId=batch.batch_id,
                DroppedEvents=batch.count,
                Reason=reason[:500],
            )

    # ---------------------------------------------------------------- lifecycle
    def flush(self) -> None:
        """fsync the open segments (errors are logged, never raised)."""
        with self._lock:
            if not self._closed:
                self._fsync_open()
                self._last_fsync = self.clock()

    def stats(self) -> SpoolStats:
        with self._lock:
            queued = sum(seg.count for seg in self._open.values() if seg)
            disk_state, disk_error, disk_dropped = self._disk.snapshot()
            return SpoolStats(
                queued_events=queued + self._segs.queued_events(),
                queued_bytes=self._total,
                segments=len(self._segs),
                submitted=self._submitted,
                evicted_events=self._evicted,
                evicted_segments=self._evicted_segs,
                oversize_dropped=self._oversize,
                rejected_batches=self._rejected,
                health_reports=self._reports,
                disk_dropped=disk_dropped,
                disk_state=disk_state,
                disk_error=disk_error,
                lost_segments=self._lost_segments,
            )

    def __len__(self) -> int:
        return self.stats().queued_events

    def close(self) -> None:
        """Seal open segments; idempotent."""
        with self._lock:
            if self._closed:
                return
            for lane in Lane:
                try:
                    self._seal(lane)
                except OSError as ex:  # left as .open: repaired and sealed at the next start
                    logger.warning("spool: cannot seal the %s segment: %s", lane.name.lower(), ex)
            self._closed = True

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
