"""OpenAPI 3.1 documents generated from a Falcon app's router and its resources' declarations.

Per responder (`on_<method>[_<suffix>]`) the generator reads from the resource:
`BODY[key]` (JsonBody → JSON request body schema), `RAW_BODY[key]` (content type of a raw body),
`QUERY[key]` (name → JSON type), `PRODUCES[key]` (success content type, default JSON),
`NO_CONTENT` (keys that may answer 204), and the responder's docstring (summary). `key` is the
responder name without `on_`, e.g. `get_sha256`. Error responses use the JSON envelope.
"""

from __future__ import annotations

import re
from typing import Any

import falcon
from falcon.inspect import inspect_compiled_router
from falcon.routing import CompiledRouter

FalconApp = falcon.App[falcon.Request, falcon.Response]

__all__ = ["ENVELOPE_SCHEMA", "FalconApp", "app_router", "build_openapi", "iter_routes"]

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data", "message", "error"],
    "properties": {"data": {}, "message": {"type": "string"}, "error": {"type": "string"}},
}
ERROR_CODES = {
    "400": "malformed request (JSON, gzip, parameter)",
    "401": "missing or unknown credentials",
    "403": "credentials valid but not allowed",
    "404": "no such object",
    "405": "method not allowed",
    "409": "conflicts with existing data",
    "413": "body, line or file over its documented limit",
    "415": "unsupported Content-Encoding or Content-Type",
    "422": "well-formed body with wrong shape or values",
    "503": "temporarily unavailable (stream cap, shutting down)",
}
_TEMPLATE_FIELD = re.compile(r"{(\w+)(?::[^}]*)?}")
_METHODS = ("get", "put", "post", "delete", "patch", "head")


def app_router(app: FalconApp) -> CompiledRouter:
    """The app's router: the one private reach-in into Falcon, isolated here.

    Falcon has no public accessor for it; ``falcon.inspect.inspect_routes`` reads the same
    attribute. ``tests/appliance/api/test_openapi.py`` fails if a Falcon release renames it.
    """
    router = getattr(app, "_router", None)
    if not isinstance(router, CompiledRouter):
        raise TypeError(f"unsupported Falcon app: its router is {type(router).__name__}")
    return router


def iter_routes(app: FalconApp) -> list[tuple[str, Any, dict[str, Any]]]:
    """Every (uri template, resource, {method: responder}) the app's router holds.

    Public Falcon API over the router: ``falcon.inspect.inspect_compiled_router`` lists the
    routes and ``CompiledRouter.find`` gives each one's resource and responders.
    """
    router = app_router(app)
    out: list[tuple[str, Any, dict[str, Any]]] = []
    for route in inspect_compiled_router(router):
        found = router.find(route.path)
        if found is None:  # a converter that refuses its own field name: say so, skip nothing
            raise TypeError(f"route {route.path!r} does not resolve to itself")
        resource, method_map, _params, template = found
        if not method_map:
            continue
        responders: dict[str, Any] = {
            m.lower(): fn
            for m, fn in method_map.items()
            if getattr(fn, "__self__", None) is resource
            and str(getattr(fn, "__name__", "")).startswith("on_")
        }
        out.append((template or route.path, resource, responders))
    return out


def _key(fn: Any) -> str:
    return str(fn.__name__)[3:]


def _operation(path: str, resource: Any, method: str, fn: Any, admin: bool) -> dict[str, Any]:
    key = _key(fn)
    doc = (fn.__doc__ or resource.__class__.__doc__ or "").strip().splitlines()
    op: dict[str, Any] = {
        "operationId": f"{method}{re.sub(r'[^A-Za-z0-9]+', '_', path)}",
        "summary": doc[0] if doc else f"{method.upper()} {path}",
        "tags": [path.strip("/").split("/")[0] or "root"],
    }
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _TEMPLATE_FIELD.findall(path)
    ]
    for name, kind in (getattr(resource, "QUERY", {}) or {}).get(key, {}).items():
        params.append({"name": name, "in": "query", "required": False, "schema": {"type": kind}})
    if params:
        op["parameters"] = params
    body = (getattr(resource, "BODY", {}) or {}).get(method)  # BodyParser keys on the method
    raw_body = (getattr(resource, "RAW_BODY", {}) or {}).get(key)
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body.schema or {}}},
        }
    elif raw_body is not None:
        op["requestBody"] = {"required": True, "content": {raw_body: {"schema": {}}}}
    produces = (getattr(resource, "PRODUCES", {}) or {}).get(key, falcon.MEDIA_JSON)
    content: dict[str, Any] = {}
    for media in produces if isinstance(produces, tuple) else (produces,):
        if media == falcon.MEDIA_JSON:
            schema: dict[str, Any] = (
                ENVELOPE_SCHEMA if admin and not getattr(resource, "RAW_JSON", False) else {}
            )
        else:
            schema = {"type": "string"}
        content[media] = {"schema": schema}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    if method in ("put", "post"):
        responses["201"] = {"description": "Created", "content": content}
    if key in getattr(resource, "NO_CONTENT", ()) or method == "get" and not admin:
        responses["204"] = {"description": "nothing to send"}
    err = {"application/json": {"schema": ENVELOPE_SCHEMA}}
    for code, text in ERROR_CODES.items():
        responses[code] = {"description": text, "content": err}
    op["responses"] = responses
    return op


def build_openapi(
    app: FalconApp, *, title: str, admin: bool, version: str = "0.1.0"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`."""
    paths: dict[str, dict[str, Any]] = {}
    for template, resource, responders in iter_routes(app):
        path = _TEMPLATE_FIELD.sub(r"{\1}", template)
        item = paths.setdefault(path, {})
        for method, fn in sorted(responders.items()):
            if method in _METHODS:
                item[method] = _operation(template, resource, method, fn, admin)
    schemes: dict[str, Any]
    security: list[dict[str, list[str]]]
    if admin:
        schemes = {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "legacyApiKey": {"type": "apiKey", "in": "header", "name": "Api-Key"},
        }
        security = [{"apiKey": []}, {"legacyApiKey": []}]
    else:
        schemes = {
            "mutualTLS": {
                "type": "mutualTLS",
                "description": "client certificate issued by this manager",
            }
        }
        security = [{"mutualTLS": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": schemes, "schemas": {"Envelope": ENVELOPE_SCHEMA}},
        "security": security,
    }
