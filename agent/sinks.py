"""Event sinks: the ``EventSink`` seam, an in-memory sink and the rotating alert log.

The pipeline calls ``submit(event)`` for every event it forwards (see ``agent.service``). A sink
must not block for long, must not raise (the pipeline counts and logs sink errors) and must not
modify the event (actions may still be writing it to ``event.json``). A sink may also have a
``flush()`` method: the pipeline calls it after each batch (at most a few ms of events). The link
engineer's forwarding sink implements the same one-method protocol.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

__all__ = ["AlertLog", "EventSink", "MemorySink", "read_alerts"]

logger = logging.getLogger(__name__)


@runtime_checkable
class EventSink(Protocol):
    """Receives processed events (dicts in the WHIDS shape, ``Event.Detection`` when matched)."""

    def submit(self, event: dict[str, Any]) -> None: ...


class MemorySink:
    """Keeps the last ``maxlen`` submitted events (tests, status)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()

    def submit(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any] | None:
        """First event satisfying ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


class AlertLog:
    """JSON Lines alert log ``alerts.log`` rotated by size and age to ``alerts.log.N``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        detections_only: bool = True,
        max_bytes: int = 50 * 1024 * 1024,
        rotation_interval: float = 5 * 3600.0,
        keep: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "alerts.log"
        self.detections_only = detections_only
        self.max_bytes = max_bytes
        self.rotation_interval = rotation_interval
        self.keep = max(1, keep)
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._buf: list[bytes] = []
        self._pending = 0  # bytes in _buf
        self._opened = 0.0
        self._size = 0  # bytes of whole lines in the file
        self.written = 0
        self.dropped = 0  # lines lost to a write error (full disk): never half a line
        self.batched = False  # set by the pipeline, which then calls flush() per batch

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o640
        )
        self._size = os.fstat(self._fd).st_size
        self._opened = self._clock()

    def _write_buffer(self) -> None:
        """Write the buffered lines whole or not at all (a failed write is cut back, raised)."""
        if not self._buf or self._fd is None:
            return
        data = b"".join(self._buf)
        lines = len(self._buf)
        self._buf.clear()
        self._pending = 0
        try:
            n = os.write(self._fd, data)
            if n != len(data):
                raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes)")
        except OSError:
            self.dropped += lines
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(data)

    def _rotate(self) -> None:
        if self._fd is not None:
            self._write_buffer()
            os.close(self._fd)
            self._fd = None
        for n in range(self.keep - 1, 0, -1):
            src = self.dir / f"alerts.log.{n}"
            if src.exists():
                os.replace(src, self.dir / f"alerts.log.{n + 1}")
        if self.path.exists():
            os.replace(self.path, self.dir / "alerts.log.1")
        stale = self.dir / f"alerts.log.{self.keep + 1}"
        if stale.exists():
            stale.unlink()
        logger.info("alert log rotated")

    def submit(self, event: dict[str, Any]) -> None:
        if self.detections_only and not event.get("Event", {}).get("Detection"):
            return
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            if self._fd is None:
                self._open()
            total = self._size + self._pending
            if total and (
                total + len(line) > self.max_bytes
                or self._clock() - self._opened >= self.rotation_interval
            ):
                self._rotate()
                self._open()
            self._buf.append(line)
            self._pending += len(line)
            self.written += 1
            if not self.batched or self._pending >= 1 << 20:
                self._write_buffer()

    def flush(self) -> None:
        """Write the buffered lines (the pipeline calls it after every batch)."""
        with self._lock:
            self._write_buffer()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    self._write_buffer()
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = None


def read_alerts(directory: str | Path) -> list[dict[str, Any]]:
    """Every event in ``alerts.log`` (oldest rotated file first)."""
    d = Path(directory)
    files = sorted(
        d.glob("alerts.log.*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0
    )
    out = []
    for p in [*files, d / "alerts.log"]:
        if p.exists():
            for line in p.read_bytes().splitlines():
                if line.strip():
                    out.append(orjson.loads(line))
    return out
