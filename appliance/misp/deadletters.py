"""Dead letters: queue items MISP refused, or failed too often, kept for an operator.

An item error (a 4xx for that request, or a 5xx repeated `*_max_attempts` times) no longer stops
the stream nor drops the item: the item leaves its queue for this list, with the error and its
attempts, and the rest of the queue goes on. The admin API lists them, re-queues them (after the
cause is fixed, e.g. a proxy's body limit raised) or discards them. The list is bounded
(`MAX_DEAD_LETTERS`); beyond it the oldest are discarded and counted.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from .state import StateStore

__all__ = ["MAX_DEAD_LETTERS", "DeadLetters"]

logger = logging.getLogger(__name__)

STATE = "dead-letters"
MAX_DEAD_LETTERS = 1000


class DeadLetters:
    """The dead-letter list of every stream, persisted as one state document."""

    def __init__(self, state: StateStore, clock: Callable[[], float]) -> None:
        self.state = state
        self.clock = clock
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """Read the list again (cluster mode: another front-end changed it)."""
        with self._lock:
            self._read()

    def _read(self) -> None:
        doc = self.state.load(STATE) or {}
        self._items: list[dict[str, Any]] = list(doc.get("items", []))
        self.discarded = int(doc.get("discarded", 0))

    def add(self, stream: str, item: Any, error: str, attempts: int) -> str:
        """Keep `item` of `stream` with the error that stopped it; returns its id."""
        entry = {
            "id": str(uuid.uuid4()),
            "stream": stream,
            "item": item,
            "error": error[:1000],
            "attempts": attempts,
            "time": self.clock(),
        }
        with self._lock:
            self._read()  # cluster mode: another front-end may have taken entries
            self._items.append(entry)
            excess = len(self._items) - MAX_DEAD_LETTERS
            if excess > 0:
                del self._items[:excess]
                self.discarded += excess
                logger.warning("MISP dead-letter list full: discarded the oldest %d", excess)
            self._save()
        logger.warning(
            "MISP %s item dead-lettered after %d attempt(s): %s", stream, attempts, error
        )
        return str(entry["id"])

    def entries(self, stream: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._items if stream is None or e["stream"] == stream]

    def count(self, stream: str) -> int:
        with self._lock:
            return sum(1 for e in self._items if e["stream"] == stream)

    def take(self, ids: list[str] | None, stream: str | None = None) -> list[dict[str, Any]]:
        """Remove and return the entries with these ids (all of `stream` when ids is None)."""
        with self._lock:
            self._read()
            wanted = set(ids) if ids is not None else None
            taken = [
                e
                for e in self._items
                if (wanted is None or e["id"] in wanted)
                and (stream is None or e["stream"] == stream)
            ]
            if taken:
                gone = {e["id"] for e in taken}
                self._items = [e for e in self._items if e["id"] not in gone]
                self._save()
            return taken

    def _save(self) -> None:
        self.state.save(STATE, {"items": self._items, "discarded": self.discarded})
