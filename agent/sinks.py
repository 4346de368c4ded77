"""Event sinks: the ``EventSink`` seam, an in-memory sink and the rotating alert log.

The pipeline calls ``submit(event)`` for every event it forwards (see ``agent.service``). A sink
must not block for long, must not raise (the pipeline counts and logs sink errors) and must not
modify the event (actions may still be writing it to ``event.json``). A sink may also have a
``flush()`` method: the pipeline calls it after each batch (at most a few ms of events). The link
engineer's forwarding sink implements the same one-method protocol.
"""

from __future__ import annotations

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

    def submit(self, event: dict[str, Any]) -> None:
        ...


class MemorySink:
    """Keeps the last ``maxlen`` submitted events (tests, status)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()

    def submit(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = 5.0) -> dict[str, Any] | None:
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

    def __init__(self, directory: str | Path, *, detections_only: bool = True,
                 max_bytes: int = 50 * 1024 * 1024, rotation_interval: float = 5 * 3600.0,
                 keep: int = 10, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "alerts.log"
        self.detections_only = detections_only
        self.max_bytes = max_bytes
        self.rotation_interval = rotation_interval
        self.keep = max(1, keep)
        self._clock = clock
        self._lock = threading.Lock()
        self._fh: Any = None
        self._opened = 0.0
        self._size = 0
        self.written = 0
        self.batched = False  # set by the pipeline, which then calls flush() per batch

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")
        self._size = self._fh.tell()
        self._opened = self._clock()

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
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
            if self._fh is None:
                self._open()
            if self._size and (self._size + len(line) > self.max_bytes
                               or self._clock() - self._opened >= self.rotation_interval):
                self._rotate()
                self._open()
            self._fh.write(line)
            self._size += len(line)
            self.written += 1
            if not self.batched:
                self._fh.flush()

    def flush(self) -> None:
        """Push buffered lines to the file (the pipeline calls it after every batch)."""
        with self._lock:
            if self._fh is not None:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.close()
                except Exception:
                    pass
                self._fh = None


def read_alerts(directory: str | Path) -> list[dict[str, Any]]:
    """Every event in ``alerts.log`` (oldest rotated file first)."""
    d = Path(directory)
    files = sorted(d.glob("alerts.log.*"), key=lambda p: -int(p.suffix[1:]) if
                   p.suffix[1:].isdigit() else 0)
    out = []
    for p in [*files, d / "alerts.log"]:
        if p.exists():
            for line in p.read_bytes().splitlines():
                if line.strip():
                    out.append(orjson.loads(line))
    return out
