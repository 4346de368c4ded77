"""`Upgrader`: the seam through which a TLS front hands some connections, by their first request
head, to a server of its own (`appliance.transport.websocket`)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from .identities import ConnInfo

__all__ = ["Upgrader"]


class Upgrader(Protocol):
    """Takes some connections over from the byte pipe, by their first request head."""

    def wants(self, head: bytes) -> bool:
        """True to serve this connection (`head`: bytes up to the end of the first head)."""
        ...

    async def serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: bytes,
        conn: ConnInfo,
    ) -> None:
        """Serve the connection on the front's loop until it ends (the front closes it)."""
        ...

    async def shutdown(self, timeout: float) -> None:
        """Close the served connections cleanly before the front cancels them."""
        ...
