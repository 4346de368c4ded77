"""An in-memory event store for tests of the manager's HTTP layer and services.

Events in a list, idempotent on (endpoint uuid, batch id), substring search and no SQL: a test
double of `index.EventStore` (the `appliance.store.events.EventSink` seam), not a product part.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AppendOutcome", "MemoryEventStore", "MemoryPage", "MemorySql"]


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """What MemoryEventStore.append returns (mirrors index.AppendResult's fields we read)."""

    accepted: int
    duplicate: bool = False
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class MemoryPage:
    events: list[dict[str, Any]]
    next_cursor: str | None = None
    total: int = 0


@dataclass(frozen=True, slots=True)
class MemorySql:
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    truncated: bool = False


def _uuid_of(event: dict[str, Any]) -> str:
    edr = event.get("Event", {}).get("EdrData") or {}
    return str((edr.get("Endpoint") or {}).get("UUID", ""))


def _time_of(event: dict[str, Any]) -> dt.datetime | None:
    from rules.event import event_time

    return event_time(event)


def _has_detection(event: dict[str, Any]) -> bool:
    det = event.get("Event", {}).get("Detection")
    return bool(det and det.get("Signature"))


class MemoryEventStore:
    """Events in a list; idempotent on (endpoint uuid, batch id); substring search."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._batches: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def append(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> AppendOutcome:
        key = (str(getattr(endpoint, "uuid", endpoint)), batch_id or "")
        with self._lock:
            if batch_id and key in self._batches:
                return AppendOutcome(0, True, batch_id)
            if batch_id:
                self._batches.add(key)
            self.events.extend(events)
        return AppendOutcome(len(events), False, batch_id)

    def append_detections(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> AppendOutcome:
        """Store retro-hunt matches with `EdrData.Event.Retro = true`."""
        marked = []
        for event in events:
            inner = dict(event.get("Event") or {})
            edr = dict(inner.get("EdrData") or {})
            edr["Event"] = dict(edr.get("Event") or {}, Retro=True, Detection=True)
            inner["EdrData"] = edr
            marked.append({**event, "Event": inner})
        return self.append(marked, endpoint=endpoint, batch_id=f"retro:{batch_id}")

    def _select(
        self, since: dt.datetime | None, until: dt.datetime | None, endpoint: str | None
    ) -> list[dict[str, Any]]:
        out = []
        for ev in list(self.events):
            if endpoint and _uuid_of(ev) != endpoint:
                continue
            ts = _time_of(ev)
            if ts is not None and ((since and ts < since) or (until and ts > until)):
                continue
            out.append(ev)
        return out

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
    ) -> MemoryPage:
        import json

        found = [
            ev
            for ev in reversed(self._select(since, until, endpoint))
            if (not detections_only or _has_detection(ev))
            and (not query or query.lower() in json.dumps(ev).lower())
        ]
        start = int(cursor or 0)
        page = found[start : start + limit]
        nxt = str(start + limit) if start + limit < len(found) else None
        return MemoryPage(page, nxt, len(found))

    def sql(
        self,
        query: str,
        *,
        timeout: float = 10.0,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> MemorySql:
        from appliance.core.errors import InvalidParam

        raise InvalidParam("SQL needs the index event store (not the in-memory one)")

    def iter_events(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        endpoint: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        yield from self._select(since, until, endpoint)

    def flush(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"events": len(self.events), "batches": len(self._batches)}

    def reindex(self) -> None:
        return None

    def close(self) -> None:
        return None
