"""Connection governance for the TLS fronts: who may hold a connection, and for how long.

The front asks a `Governor` at accept (`admit`), tells it when a connection proved who it is
(`authenticate`: a verified client certificate on the endpoint listener, a valid API key or
console session in the first request head on the admin listener) and when it ends (`release`).

Security: without credentials nothing may take every slot (2,060 bare TCP connections
did, and enrolled agents' `GET /key` failed). So:
- a source IP holds at most `per_source` connections that are not authenticated yet;
- unauthenticated connections together hold at most `max_connections - reserve`; past that a new
  one evicts the oldest unauthenticated one (an honest client completes its handshake within
  milliseconds, a flood's connections are the old ones), so authenticated endpoints and admin
  sessions always find a slot in the reserve;
- the front closes a connection that has not sent its first request head within
  `header_timeout`, and an unauthenticated one idle for `anonymous_idle` or past
  `anonymous_bytes` sent (an unauthenticated `/enroll` cannot spool hundreds of MB).
Every refusal is counted by reason; the matching log lines are rate-limited (`RateLimitedLog`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["FailureThrottle", "GovernanceLimits", "Governor", "RateLimitedLog", "Slot"]

REASONS = ("cap", "per_source", "evicted", "handshake", "header_timeout", "anonymous_bytes")


@dataclass(frozen=True, slots=True)
class GovernanceLimits:
    """The knobs of one listener (from `[tls]`)."""

    max_connections: int = 2048
    per_source: int = 256
    reserve: int = 256
    header_timeout: float = 10.0
    anonymous_idle: float = 15.0
    anonymous_bytes: int = 1024 * 1024


@dataclass(eq=False, slots=True)
class Slot:
    """One admitted connection."""

    ip: str
    close: Callable[[], None]  # aborts the connection (eviction)
    authenticated: bool = False
    released: bool = False
    sent: int = field(default=0)


class RateLimitedLog:
    """At most one WARNING per `interval` seconds per key; the suppressed count is reported."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) > 4096:  # keys carry peer IPs: keep the map bounded
            self._last.clear()
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar suppressed)"
            args = (*args, suppressed)
        self.logger.warning(msg, *args)


class FailureThrottle:
    """Failed credentials per source: past `limit` in a `window`-second window, the source is
    refused (429) until that window ends.

    Thread-safe (waitress workers); the map is bounded (oldest sources forgotten).
    """

    def __init__(
        self, limit: int = 50, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self.throttled = 0
        self._fails: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, source: str) -> bool:
        with self._lock:
            start, count = self._fails.get(source, (0.0, 0))
            if count >= self.limit and self.clock() - start < self.window:
                self.throttled += 1
                return True
            return False

    def failed(self, source: str) -> None:
        now = self.clock()
        with self._lock:
            start, count = self._fails.pop(source, (now, 0))
            if now - start >= self.window:  # a new window
                start, count = now, 0
            self._fails[source] = (start, count + 1)
            while len(self._fails) > 10_000:
                self._fails.popitem(last=False)


class Governor:
    """Admission of one listener's connections (used on its event-loop thread only)."""

    def __init__(self, limits: GovernanceLimits) -> None:
        self.limits = limits
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._anonymous: OrderedDict[int, Slot] = OrderedDict()  # oldest first
        self._per_source: dict[str, int] = {}
        self.authenticated = 0

    @property
    def active(self) -> int:
        return len(self._anonymous) + self.authenticated

    def admit(self, ip: str, close: Callable[[], None]) -> Slot | None:
        """A slot for a new connection from `ip`, or None (counted) to close it at once."""
        lim = self.limits
        if self._per_source.get(ip, 0) >= lim.per_source:
            self.rejected["per_source"] += 1
            return None
        if self.active >= lim.max_connections or len(self._anonymous) >= max(
            1, lim.max_connections - lim.reserve
        ):
            if not self._anonymous:
                self.rejected["cap"] += 1
                return None
            _, oldest = self._anonymous.popitem(last=False)
            self._forget(oldest)
            self.rejected["evicted"] += 1
            oldest.close()
        slot = Slot(ip, close)
        self._anonymous[id(slot)] = slot
        self._per_source[ip] = self._per_source.get(ip, 0) + 1
        return slot

    def authenticate(self, slot: Slot) -> None:
        """The connection proved its identity: it leaves the unauthenticated pool."""
        if slot.released or slot.authenticated:
            return
        self._anonymous.pop(id(slot), None)
        self._forget(slot)
        slot.released = False
        slot.authenticated = True
        self.authenticated += 1

    def release(self, slot: Slot) -> None:
        """The connection ended (idempotent; an evicted slot was released already)."""
        if slot.authenticated:
            slot.authenticated = False
            slot.released = True
            self.authenticated -= 1
            return
        if slot.released:
            return
        self._anonymous.pop(id(slot), None)
        self._forget(slot)

    def count(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _forget(self, slot: Slot) -> None:
        slot.released = True
        left = self._per_source.get(slot.ip, 0) - 1
        if left > 0:
            self._per_source[slot.ip] = left
        else:
            self._per_source.pop(slot.ip, None)
