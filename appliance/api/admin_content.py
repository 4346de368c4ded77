"""Admin API, content side: IoCs, Sysmon configs and binaries, tools, enrollment tokens,
settings, audit log and stats (the rules are `admin_rules`).
"""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Any

import falcon

from rules import wire

from ..core.errors import InvalidParam, NotFound, ValidationError
from ..core.timefmt import rfc3339
from ..runtime.context import AppContext
from ..services.bodies import read_bounded
from ..services.content import OS_NAMES
from ..store import Role
from .admin_rules import RULE_ROUTES
from .common import PAGE_QUERY, envelope, next_page, paged, q_bool, q_str, raw
from .middleware import JsonBody

__all__ = ["CONTENT_ROUTES"]

ADMIN_ONLY = frozenset({Role.ADMIN})
FEEDS = frozenset({Role.ADMIN, Role.PLUGIN})
HASH_TYPES = {"md5": 32, "sha1": 40, "sha256": 64, "imphash": 32}
MAX_IOC_PAGE = 100_000  # also the default: a WHIDS client gets every IoC up to it at once
_IOC_FILTERS = {
    "uuid": "string",
    "guuid": "string",
    "source": "string",
    "value": "string",
    "type": "string",
}
_IOC_SCHEMA = {
    "type": "object",
    "required": ["value", "type"],
    "properties": {
        "uuid": {"type": "string"},
        "guuid": {"type": "string"},
        "source": {"type": "string"},
        "value": {"type": "string"},
        "type": {"type": "string", "enum": list(wire.IOC_TYPES)},
    },
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _ioc(item: Any) -> wire.Ioc:
    if not isinstance(item, dict):
        raise ValidationError("each IoC is a JSON object")
    ioc = wire.Ioc.from_dict(item)
    if not all(
        isinstance(getattr(ioc, f), str) for f in ("value", "type", "uuid", "guuid", "source")
    ):
        raise ValidationError("IoC fields are strings")
    if ioc.type not in wire.IOC_TYPES:
        raise ValidationError(f"IoC type {ioc.type!r} is not one of {', '.join(wire.IOC_TYPES)}")
    value = ioc.value.strip()
    if not value or len(value) > 4096:
        raise ValidationError("IoC value must be 1–4096 characters")
    if ioc.type in HASH_TYPES:
        value = value.lower()
        if not re.fullmatch(rf"[0-9a-f]{{{HASH_TYPES[ioc.type]}}}", value):
            raise ValidationError(f"{value!r} is not a {ioc.type}")
    for field in ("uuid", "guuid"):
        if getattr(ioc, field) and not _UUID.fullmatch(getattr(ioc, field)):
            raise ValidationError(f"IoC {field} must be a UUID")
    return wire.Ioc(
        value=value,
        type=ioc.type,
        uuid=(ioc.uuid or str(uuidlib.uuid4())).lower(),
        guuid=ioc.guuid.lower(),
        source=ioc.source[:256],
    )


def _ioc_list(data: Any) -> list[wire.Ioc]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValidationError("expected a JSON array of IoCs")
    return [_ioc(i) for i in data]


def _ioc_filters(req: falcon.Request) -> dict[str, str]:
    return {k: q_str(req, k, "", 4096) for k in _IOC_FILTERS if q_str(req, k, "", 4096)}


class Iocs:
    """GET /iocs (filters OR'ed), POST /iocs (upsert by uuid), DELETE /iocs (filters AND'ed)."""

    WRITE_ROLES = FEEDS
    QUERY = {"get": {**_IOC_FILTERS, **PAGE_QUERY}, "delete": _IOC_FILTERS}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_ioc_list, {"type": "array", "items": _IOC_SCHEMA})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List IoCs (any filter matching), oldest first; more: cursor in X-Heron-Next-Cursor."""
        limit, cursor = paged(req, MAX_IOC_PAGE, MAX_IOC_PAGE)
        iocs, nxt = self.ctx.store.iocs.page(_ioc_filters(req), limit=limit, cursor=cursor)
        next_page(resp, nxt)
        envelope(resp, [i.to_dict() for i in iocs])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Add or update IoCs."""
        iocs: list[wire.Ioc] = req.context.body
        self.ctx.store.iocs.upsert(iocs, self.ctx.clock())
        envelope(resp, [i.to_dict() for i in iocs])

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Delete IoCs matching every filter (no filter deletes nothing)."""
        envelope(resp, {"deleted": self.ctx.store.iocs.delete(_ioc_filters(req))})


def _os(os_name: str) -> str:
    if os_name not in OS_NAMES:
        raise InvalidParam(f"os must be one of {', '.join(OS_NAMES)}")
    return os_name


class SysmonConfig:
    """GET/POST/DELETE /endpoints/{os}/sysmon/config (version, format=xml|json, raw).

    Falcon wants one field name per path level, so the `{os}` segment (windows,
    linux, darwin) is declared as `{uuid}` in the template, like the endpoint routes beside it.
    """

    QUERY = {
        "get": {"version": "string", "format": "string", "raw": "boolean"},
        "post": {"version": "string"},
        "delete": {"version": "string"},
    }
    PRODUCES = {"get": (falcon.MEDIA_JSON, falcon.MEDIA_XML)}
    RAW_BODY = {"post": falcon.MEDIA_XML}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """The Sysmon configuration for an OS (latest or `version`)."""
        doc = self.ctx.content.sysmon(_os(uuid), q_str(req, "version", "", 32))
        if doc is None:
            raise NotFound("no Sysmon configuration")
        fmt = q_str(req, "format", "json", 8)
        if fmt not in ("json", "xml"):
            raise InvalidParam("format must be json or xml")
        if fmt == "xml" and q_bool(req, "raw"):
            raw(resp, doc["xml"], falcon.MEDIA_XML)
            return
        envelope(resp, doc["xml"] if fmt == "xml" else doc)

    def on_post(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Upload a Sysmon configuration (XML body)."""
        body = read_bounded(req.bounded_stream, self.ctx.config.limits.json_body)
        try:
            xml = body.decode("utf-8")
        except UnicodeDecodeError as ex:
            raise ValidationError("the Sysmon configuration must be UTF-8 XML") from ex
        version = q_str(req, "version", "", 32) or _schema_version(xml)
        envelope(resp, self.ctx.content.put_sysmon(_os(uuid), version, xml))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Delete one Sysmon configuration version, or every version without `version` (WHIDS)."""
        kind = f"sysmon:{_os(uuid)}"
        version = q_str(req, "version", "", 32)
        versions = [version] if version else self.ctx.store.documents.keys(kind)
        deleted = [v for v in versions if self.ctx.store.documents.delete(kind, v)]
        if not deleted:
            raise NotFound("no such Sysmon configuration")
        envelope(resp, None)


def _schema_version(xml: str) -> str:
    match = re.search(r'schemaversion\s*=\s*"([0-9.]+)"', xml, re.IGNORECASE)
    return match.group(1) if match else "0"


class ToolBinary:
    """GET/POST/DELETE /endpoints/{os}/sysmon/binary and /endpoints/{os}/osqueryi/binary."""

    QUERY = {"get": {"binary": "boolean"}}
    RAW_BODY = {"post": "application/octet-stream"}

    def __init__(self, ctx: AppContext, tool: str) -> None:
        self.ctx = ctx
        self.tool = tool

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """The tool's metadata (binary=true adds the base64 executable)."""
        envelope(resp, self.ctx.store.tools.get(self.tool, _os(uuid), binary=q_bool(req, "binary")))

    def on_post(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Upload the tool's executable (raw body)."""
        data = read_bounded(req.bounded_stream, self.ctx.config.limits.upload_size)
        if not data:
            raise ValidationError("the body must be the executable")
        envelope(resp, self.ctx.store.tools.put(self.tool, _os(uuid), data, self.ctx.clock()))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Remove the tool."""
        self.ctx.store.tools.delete(self.tool, _os(uuid))
        envelope(resp, None)


class Tools:
    """GET /tools: every tool (metadata only)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List distributed tools."""
        envelope(resp, self.ctx.store.tools.list())


class EnrollTokens:
    """POST /enroll/tokens: a one-time enrollment token (group, ttl seconds)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                self._body,
                {
                    "type": "object",
                    "properties": {"group": {"type": "string"}, "ttl": {"type": "number"}},
                },
            )
        }

    @staticmethod
    def _body(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValidationError("expected a JSON object")
        group, ttl = data.get("group", ""), data.get("ttl")
        if not isinstance(group, str) or len(group) > 128:
            raise ValidationError("group must be a string")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 366 * 86400
        ):
            raise ValidationError("ttl must be a number of seconds (≤ 366 days)")
        return {"group": group, "ttl": ttl}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a one-time enrollment token (shown once)."""
        token, expires = self.ctx.identity.create_token(**req.context.body)
        envelope(
            resp,
            {
                "token": token,
                "expires": rfc3339(expires),
                "group": req.context.body["group"],
                "endpoint_url": self.ctx.config.endpoint_url(),
                "addresses": self.ctx.config.endpoint_addresses(),
                "ca_sha256": self.ctx.pki.ca_sha256 if self.ctx.pki else None,
            },
            201,
        )


class Settings:
    """GET /settings: every setting (plugins keep their settings here)."""

    READ_ROLES = FEEDS

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Every setting."""
        envelope(resp, self.ctx.store.settings.all())


class Setting:
    """GET/PUT/DELETE /settings/{key}: one JSON setting."""

    READ_ROLES = FEEDS

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"put": JsonBody(lambda d: d, {})}

    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        """One setting."""
        marker = object()
        value = self.ctx.store.settings.get(_key(key), marker)
        if value is marker:
            raise NotFound(f"no setting {key!r}")
        envelope(resp, value)

    def on_put(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        """Set one setting to the JSON body."""
        self.ctx.store.settings.put(_key(key), req.context.body, self.ctx.clock())
        envelope(resp, req.context.body)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        """Delete one setting."""
        self.ctx.store.settings.delete(_key(key))
        envelope(resp, None)


def _key(key: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", key):
        raise InvalidParam("setting keys are 1–128 of [A-Za-z0-9_.-]")
    return key


class AuditLog:
    """GET /audit: admin actions, newest first."""

    READ_ROLES = ADMIN_ONLY
    QUERY = {"get": PAGE_QUERY}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The audit log, newest first; more: cursor in X-Heron-Next-Cursor."""
        limit, cursor = paged(req, 1000, 100_000)
        rows, nxt = self.ctx.store.audit.page(limit=limit, cursor=cursor)
        next_page(resp, nxt)
        envelope(resp, rows)


class Stats:
    """GET /stats: endpoint and rule counts (plus Heron extras)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Fleet statistics, and the event index state (backlog, last error, writer pid)."""
        data: dict[str, Any] = {
            "endpoint-count": len(self.ctx.store.endpoints.list()),
            "rule-count": len(self.ctx.store.rules.all()),
            "ioc-count": self.ctx.store.iocs.count(),
            "detection-count": self.ctx.store.detections.count(),
            "events-received": int(self.ctx.metrics.value("heron_events_received_total")),
            "stream-clients": self.ctx.hub.subscribers,
        }
        health = getattr(self.ctx.events, "health", None)
        if callable(health):
            try:
                index = health()
                data["event-index"] = {
                    "backlog": index.backlog,
                    "error": index.reason,
                    "writer-pid": index.writer_pid,
                }
            except Exception as ex:  # noqa: BLE001 - e.g. closing
                data["event-index"] = {"backlog": None, "error": str(ex), "writer-pid": None}
        envelope(resp, data)


CONTENT_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/iocs", Iocs, None),
    *RULE_ROUTES,
    ("/endpoints/{uuid}/sysmon/config", SysmonConfig, None),
    ("/endpoints/{uuid}/sysmon/binary", lambda ctx: ToolBinary(ctx, "sysmon"), None),
    ("/endpoints/{uuid}/osqueryi/binary", lambda ctx: ToolBinary(ctx, "osqueryi"), None),
    ("/tools", Tools, None),
    ("/enroll/tokens", EnrollTokens, None),
    ("/settings", Settings, None),
    ("/settings/{key}", Setting, None),
    ("/audit", AuditLog, None),
    ("/stats", Stats, None),
]
