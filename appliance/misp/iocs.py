"""IoC pull from MISP: full and incremental `attributes/restSearch`, the IoC set, local matching.

Implements docs/reference/misp.md §2.3. A full sync (at start, daily, or when the filters change)
replaces the MISP
attribute set; an incremental sync runs two queries (Q1 on attribute `timestamp`, Q2 on
`publish_timestamp`) without a `to_ids` filter and with deleted rows, so that IDS-flag removals and
soft deletes are seen: `to_ids && !deleted` upserts, anything else removes. The cursor is the
largest attribute timestamp MISP returned (server clock), minus 5 minutes. The resulting IoCs go to
an `IocSink` (the manager's IoC table), which distributes them to agents; `IocIndex` answers "is
this value an IoC?" for sightings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rules.iocs import IocSet
from rules.iocs import normalize as rules_normalize
from rules.wire import Ioc

from .client import MispClient
from .errors import MispError, MispUnavailable
from .mapping import MISP_TYPES, attribute_iocs, event_values
from .settings import MispSettings
from .state import StateStore

__all__ = ["IocIndex", "IocPuller", "IocSink", "MemoryIocSink", "PullResult"]

logger = logging.getLogger(__name__)

STATE = "iocs"
CURSOR_OVERLAP = 300  # seconds re-read before the cursor (docs/reference/misp.md §2.3)
MAX_PAGES = 10_000
REMOVALS = "incremental-removals"
# stable pages: new attributes get higher ids (docs/reference/misp.md §5, `order`)
ORDER = "Attribute.id ASC"


class MispPartial(MispError):
    """A pull that could not read every page; a full sync then keeps the current set."""


class IocSink(Protocol):
    """Where pulled IoCs go: replace every IoC of `source` with `iocs`."""

    def replace_iocs(self, source: str, iocs: Sequence[Ioc]) -> None: ...


class MemoryIocSink:
    """IocSink in memory (tests, and a manager without an IoC table)."""

    def __init__(self) -> None:
        self.by_source: dict[str, list[Ioc]] = {}
        self.calls = 0

    def replace_iocs(self, source: str, iocs: Sequence[Ioc]) -> None:
        self.by_source[source] = list(iocs)
        self.calls += 1


@dataclass(frozen=True, slots=True)
class PullResult:
    """What one pull did."""

    full: bool
    fetched: int
    upserted: int
    removed: int
    total_attributes: int
    total_iocs: int
    cursor: int


def _ip_key(ioc_type: str) -> str:
    return "ip" if ioc_type in ("ip-src", "ip-dst") else ioc_type


class IocIndex:
    """Which MISP values an event carries.

    Two passes, unioned: `rules.iocs.IocSet.match` (the matcher agents run, so what fires on an
    endpoint is what gets sighted, with its regkey-prefix and path rules) and `event_values` (adds
    `EdrData` hashes and matches IPs regardless of src/dst). Both map back to the MISP value the
    IoC came from, which is what `/sightings/add` matches on.
    """

    def __init__(self, entries: Iterable[tuple[Ioc, str]] = ()) -> None:
        self._index: dict[tuple[str, str], set[str]] = {}
        self._by_rules_norm: dict[tuple[str, str], set[str]] = {}
        iocs = []
        for ioc, misp_value in entries:
            self._index.setdefault((_ip_key(ioc.type), ioc.value), set()).add(misp_value)
            key = (ioc.type, rules_normalize(ioc.type, ioc.value))
            self._by_rules_norm.setdefault(key, set()).add(misp_value)
            iocs.append(ioc)
        self._set = IocSet.from_iocs(iocs)

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, ioc_type: str, value: str) -> set[str]:
        return self._index.get((_ip_key(ioc_type), value), set())

    def match(self, event: Mapping[str, Any]) -> set[str]:
        """The MISP values of the IoCs `event` carries."""
        found: set[str] = set()
        for hit in self._set.match(event):
            found |= self._by_rules_norm.get((hit.type, hit.value), set())
        for ioc_type, value in set(event_values(event)):
            found |= self.lookup(ioc_type, value)
        return found


def _enabled_types(settings: MispSettings) -> frozenset[str]:
    """Heron types produced by the selected MISP types.

    Halves of the selected MISP types; `filename` only if selected itself.
    """
    out = set()
    for mtype in settings.ioc_types:
        for half in MISP_TYPES[mtype]:
            if half and (half != "filename" or "filename" in settings.ioc_types):
                out.add(half)
    return frozenset(out)


def _filters_key(settings: MispSettings) -> str:
    doc = [
        sorted(settings.ioc_types),
        sorted(settings.categories),
        sorted(settings.tags),
        settings.published_only,
        settings.enforce_warninglist,
        sorted(settings.orgs),
        sorted(settings.threat_levels),
        sorted(settings.distributions),
        settings.exclude_decayed,
        settings.pull_since,
        settings.expire_on_sighting,
        settings.url,
        settings.source_name,
    ]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


class IocPuller:
    """Pulls attributes and feeds an IocSink.

    The attributes live in the StateStore document "iocs".
    """

    def __init__(
        self, client: MispClient, state: StateStore, sink: IocSink, clock: Callable[[], float]
    ) -> None:
        self.client = client
        self.state = state
        self.sink = sink
        self.clock = clock
        self.reload()
        # Only a full sync sees what was hard-deleted or unpublished while the manager was down.
        self._full_this_run = False
        self._resume: dict[str, Any] | None = None

    def reload(self) -> None:
        """Read the stored IoC set and cursors (cluster mode: the leader pulled them)."""
        doc = self.state.load(STATE) or {}
        self._attrs: dict[str, dict[str, Any]] = doc.get("attributes", {})
        self.cursor: int | None = doc.get("cursor")
        # Server clock at the start of the last pull: the cursor of publish and event edits,
        # whose timestamps the attribute rows do not carry.
        self.event_cursor: int | None = doc.get("event_cursor")
        self.last_full: float = doc.get("last_full", 0.0)
        self._filters: str = doc.get("filters", "")
        self.index = self._build_index()
        self.ioc_count = len(self.iocs())

    @property
    def settings(self) -> MispSettings:
        return self.client.settings

    def full_due(self) -> bool:
        """Whether the next pull must be a full one.

        At the first pull of the process, when the filters changed, and daily
        (docs/reference/misp.md §2.3).
        """
        s = self.settings
        return (
            not self._full_this_run
            or self.cursor is None
            or self._filters != _filters_key(s)
            or self.clock() - self.last_full >= s.full_sync_interval
        )

    def iocs(self) -> list[Ioc]:
        """The current MISP IoC set, deduplicated by uuid, in a stable order."""
        return list({i.uuid: i for i, _ in self._entries()}.values())

    def _entries(self) -> list[tuple[Ioc, str]]:
        s, enabled = self.settings, _enabled_types(self.settings)
        out = []
        for attr_uuid in sorted(self._attrs):
            row = self._attrs[attr_uuid]
            halves = row["value"].split("|", 1) if "|" in row["type"] else [row["value"]]
            for ioc in attribute_iocs(row, source=s.source_name, enabled=enabled):
                out.append((ioc, _misp_value(row["type"], halves, ioc)))
        return out

    @property
    def attribute_count(self) -> int:
        return len(self._attrs)

    def _build_index(self) -> IocIndex:
        return IocIndex(self._entries())

    def progress(self) -> dict[str, Any] | None:
        """Where an interrupted pull resumes (mode, query, page), if one is pending."""
        p = self._resume
        if p is None:
            return None
        return {k: p[k] for k in ("mode", "step", "page", "started")} | {
            "rows": len(p.get("rows", {}))
        }

    def pull(self, *, full: bool | None = None) -> PullResult:
        """Run one full or incremental sync; raises MispError.

        Full when due, unless `full` says otherwise. A pull stopped by a 429 or an unreachable MISP
        keeps the page it reached and resumes there (a full sync with the rows it already has):
        a rate-limited role still finishes a large instance, page budget by page budget.
        """
        if full is None:
            full = self.full_due()
        mode = "full" if full else "incremental"
        p = self._resume
        if p is None or p["mode"] != mode:
            since = max((self.cursor or 0) - CURSOR_OVERLAP, 0)
            events_since = max((self.event_cursor or self.cursor or 0) - CURSOR_OVERLAP, 0)
            p = {
                "mode": mode,
                "step": 0,
                "page": 1,
                "since": since,
                "events_since": events_since,
                "started": self.clock(),
                "server_start": None,
            }
            if full:
                p["rows"] = {}
        upserted = removed = fetched = 0
        max_ts = self.cursor or 0
        steps = self._steps(full, int(p["since"]), int(p.get("events_since", p["since"])))
        try:
            while p["step"] < len(steps):
                what, query = steps[p["step"]]
                for rows in self._pages(what, p, **query):
                    if p["server_start"] is None:
                        p["server_start"] = self.client.server_time()
                    fetched += len(rows)
                    max_ts = max([max_ts, *(_int(r.get("timestamp")) for r in rows)])
                    if full:
                        p["rows"].update({r["uuid"]: _keep(r) for r in rows if _active(r)})
                    else:
                        up, rm = self._apply(rows, upsert=what != REMOVALS)
                        upserted, removed = upserted + up, removed + rm
                p["step"] += 1
                p["page"] = 1
        except MispPartial:
            self._resume = None  # too many pages: resuming would fail again; keep the set
            raise
        except MispUnavailable:
            self._resume = p  # resume at this page; a full sync keeps its rows (never shrinks)
            if not full:
                self._save()  # rows already applied stay applied
            raise
        except MispError:
            self._resume = None
            raise
        self._resume = None
        if full:
            fresh = p["rows"]
            removed = len(set(self._attrs) - set(fresh))
            upserted = len(fresh)
            self._attrs = fresh
            self.last_full = float(p["started"])
            self._full_this_run = True
            self._filters = _filters_key(self.settings)
        self.cursor = max_ts
        self.event_cursor = int(p["server_start"] or p["started"])
        self._save()
        self.index = self._build_index()
        iocs = self.iocs()
        self.ioc_count = len(iocs)
        self.sink.replace_iocs(self.settings.source_name, iocs)
        result = PullResult(
            full=full,
            fetched=fetched,
            upserted=upserted,
            removed=removed,
            total_attributes=len(self._attrs),
            total_iocs=len(iocs),
            cursor=self.cursor,
        )
        logger.info(
            "MISP %s pull: %d rows, %d attributes, %d IoCs",
            mode,
            fetched,
            len(self._attrs),
            len(iocs),
        )
        return result

    def _apply(self, rows: list[dict[str, Any]], *, upsert: bool) -> tuple[int, int]:
        """Incremental rows: `to_ids && !deleted` upserts (unless `upsert` is off), else removes."""
        upserted = removed = 0
        for r in rows:
            if _active(r):
                if upsert:
                    self._attrs[r["uuid"]] = _keep(r)
                    upserted += 1
            elif self._attrs.pop(r["uuid"], None) is not None:
                removed += 1
        return upserted, removed

    def _steps(self, full: bool, since: int, events_since: int) -> list[tuple[str, dict[str, Any]]]:
        """The queries of a pull (docs/reference/misp.md §2.3; MISP ANDs filters, so one query per
        clock).

        Q1 `timestamp` (Attribute.timestamp: attribute edits), Q2 `publish_timestamp` (an event
        (re)published after its attributes were written), Q3 `event_timestamp` (event edits such
        as tags that change which attributes pass the filters), and a removal query without the
        `published` filter: a soft delete or an IDS-flag removal unpublishes the event, so the
        other queries would not see it until someone republishes.
        """
        if full:
            return [("full", {"to_ids": 1})]
        both = {"deleted": [0, 1]}
        steps: list[tuple[str, dict[str, Any]]] = [("incremental-q1", {"timestamp": since, **both})]
        if self.settings.published_only:
            steps.append(("incremental-q2", {"publish_timestamp": events_since, **both}))
            steps.append((REMOVALS, {"timestamp": since, "published": None, **both}))
        steps.append(("incremental-q3", {"event_timestamp": events_since, **both}))
        return steps

    def _save(self) -> None:
        self.state.save(
            STATE,
            {
                "attributes": self._attrs,
                "cursor": self.cursor,
                "event_cursor": self.event_cursor,
                "last_full": self.last_full,
                "filters": self._filters,
            },
        )

    def _pages(self, what: str, p: dict[str, Any], **query: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of one restSearch, from page `p["page"]`, until an empty page.

        Real MISP applies `limit` before it drops warninglisted rows (MispAttribute.php,
        fetchAttributes), so a short page is not the last one: only an empty page is. Pages are
        ordered by attribute id, so new rows land on later pages and none is skipped.
        """
        s = self.settings
        while True:
            page = int(p["page"])
            if page > MAX_PAGES:
                raise MispPartial(
                    f"more than {MAX_PAGES} pages of {s.page_limit}: raise page_limit",
                    operation=f"attributes/restSearch ({what})",
                )
            params = dict(
                controller="attributes",
                return_format="json",
                type_attribute=list(s.ioc_types),
                category=list(s.categories) or None,
                tags=list(s.tags) or None,
                published=True if s.published_only else None,
                enforce_warninglist=s.enforce_warninglist,
                include_event_uuid=True,
                org=list(s.orgs) or None,
                threat_level_id=list(s.threat_levels) or None,
                exclude_decayed=True if s.exclude_decayed else None,
                include_sightings=True if s.expire_on_sighting else None,
                limit=s.page_limit,
                page=page,
                order=ORDER,
            )
            if s.pull_since and "timestamp" not in query:
                params["timestamp"] = _day_start(s.pull_since)
            params.update(query)

            def search(api: Any, params: dict[str, Any] = params) -> Any:
                return api.search(**params)

            reply = self.client.call(f"attributes/restSearch ({what}, page {page})", search)
            rows = reply.get("Attribute", []) if isinstance(reply, dict) else []
            rows = [r for r in rows if isinstance(r, dict) and r.get("uuid")]
            if not rows:
                return
            if s.expire_on_sighting:
                now = self.clock()
                rows = [{**r, "expired": True} if _expired(r, now) else r for r in rows]
            yield [r for r in rows if _distribution_ok(r, s)]
            p["page"] = page + 1


def _day_start(day: str) -> int:
    d = dt.date.fromisoformat(day)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())


def _distribution_ok(row: dict[str, Any], s: MispSettings) -> bool:
    """`distributions` is applied here, on the row's `Event.distribution`.

    The attribute `distribution` restSearch filter reads Attribute.distribution, which is mostly
    5 ("inherit event"), so it cannot express the event's sharing level.
    """
    if not s.distributions:
        return True
    event = row.get("Event")
    return isinstance(event, dict) and str(event.get("distribution")) in s.distributions


def _expired(row: dict[str, Any], now: float) -> bool:
    """Whether someone sent MISP an expiration sighting (type 2) for this attribute, now past.

    MISP keeps one per organisation (Sighting::saveSightings replaces the earlier one).
    """
    sightings = row.get("Sighting")
    if not isinstance(sightings, list):
        return False
    return any(
        isinstance(x, dict) and str(x.get("type")) == "2" and _int(x.get("date_sighting")) <= now
        for x in sightings
    )


def _active(row: dict[str, Any]) -> bool:
    return (
        row.get("to_ids") in (True, 1, "1")
        and row.get("deleted") not in (True, 1, "1")
        and not row.get("expired")
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _keep(row: dict[str, Any]) -> dict[str, Any]:
    """The part of an attribute row kept on disk."""
    event = row.get("Event")
    if not isinstance(event, dict):
        event = {}
    return {
        "uuid": row["uuid"],
        "type": str(row.get("type", "")),
        "value": str(row.get("value", "")),
        "event_uuid": str(row.get("event_uuid") or event.get("uuid", "")),
        "timestamp": _int(row.get("timestamp")),
    }


def _misp_value(mtype: str, halves: list[str], ioc: Ioc) -> str:
    """The half of the MISP value an IoC came from.

    That is what /sightings/add matches on.
    """
    types = MISP_TYPES.get(mtype, ())
    for t, half in zip(types, halves, strict=False):
        if t == ioc.type:
            return half.strip()
    return halves[0].strip()
