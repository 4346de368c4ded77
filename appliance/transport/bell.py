"""`CommandBell`: wakes the long-polls (`appliance.transport.longpoll`) of an endpoint when a
command is queued for it. Its own module: the context holds one, and the long-poll needs the API."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["CommandBell"]


class CommandBell:
    """Endpoint uuid → the events of the long-polls waiting for it; `ring` from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def ring(self, uuid: str) -> None:
        """Wake every long-poll of `uuid` (a command was queued for it)."""
        with self._lock:
            waiters = list(self._waiters.get(uuid, ()))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop closed meanwhile
                pass

    def register(self, uuid: str) -> asyncio.Event:
        """An event set by the next `ring(uuid)`; call `unregister` when done with it."""
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(uuid, set()).add((asyncio.get_running_loop(), event))
        return event

    def unregister(self, uuid: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(uuid)
            if waiters is None:
                return
            waiters.discard((asyncio.get_running_loop(), event))
            if not waiters:
                del self._waiters[uuid]

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())
