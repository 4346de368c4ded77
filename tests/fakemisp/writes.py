"""events/add and objects/add semantics of the fake MISP (docs/reference/misp.md §4.1, §4.2, §8).

`WriteMixin` is mixed into `MispModel`: event creation with MISP's duplicate-uuid 404, object
creation with template conformity (`required`, `requiredOneOf`, `multiple`, relation types,
categories, attachment data) and MISP's exact failure bodies.
"""

from __future__ import annotations

import base64
import binascii
import uuid as uuidlib
from typing import Any

from . import data
from .rows import Attr, Ev, Obj, Rejected, save_failed


class WriteMixin:
    """Write-side semantics; expects the attributes and helpers of MispModel."""

    attributes: dict[int, Attr]
    objects: dict[int, Obj]
    violations: list[str]
    role: dict[str, Any]
    known_tags: set[str]
    event_blocklist: set[str]

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
        if ev_uuid in self.event_blocklist:
            # Event::_add checks EventBlocklist first; EventsController::add answers 403.
            msg = "Event blocked by event blocklist."
            raise Rejected(403, {"name": msg, "message": msg, "url": "/events/add"})
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
            tags=self._capture_tags(
                [t["name"] for t in e.get("Tag", []) if isinstance(t, dict) and "name" in t]
            ),
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

    def _capture_tags(self, names: list[str]) -> list[str]:
        """Event::_add attaches tags only with perm_tagger; Tag::captureTag creates a missing tag
        only with perm_tag_editor and otherwise returns false: the tag is dropped, no error."""
        if self.role and not self.role.get("perm_tagger"):
            return []
        kept = []
        for name in names:
            if name not in self.known_tags:
                if self.role and not self.role.get("perm_tag_editor"):
                    continue
                self.known_tags.add(name)
            kept.append(name)
        return kept

    def add_object(
        self,
        ev: Ev,
        body: dict[str, Any],
        *,
        url: str,
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
            raise save_failed(url, "Could not find the object template.")
        if str(o.get("template_version", tpl.version)) != str(tpl.version):
            raise save_failed(url, "Object template version mismatch.")
        obj_uuid = str(o.get("uuid") or uuidlib.uuid4()).lower()
        if any(x.uuid == obj_uuid for x in self.objects.values()):
            raise save_failed(url, "The UUID provided is not unique")
        attrs = o.get("Attribute", [])
        problems = self._template_conformity(tpl, attrs)
        if problems:
            raise save_failed(url, problems)
        for a in attrs:
            if a.get("uuid") and any(
                x.uuid == str(a["uuid"]).lower() for x in self.attributes.values()
            ):
                raise save_failed(url, "The UUID provided is not unique")
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
