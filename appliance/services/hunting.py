"""Search, SQL and retro-hunt over stored events (index/), with index errors translated.

`index.IndexQueryError` (a ValueError) becomes InvalidParam here, at the one boundary; rule
compile errors (`rules.RuleError`, a ValueError) become ValidationError.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from ..events import EventSink
from ..timefmt import to_datetime
from .index_errors import index_errors

__all__ = ["HuntResult", "Hunting"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HuntResult:
    scanned: int
    matches: list[dict[str, Any]]
    truncated: bool
    stored: int = 0


class Hunting:
    """Read side of the event store for admins."""

    def __init__(self, events: EventSink) -> None:
        self.events = events

    def search(
        self,
        query: str,
        *,
        since: float | None,
        until: float | None,
        endpoint: str | None,
        detections_only: bool,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        with index_errors("query"):
            page = self.events.search(
                query,
                since=to_datetime(since),
                until=to_datetime(until),
                endpoint=endpoint,
                detections_only=detections_only,
                limit=limit,
                cursor=cursor,
            )
        return {"events": list(page.events), "next_cursor": page.next_cursor, "total": page.total}

    def sql(self, query: str, *, timeout: float, max_rows: int) -> dict[str, Any]:
        with index_errors("sql"):
            res = self.events.sql(query, timeout=timeout, max_rows=max_rows)
        rows = [list(r) for r in res.rows]
        return {
            "columns": list(res.columns),
            "rows": json.loads(json.dumps(rows, default=str)),
            "truncated": bool(res.truncated),
        }

    def retro_hunt(
        self,
        rules: list[dict[str, Any]],
        *,
        since: float | None,
        until: float | None,
        endpoint: str | None,
        max_events: int,
        max_matches: int,
    ) -> HuntResult:
        """Run Gene rules over stored events with the same engine the agents use."""
        import rules as rules_pkg

        text = "\n".join(json.dumps(r) for r in rules)
        try:
            engine = rules_pkg.Engine(rules_pkg.loads(text, source="<hunt>"), show_attack=True)
        except ValueError as ex:
            raise ValidationError(f"rules: {ex}") from ex
        scanned, matches, truncated = 0, [], False
        for event in self.events.iter_events(
            since=to_datetime(since), until=to_datetime(until), endpoint=endpoint
        ):
            if scanned >= max_events:
                truncated = True
                break
            scanned += 1
            candidate = copy.deepcopy(event)
            candidate.get("Event", {}).pop("Detection", None)
            detection = engine.match(candidate)
            if detection is not None and not getattr(detection, "filtered", False):
                matches.append(candidate)
                if len(matches) >= max_matches:
                    truncated = True
                    break
        return HuntResult(scanned, matches, truncated)

    def store_matches(self, hunt_id: str, matches: list[dict[str, Any]]) -> int:
        """Keep retro-hunt matches as detections (`EdrData.Event.Retro`), one batch per endpoint.

        Idempotent per (endpoint, hunt id): storing the same hunt twice stores it once.
        """
        from index import EndpointRef

        by_endpoint: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
        for event in matches:
            ep = ((event.get("Event") or {}).get("EdrData") or {}).get("Endpoint") or {}
            key = (
                str(ep.get("UUID", "")),
                str(ep.get("Hostname", "")),
                str(ep.get("IP", "")),
                str(ep.get("Group", "")),
            )
            by_endpoint.setdefault(key, []).append(event)
        stored = 0
        for (uuid, hostname, ip, group), events in by_endpoint.items():
            if not uuid:
                continue
            with index_errors("retro-hunt"):
                result = self.events.append_detections(
                    events,
                    endpoint=EndpointRef(uuid, hostname, ip, group),
                    batch_id=f"hunt-{hunt_id}",
                )
            stored += 0 if result.duplicate else len(events)
        return stored
