"""The event-store seam the manager codes against.

`index.EventStore` (docs/interfaces.md) is the production implementation; `NoEventStore` stands in
for commands that open only the fleet store. Tests use `tests/support/memory_store.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, NoReturn, Protocol

from ..core.errors import Unavailable

__all__ = ["EventSink", "NoEventStore"]


class EventSink(Protocol):
    """The part of index.EventStore the manager uses."""

    def append(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> Any: ...

    def append_detections(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> Any: ...

    def search(
        self,
        query: str = "",
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        endpoint: str | None = None,
        detections_only: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Any: ...

    def sql(
        self,
        query: str,
        *,
        timeout: float = 10.0,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> Any: ...

    def iter_events(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        endpoint: str | None = None,
    ) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class NoEventStore:
    """The event sink of commands that open only the fleet store: every use is refused."""

    def _refuse(self) -> NoReturn:
        raise Unavailable("this command opened no event store")

    def append(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> NoReturn:
        self._refuse()

    def append_detections(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> NoReturn:
        self._refuse()

    def search(
        self,
        query: str = "",
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        endpoint: str | None = None,
        detections_only: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> NoReturn:
        self._refuse()

    def sql(
        self,
        query: str,
        *,
        timeout: float = 10.0,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> NoReturn:
        self._refuse()

    def iter_events(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        endpoint: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        self._refuse()

    def close(self) -> None:
        return None
