"""The bounded hand-off from the source threads to the pipeline thread.

Each source runs in its own thread and puts its events here (``pump``); the pipeline thread takes
them in batches (``next_batch``). Lossless sources (replays) wait for room; live sources never
block: past ``SHED_RATIO`` full, optional events are shed (counted) so that process creations and
terminations keep their places, and a full queue drops (counted). Every event is in flight from
``pump`` until the pipeline calls ``done``, so ``wait_idle`` knows when everything was processed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from agent.errors import SourceError
from agent.monitor import SourceCounters
from agent.pipeline import event_id
from agent.sources import EventSource

__all__ = ["DEGRADE_RATIO", "SHED_RATIO", "EventQueue", "Item"]

logger = logging.getLogger(__name__)

Item = tuple[dict[str, Any], bool, SourceCounters | None]
# Deliberate degradation: process creation/termination are never shed at the source.
_ESSENTIAL_EIDS = frozenset({1, 5})
SHED_RATIO = 0.8  # queue fill above which optional live events are shed (counted) at the source
DEGRADE_RATIO = 0.5  # queue fill above which enrichment, hashing and evidence are skipped


class EventQueue:
    """A bounded queue of (event, live, source counters) with in-flight accounting."""

    COALESCE = 0.05  # seconds the pipeline waits to batch events when the queue is short
    BATCH = 256  # events the pipeline takes at most at once

    def __init__(self, size: int) -> None:
        self.items: queue.Queue[Item] = queue.Queue(size)
        self.shed_at = max(1, int(size * SHED_RATIO))
        self.degrade_at = max(1, int(size * DEGRADE_RATIO))
        self._inflight = 0
        self._inflight_lock = threading.Condition()

    def pump(self, source: EventSource, counters: SourceCounters, stop: threading.Event) -> None:
        """Move ``source``'s events into the queue until it ends or ``stop`` is set (a thread)."""
        counters.running = True
        live = source.live
        try:
            for event in source.events():
                if stop.is_set():
                    break
                with self._inflight_lock:
                    self._inflight += 1
                try:
                    if source.lossless:
                        while True:
                            try:
                                self.items.put((event, live, counters), timeout=0.2)
                                break
                            except queue.Full:
                                if stop.is_set():
                                    raise
                    else:
                        if self.items.qsize() >= self.shed_at and self._optional(event):
                            # keep the last places for process creations: shed, counted
                            counters.shed += 1
                            self.done(1)
                            if counters.shed in (1, 1000) or counters.shed % 100_000 == 0:
                                logger.warning(
                                    "pipeline behind: %d optional events shed from "
                                    "%s (process creations kept)",
                                    counters.shed,
                                    source.name,
                                )
                            continue
                        self.items.put_nowait((event, live, counters))
                    counters.events += 1
                except queue.Full:
                    counters.drops += 1
                    self.done(1)
                    if counters.drops in (1, 100, 10_000) or counters.drops % 100_000 == 0:
                        logger.warning(
                            "queue full: %d events dropped from %s", counters.drops, source.name
                        )
        except SourceError as ex:
            counters.errors += 1
            counters.error = str(ex)
            logger.error("source %s failed: %s", source.name, ex)
        except Exception as ex:
            counters.errors += 1
            counters.error = str(ex)
            logger.error("source %s crashed", source.name, exc_info=True)
        finally:
            counters.running = False

    @staticmethod
    def _optional(event: dict[str, Any]) -> bool:
        ev = event.get("Event")
        return not isinstance(ev, dict) or event_id(ev) not in _ESSENTIAL_EIDS

    def done(self, n: int) -> None:
        """``n`` events left the pipeline (processed, shed or dropped)."""
        with self._inflight_lock:
            self._inflight -= n
            if self._inflight <= 0:
                self._inflight_lock.notify_all()

    def next_batch(self, stop: threading.Event) -> list[Item] | None:
        """Up to ``BATCH`` queued items; None once ``stop`` is set and the queue is empty."""
        get = self.items.get
        while not stop.is_set() or not self.items.empty():
            try:
                item = get(timeout=0.2)
            except queue.Empty:
                if stop.is_set():
                    return None
                continue
            if self.items.qsize() < 64:
                # Performance: coalesce a few ms of events into one batch; thread wake-ups cost
                # more than the events themselves at low rates.
                time.sleep(self.COALESCE)
            batch = [item]
            while len(batch) < self.BATCH:
                try:
                    batch.append(self.items.get_nowait())
                except queue.Empty:
                    break
            return batch
        return None

    def backlog(self) -> int:
        """Events waiting (approximate, as ``queue.Queue.qsize``)."""
        return self.items.qsize()

    def wait_done(self, deadline: float) -> bool:
        """Block until no event is in flight, or ``time.monotonic()`` reaches ``deadline``."""
        with self._inflight_lock:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._inflight_lock.wait(left)
        return True
