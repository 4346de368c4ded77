"""Composition root: `create_app(ctx, api)` builds the admin or the endpoint Falcon app.

It only adds middleware, routes and the single error-handler table; services live in `ctx`.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

import falcon
import orjson

from ..core.errors import ApplianceError
from ..runtime.context import AppContext
from .admin import add_admin_routes
from .endpoint_api import add_endpoint_routes
from .middleware import (
    AdminAuth,
    AuditTrail,
    BodyParser,
    EndpointIdentity,
    PathNormalizer,
    RequestLog,
)
from .openapi import FalconApp, build_openapi
from .ops import Health, MetricsResource, OpenApi

__all__ = ["Api", "create_app"]

logger = logging.getLogger(__name__)


class Api(enum.Enum):
    ADMIN = "admin"  # HTTPS + API keys (and the console)
    ENDPOINT = "endpoint"  # mutual TLS, agents


def _render(resp: falcon.Response, status: int, error: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps({"data": None, "message": "NOK", "error": error})


def _domain_error(
    req: falcon.Request, resp: falcon.Response, ex: ApplianceError, params: dict[str, Any]
) -> None:
    if ex.status >= 500:
        logger.error("%s %s failed: %s", req.method, req.path, ex, exc_info=ex)
    _render(resp, ex.status, str(ex))
    if ex.retry_after > 0:
        resp.set_header("Retry-After", str(ex.retry_after))


def _http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict[str, Any]
) -> None:
    _render(resp, ex.status_code, ex.description or ex.title or "error")
    if ex.headers:
        resp.set_headers(ex.headers)


def _unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]
) -> None:
    logger.error("%s %s: unexpected error", req.method, req.path, exc_info=ex)
    _render(resp, 500, "internal server error")


class SecurityHeaders:
    """Headers on every response: no MIME sniffing, no framing, no referrer leaks."""

    HEADERS = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        for name, value in self.HEADERS.items():
            if resp.get_header(name) is None:
                resp.set_header(name, value)


def create_app(ctx: AppContext, api: Api = Api.ADMIN) -> FalconApp:
    """Build the Falcon app of one listener."""
    body = BodyParser(ctx.config.limits.json_body)
    if api is Api.ENDPOINT:
        middleware: list[Any] = [
            PathNormalizer(),
            RequestLog(api.value),
            EndpointIdentity(ctx.identities, ctx.identity),
            body,
        ]
    else:
        middleware = [
            PathNormalizer(),
            RequestLog(api.value),
            AdminAuth(ctx.identity, ctx.extensions.sessions, ctx.identities),
            AuditTrail(ctx.store.audit, ctx.clock),
            body,
        ]
    app = falcon.App(middleware=[SecurityHeaders(), *middleware])
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.secure_cookies_by_default = True
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(ApplianceError, _domain_error)
    app.add_route("/healthz", Health(ctx))
    app.add_route("/metrics", MetricsResource(ctx))
    if api is Api.ENDPOINT:
        add_endpoint_routes(app, ctx)
        title = "Heron endpoint API (mutual TLS)"
    else:
        add_admin_routes(app, ctx)
        for extension in ctx.extensions:  # MISP sync, the console
            extension.mount(app)
        title = "Heron admin API"
    openapi = OpenApi({})
    app.add_route("/openapi.json", openapi)
    openapi.document = build_openapi(app, title=title, admin=api is Api.ADMIN)
    return app
