"""The web console: a single-page UI served by the manager's admin listener.

`ConsoleAuth` logs browsers in with an API key and resolves their session cookie (with CSRF checks)
into the same identity an `X-Api-Key` header would give; `add_console_routes` mounts the page, its
static files and the login/logout/session routes. The page itself talks to the admin API.
"""

from __future__ import annotations

from appliance.console.assets import CSP, SECURITY_HEADERS, STATIC_DIR, AssetCatalog
from appliance.console.auth import (
    CONSOLE_ROLES,
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    ConsoleAuth,
)
from appliance.console.overview import DetectionOverview
from appliance.console.resources import PREFIX, add_console_routes
from appliance.console.sessions import Session, SessionStore
from appliance.console.wiring import Console, console_for

__all__ = [
    "CONSOLE_ROLES",
    "CSP",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "PREFIX",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "STATIC_DIR",
    "AssetCatalog",
    "Console",
    "ConsoleAuth",
    "DetectionOverview",
    "Session",
    "SessionStore",
    "add_console_routes",
    "console_for",
]
