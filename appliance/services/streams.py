"""Fan-out of received events to Server-Sent Event subscribers.

`publish()` runs on the ingest path and never blocks: each subscriber has a bounded deque and a
slow one simply loses its oldest events (counted in `dropped`). Each stream holds one waitress
thread, so the hub enforces `max_clients` (503 beyond it) and streams send heartbeats.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import Unavailable

__all__ = ["StreamFilter", "StreamHub", "Subscription"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """What a subscriber wants; empty fields match everything."""

    detections_only: bool = False
    endpoint: str = ""
    channel: str = ""
    event_id: int | None = None
    min_criticality: int = 0
    signature: str = ""

    def matches(self, event: dict[str, Any]) -> bool:
        inner = event.get("Event") or {}
        det = inner.get("Detection")
        det = det if isinstance(det, dict) else {}
        sigs = det.get("Signature") or []
        if self.detections_only and not sigs:
            return False
        if self.min_criticality and _int(det.get("Criticality")) < self.min_criticality:
            return False
        if self.signature and (not isinstance(sigs, list) or self.signature not in sigs):
            return False
        system = inner.get("System")
        system = system if isinstance(system, dict) else {}
        if self.channel and system.get("Channel") != self.channel:
            return False
        if self.event_id is not None:
            eid = system.get("EventID")
            if isinstance(eid, dict):
                eid = eid.get("Value")
            if str(eid) != str(self.event_id):
                return False
        if self.endpoint:
            ep = ((inner.get("EdrData") or {}).get("Endpoint") or {}).get("UUID")
            if ep != self.endpoint:
                return False
        return True


class Subscription:
    """One stream's buffer."""

    def __init__(self, flt: StreamFilter, maxlen: int) -> None:
        self.filter = flt
        self.queue: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=maxlen)
        self.wake = threading.Event()
        self.dropped = 0
        self.closed = False

    def offer(self, seq: int, data: bytes) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append((seq, data))
        self.wake.set()


class StreamHub:
    """Subscribers, the cap on them, and the SSE generator."""

    def __init__(
        self,
        *,
        max_clients: int = 32,
        queue: int = 10_000,
        heartbeat: float = 15.0,
        wait: Callable[[threading.Event, float], bool] | None = None,
    ) -> None:
        self.max_clients = max_clients
        self.queue = queue
        self.heartbeat = heartbeat
        self._wait = wait or (lambda ev, timeout: ev.wait(timeout))
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.published = 0

    @property
    def clients(self) -> int:
        return len(self._subs)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in list(self._subs))

    def subscribe(self, flt: StreamFilter) -> Subscription:
        with self._lock:
            if len(self._subs) >= self.max_clients:
                raise Unavailable(f"too many streams (max {self.max_clients})")
            sub = Subscription(flt, self.queue)
            self._subs = [*self._subs, sub]
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Offer `events` to every matching subscriber (never blocks)."""
        subs = self._subs
        self.published += len(events)
        if not subs:
            return
        for event in events:
            wanted = [s for s in subs if s.filter.matches(event)]
            if wanted:
                seq = next(self._seq)
                data = orjson.dumps(event)
                for sub in wanted:
                    sub.offer(seq, data)

    def sse(self, sub: Subscription, *, max_events: int | None = None) -> Iterator[bytes]:
        """The `text/event-stream` body of one subscription (unsubscribes when it ends)."""
        sent = 0
        try:
            yield b": heron stream\n\n"
            while not sub.closed:
                if not sub.queue:
                    sub.wake.clear()
                    if not sub.queue and not self._wait(sub.wake, self.heartbeat):
                        yield b": hb\n\n"
                        continue
                while sub.queue:
                    seq, data = sub.queue.popleft()
                    yield b"id: %d\ndata: %s\n\n" % (seq, data)
                    sent += 1
                    if max_events is not None and sent >= max_events:
                        return
        finally:
            self.unsubscribe(sub)

    def close(self) -> None:
        """End every stream (at shutdown)."""
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            sub.closed = True
            sub.wake.set()


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
