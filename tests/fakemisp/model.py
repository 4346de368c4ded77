"""In-memory MISP state and the server-side semantics of the routes the fake serves.

Owns events, attributes, objects and sightings, and reproduces what misp.md documents of MISP's
controllers: restSearch filters (§2.1, §2.3, §5), sightings by value or by attribute (§3.1),
events/add and objects/add with template conformity and uuid uniqueness (§4), publishing, soft
deletes. Callers (the HTTP layer and tests) hold `MispModel.lock` around every call.
"""

from __future__ import annotations

import base64
import binascii
import threading
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import data


class Rejected(Exception):
    """A request MISP answers with an error status and a JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Attr:
    """One attribute row (MISP `attributes` table)."""

    id: int
    event_id: int
    type: str
    value: str
    category: str
    to_ids: bool
    uuid: str
    timestamp: int
    object_id: int = 0
    object_relation: str | None = None
    distribution: str = "5"
    comment: str = ""
    deleted: bool = False
    disable_correlation: bool = False
    data: bytes | None = None
    tags: list[str] = field(default_factory=list)

    def values(self) -> tuple[str, str]:
        """(value1, value2) as MISP splits composite values."""
        if "|" in self.type and "|" in self.value:
            a, b = self.value.split("|", 1)
            return a, b
        return self.value, ""


@dataclass
class Obj:
    """One object row with its attribute ids."""

    id: int
    event_id: int
    uuid: str
    name: str
    meta_category: str
    description: str
    template_uuid: str
    template_version: str
    timestamp: int
    distribution: str = "5"
    sharing_group_id: str = "0"
    comment: str = ""
    first_seen: str | None = None
    last_seen: str | None = None
    attribute_ids: list[int] = field(default_factory=list)


@dataclass
class Ev:
    """One event row."""

    id: int
    uuid: str
    info: str
    date: str
    timestamp: int
    distribution: str = "0"
    threat_level_id: str = "4"
    analysis: str = "0"
    published: bool = False
    publish_timestamp: int = 0
    sharing_group_id: str = "0"
    tags: list[str] = field(default_factory=list)


@dataclass
class Sighting:
    """One sighting row."""

    id: int
    attribute_id: int
    event_id: int
    date_sighting: int
    uuid: str
    source: str
    type: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": str(self.id),
            "attribute_id": str(self.attribute_id),
            "event_id": str(self.event_id),
            "org_id": "1",
            "date_sighting": str(self.date_sighting),
            "uuid": self.uuid,
            "source": self.source,
            "type": self.type,
        }


def _save_failed(url: str, reason: str) -> Rejected:
    return Rejected(
        403,
        {
            "saved": False,
            "name": "Could not add Object",
            "message": "Could not add Object",
            "url": url,
            "errors": reason,
        },
    )


class MispModel:
    """The fake's database. Not thread-safe by itself: hold `lock`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.events: dict[int, Ev] = {}
        self.attributes: dict[int, Attr] = {}
        self.objects: dict[int, Obj] = {}
        self.sightings: list[Sighting] = []
        self._ids = {"event": 0, "attribute": 0, "object": 0, "sighting": 0}
        self.violations: list[str] = []

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def now(self) -> int:
        return int(self.clock())

    # --- seeding helpers for tests (what an analyst does in the MISP UI) --------------------------

    def create_event(
        self,
        info: str,
        *,
        published: bool = False,
        uuid: str | None = None,
        date: str = "2026-11-28",
        distribution: str = "0",
        tags: list[str] | None = None,
    ) -> Ev:
        ev = Ev(
            id=self._next("event"),
            uuid=uuid or str(uuidlib.uuid4()),
            info=info,
            date=date,
            timestamp=self.now(),
            distribution=distribution,
            tags=list(tags or []),
        )
        self.events[ev.id] = ev
        if published:
            self.publish(ev.id)
        return ev

    def create_attribute(
        self,
        event_id: int,
        mtype: str,
        value: str,
        *,
        to_ids: bool | None = None,
        category: str | None = None,
        tags: list[str] | None = None,
        object_id: int = 0,
        object_relation: str | None = None,
        comment: str = "",
        data_bytes: bytes | None = None,
        uuid: str | None = None,
        disable_correlation: bool = False,
    ) -> Attr:
        types = data.describe_types()
        if mtype not in types["types"]:
            raise Rejected(
                403,
                {
                    "name": "Could not add Attribute",
                    "message": "Could not add Attribute",
                    "errors": {"type": ["Options depend on the selected category."]},
                },
            )
        defaults = types["sane_defaults"][mtype]
        category = category or defaults["default_category"]
        if mtype not in types["category_type_mappings"].get(category, []):
            raise Rejected(
                403,
                {
                    "name": "Could not add Attribute",
                    "message": "Could not add Attribute",
                    "errors": {"category": ["Invalid category for this type."]},
                },
            )
        if mtype in ("attachment", "malware-sample") and data_bytes is None:
            raise Rejected(
                403,
                {
                    "name": "Could not add Attribute",
                    "message": "Could not add Attribute",
                    "errors": {"data": ["An attachment requires data."]},
                },
            )
        attr_uuid = uuid or str(uuidlib.uuid4())
        if any(a.uuid == attr_uuid for a in self.attributes.values()):
            raise Rejected(
                403,
                {
                    "name": "Could not add Attribute",
                    "message": "Could not add Attribute",
                    "errors": {"uuid": ["The UUID provided is not unique"]},
                },
            )
        a = Attr(
            id=self._next("attribute"),
            event_id=event_id,
            type=mtype,
            value=data.normalise_value(mtype, value),
            category=category,
            to_ids=bool(defaults["to_ids"]) if to_ids is None else to_ids,
            uuid=attr_uuid,
            timestamp=self.now(),
            object_id=object_id,
            object_relation=object_relation,
            comment=comment,
            data=data_bytes,
            tags=list(tags or []),
            disable_correlation=disable_correlation,
        )
        self.attributes[a.id] = a
        self._touch_event(event_id)
        return a

    def update_attribute(
        self,
        attr_uuid: str,
        *,
        to_ids: bool | None = None,
        deleted: bool | None = None,
        value: str | None = None,
    ) -> Attr:
        """An analyst edit: bumps Attribute.timestamp; a soft delete also unpublishes the event."""
        a = self.attribute_by_uuid(attr_uuid)
        if to_ids is not None:
            a.to_ids = to_ids
        if value is not None:
            a.value = data.normalise_value(a.type, value)
        if deleted is not None:
            a.deleted = deleted
        a.timestamp = self.now()
        self._touch_event(a.event_id)
        return a

    def delete_event(self, event_id: int) -> None:
        """Hard delete: the event and its attributes vanish without any timestamp change."""
        self.events.pop(event_id)
        for aid in [i for i, a in self.attributes.items() if a.event_id == event_id]:
            del self.attributes[aid]
        for oid in [i for i, o in self.objects.items() if o.event_id == event_id]:
            del self.objects[oid]

    def unpublish(self, event_id: int) -> None:
        self.events[event_id].published = False

    def publish(self, event_id: int) -> None:
        ev = self.events[event_id]
        ev.published = True
        ev.publish_timestamp = self.now()

    def _touch_event(self, event_id: int) -> None:
        ev = self.events[event_id]
        ev.timestamp = self.now()
        ev.published = False

    # --- lookups ----------------------------------------------------------------------------------

    def attribute_by_uuid(self, attr_uuid: str) -> Attr:
        for a in self.attributes.values():
            if a.uuid == attr_uuid:
                return a
        raise KeyError(attr_uuid)

    def find_event(self, ref: str) -> Ev | None:
        if ref.isdigit():
            return self.events.get(int(ref))
        for ev in self.events.values():
            if ev.uuid == ref.lower():
                return ev
        return None

    def objects_of(self, event_id: int) -> list[Obj]:
        return [o for o in self.objects.values() if o.event_id == event_id]

    # --- rendering --------------------------------------------------------------------------------

    def render_attribute(
        self,
        a: Attr,
        *,
        event_uuid: bool = False,
        attachments: bool = False,
        decay: bool = False,
        event_block: bool = True,
    ) -> dict[str, Any]:
        ev = self.events[a.event_id]
        out: dict[str, Any] = {
            "id": str(a.id),
            "event_id": str(a.event_id),
            "object_id": str(a.object_id),
            "object_relation": a.object_relation,
            "category": a.category,
            "type": a.type,
            "value": a.value,
            "to_ids": a.to_ids,
            "uuid": a.uuid,
            "timestamp": str(a.timestamp),
            "distribution": a.distribution,
            "sharing_group_id": "0",
            "comment": a.comment,
            "deleted": a.deleted,
            "disable_correlation": a.disable_correlation,
            "first_seen": None,
            "last_seen": None,
        }
        if attachments and a.data is not None:
            out["data"] = base64.b64encode(a.data).decode("ascii")
        if event_uuid:
            out["event_uuid"] = ev.uuid
        if event_block:
            out["Event"] = {
                "org_id": "1",
                "distribution": ev.distribution,
                "id": str(ev.id),
                "info": ev.info,
                "orgc_id": "1",
                "uuid": ev.uuid,
            }
        if a.tags:
            out["Tag"] = [
                {"id": str(i + 1), "name": t, "colour": "#ffffff"} for i, t in enumerate(a.tags)
            ]
        if decay:
            out["decay_score"] = [
                {
                    "score": 42.1,
                    "base_score": 80,
                    "decayed": False,
                    "DecayingModel": {"id": "1", "name": "fake model"},
                }
            ]
        return out

    def render_object(self, o: Obj) -> dict[str, Any]:
        attrs = [
            self.render_attribute(self.attributes[i], event_block=False)
            for i in o.attribute_ids
            if i in self.attributes
        ]
        return {
            "id": str(o.id),
            "name": o.name,
            "meta-category": o.meta_category,
            "description": o.description,
            "template_uuid": o.template_uuid,
            "template_version": o.template_version,
            "event_id": str(o.event_id),
            "uuid": o.uuid,
            "timestamp": str(o.timestamp),
            "distribution": o.distribution,
            "sharing_group_id": o.sharing_group_id,
            "comment": o.comment,
            "deleted": False,
            "first_seen": o.first_seen,
            "last_seen": o.last_seen,
            "Attribute": attrs,
        }

    def render_event(self, ev: Ev) -> dict[str, Any]:
        attrs = [
            self.render_attribute(a, event_block=False)
            for a in self.attributes.values()
            if a.event_id == ev.id and a.object_id == 0 and not a.deleted
        ]
        org = {"id": "1", "name": "ORGNAME", "uuid": "c5de83b4-36ba-49d6-9530-2a315caeece6"}
        return {
            "id": str(ev.id),
            "uuid": ev.uuid,
            "info": ev.info,
            "date": ev.date,
            "distribution": ev.distribution,
            "threat_level_id": ev.threat_level_id,
            "analysis": ev.analysis,
            "published": ev.published,
            "timestamp": str(ev.timestamp),
            "publish_timestamp": str(ev.publish_timestamp),
            "org_id": "1",
            "orgc_id": "1",
            "sharing_group_id": ev.sharing_group_id,
            "attribute_count": str(
                sum(1 for a in self.attributes.values() if a.event_id == ev.id and not a.deleted)
            ),
            "Org": org,
            "Orgc": org,
            "Attribute": attrs,
            "Object": [self.render_object(o) for o in self.objects_of(ev.id)],
            "Tag": [
                {"id": str(i + 1), "name": t, "colour": "#ffffff"} for i, t in enumerate(ev.tags)
            ],
        }

    # --- attributes/restSearch --------------------------------------------------------------------

    def search(self, q: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """Apply the §2.1/§2.3 filter semantics; returns (page rows, total before paging)."""
        now = self.clock()
        rows = [
            a
            for a in sorted(self.attributes.values(), key=lambda a: a.id)
            if self._matches(a, q, now)
        ]
        total = len(rows)
        limit = q.get("limit")
        if limit is not None:
            limit = int(limit)
            page = max(int(q.get("page") or 1), 1)
            rows = rows[(page - 1) * limit : page * limit] if limit > 0 else rows
        flag = lambda k: data.to_bool(q.get(k)) is True  # noqa: E731
        rendered = [
            self.render_attribute(
                a,
                event_uuid=flag("includeEventUuid"),
                attachments=flag("withAttachments"),
                decay=flag("includeDecayScore"),
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
        if data.to_bool(q.get("enforceWarninglist")) and _warninglisted(a):
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

    # --- events/add and objects/add ---------------------------------------------------------------

    def add_event(self, body: dict[str, Any]) -> Ev:
        e = body.get("Event", body)
        for key in e:
            if key not in data.EVENT_FIELDS:
                self.violations.append(f"events/add: unknown field {key!r}")
        if not str(e.get("info", "")).strip():
            raise Rejected(
                403,
                {
                    "name": "The event could not be saved.",
                    "message": "The event could not be saved.",
                    "url": "/events/add",
                    "errors": {"Event": {"info": ["Info cannot be empty."]}},
                },
            )
        ev_uuid = str(e.get("uuid") or uuidlib.uuid4()).lower()
        existing = self.find_event(ev_uuid)
        if existing is not None:
            raise Rejected(
                404,
                {
                    "name": "Event already exists, if you would like to edit it, use "
                    "the url in the location header.",
                    "message": "Event already exists, if you would like to edit it, "
                    "use the url in the location header.",
                    "url": "/events/add",
                },
                headers={"Location": f"/events/view/{existing.id}"},
            )
        ev = self.create_event(
            str(e["info"]),
            uuid=ev_uuid,
            date=str(e.get("date") or "2026-11-28"),
            distribution=str(e.get("distribution", "0")),
            tags=[t["name"] for t in e.get("Tag", []) if isinstance(t, dict) and "name" in t],
        )
        for a in e.get("Attribute", []):
            self.create_attribute(
                ev.id,
                a["type"],
                a["value"],
                to_ids=data.to_bool(a.get("to_ids")),
                category=a.get("category"),
                uuid=a.get("uuid"),
            )
        for o in e.get("Object", []):
            self.add_object(ev, o, url="/events/add")
        return ev

    def add_object(
        self,
        ev: Ev,
        body: dict[str, Any],
        *,
        url: str,  # noqa: C901
        template_ref: str | None = None,
    ) -> Obj:
        o = body.get("Object", body)
        for key in o:
            if key not in data.OBJECT_FIELDS:
                self.violations.append(f"objects/add: unknown field {key!r}")
        tpl = data.templates().get(str(o.get("template_uuid", "")))
        if template_ref is not None and template_ref.isdigit() is False:
            tpl = data.templates().get(template_ref, tpl)
        if tpl is None or tpl.name != o.get("name"):
            raise _save_failed(url, "Could not find the object template.")
        if str(o.get("template_version", tpl.version)) != str(tpl.version):
            raise _save_failed(url, "Object template version mismatch.")
        obj_uuid = str(o.get("uuid") or uuidlib.uuid4()).lower()
        if any(x.uuid == obj_uuid for x in self.objects.values()):
            raise _save_failed(url, "The UUID provided is not unique")
        attrs = o.get("Attribute", [])
        problems = self._template_conformity(tpl, attrs)
        if problems:
            raise _save_failed(url, problems)
        for a in attrs:
            if a.get("uuid") and any(
                x.uuid == str(a["uuid"]).lower() for x in self.attributes.values()
            ):
                raise _save_failed(url, "The UUID provided is not unique")
        obj = Obj(
            id=self._next("object"),
            event_id=ev.id,
            uuid=obj_uuid,
            name=tpl.name,
            meta_category=tpl.meta_category,
            description=tpl.description,
            template_uuid=tpl.uuid,
            template_version=str(tpl.version),
            timestamp=self.now(),
            distribution=str(o.get("distribution", "5")),
            sharing_group_id=str(o.get("sharing_group_id", "0")),
            comment=str(o.get("comment") or ""),
            first_seen=o.get("first_seen"),
            last_seen=o.get("last_seen"),
        )
        self.objects[obj.id] = obj
        for a in attrs:
            raw = base64.b64decode(a["data"]) if a.get("data") is not None else None
            row = self.create_attribute(
                ev.id,
                a["type"],
                str(a["value"]),
                to_ids=data.to_bool(a.get("to_ids", False)),
                category=a.get("category"),
                object_id=obj.id,
                object_relation=a["object_relation"],
                comment=str(a.get("comment") or ""),
                data_bytes=raw,
                uuid=(str(a["uuid"]).lower() if a.get("uuid") else None),
                disable_correlation=bool(data.to_bool(a.get("disable_correlation", False))),
            )
            obj.attribute_ids.append(row.id)
        self._touch_event(ev.id)
        return obj

    def _template_conformity(self, tpl: data.Template, attrs: list[dict[str, Any]]) -> str:
        types = data.describe_types()
        seen: dict[str, int] = {}
        for a in attrs:
            for key in a:
                if key not in data.OBJECT_ATTRIBUTE_FIELDS:
                    self.violations.append(f"objects/add: unknown attribute field {key!r}")
            rel = a.get("object_relation")
            spec = tpl.attributes.get(str(rel))
            if spec is None:
                return f"Invalid object relation {rel!r} for template {tpl.name}."
            if a.get("type") != spec["misp-attribute"]:
                return (
                    f"Invalid attribute type {a.get('type')!r} for object relation {rel}: "
                    f"expected {spec['misp-attribute']}."
                )
            category = a.get("category") or types["sane_defaults"][a["type"]]["default_category"]
            if a["type"] not in types["category_type_mappings"].get(category, []):
                return f"Invalid category {category!r} for type {a['type']}."
            if a.get("value") in (None, ""):
                return f"Attribute {rel} has an empty value."
            if a["type"] in ("attachment", "malware-sample"):
                if not a.get("data"):
                    return f"Attribute {rel} is an attachment without data."
                try:
                    base64.b64decode(a["data"], validate=True)
                except (binascii.Error, ValueError):
                    return f"Attribute {rel} has invalid base64 data."
            seen[str(rel)] = seen.get(str(rel), 0) + 1
            if seen[str(rel)] > 1 and not spec.get("multiple"):
                return f"Object relation {rel} is not multiple but appears {seen[str(rel)]} times."
        missing = [r for r in tpl.required if r not in seen]
        if missing:
            return "Object does not meet the template requirements: missing " + ", ".join(missing)
        if tpl.required_one_of and not any(r in seen for r in tpl.required_one_of):
            return (
                "Object does not meet the template requirements: requires at least one of the "
                "following attributes: " + ", ".join(tpl.required_one_of)
            )
        return ""


def _match_list(wanted: Any, pred: Callable[[Any], bool]) -> bool:
    """A list means OR; a `!value` item means NOT (misp.md §2.1)."""
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
