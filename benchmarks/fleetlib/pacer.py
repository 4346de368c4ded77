"""The ramp's pacer: how many TLS handshakes may be in flight at once."""

from __future__ import annotations

import asyncio
import time
from collections import deque


class Pacer:
    """Handshakes in flight during the ramp: +1 per fast one, halved after a slow one.

    A fixed 16 in flight on a busy box queued handshakes past the manager's 10 s
    `tls.handshake_timeout`; refused ones were redone and the ramp stalled near 8,500.
    Waiters queue in order and a freed slot wakes one of them: an `asyncio.Condition` with
    `notify_all` woke all 10,000 waiting agents per handshake (quadratic: the 10,000 ramp spent
    its time in the simulator's own wake-ups, not in TLS).
    """

    FAST, SLOW = 0.5, 2.0  # seconds for connect + handshake (+ the first request: none)

    def __init__(self, start: int = 8, low: int = 1, high: int = 64) -> None:
        self.limit, self.low, self.high = float(start), low, high
        self.inflight = 0
        self.cut = 0.0  # time of the last decrease (one per second at most)
        self._waiters: deque[asyncio.Future[None]] = deque()

    def slot(self) -> _Slot:
        return _Slot(self)

    def took(self, seconds: float) -> None:
        now = time.monotonic()
        if seconds > self.SLOW and now - self.cut > 1.0:
            self.limit, self.cut = max(self.low, self.limit / 2), now
        elif seconds < self.FAST:
            self.limit = min(self.high, self.limit + 1 / max(1.0, self.limit / 4))
            self._wake()

    async def acquire(self) -> None:
        if not self._waiters and self.inflight < int(self.limit):
            self.inflight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake()  # only cancelled waiters ahead of it: a free slot is taken now
        try:
            await fut  # the slot was counted by _wake
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # woken and cancelled at once: hand the slot on
            raise  # a cancelled waiter left in the queue is skipped by _wake

    def release(self) -> None:
        self.inflight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.inflight < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self.inflight += 1


class _Slot:
    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    async def __aenter__(self) -> None:
        await self.pacer.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.pacer.release()
