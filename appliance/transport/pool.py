"""Persistent loopback connections from the endpoint TLS front to waitress (issue 24).

The relay (`appliance.transport.relay`) used to open one backend connection per forwarded
request. At 1,000 agents × one `/logs` a second that was ~1,000 connects, accepts and closes a
second, and ~1,000 sockets in waitress's map, which `wasyncore.poll2` scans on every loop pass:
half the manager's CPU. The pool keeps at most `size` connections open and lends them one
request at a time, so waitress's map holds `size` sockets whatever the fleet, and a request queues
on the front's loop (not in waitress) while all are lent.

A lease is never held by a client's pace: the relay reads a small request body before it
takes a lease (`buffer()` bounds those bytes for the whole front), streams a large or oddly
framed one over a dedicated connection, and `detach()`es a lease whose answer is large, so a
slow reader costs one connection of its own, as before, never a slot of the pool.

`size` 0 turns pooling off: every lease is a fresh connection, closed after its request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["BackendPool", "Lease"]

IDLE = 30.0  # seconds a pooled connection is kept unused (waitress's channel_timeout is 120)
BUFFERED = 64 * 1024 * 1024  # request-body bytes held in memory at once, for the whole front


@dataclass(slots=True, eq=False)
class Lease:
    """One backend connection: its streams and its source port (the IdentityMap key)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    port: int
    pooled: bool  # counted in the pool (False: dedicated, closed after its request)
    reused: bool = False  # served an earlier request
    used: float = 0.0  # loop time it was given back to the free list
    lent: bool = True  # False once released: a second release does nothing


class BackendPool:
    """At most `size` persistent backend connections (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
        *,
        size: int,
        idle: float = IDLE,
        buffered: int = BUFFERED,
    ) -> None:
        self.connect = connect
        self.size = size
        self.idle = idle
        self.buffered_cap = buffered
        self.buffered = 0  # request-body bytes held now
        self.opened = 0  # backend connections opened (pooled or dedicated)
        self.reused = 0  # leases served by a connection opened earlier
        self._free: list[Lease] = []  # LIFO: the warmest connection first
        self._lent = 0  # slots taken: lent connections, and slots handed to a waiter
        # waiters in arrival order; each is handed a connection, or None: a slot to open one in
        self._waiters: deque[asyncio.Future[Lease | None]] = deque()

    @property
    def lent(self) -> int:
        return self._lent

    async def acquire(self) -> Lease:
        """A pooled connection: a free one, a new one below `size`, or the next one given back.

        given back connections and freed slots are handed to the waiters in turn, so a request
        arriving later cannot overtake one that waits.
        """
        if self.size <= 0:
            return await self.dedicated()
        loop = asyncio.get_running_loop()
        while self._free and not self._waiters:
            lease = self._free.pop()
            fresh = loop.time() - lease.used < self.idle
            if fresh and not lease.reader.at_eof() and not lease.writer.is_closing():
                self._lent += 1
                self.reused += 1
                return lease
            lease.writer.close()
        if self._lent < self.size and not self._waiters:
            self._lent += 1
            return await self._open_in_slot()
        waiter: asyncio.Future[Lease | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed and cancelled at once
                self._pass_on(waiter.result())
            else:
                self._waiters.remove(waiter)
            raise
        return handed if handed is not None else await self._open_in_slot()

    async def dedicated(self) -> Lease:
        """A connection of its own, outside the pool (closed by `release`)."""
        return await self._open(pooled=False)

    def release(self, lease: Lease, reusable: bool) -> None:
        """Give a lease back: kept for the next request when `reusable`, else closed.

        the pool keeps a new Lease, so a late second release of this one is a no-op.
        """
        if not lease.lent:
            return
        lease.lent = False
        if not lease.pooled:
            lease.writer.close()
            return
        if reusable and self.size > 0 and not lease.writer.is_closing():
            now = asyncio.get_running_loop().time()
            self._pass_on(Lease(lease.reader, lease.writer, lease.port, True, True, now))
        else:
            lease.writer.close()
            self._pass_on(None)

    def detach(self, lease: Lease) -> None:
        """Free the lease's slot now; the connection becomes dedicated (closed on release)."""
        if lease.pooled and lease.lent:
            lease.pooled = False
            self._pass_on(None)

    def buffer(self, size: int) -> bool:
        """Reserve `size` bytes of request body in memory; False when over the front's cap."""
        if self.buffered + size > self.buffered_cap:
            return False
        self.buffered += size
        return True

    def unbuffer(self, size: int) -> None:
        self.buffered -= size

    def close(self) -> None:
        """Close the free connections (lent ones close with their request)."""
        free, self._free = self._free, []
        for lease in free:
            lease.writer.close()

    async def _open(self, *, pooled: bool) -> Lease:
        reader, writer = await self.connect()
        self.opened += 1
        return Lease(reader, writer, int(writer.get_extra_info("sockname")[1]), pooled)

    async def _open_in_slot(self) -> Lease:
        """A new pooled connection in a slot already counted in `_lent`."""
        try:
            return await self._open(pooled=True)
        except BaseException:
            self._pass_on(None)
            raise

    def _pass_on(self, handed: Lease | None) -> None:
        """A given-back connection (or a freed slot: None) to the first waiter, else kept."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if handed is not None:
                    self.reused += 1
                waiter.set_result(handed)
                return
        if handed is not None:
            self._free.append(handed)
        self._lent -= 1
