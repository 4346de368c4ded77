"""In-memory MISP state of the fake: ids, seeding helpers (what an analyst does), rendering.

`MispModel` holds events, attributes, objects and sightings; the route semantics come from
`SearchMixin` (search.py: restSearch, sightings) and `WriteMixin` (writes.py: events/add,
objects/add). Callers (the HTTP layer and tests) hold `MispModel.lock` around every call.
"""

from __future__ import annotations

import base64
import threading
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from . import data
from .rows import Attr, Ev, Obj, Rejected, Sighting
from .search import SearchMixin
from .writes import WriteMixin

__all__ = ["Attr", "Ev", "MispModel", "Obj", "Rejected", "Sighting"]


class MispModel(SearchMixin, WriteMixin):
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
        self.role: dict[str, Any] = {}  # set by FakeMisp: the API key's role flags
        # Tags the instance has (the TLP taxonomy's, as after enabling it); others need creating.
        self.known_tags: set[str] = {"tlp:white", "tlp:clear", "tlp:green", "tlp:amber", "tlp:red"}
        # EventBlocklist: MISP.enableEventBlocklisting is on by default, and deleting an event
        # blocklists its uuid (Event.php, beforeDelete), so events/add refuses that uuid for good.
        self.event_blocklist: set[str] = set()

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
        threat_level_id: str = "4",
        orgc: str = "ORGNAME",
    ) -> Ev:
        ev = Ev(
            id=self._next("event"),
            threat_level_id=threat_level_id,
            orgc=orgc,
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

    def delete_event(self, event_id: int, *, blocklist: bool = True) -> None:
        """Hard delete: the event and its attributes vanish without any timestamp change.

        As MISP does by default, the uuid is blocklisted (unless `blocklist` is False, as with
        MISP.enableEventBlocklisting off).
        """
        ev = self.events.pop(event_id)
        if blocklist:
            self.event_blocklist.add(ev.uuid)
        for aid in [i for i, a in self.attributes.items() if a.event_id == event_id]:
            del self.attributes[aid]
        for oid in [i for i, o in self.objects.items() if o.event_id == event_id]:
            del self.objects[oid]

    def tag_event(self, event_id: int, tag: str) -> None:
        """EventsController::addTag: the tag is attached, Event.timestamp bumped, the event
        unpublished; attribute timestamps do not change."""
        self.events[event_id].tags.append(tag)
        self.known_tags.add(tag)
        self._touch_event(event_id)

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
        sightings: bool = False,
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
                "orgc_id": "1" if ev.orgc == "ORGNAME" else "2",
                "uuid": ev.uuid,
            }
        if a.tags:
            out["Tag"] = [
                {"id": str(i + 1), "name": t, "colour": "#ffffff"} for i, t in enumerate(a.tags)
            ]
        if sightings:
            # includeSightings: the attribute's sightings as Sighting rows (all types).
            out["Sighting"] = [s.to_dict() for s in self.sightings if s.attribute_id == a.id]
        if decay:
            out["decay_score"] = [
                {
                    "score": 42.1,
                    "base_score": 80,
                    "decayed": a.decayed,
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
