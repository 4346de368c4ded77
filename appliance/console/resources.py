"""Falcon resources of the web console and the function that mounts them.

Routes (all under `/console`):

| Method | Path                      | What                                                     |
|--------|---------------------------|----------------------------------------------------------|
| GET    | /console, /console/       | the single page (index.html)                             |
| GET    | /console/static/{path}    | a catalogued static file (JS modules, CSS, SVG)          |
| POST   | /console/api/login        | body `{"api_key": …}` → session + CSRF cookies           |
| POST   | /console/api/logout       | ends the session (CSRF header required)                  |
| GET    | /console/api/session      | who is logged in, role, CSRF token, expiry               |
| GET    | /console/api/overview     | detections over time, per rule, per endpoint (charts)    |

JSON answers use the admin API envelope `{"data", "message", "error"}`. Everything else the console
shows comes from the admin API itself, called by the page with the session cookie.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import falcon

from appliance.api.middleware import JsonBody
from appliance.console.assets import AssetCatalog, apply_security_headers
from appliance.console.auth import ConsoleAuth
from appliance.console.overview import OverviewResource
from appliance.core.errors import MalformedBody

if TYPE_CHECKING:  # wiring mounts these routes: no import back at run time
    from appliance.console.wiring import Console

__all__ = ["PREFIX", "add_console_routes"]

logger = logging.getLogger(__name__)

PREFIX = "/console"
MAX_LOGIN_BODY = 4096
LOGIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["api_key"],
    "properties": {"api_key": {"type": "string", "minLength": 1, "maxLength": 512}},
}
SESSION_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string", "enum": ["admin", "analyst"]},
        "csrf_token": {"type": "string"},
        "created": {"type": "number"},
        "expires": {"type": "number"},
    },
}
_MISSING = object()


def _login_body(data: Any) -> dict[str, Any]:
    """Converter for the manager's body middleware: a JSON object is all we need."""
    if not isinstance(data, dict):
        raise MalformedBody("login body must be a JSON object")
    return data


def _envelope(resp: falcon.Response, data: Any) -> None:
    resp.media = {"data": data, "message": "OK", "error": ""}
    resp.cache_control = ["no-store"]
    apply_security_headers(resp)


class PageResource:
    """GET /console and /console/: the single-page application shell."""

    auth_exempt = True  # the shell holds no data; the login form is part of it
    PRODUCES = {"get": "text/html"}

    def __init__(self, catalog: AssetCatalog) -> None:
        self._catalog = catalog

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The console page."""
        self._catalog.serve(req, resp, "index.html")


class AssetResource:
    """GET /console/static/{path}: one file of the catalog, by exact relative path."""

    auth_exempt = True
    PRODUCES = {"get": "application/octet-stream"}

    def __init__(self, catalog: AssetCatalog) -> None:
        self._catalog = catalog

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        """A static file of the console (JS module, CSS, SVG)."""
        self._catalog.serve(req, resp, path)


class LoginResource:
    """POST /console/api/login: exchange an API key for a session cookie."""

    auth_exempt = True  # the manager's auth middleware lets this one through
    BODY = {"post": JsonBody(_login_body, LOGIN_SCHEMA, max_size=MAX_LOGIN_BODY)}

    def __init__(self, auth: ConsoleAuth) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Log in with an API key: sets the session and CSRF cookies."""
        # Security: JSON only, so a cross-site HTML form cannot log a victim in.
        if req.content_type is None or not req.content_type.startswith("application/json"):
            raise MalformedBody("login expects a JSON body")
        body: Any = getattr(req.context, "body", _MISSING)  # parsed by the manager's BodyParser
        if body is _MISSING:
            if (req.content_length or 0) > MAX_LOGIN_BODY:
                raise MalformedBody("login body too large")
            try:
                body = _login_body(req.get_media())
            except falcon.MediaMalformedError as ex:
                raise MalformedBody("login body is not valid JSON") from ex
        key = body.get("api_key") or body.get("key") or ""
        if not isinstance(key, str):
            raise MalformedBody("api_key must be a string")
        sid, session = self._auth.login(str(key), self._auth.source_of(req))
        self._auth.set_cookies(resp, sid, session)
        store = self._auth.sessions
        _envelope(resp, session.to_dict(lifetime=store.lifetime, idle_timeout=store.idle_timeout))


class LogoutResource:
    """POST /console/api/logout: end the session and expire the cookies."""

    auth_exempt = True

    def __init__(self, auth: ConsoleAuth) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Log out: ends the session and expires the cookies."""
        session = self._auth.session_for(req)
        if session is not None:
            self._auth.check_csrf(req, session)
            self._auth.logout(req)
        self._auth.clear_cookies(resp)
        _envelope(resp, None)


class SessionResource:
    """GET /console/api/session: the logged-in identity, its role and CSRF token.

    `data` is null when the browser has no live session (a 200, so that the page's first probe
    does not log a failed request in the browser console).
    """

    auth_exempt = True

    def __init__(self, auth: ConsoleAuth) -> None:
        self._auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The current console session, or null."""
        session = self._auth.session_for(req)
        if session is None:
            _envelope(resp, None)
            return
        store = self._auth.sessions
        _envelope(resp, session.to_dict(lifetime=store.lifetime, idle_timeout=store.idle_timeout))


def add_console_routes(
    app: falcon.App[Any, Any],
    console: Console | ConsoleAuth,
    *,
    catalog: AssetCatalog | None = None,
) -> None:
    """Mount the console's routes on the admin app.

    The manager's authentication middleware must skip resources with `auth_exempt = True` (they
    do their own checks) and call `console.resolve_session(req)` when no API key header is present.
    The overview route is mounted when the console has a detection overview.
    """
    if isinstance(console, ConsoleAuth):
        auth, overview = console, None
    else:
        auth, overview = console.auth, console.overview
    catalog = catalog if catalog is not None else AssetCatalog()
    page = PageResource(catalog)
    app.add_route(PREFIX, page)
    app.add_route(f"{PREFIX}/", page)
    app.add_route(f"{PREFIX}/static/{{path:path}}", AssetResource(catalog))
    app.add_route(f"{PREFIX}/api/login", LoginResource(auth))
    app.add_route(f"{PREFIX}/api/logout", LogoutResource(auth))
    app.add_route(f"{PREFIX}/api/session", SessionResource(auth))
    if overview is not None:
        app.add_route(f"{PREFIX}/api/overview", OverviewResource(overview))
    logger.info("web console mounted at %s/ (%d assets)", PREFIX, len(catalog))
