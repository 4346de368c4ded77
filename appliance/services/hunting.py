"""Search, SQL and retro-hunt over stored events (index/), with index errors translated.

`index.IndexQueryError` (a ValueError) becomes InvalidParam here, at the one boundary; rule
compile errors (`rules.RuleError`, a ValueError) become ValidationError.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..core.errors import ValidationError
from ..core.timefmt import to_datetime
from ..store.events import EventSink
from .index_errors import index_errors

__all__ = ["MAX_PAGE_BYTES", "PAGE_STEP", "HuntControl", "HuntResult", "HuntStopped", "Hunting"]

logger = logging.getLogger(__name__)
MAX_PAGE_BYTES = 32 * 1024 * 1024  # JSON of one page of events (search, endpoint logs)
PAGE_STEP = 100  # events read from the index at a time while a page is built


@dataclass(frozen=True, slots=True)
class HuntResult:
    """What a retro-hunt scanned and found.

    `detections` counts every event with signatures (Gene: a detection whether or not a Filter
    rule also matched); `matches` holds the first `max_matches` of them, each with the
    `Event.Detection` that `heron scan` writes. `filtered` counts events only Filter rules matched
    (not returned, as Gene prints no detection for them).
    """

    scanned: int
    matches: list[dict[str, Any]]
    truncated: bool
    stored: int = 0
    detections: int = 0
    filtered: int = 0
    rules: int = 0
    containers: dict[str, int] = field(default_factory=dict)
    iocs: int = 0
    stopped: str = ""  # why the hunt ended early: cancelled, timeout ("" = it ran to the end)
    match_bytes: int = 0  # JSON bytes of `matches`


class HuntStopped(Exception):
    """Raised by a `HuntControl` checkpoint to end a hunt early (results so far are kept)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HuntControl(Protocol):
    """Called every `chunk` events: report progress, raise HuntStopped to stop, may sleep."""

    def checkpoint(self, scanned: int, detections: int, filtered: int) -> None: ...


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
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> dict[str, Any]:
        """A page of at most `limit` events and about `max_bytes` of JSON.

        Security: the page is read `PAGE_STEP` events at a time and ends, with the
        cursor of the last step, once `max_bytes` is passed (at most one step over).
        """
        events: list[dict[str, Any]] = []
        size, total, nxt = 0, 0, cursor
        while len(events) < limit:
            with index_errors("query"):
                page = self.events.search(
                    query,
                    since=to_datetime(since),
                    until=to_datetime(until),
                    endpoint=endpoint,
                    detections_only=detections_only,
                    limit=min(PAGE_STEP, limit - len(events)),
                    cursor=nxt,
                )
            events.extend(page.events)
            total, nxt = page.total, page.next_cursor
            size += sum(len(orjson.dumps(e, default=str)) for e in page.events)
            if nxt is None or size > max_bytes:
                break
        return {"events": events, "next_cursor": nxt, "total": total}

    def detection_event(self, endpoint: str, event_hash: str) -> dict[str, Any] | None:
        """The stored detection event `event_hash` of `endpoint` (None: not in the index)."""
        found = self.search(
            f"EventHash:{event_hash}",
            since=None,
            until=None,
            endpoint=endpoint,
            detections_only=True,
            limit=1,
            cursor=None,
        )
        event: dict[str, Any] | None = found["events"][0] if found["events"] else None
        return event

    def sql(
        self, query: str, *, timeout: float, max_rows: int, max_bytes: int = 16 * 1024 * 1024
    ) -> dict[str, Any]:
        with index_errors("sql"):
            res = self.events.sql(query, timeout=timeout, max_rows=max_rows, max_bytes=max_bytes)
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
        containers: dict[str, list[str]] | None = None,
        iocs: list[dict[str, Any]] | None = None,
        ioc_criticality: int = 10,
        max_match_bytes: int = MAX_PAGE_BYTES,
        control: HuntControl | None = None,
        matches: list[dict[str, Any]] | None = None,
        chunk: int = 256,
    ) -> HuntResult:
        """Run Gene rules over stored events with the engine `heron scan` and agents use.

        Each stored event is matched as it was received (the agent's `Detection` and the
        manager's `EdrData` removed), with `containers` loaded as `heron scan --container` does
        and `iocs` matched as agents match them (`IoC:<type>` signatures). Matches are kept
        while they fit `max_match_bytes` (JSON) and `max_matches`, appended to `matches` (so a
        job can page them while it runs); `control` is called every `chunk` events.
        """
        from index.retro import HuntSpec, match_events, prefilter_of
        from rules.iocs import IocSet

        spec = HuntSpec(
            "\n".join(json.dumps(r) for r in rules),
            {k: list(v) for k, v in (containers or {}).items()},
            list(iocs or []),
            ioc_criticality,
        )
        try:
            engine = spec.engine()
        except ValueError as ex:
            raise ValidationError(f"rules: {ex}") from ex
        # Cluster mode: the (channel, EventID) prefilter goes into SQL and the engine runs in
        # worker processes (index/retro.py); the embedded store is matched inline.
        workers = int(getattr(self.events, "hunt_workers", 0))
        extra: dict[str, Any] = {}
        if getattr(self.events, "hunt_prefilter", False):
            extra["prefilter"] = prefilter_of(engine, iocs=bool(iocs))
        source = self.events.iter_events(
            since=to_datetime(since), until=to_datetime(until), endpoint=endpoint, **extra
        )
        over = [False]

        def bounded() -> Iterator[dict[str, Any]]:
            for i, event in enumerate(source):
                if i >= max_events:
                    over[0] = True
                    return
                yield event

        scanned = detections = filtered = size = 0
        matches = [] if matches is None else matches
        truncated, stopped = False, ""
        outcomes = match_events(bounded(), spec, workers=workers)
        try:
            for outcome in outcomes:
                if control is not None and scanned % chunk == 0:
                    try:
                        control.checkpoint(scanned, detections, filtered)
                    except HuntStopped as stop:
                        stopped, truncated = stop.reason, True
                        break
                scanned += 1
                if not outcome.hit or outcome.event is None:
                    filtered += outcome.filtered
                    continue
                detections += 1
                candidate = outcome.event
                fits = len(matches) < max_matches
                cost = len(orjson.dumps(candidate, default=str)) if fits else 0
                if fits and size + cost <= max_match_bytes:
                    size += cost
                    matches.append(candidate)
                else:
                    truncated = True
        except ValueError as ex:  # rules compiled above: only a worker's own failure
            raise ValidationError(f"rules: {ex}") from ex
        finally:
            outcomes.close()  # stops the workers of a hunt ended early
            close = getattr(source, "close", None)
            if callable(close):
                close()  # release the index searcher of an iteration stopped early
        truncated = truncated or over[0]
        return HuntResult(
            scanned,
            matches,
            truncated,
            detections=detections,
            filtered=filtered,
            rules=int(engine.rule_count),
            containers={k: len(v) for k, v in engine.containers.items()},
            iocs=len(IocSet.from_iocs(spec.iocs)),
            stopped=stopped,
            match_bytes=size,
        )

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
