"""Rows of the fake MISP's in-memory database (attributes, objects, events, sightings), and errors.

`Rejected` is how the model answers a request with an error status and MISP's JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    decayed: bool = False  # what an enabled decaying model would say of it

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
    orgc: str = "ORGNAME"  # the creator organisation's name (id "1" is the host org)


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


def save_failed(url: str, reason: str) -> Rejected:
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
