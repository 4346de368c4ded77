"""The spool's on-disk format: lanes, segment files, their repair after a crash.

Layout under the spool's root::

    id                       random spool id (batch ids are `<id>-<seq>`, unique forever)
    seq                      highest segment sequence number ever handed out
    detections/<seq>.open    the segment being written (append-only NDJSON)
    detections/<seq>.<n>.seg sealed segments holding n events: immutable, one /logs batch each
    events/…                 same for bulk events
    rejected/<seq>.<n>.seg   batches the manager refused as malformed (kept, counted, reported)

A record is written whole or not at all (`write_whole` cuts a short or failed write back with
`ftruncate`); `repair_open` cuts a torn trailing line left by a crash and seals the segment.
What is queued where, and when it is evicted, is `agent.link.spool`'s policy.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LANE_DIRS",
    "Lane",
    "OpenSegment",
    "close_segment",
    "fsync_dir",
    "inspect",
    "open_segment",
    "repair_open",
    "segment_path",
    "write_seq",
    "write_whole",
]

logger = logging.getLogger(__name__)


class Lane(enum.IntEnum):
    """Queue lanes, drained in this order."""

    DETECTIONS = 0
    EVENTS = 1


# lane → directory name under the spool's root
LANE_DIRS = {Lane.DETECTIONS: "detections", Lane.EVENTS: "events"}


@dataclass(slots=True)
class OpenSegment:
    """The segment currently being appended to in one lane."""

    seq: int
    path: Path
    fd: int
    size: int = 0
    count: int = 0
    created: float = 0.0


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_path(root: Path, lane: Lane, seq: int, count: int) -> Path:
    """Where the sealed segment ``seq`` holding ``count`` events lives."""
    return root / LANE_DIRS[lane] / f"{seq:020d}.{count}.seg"


def repair_open(path: Path, seq: int) -> int | None:
    """Cut a torn trailing line from an `.open` segment left by a crash, then seal it."""
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut == 0:
        path.unlink()
        return None
    if cut != len(data):
        logger.warning(
            "spool: dropped a torn %d-byte line at the end of %s", len(data) - cut, path.name
        )
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
    count = data.count(b"\n", 0, cut)
    os.replace(path, path.with_name(f"{seq:020d}.{count}.seg"))
    return count


def write_whole(seg: OpenSegment, line: bytes) -> None:
    """Append `line` entirely or not at all (a short write is cut back, then raised)."""
    try:
        n = os.write(seg.fd, line)
    except OSError:
        _cut(seg)
        raise
    if n != len(line):
        _cut(seg)
        raise OSError(errno.ENOSPC, f"short write ({n} of {len(line)} bytes)")


def _cut(seg: OpenSegment) -> None:
    try:
        os.ftruncate(seg.fd, seg.size)
    except OSError:
        logger.debug("cannot cut %s back to %d bytes", seg.path, seg.size)


def write_seq(root: Path, seq: int) -> None:
    """Record ``seq`` as the highest sequence number handed out (durably, before it is used)."""
    seq_file = root / "seq"
    tmp = seq_file.with_suffix(".tmp")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(str(seq))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, seq_file)


def open_segment(root: Path, lane: Lane, seq: int, created: float) -> OpenSegment:
    """Create the append-only ``.open`` file of segment ``seq`` (owner-only)."""
    path = root / LANE_DIRS[lane] / f"{seq:020d}.open"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o600)
    return OpenSegment(seq, path, fd, created=created)


def close_segment(seg: OpenSegment, lane: Lane, root: Path) -> bool:
    """fsync, close and seal ``seg`` under its final name; False when it was empty (deleted)."""
    try:
        os.fsync(seg.fd)
    except OSError as ex:  # the bytes are in the page cache; the rename still happens
        logger.debug("fsync of %s failed: %s", seg.path, ex)
    os.close(seg.fd)
    if seg.count == 0:
        seg.path.unlink()
        return False
    os.replace(seg.path, segment_path(root, lane, seg.seq, seg.count))
    fsync_dir(seg.path.parent)
    return True


def inspect(root: Path) -> dict[str, int]:
    """Queue size on disk, strictly read-only (`heron-agent link status` on a live agent).

    Never opens a `Spool` (whose recovery seals and renames `.open` segments): it only lists the
    lane directories and counts the lines of open segments.
    """
    events = size = segments = 0
    for name in LANE_DIRS.values():
        try:
            entries = list(os.scandir(Path(root) / name))
        except OSError:
            continue
        for entry in entries:
            parts = entry.name.split(".")
            try:
                st = entry.stat()
            except OSError:  # sent and deleted while we looked
                continue
            if entry.name.endswith(".seg") and len(parts) == 3 and parts[1].isdigit():
                events += int(parts[1])
                segments += 1
            elif entry.name.endswith(".open"):
                try:
                    with open(entry.path, "rb") as fh:
                        events += fh.read().count(b"\n")
                except OSError:
                    continue
            else:
                continue
            size += st.st_size
    return {"events": events, "bytes": size, "segments": segments}
