"""Admin API, fleet side: users, endpoints, commands, endpoint configs, reports, artifacts.

WHIDS routes and envelope (docs/reference/whids.md §2.4), with proper HTTP status codes on errors,
API keys
never listed, and a real command queue (ids, history, timeouts) instead of one overwritten slot.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import falcon

from ..core.errors import InvalidParam, NotFound, ValidationError
from ..core.timefmt import parse_time, time_window
from ..runtime.context import AppContext
from ..services.bodies import decode_json, decompress, read_bounded
from ..services.ingest import COUNTERS_KIND
from ..store import EndpointStatus, Role
from .common import PAGE_QUERY, envelope, next_page, paged, q_bool, q_int, q_str, uuid_param
from .middleware import JsonBody

__all__ = ["FLEET_ROUTES"]

ADMIN_ONLY = frozenset({Role.ADMIN})
DEFAULT_ROLE = Role.ANALYST  # a user created without `role` (read-only)
_OBJ = {"type": "object"}


def _obj(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    return data


def _str(body: dict[str, Any], key: str, default: str = "", max_len: int = 1024) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > max_len:
        raise ValidationError(f"{key} must be a string of at most {max_len} characters")
    return value


class Users:
    """GET /users (admins only; keys are never listed), PUT/POST /users to create one."""

    READ_ROLES = ADMIN_ONLY
    QUERY = {"get": PAGE_QUERY, "put": {"identifier": "string", "role": "string"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                _obj,
                {
                    "type": "object",
                    "required": ["identifier"],
                    "properties": {
                        "identifier": {"type": "string"},
                        "role": {"type": "string"},
                        "group": {"type": "string"},
                        "description": {"type": "string"},
                    },
                },
            )
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List admin users (without keys); more: cursor in X-Heron-Next-Cursor."""
        limit, cursor = paged(req, 1000, 10_000)
        users, nxt = self.ctx.store.users.page(limit=limit, cursor=cursor)
        next_page(resp, nxt)
        envelope(resp, [u.to_dict() for u in users])

    def _create(
        self, resp: falcon.Response, identifier: str, role: str, group: str, description: str
    ) -> None:
        try:
            # Security: no role means least privilege (WHIDS users were all admins)
            role_value = Role(role or DEFAULT_ROLE.value)
        except ValueError as ex:
            raise ValidationError("role must be admin, analyst or plugin") from ex
        user, key = self.ctx.identity.add_user(
            identifier, role_value, group=group, description=description
        )
        envelope(resp, dict(user.to_dict(), key=key))

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a user from query parameters; the key is shown once."""
        self._create(resp, q_str(req, "identifier", "", 128), q_str(req, "role", "", 16), "", "")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a user from a JSON body; the key is shown once."""
        body = req.context.body
        self._create(
            resp,
            _str(body, "identifier", "", 128),
            _str(body, "role", "", 16),
            _str(body, "group"),
            _str(body, "description"),
        )


class User:
    """GET/POST/DELETE /users/{uuid}; POST with newkey=true rotates the key."""

    READ_ROLES = ADMIN_ONLY
    QUERY = {"post": {"newkey": "boolean"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_obj, _OBJ)}

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Show one user."""
        envelope(resp, self.ctx.store.users.get(uuid_param(uuid)).to_dict())

    def on_post(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Change a user's group/description/role, or rotate its key."""
        user = self.ctx.store.users.get(uuid_param(uuid))
        body = req.context.body
        changes: dict[str, Any] = {}
        for key in ("group", "description"):
            if key in body:
                changes[key] = _str(body, key)
        if "role" in body:
            try:
                changes["role"] = Role(_str(body, "role"))
            except ValueError as ex:
                raise ValidationError("role must be admin, analyst or plugin") from ex
        user = self.ctx.store.users.update(user.uuid, **changes)
        out = user.to_dict()
        if q_bool(req, "newkey"):
            user, out["key"] = self.ctx.identity.rotate_key(user.uuid)
        envelope(resp, out)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Delete a user."""
        user = self.ctx.store.users.get(uuid_param(uuid))
        self.ctx.store.users.delete(user.uuid)
        envelope(resp, user.to_dict())


def _counters(body: str | None) -> Any:
    """The latest loss/degradation/budget counters an agent reported (None: never)."""
    return json.loads(body) if body else None


class Endpoints:
    """GET /endpoints (filters group, status, criticality); PUT creates one + enrollment token."""

    QUERY = {
        "get": {"group": "string", "status": "string", "criticality": "integer"},
        "put": {"group": "string"},
    }

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List endpoints with their score and system information (config left out)."""
        eps = self.ctx.store.endpoints.list(
            group=q_str(req, "group", "", 128) or None,
            status=q_str(req, "status", "", 32) or None,
            criticality=q_int(req, "criticality", 0, hi=10),
        )
        counters = self.ctx.store.documents.bodies(COUNTERS_KIND)
        served = self.ctx.content.rules_text()[1]
        states = self.ctx.ingest.rule_states
        envelope(
            resp,
            [
                dict(
                    e.to_dict(score=self.ctx.reducer.bounded(e.uuid), system_info=True),
                    **{"agent-counters": _counters(counters.get(e.uuid))},
                    rules=states.get(e.uuid, served),
                )
                for e in eps
            ],
        )

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a pending endpoint; `key` is its one-time enrollment token."""
        ep, token = self.ctx.identity.create_endpoint(group=q_str(req, "group", "", 128))
        envelope(resp, dict(ep.to_dict(), key=token))  # 200 like WHIDS (pywhids checks it)


class Endpoint:
    """GET/POST/DELETE /endpoints/{uuid}; POST body: status, group, criticality (0–10)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                _obj,
                {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string"},
                        "group": {"type": "string"},
                        "criticality": {"type": "integer"},
                    },
                },
            )
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Show one endpoint (with system info and config)."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        found = self.ctx.store.documents.get(COUNTERS_KIND, ep.uuid)
        rules = self.ctx.ingest.rule_states.get(ep.uuid, self.ctx.content.rules_text()[1])
        envelope(
            resp,
            dict(
                ep.to_dict(score=self.ctx.reducer.bounded(ep.uuid), full=True),
                **{"agent-counters": _counters(found[0] if found else None)},
                rules=rules,
            ),
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Change an endpoint's status, group or criticality."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        body: dict[str, Any] = req.context.body
        changes: dict[str, Any] = {}
        if "group" in body:
            changes["group"] = _str(body, "group", "", 128)
        if "criticality" in body:
            crit = body["criticality"]
            if not isinstance(crit, int) or isinstance(crit, bool) or not 0 <= crit <= 10:
                raise ValidationError("criticality must be an integer 0–10")
            changes["criticality"] = crit
        if "status" in body:
            try:
                changes["status"] = EndpointStatus(_str(body, "status"))
            except ValueError as ex:
                raise ValidationError("status must be pending, active or revoked") from ex
            if changes["status"] is EndpointStatus.REVOKED:
                self.ctx.identity.revoke(ep.uuid)
        ep = self.ctx.store.endpoints.update(ep.uuid, **changes)
        envelope(resp, ep.to_dict(score=self.ctx.reducer.bounded(ep.uuid)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Delete an endpoint (its certificates are revoked first)."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        self.ctx.identity.revoke(ep.uuid)
        self.ctx.store.endpoints.delete(ep.uuid)
        envelope(resp, ep.to_dict())


class EndpointRevoke:
    """POST /endpoints/{uuid}/revoke: revoke every certificate of an endpoint."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Revoke every certificate of an endpoint."""
        count = self.ctx.identity.revoke(uuid_param(uuid))
        envelope(resp, {"uuid": uuid, "revoked": count})


class EndpointConfig:
    """GET/POST/DELETE /endpoints/{uuid}/config (format=json or toml)."""

    QUERY = {"get": {"format": "string"}}
    RAW_BODY = {"post": "application/json"}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """The agent configuration the endpoint will download."""
        config = self.ctx.store.endpoints.get(uuid_param(uuid)).config
        fmt = q_str(req, "format", "json", 8)
        if fmt not in ("json", "toml"):
            raise InvalidParam("format must be json or toml")
        if config is None:
            raise NotFound("endpoint has no configuration")
        envelope(resp, _to_toml(config) if fmt == "toml" else config)

    def on_post(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Replace the endpoint's agent configuration (JSON object or TOML text)."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        limit = self.ctx.config.limits.json_body
        data = decompress(
            read_bounded(req.bounded_stream, limit), req.get_header("Content-Encoding"), limit
        )
        if "toml" in (req.content_type or ""):
            try:
                config: Any = tomllib.loads(data.decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as ex:
                raise ValidationError(f"not valid TOML: {ex}") from ex
        else:
            config = decode_json(data)
        if not isinstance(config, dict):
            raise ValidationError("a configuration is a JSON object")
        self.ctx.store.endpoints.update(ep.uuid, config=config)
        envelope(resp, config)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Forget the configuration (the agent will POST its own again)."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        self.ctx.store.endpoints.update(ep.uuid, config=None)
        envelope(resp, None)


def _to_toml(config: dict[str, Any], prefix: str = "") -> str:
    import json

    scalars, tables = [], []
    for key, value in config.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            scalars.append(f"{json.dumps(str(key))} = {json.dumps(value)}")
    out = "\n".join(scalars) + ("\n" if scalars else "")
    for key, value in tables:
        name = f"{prefix}.{json.dumps(str(key))}" if prefix else json.dumps(str(key))
        out += f"\n[{name}]\n" + _to_toml(value, name)
    return out


class Reports:
    """GET /endpoints/reports: uuid → WHIDS ReducedStats (or null)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Reports of every endpoint."""
        reports = self.ctx.reducer.reports()
        envelope(resp, {e.uuid: reports.get(e.uuid) for e in self.ctx.store.endpoints.list()})


class Report:
    """GET /endpoints/{uuid}/report; DELETE archives it and resets the score."""

    QUERY = {
        "get_archive": {"since": "string", "until": "string", "last": "string", "limit": "integer"}
    }

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """The endpoint's current report."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        envelope(resp, self.ctx.reducer.report(ep.uuid))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Archive the report and reset the endpoint's score."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        report = self.ctx.reducer.reset(ep.uuid)
        if report is not None:
            self.ctx.store.reports.archive(ep.uuid, report, self.ctx.clock())
        envelope(resp, report)

    def on_get_archive(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Archived reports, newest first (default: last 24 h)."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        start, stop = time_window(
            since=q_str(req, "since"),
            until=q_str(req, "until"),
            last=q_str(req, "last"),
            pivot=None,
            delta=None,
            now=self.ctx.clock(),
            default_last=86400.0,
        )
        envelope(
            resp,
            self.ctx.store.reports.archived(
                ep.uuid, since=start, until=stop, limit=q_int(req, "limit", 1000, hi=10_000)
            ),
        )


class Artifacts:
    """GET /endpoints/artifacts (all) and /endpoints/{uuid}/artifacts (since=RFC 3339)."""

    QUERY = {"get": {"since": "string"}, "get_one": {"since": "string"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def _since(self, req: falcon.Request) -> float:
        since = q_str(req, "since", "", 64)
        return parse_time(since, name="since") if since else 0.0

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Artifacts of every endpoint, grouped by endpoint."""
        envelope(resp, self.ctx.artifacts.listing(None, self._since(req)))

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Artifacts of one endpoint."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        envelope(resp, self.ctx.artifacts.listing(ep.uuid, self._since(req)).get(ep.uuid, []))


class ArtifactFile:
    """GET /endpoints/{uuid}/artifacts/{pguid}/{ehash}/{fname}: base64 in `data`, or raw bytes."""

    QUERY = {"get": {"raw": "boolean", "gunzip": "boolean"}}
    PRODUCES = {"get": (falcon.MEDIA_JSON, "application/octet-stream")}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        uuid: str,
        pguid: str,
        ehash: str,
        fname: str,
    ) -> None:
        """Download one artifact file (raw=true for bytes, gunzip=true to decompress)."""
        import base64

        gunzip = q_bool(req, "gunzip")
        if q_bool(req, "raw"):
            size, chunks = self.ctx.artifacts.stream(
                uuid_param(uuid),
                pguid,
                ehash,
                fname,
                gunzip=gunzip,
                cap=self.ctx.config.limits.upload_size,
            )
            resp.content_type = "application/octet-stream"
            resp.content_length = size
            resp.stream = chunks
            return
        data = self.ctx.artifacts.read(uuid_param(uuid), pguid, ehash, fname, gunzip=gunzip)
        envelope(resp, base64.b64encode(data).decode("ascii"))


FLEET_ROUTES: list[tuple[str, type, str | None]] = [
    ("/users", Users, None),
    ("/users/{uuid}", User, None),
    ("/endpoints", Endpoints, None),
    ("/endpoints/reports", Reports, None),
    ("/endpoints/artifacts", Artifacts, None),
    ("/endpoints/{uuid}", Endpoint, None),
    ("/endpoints/{uuid}/revoke", EndpointRevoke, None),
    ("/endpoints/{uuid}/config", EndpointConfig, None),
    ("/endpoints/{uuid}/report", Report, None),
    ("/endpoints/{uuid}/report/archive", Report, "archive"),
    ("/endpoints/{uuid}/artifacts", Artifacts, "one"),
    ("/endpoints/{uuid}/artifacts/{pguid}/{ehash}/{fname}", ArtifactFile, None),
]
