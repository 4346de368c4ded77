"""restSearch and sightings semantics of the fake MISP (docs/reference/misp.md §2.1, §2.3, §3.1,
§5).

`SearchMixin` is mixed into `MispModel`: attribute filters (list = OR, `!value` = NOT, different
filters ANDed), deleted/published/time filters, warninglists, paging, and `sightings/add` by value,
by filter or by attribute.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import data
from .rows import Attr, Sighting

if TYPE_CHECKING:
    from .rows import Ev


class SearchMixin:
    """Read-side semantics; expects the attributes, `now()`, `_next()` and `render_attribute()`
    of MispModel."""

    attributes: dict[int, Attr]
    events: dict[int, Ev]
    sightings: list[Sighting]
    clock: Callable[[], float]

    # --- attributes/restSearch --------------------------------------------------------------------

    def search(self, q: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """Apply the §2.1/§2.3 filter semantics; returns (page rows, total before paging)."""
        now = self.clock()
        # Without `order` MySQL returns rows in no particular order: the fake uses uuid order, so
        # an insert can shift rows across pages. With `order` ("Attribute.id ASC") it is stable.
        order = str(q.get("order") or "")
        if order and order.split()[0] not in ("Attribute.id", "Attribute.timestamp"):
            self.violations.append(f"restSearch: unsupported order {order!r}")
        key = (lambda a: a.timestamp) if order.startswith("Attribute.timestamp") else None
        rows = sorted(
            (a for a in self.attributes.values() if self._matches(a, q, now)),
            key=key or ((lambda a: a.id) if order else (lambda a: a.uuid)),
            reverse=order.upper().endswith("DESC"),
        )
        total = len(rows)
        limit = q.get("limit")
        if limit is not None:
            limit = int(limit)
            page = max(int(q.get("page") or 1), 1)
            rows = rows[(page - 1) * limit : page * limit] if limit > 0 else rows
        if data.to_bool(q.get("enforceWarninglist")):
            # MispAttribute::fetchAttributes applies limit/page in SQL, then filters warninglisted
            # rows out of the page (MispAttribute.php ~l.2025): pages come back short.
            rows = [a for a in rows if not _warninglisted(a)]
        flag = lambda k: data.to_bool(q.get(k)) is True  # noqa: E731
        rendered = [
            self.render_attribute(
                a,
                event_uuid=flag("includeEventUuid"),
                attachments=flag("withAttachments"),
                decay=flag("includeDecayScore") or flag("excludeDecayed"),
                sightings=flag("includeSightings"),
            )
            for a in rows
        ]
        return rendered, total

    def _matches(self, a: Attr, q: dict[str, Any], now: float) -> bool:  # noqa: C901
        ev = self.events[a.event_id]
        deleted = q.get("deleted")
        if deleted is None or deleted == []:
            if a.deleted:
                return False
        elif deleted in (1, "1", "only", True):
            if not a.deleted:
                return False
        elif not (isinstance(deleted, list) and {int(x) for x in deleted} == {0, 1}):
            if a.deleted:
                return False
        if not _match_list(q.get("type"), lambda t: a.type == t):
            return False
        if not _match_list(q.get("category"), lambda c: a.category.lower() == str(c).lower()):
            return False
        v1, v2 = a.values()
        if not _match_list(
            q.get("value"), lambda v: str(v).lower() in (a.value.lower(), v1.lower(), v2.lower())
        ):
            return False
        tags = [t.lower() for t in a.tags + ev.tags]
        if not _match_list(q.get("tags"), lambda t: str(t).lower() in tags):
            return False
        if not _match_list(q.get("eventid"), lambda e: str(e) in (str(ev.id), ev.uuid)):
            return False
        # Event::set_filter_org: the creator organisation by id or name (`!` excludes).
        org_id = "1" if ev.orgc == "ORGNAME" else "2"
        if not _match_list(q.get("org"), lambda o: str(o) in (org_id, ev.orgc)):
            return False
        if not _match_list(q.get("threat_level_id"), lambda t: str(t) == ev.threat_level_id):
            return False
        # excludeDecayed drops what every enabled decaying model considers decayed.
        if data.to_bool(q.get("excludeDecayed")) and a.decayed:
            return False
        to_ids = q.get("to_ids")
        if to_ids is not None and to_ids != []:
            wanted = {data.to_bool(x) for x in data.as_list(to_ids)}
            if a.to_ids not in wanted:
                return False
        published = q.get("published")
        if published is not None and data.to_bool(published) is not None:
            if ev.published != data.to_bool(published):
                return False
        for key, stamp in (
            ("timestamp", a.timestamp),
            ("attribute_timestamp", a.timestamp),
            ("event_timestamp", ev.timestamp),
            ("publish_timestamp", ev.publish_timestamp),
            ("last", ev.publish_timestamp),
        ):
            if q.get(key) is None:
                continue
            lo, hi = data.time_range(q[key], now)
            if stamp < lo or (hi is not None and stamp > hi):
                return False
        return True

    # --- sightings/add ----------------------------------------------------------------------------

    def add_sightings(self, body: dict[str, Any], target: str | None) -> dict[str, Any]:
        """SightingsController::add → Sighting::saveSightings (errors are HTTP 200)."""
        stype = body.get("type", "0")
        if str(stype) not in ("0", "1", "2"):
            return {"message": "Invalid type, please change it before you POST 1000000 sightings."}
        ref = target or body.get("id") or body.get("uuid")
        values = data.as_list(body.get("values"))
        if body.get("value") is not None:
            values.append(body["value"])
        if ref is not None:
            found = [
                a
                for a in self.attributes.values()
                if str(ref) in (str(a.id), a.uuid) and not a.deleted
            ]
        elif not values:
            return {"message": "Could not add the Sighting. Reason: No valid attributes found."}
        else:
            filters = body.get("filters")
            if filters:
                q = dict(filters)
                q["value"] = values
                found = [a for a in self.attributes.values() if self._matches(a, q, self.clock())]
                if data.to_bool(q.get("enforceWarninglist")):
                    found = [a for a in found if not _warninglisted(a)]
            else:
                wanted = {str(v).lower() for v in values}
                found = [
                    a
                    for a in self.attributes.values()
                    if not a.deleted
                    and ({a.value.lower(), *(x.lower() for x in a.values())} & wanted)
                ]
        if not found:
            return {
                "message": "Could not add the Sighting. Reason: No valid attributes found "
                "that match the criteria."
            }
        source = str(body.get("source", "")).strip()[:255]
        when = (
            data.to_epoch(body["timestamp"], self.clock()) if body.get("timestamp") else self.now()
        )
        last = None
        for a in sorted(found, key=lambda a: a.id):
            last = Sighting(
                id=self._next("sighting"),
                attribute_id=a.id,
                event_id=a.event_id,
                date_sighting=when,
                uuid=str(uuidlib.uuid4()),
                source=source,
                type=str(stype),
            )
            self.sightings.append(last)
        assert last is not None
        return {"Sighting": last.to_dict()}


def _match_list(wanted: Any, pred: Callable[[Any], bool]) -> bool:
    """A list means OR; a `!value` item means NOT (docs/reference/misp.md §2.1)."""
    items = data.as_list(wanted)
    if not items:
        return True
    pos = [x for x in items if not (isinstance(x, str) and x.startswith("!"))]
    neg = [x[1:] for x in items if isinstance(x, str) and x.startswith("!")]
    if any(pred(x) for x in neg):
        return False
    return not pos or any(pred(x) for x in pos)


def _warninglisted(a: Attr) -> bool:
    return any(v.lower() in data.WARNINGLIST for v in (a.value, *a.values()) if v)
