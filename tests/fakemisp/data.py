"""Reference data of the fake MISP: describeTypes, object templates, warninglist, parameters.

Everything here comes from the PyMISP wheel (`pymisp/data/`) or from docs/reference/misp.md, never
from Heron code,
so the fake judges our client by MISP's rules and not by our own assumptions. Also holds the value
coercions MISP applies to request bodies (booleans, epochs, relative time deltas) and the strict
checks the fake applies to its own responses (docs/reference/misp.md §8: "validate the server's own
responses
strictly").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pymisp

PYMISP_DATA = Path(pymisp.__file__).resolve().parent / "data"

# Parameter names MISP's attributes/restSearch understands (MispAttribute::buildFilterConditions,
# the restSearch paramArray, and the flags PyMISP always sends). Unknown names are warned about, not
# refused.
RESTSEARCH_PARAMS = frozenset(
    {
        "returnFormat",
        "page",
        "limit",
        "value",
        "value1",
        "value2",
        "type",
        "category",
        "org",
        "tags",
        "event_tags",
        "quickFilter",
        "searchall",
        "from",
        "to",
        "last",
        "eventid",
        "withAttachments",
        "metadata",
        "uuid",
        "publish_timestamp",
        "timestamp",
        "attribute_timestamp",
        "event_timestamp",
        "published",
        "enforceWarninglist",
        "to_ids",
        "deleted",
        "includeEventUuid",
        "includeEventTags",
        "sgReferenceOnly",
        "eventinfo",
        "requested_attributes",
        "includeContext",
        "headerless",
        "includeSightings",
        "includeDecayScore",
        "includeCorrelations",
        "excludeDecayed",
        "object_name",
        "sharinggroup",
        "order",
        "includeWarninglistHits",
        "first_seen",
        "last_seen",
        "decayingModel",
        "score",
        "modelOverrides",
        "object_relation",
        "comment",
        "includeProposals",
        "includeAllTags",
        "threat_level_id",
        "distribution",
        "attackGalaxy",
    }
)
SIGHTING_PARAMS = frozenset(
    {"values", "value", "source", "type", "timestamp", "filters", "id", "uuid", "date", "time"}
)
EVENT_FIELDS = frozenset(
    {
        "uuid",
        "info",
        "date",
        "distribution",
        "threat_level_id",
        "analysis",
        "Tag",
        "Attribute",
        "Object",
        "published",
        "sharing_group_id",
        "timestamp",
        "publish_timestamp",
        "id",
        "org_id",
        "orgc_id",
        "extends_uuid",
        "disable_correlation",
        "protected",
        "EventReport",
        "Galaxy",
        "Orgc",
        "Org",
        "proposal_email_lock",
        "locked",
        "attribute_count",
        "sighting_timestamp",
    }
)
OBJECT_FIELDS = frozenset(
    {
        "name",
        "meta-category",
        "template_uuid",
        "template_version",
        "description",
        "uuid",
        "distribution",
        "sharing_group_id",
        "comment",
        "first_seen",
        "last_seen",
        "Attribute",
        "timestamp",
        "deleted",
        "id",
        "event_id",
        "ObjectReference",
        "standalone",
    }
)
OBJECT_ATTRIBUTE_FIELDS = frozenset(
    {
        "object_relation",
        "type",
        "value",
        "category",
        "to_ids",
        "disable_correlation",
        "uuid",
        "comment",
        "data",
        "distribution",
        "sharing_group_id",
        "first_seen",
        "last_seen",
        "timestamp",
        "Tag",
        "deleted",
        "encrypt",
        "malware_binary",
    }
)

# A tiny built-in warninglist (docs/reference/misp.md §8): public resolvers, top domains,
# empty-content hashes.
WARNINGLIST: dict[str, tuple[str, str]] = {
    "8.8.8.8": ("1", "List of known IPv4 public DNS resolvers"),
    "1.1.1.1": ("1", "List of known IPv4 public DNS resolvers"),
    "9.9.9.9": ("1", "List of known IPv4 public DNS resolvers"),
    "google.com": ("2", "Top 1000 website from Alexa"),
    "microsoft.com": ("2", "Top 1000 website from Alexa"),
    "d41d8cd98f00b204e9800998ecf8427e": ("3", "Hashes of empty content"),
    "da39a3ee5e6b4b0d3255bfef95601890afd80709": ("3", "Hashes of empty content"),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855": (
        "3",
        "Hashes of empty content",
    ),
}

LOWERCASE_TYPES = frozenset(
    {
        "md5",
        "sha1",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "imphash",
        "domain",
        "hostname",
        "email",
        "email-src",
        "email-dst",
        "ssdeep",
        "tlsh",
        "authentihash",
        "pehash",
    }
)

TIME_DELTA = re.compile(r"^(\d+)([dhms])$")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@cache
def describe_types() -> dict[str, Any]:
    """The wheel's describeTypes.json `result` block."""
    data = json.loads((PYMISP_DATA / "describeTypes.json").read_text(encoding="utf-8"))
    result: dict[str, Any] = data["result"]
    return result


@dataclass(frozen=True, slots=True)
class Template:
    """One misp-objects template, as the server's checkTemplateConformity reads it."""

    name: str
    uuid: str
    version: int
    meta_category: str
    description: str
    attributes: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    required_one_of: tuple[str, ...]


@cache
def templates() -> dict[str, Template]:
    """All object templates of the wheel, by template uuid."""
    out: dict[str, Template] = {}
    for path in sorted((PYMISP_DATA / "misp-objects" / "objects").glob("*/definition.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        out[d["uuid"]] = Template(
            name=d["name"],
            uuid=d["uuid"],
            version=int(d["version"]),
            meta_category=d["meta-category"],
            description=d.get("description", ""),
            attributes=d["attributes"],
            required=tuple(d.get("required", ())),
            required_one_of=tuple(d.get("requiredOneOf", ())),
        )
    return out


def to_bool(value: Any) -> bool | None:
    """MISP's loose boolean (0, 1, "0", "1", true, false); None when not a boolean."""
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return bool(int(value))
    if value in ("true", "false"):
        return value == "true"
    return None


def to_epoch(value: Any, now: float) -> int:
    """AppModel::resolveTimeDelta: epoch (int, float, numeric string) or "5d"; invalid → now+1."""
    if isinstance(value, bool):
        return int(now) + 1
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(float(text))
        except ValueError:
            pass
        m = TIME_DELTA.match(text)
        if m:
            return int(now) - int(m.group(1)) * _UNITS[m.group(2)]
    return int(now) + 1


def time_range(value: Any, now: float) -> tuple[int, int | None]:
    """A time filter as (from, to); a `[from, to]` pair is swapped when reversed."""
    if isinstance(value, list | tuple) and len(value) == 2:
        a, b = to_epoch(value[0], now), to_epoch(value[1], now)
        return (min(a, b), max(a, b))
    return (to_epoch(value, now), None)


def as_list(value: Any) -> list[Any]:
    """Scalar-or-list parameter values as a list."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def normalise_value(mtype: str, value: str) -> str:
    """AttributeValidationTool-style normalisation (lower-case hashes, domains, hostnames)."""
    value = value.strip()
    halves = mtype.split("|")
    parts = value.split("|", 1) if len(halves) == 2 else [value]
    out = []
    for t, v in zip(halves, parts, strict=False):
        if t in LOWERCASE_TYPES:
            v = v.lower()
        if t == "domain":
            v = v.strip(".")
        if t in ("ip-src", "ip-dst") and (v.endswith("/32") or v.endswith("/128")):
            v = v.rsplit("/", 1)[0]
        out.append(v)
    return "|".join(out)


# --- strict checks of the fake's own responses (OpenAPI 200 schemas, in miniature) ---------------

_STR_FIELDS_ATTRIBUTE = (
    "id",
    "event_id",
    "object_id",
    "category",
    "type",
    "value",
    "uuid",
    "timestamp",
    "distribution",
    "sharing_group_id",
    "comment",
)
_BOOL_FIELDS_ATTRIBUTE = ("to_ids", "deleted", "disable_correlation")
_STR_FIELDS_OBJECT = (
    "id",
    "name",
    "meta-category",
    "description",
    "template_uuid",
    "template_version",
    "event_id",
    "uuid",
    "timestamp",
    "distribution",
    "sharing_group_id",
    "comment",
)
_STR_FIELDS_EVENT = (
    "id",
    "uuid",
    "info",
    "date",
    "distribution",
    "threat_level_id",
    "analysis",
    "timestamp",
    "publish_timestamp",
    "org_id",
    "orgc_id",
    "sharing_group_id",
    "attribute_count",
)
_STR_FIELDS_SIGHTING = (
    "id",
    "attribute_id",
    "event_id",
    "org_id",
    "date_sighting",
    "uuid",
    "source",
    "type",
)


def check_attribute(a: dict[str, Any]) -> list[str]:
    """Problems with one Attribute as the server renders it."""
    bad = [
        f"Attribute.{k} must be a string"
        for k in _STR_FIELDS_ATTRIBUTE
        if not isinstance(a.get(k), str)
    ]
    bad += [
        f"Attribute.{k} must be a boolean"
        for k in _BOOL_FIELDS_ATTRIBUTE
        if not isinstance(a.get(k), bool)
    ]
    return bad


def check_object(o: dict[str, Any]) -> list[str]:
    """Problems with one Object (e.g. `comment` null where the schema says string)."""
    bad = [
        f"Object.{k} must be a string" for k in _STR_FIELDS_OBJECT if not isinstance(o.get(k), str)
    ]
    if not isinstance(o.get("deleted"), bool):
        bad.append("Object.deleted must be a boolean")
    for a in o.get("Attribute", []):
        bad += check_attribute(a)
    return bad


def check_event(e: dict[str, Any]) -> list[str]:
    """Problems with one Event view."""
    bad = [
        f"Event.{k} must be a string" for k in _STR_FIELDS_EVENT if not isinstance(e.get(k), str)
    ]
    if not isinstance(e.get("published"), bool):
        bad.append("Event.published must be a boolean")
    for a in e.get("Attribute", []):
        bad += check_attribute(a)
    for o in e.get("Object", []):
        bad += check_object(o)
    return bad


def check_sighting(s: dict[str, Any]) -> list[str]:
    """Problems with one Sighting row."""
    return [
        f"Sighting.{k} must be a string"
        for k in _STR_FIELDS_SIGHTING
        if not isinstance(s.get(k), str)
    ]
