"""Admin API, event side: search, SQL, retro-hunt, per-endpoint logs/detections, SSE streams."""

from __future__ import annotations

import threading
from typing import Any

import falcon

from ..core.errors import InvalidParam, TooManyRequests, ValidationError
from ..core.timefmt import parse_time, time_window
from ..runtime.context import AppContext
from ..services.hunting import Hunting
from ..services.streams import STREAM_ENV, StreamFilter, StreamRequest
from ..store import Role
from .common import envelope, q_bool, q_int, q_str, uuid_param
from .middleware import JsonBody

__all__ = ["SEARCH_ROUTES"]

_WINDOW = {
    "since": "string",
    "until": "string",
    "last": "string",
    "pivot": "string",
    "delta": "string",
    "limit": "integer",
    "skip": "integer",
}


def _window(req: falcon.Request, now: float) -> tuple[float, float]:
    return time_window(
        since=q_str(req, "since", "", 64) or None,
        until=q_str(req, "until", "", 64) or None,
        last=q_str(req, "last", "", 32) or None,
        pivot=q_str(req, "pivot", "", 64) or None,
        delta=q_str(req, "delta", "", 32) or None,
        now=now,
    )


class EndpointEvents:
    """GET /endpoints/{uuid}/logs and /endpoints/{uuid}/detections (WHIDS window params)."""

    QUERY = {"get": _WINDOW}

    def __init__(self, ctx: AppContext, *, detections: bool) -> None:
        self.ctx = ctx
        self.hunting = Hunting(ctx.events)
        self.detections = detections

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Events of one endpoint in a time window, newest first."""
        uuid = uuid_param(uuid)
        start, stop = _window(req, self.ctx.clock())
        limit, skip = q_int(req, "limit", 1000, lo=1, hi=10_000), q_int(req, "skip", 0, hi=10_000)
        page = self.hunting.search(
            "",
            since=start,
            until=stop,
            endpoint=uuid,
            detections_only=self.detections,
            limit=limit + skip,
            cursor=None,
        )
        envelope(resp, page["events"][skip : skip + limit])


def _opt_time(req: falcon.Request, name: str) -> float | None:
    value = q_str(req, name, "", 64)
    return parse_time(value, name=name) if value else None


class Search:
    """GET /search?q=&since=&until=&endpoint=&detections=&limit=&cursor=: full-text search."""

    QUERY = {
        "get": {
            "q": "string",
            "since": "string",
            "until": "string",
            "last": "string",
            "endpoint": "string",
            "detections": "boolean",
            "limit": "integer",
            "cursor": "string",
        }
    }

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.hunting = Hunting(ctx.events)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Search stored events (index query language)."""
        endpoint = q_str(req, "endpoint", "", 64)
        last = q_str(req, "last", "", 32)
        since = (self.ctx.clock() - _dur(last)) if last else _opt_time(req, "since")
        envelope(
            resp,
            self.hunting.search(
                q_str(req, "q", "", 4096),
                since=since,
                until=_opt_time(req, "until"),
                endpoint=uuid_param(endpoint, "endpoint") if endpoint else None,
                detections_only=q_bool(req, "detections"),
                limit=q_int(req, "limit", 100, lo=1, hi=10_000),
                cursor=q_str(req, "cursor", "", 256) or None,
            ),
        )


def _dur(text: str) -> float:
    from ..core.timefmt import parse_duration

    return parse_duration(text, name="last")


def _sql_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("query"), str) or not data["query"]:
        raise ValidationError('expected {"query": "SELECT ..."}')
    return data


class HuntSql:
    """POST /hunt/sql {query, max_rows}: read-only SQL over the events tables.

    Only `sql.roles` may run it (a read sent as POST), at most `sql.concurrency` at once (429
    beyond, so three huge queries cannot stall ingest), within `sql.timeout` and `sql.max_bytes`.
    """

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.hunting = Hunting(ctx.events)
        cfg = ctx.config.sql
        self.WRITE_ROLES = frozenset(Role(r) for r in cfg.roles)
        self._slots = threading.BoundedSemaphore(cfg.concurrency)
        self.BODY = {
            "post": JsonBody(
                _sql_body,
                {
                    "type": "object",
                    "required": ["query"],
                    "properties": {"query": {"type": "string"}, "max_rows": {"type": "integer"}},
                },
            )
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Run a read-only SQL query over stored events."""
        max_rows = req.context.body.get("max_rows", 10_000)
        if (
            not isinstance(max_rows, int)
            or isinstance(max_rows, bool)
            or not 0 < max_rows <= 100_000
        ):
            raise ValidationError("max_rows must be 1–100000")
        cfg = self.ctx.config.sql
        if not self._slots.acquire(blocking=False):
            raise TooManyRequests(
                f"{cfg.concurrency} SQL queries are running (sql.concurrency)", retry_after=2
            )
        try:
            result = self.hunting.sql(
                req.context.body["query"],
                timeout=cfg.timeout,
                max_rows=max_rows,
                max_bytes=cfg.max_bytes,
            )
        finally:
            self._slots.release()
        envelope(resp, result)


MAX_CONTAINER_VALUES = 1_000_000


def _hunt_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    rules = data.get("rules")
    if isinstance(rules, dict):
        rules = [rules]
    if not isinstance(rules, list) or not rules or not all(isinstance(r, dict) for r in rules):
        raise ValidationError("rules must be a non-empty list of Gene rules")
    for key in ("since", "until", "endpoint"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValidationError(f"{key} must be a string")
    containers = data.get("containers") or {}
    if not isinstance(containers, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in containers.values()
    ):
        raise ValidationError("containers must map names to lists of strings")
    if sum(len(v) for v in containers.values()) > MAX_CONTAINER_VALUES:
        raise ValidationError(f"containers hold more than {MAX_CONTAINER_VALUES} values")
    crit = data.get("ioc_criticality", 10)
    if not isinstance(crit, int) or isinstance(crit, bool) or not 0 <= crit <= 10:
        raise ValidationError("ioc_criticality must be 0–10")
    return dict(data, rules=rules, containers=containers)


class Stream:
    """GET /stream/events and /stream/detections: Server-Sent Events with filters.

    A WebSocket upgrade of these routes is served by `appliance.transport.websocket` on the admin
    TLS front, which runs the request through here first: same authentication, roles and filters.
    """

    QUERY = {
        "get": {
            "endpoint": "string",
            "channel": "string",
            "event_id": "integer",
            "min_criticality": "integer",
            "signature": "string",
            "limit": "integer",
        }
    }
    PRODUCES = {"get": "text/event-stream"}

    def __init__(self, ctx: AppContext, *, detections: bool) -> None:
        self.ctx = ctx
        self.detections = detections

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Stream received events as they arrive (SSE, heartbeats)."""
        endpoint = q_str(req, "endpoint", "", 64)
        event_id = req.get_param("event_id")
        if event_id is not None and not event_id.isdigit():
            raise InvalidParam("event_id must be an integer")
        flt = StreamFilter(
            detections_only=self.detections,
            endpoint=uuid_param(endpoint, "endpoint") if endpoint else "",
            channel=q_str(req, "channel", "", 256),
            event_id=int(event_id) if event_id is not None else None,
            min_criticality=q_int(req, "min_criticality", 0, hi=10),
            signature=q_str(req, "signature", "", 256),
        )
        limit = q_int(req, "limit", 0, hi=10**9)
        if req.env.get(STREAM_ENV) is True:  # a WebSocket upgrade: the admin TLS front streams
            user = req.context.user
            req.env[STREAM_ENV] = StreamRequest(flt, limit, str(getattr(user, "uuid", "")))
            resp.status = falcon.HTTP_204
            return
        sub = self.ctx.hub.subscribe(flt)
        resp.content_type = "text/event-stream"
        resp.cache_control = ["no-cache"]
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self.ctx.hub.sse(sub, max_events=limit or None)


SEARCH_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/search", Search, None),
    ("/hunt/sql", HuntSql, None),
    ("/endpoints/{uuid}/logs", lambda ctx: EndpointEvents(ctx, detections=False), None),
    ("/endpoints/{uuid}/detections", lambda ctx: EndpointEvents(ctx, detections=True), None),
    ("/stream/events", lambda ctx: Stream(ctx, detections=False), None),
    ("/stream/detections", lambda ctx: Stream(ctx, detections=True), None),
]
