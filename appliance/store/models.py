"""Values the fleet store hands out: frozen, slotted dataclasses and the closed sets (enums)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Artifact",
    "CertRecord",
    "CommandRecord",
    "CommandState",
    "Endpoint",
    "EndpointStatus",
    "Role",
    "Token",
    "User",
]


class Role(enum.Enum):
    """Admin API roles. Analysts read; plugins read and push IoCs/reports; admins do everything."""

    ADMIN = "admin"
    ANALYST = "analyst"
    PLUGIN = "plugin"


class EndpointStatus(enum.Enum):
    PENDING = "pending"  # created (PUT /endpoints or a uuid-bound token), not enrolled yet
    ACTIVE = "active"  # holds a valid certificate
    REVOKED = "revoked"  # every certificate revoked


class CommandState(enum.Enum):
    QUEUED = "queued"  # waiting for the endpoint's next GET /commands
    SENT = "sent"  # delivered, result pending
    COMPLETED = "completed"  # result stored
    TIMEOUT = "timeout"  # sent, but no result within commands.result_timeout
    CANCELLED = "cancelled"  # deleted by an admin before delivery


@dataclass(frozen=True, slots=True)
class User:
    uuid: str
    identifier: str
    role: Role
    group: str = ""
    description: str = ""
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "identifier": self.identifier,
            "role": self.role.value,
            "group": self.group,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class Endpoint:
    uuid: str
    hostname: str = ""
    ip: str = ""
    group: str = ""
    criticality: int = 0
    status: EndpointStatus = EndpointStatus.PENDING
    last_event: float | None = None
    last_detection: float | None = None
    last_connection: float | None = None
    created: float = 0.0
    system_info: dict[str, Any] | None = field(default=None, compare=False)
    config: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(
        self, *, score: float = 0.0, full: bool = False, system_info: bool = False
    ) -> dict[str, Any]:
        """WHIDS `Endpoint` shape (hyphenated keys, RFC 3339 times).

        `system_info` adds `system-info` (as WHIDS lists do); `full` adds it and `config`.
        """
        from ..core.timefmt import rfc3339

        out: dict[str, Any] = {
            "uuid": self.uuid,
            "hostname": self.hostname,
            "ip": self.ip,
            "group": self.group,
            "criticality": self.criticality,
            "status": self.status.value,
            "score": score,
            "last-event": rfc3339(self.last_event),
            "last-detection": rfc3339(self.last_detection),
            "last-connection": rfc3339(self.last_connection),
        }
        if full or system_info:
            out["system-info"] = self.system_info
        if full:
            out["config"] = self.config
        return out


@dataclass(frozen=True, slots=True)
class Token:
    token_hash: str
    uuid: str | None
    group: str
    expires: float
    used: float | None
    created: float


@dataclass(frozen=True, slots=True)
class CertRecord:
    serial: str
    uuid: str
    sha256: str
    not_before: float
    not_after: float
    revoked: float | None = None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: str
    endpoint: str
    name: str
    args: tuple[str, ...] = ()
    drop: tuple[dict[str, str], ...] = ()
    fetch: tuple[str, ...] = ()
    timeout: float = 15.0
    expect_json: bool = False
    state: CommandState = CommandState.QUEUED
    created: float = 0.0
    sent: float | None = None
    completed: float | None = None
    result: dict[str, Any] | None = field(default=None, compare=False)
    issuer: str = ""

    def to_dict(self) -> dict[str, Any]:
        from ..core.timefmt import rfc3339

        return {
            "id": self.id,
            "uuid": self.id,
            "endpoint": self.endpoint,
            "name": self.name,
            "args": list(self.args),
            "drop": list(self.drop),
            "fetch": list(self.fetch),
            "timeout": self.timeout,
            "expect-json": self.expect_json,
            "state": self.state.value,
            "sent": self.state is not CommandState.QUEUED,
            "completed": self.state is CommandState.COMPLETED,
            "created": rfc3339(self.created),
            "sent-time": rfc3339(self.sent),
            "completed-time": rfc3339(self.completed),
            "result": self.result,
            "issuer": self.issuer,
        }


@dataclass(frozen=True, slots=True)
class Artifact:
    endpoint: str
    pguid: str
    ehash: str
    filename: str
    size: int
    sha256: str
    created: float
