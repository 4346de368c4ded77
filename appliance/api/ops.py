"""Operations routes on both listeners: /healthz, /metrics (Prometheus text), /openapi.json."""

from __future__ import annotations

from typing import Any

import falcon

from ..runtime.context import AppContext
from .common import json_raw, raw

__all__ = ["Health", "MetricsResource", "OpenApi"]


class Health:
    """GET /healthz: 200 while the stores answer.

    ``status`` is ``degraded`` (still 200: events are still accepted durably) when the event
    index reports an indexing error; ``index`` carries its backlog and ``ok``. SECURITY: the
    route needs no credentials, so the error text stays in the logs and ``GET /stats``.
    """

    auth_exempt = True
    client_cert_optional = True
    RAW_JSON = True

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Liveness and readiness."""
        self.ctx.store.db.query("SELECT 1")
        body: dict[str, Any] = {
            "status": "ok",
            "uptime": round(self.ctx.clock() - self.ctx.metrics.started, 3),
        }
        health = getattr(self.ctx.events, "health", None)
        if callable(health):
            try:
                index = health()
                backlog, ok = index.backlog, index.ok
            except Exception:  # noqa: BLE001 - e.g. closed while shutting down
                backlog, ok = None, False
            body["index"] = {"backlog": backlog, "ok": ok}
            if not ok:
                body["status"] = "degraded"
        disk = self.ctx.disk
        if disk is not None:
            body["disk"] = {"free": disk.free(), "ok": disk.ok}
            if not disk.ok:
                body["status"] = "degraded"
        json_raw(resp, body)


class MetricsResource:
    """GET /metrics: Prometheus text exposition."""

    PRODUCES = {"get": "text/plain; version=0.0.4"}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Prometheus metrics."""
        raw(resp, self.ctx.metrics.render(), "text/plain; version=0.0.4")


class OpenApi:
    """GET /openapi.json: the OpenAPI 3.1 document of this listener, generated from the routes."""

    auth_exempt = True
    client_cert_optional = True
    RAW_JSON = True

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """This API's OpenAPI 3.1 document."""
        json_raw(resp, self.document)
