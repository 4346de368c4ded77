"""Server-advised batching of /logs (issue 24): under load, agents let their batches fill longer.

An agent sends its spooled events every `batch_delay` seconds (1 s by default), so 1,000 sending
agents are 1,000 /logs requests a second whatever their event rate, and every request costs the
manager a relayed request and a journal append however few events it carries. The front counts
the agents that sent /logs in the last minute; past `per` of them every /logs answer carries
`X-Heron-Batch-After: <seconds>` (`base` × senders / `per`, at most `wire.MAX_BATCH_AFTER`), and an
agent of this version lets its open batch wait that long (never less than its own setting). The
same events then come in fewer, larger requests. Agents of the previous version ignore the header.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rules import wire

__all__ = ["BatchAdvisor"]

PER = 200  # sending agents per second of batch delay (~200 /logs requests a second)


class BatchAdvisor:
    """Counts /logs senders (on the front's loop) and advises a batch delay from their number.

    The count, not the request rate, drives it: the rate falls as agents follow the advice, and
    advice from the rate would then swing back.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        per: int = PER,
        cap: float = wire.MAX_BATCH_AFTER,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.per = per
        self.cap = cap
        self.window = window
        self.clock = clock
        self._current: set[str] = set()  # senders seen in this window
        self._previous: set[str] = set()  # and in the one before
        self._since = clock()

    def saw(self, sender: str) -> None:
        now = self.clock()
        if now - self._since >= self.window:
            stale = now - self._since >= 2 * self.window
            self._previous = set() if stale else self._current
            self._current = set()
            self._since = now
        self._current.add(sender)

    def senders(self) -> int:
        return max(len(self._current), len(self._previous))

    def batch_after(self) -> float:
        """Seconds advised (≤ `base`: no advice)."""
        return min(self.cap, self.base * self.senders() / self.per)

    def header(self) -> bytes:
        after = self.batch_after()
        if after <= self.base:
            return b""
        return f"{wire.HEADER_BATCH_AFTER}: {after:.1f}\r\n".encode("latin-1")
