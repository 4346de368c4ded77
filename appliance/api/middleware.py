"""Request pipeline: endpoint identity (mTLS), admin authentication and roles, JSON bodies.

Resources declare what they need as class attributes; responders never check credentials:

* endpoint app: `client_cert_optional = True` lets a route through without a certificate (only
  `/enroll` and `/healthz`); everything else gets `req.context.endpoint` from the verified cert.
* admin app: `auth_exempt = True` skips authentication (`/healthz`, `/openapi.json`, console
  login); `READ_ROLES` / `WRITE_ROLES` (sets of Role) restrict safe / unsafe methods.
* both: `BODY = {"post": JsonBody(...)}` parses and converts the request body before the
  responder runs (`req.context.body`); malformed → 400, too large → 413, wrong shape → 422.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import falcon

from rules import wire

from ..core.errors import Forbidden, MalformedBody, TooManyRequests, Unauthorized, ValidationError
from ..services.bodies import decode_json, decompress, read_bounded
from ..services.identity import Identity
from ..store import Role
from ..transport.governance import FailureThrottle, RateLimitedLog
from ..transport.identities import IdentityMap

if TYPE_CHECKING:
    from ..runtime.extension import SessionAuthority

__all__ = [
    "ALL_ROLES",
    "AdminAuth",
    "AuditTrail",
    "BodyParser",
    "EndpointIdentity",
    "JsonBody",
    "PathNormalizer",
    "RequestLog",
]

logger = logging.getLogger(__name__)
access = logging.getLogger("appliance.access")
ALL_ROLES = frozenset(Role)
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class JsonBody:
    """A JSON request body; `convert(parsed)` builds the value (ValueError/TypeError → 422)."""

    convert: Callable[[Any], Any]
    schema: dict[str, Any] = field(default_factory=dict)  # OpenAPI schema of the body
    max_size: int | None = None  # default: limits.json_body


def message(cls: type[Any]) -> Callable[[Any], Any]:
    """Converter for a rules.wire message dataclass (required fields enforced)."""

    def convert(data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValidationError(f"{cls.__name__}: expected a JSON object")
        return cls.from_dict(data)

    return convert


class EndpointIdentity:
    """Resolves the endpoint behind a request from the TLS front's identity map."""

    def __init__(self, identities: IdentityMap, identity: Identity) -> None:
        self.identities = identities
        self.identity = identity

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        conn = self.identities.resolve(req.env)
        req.context.peer_ip = conn.peer_ip if conn else ""
        req.context.peer = conn.identity if conn else None
        req.context.endpoint = None
        if resource is None or getattr(resource, "client_cert_optional", False):
            return
        req.context.endpoint = self.identity.endpoint_for(req.context.peer)


class AdminAuth:
    """X-Api-Key (or legacy Api-Key) → user; console session as a fallback; role checks."""

    def __init__(
        self,
        identity: Identity,
        sessions: SessionAuthority | None = None,
        identities: IdentityMap | None = None,
    ) -> None:
        self.identity = identity
        self.sessions = sessions
        self.identities = identities
        self.throttle = FailureThrottle()
        self.log = RateLimitedLog(logger)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        req.context.user = None
        if resource is None or getattr(resource, "auth_exempt", False):
            return
        key = req.get_header(wire.HEADER_API_KEY) or req.get_header(wire.HEADER_API_KEY_LEGACY)
        if key:
            conn = self.identities.resolve(req.env) if self.identities is not None else None
            source = conn.peer_ip if conn else str(req.remote_addr or "")
            if self.throttle.blocked(source):
                raise TooManyRequests(
                    "too many failed API keys from this address",
                    retry_after=int(self.throttle.window),
                )
            try:
                user = self.identity.authenticate(key)
            except Unauthorized:
                self.throttle.failed(source)
                self.log.warning(f"key-{source}", "invalid API key from %s", source)
                raise
        elif self.sessions is not None and (by_session := self.sessions.resolve_session(req)):
            user = by_session
        else:
            raise Unauthorized("an API key is required (X-Api-Key header)")
        req.context.user = user
        role = user.role if isinstance(user.role, Role) else Role(str(user.role))
        allowed = getattr(
            resource,
            "READ_ROLES" if req.method in SAFE else "WRITE_ROLES",
            ALL_ROLES if req.method in SAFE else frozenset({Role.ADMIN}),
        )
        if role not in allowed:
            raise Forbidden(f"role {role.value!r} may not {req.method} {req.path}")


class AuditTrail:
    """Records every successful admin write (who, role, method + path, status) in the store."""

    def __init__(self, audit: Any, clock: Callable[[], float]) -> None:
        self.audit = audit
        self.clock = clock

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        user = getattr(req.context, "user", None)
        if req.method in SAFE or user is None or not req_succeeded:
            return
        role = getattr(user.role, "value", user.role)
        self.audit.record(
            self.clock(),
            getattr(user, "identifier", ""),
            str(role),
            f"{req.method} {req.path}",
            req.path,
            {"status": str(resp.status), "query": req.query_string or ""},
        )


class BodyParser:
    """Parses `BODY[method]` bodies (gzip allowed) into `req.context.body`."""

    def __init__(self, json_limit: int) -> None:
        self.json_limit = json_limit

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        spec = (getattr(resource, "BODY", None) or {}).get(req.method.lower())
        if spec is None:
            return
        limit = spec.max_size or self.json_limit
        raw = read_bounded(req.bounded_stream, limit, what="request body")
        data = decompress(raw, req.get_header("Content-Encoding"), limit, what="request body")
        parsed = decode_json(data, what="request body")
        try:
            req.context.body = spec.convert(parsed)
        except (ValidationError, MalformedBody):
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as ex:
            raise ValidationError(f"request body: {ex}") from ex


class PathNormalizer:
    """Collapses `//` in request paths before routing.

    pywhids builds artifact URLs as `base-url + "/" + name` and base-url ends with `/`; WHIDS's
    router answered 301 to the cleaned path, we route the cleaned path directly.
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if "//" in req.path:
            req.path = re.sub(r"/{2,}", "/", req.path)


class RequestLog:
    """One structured access-log line per request."""

    def __init__(self, api: str, clock: Callable[[], float] = time.perf_counter) -> None:
        self.api = api
        self.clock = clock

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = self.clock()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        elapsed = (self.clock() - started) * 1000 if started is not None else 0.0
        who = getattr(req.context, "endpoint", None) or getattr(req.context, "user", None)
        access.debug(
            "%s %s %s",
            req.method,
            req.path,
            resp.status,
            extra={
                "api": self.api,
                "method": req.method,
                "path": req.path,
                "status": str(resp.status),
                "ms": round(elapsed, 2),
                "who": getattr(who, "uuid", ""),
            },
        )
