"""The console as a built-in extension: `ctx.extensions.add(console_for(ctx))`.

`Console` bundles the session authority (`ConsoleAuth`) and the detection overview; it exposes
`resolve_session(req)`, which is all the manager's `AdminAuth` middleware needs, and
`admits_cookies(header)` for connection admission; `mount(app)` adds its routes. `console_for(ctx)`
builds it from the manager's services: API keys are checked by `ctx.identity.authenticate`, open
sessions are re-read from the user table on every request (a deleted or demoted user is logged out
at once), aggregates read the fleet store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import falcon

from appliance.console.auth import SESSION_COOKIE, ConsoleAuth
from appliance.console.overview import DetectionOverview
from appliance.console.sessions import SessionStore

if TYPE_CHECKING:
    from appliance.api.openapi import FalconApp
    from appliance.runtime.context import AppContext
    from appliance.runtime.extension import SessionAuthority
    from appliance.store.models import User

__all__ = ["Console", "console_for"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Console:
    """What the admin app needs from the console."""

    auth: ConsoleAuth
    overview: DetectionOverview | None = None
    name: str = "console"

    @property
    def sessions(self) -> SessionAuthority:
        return self

    def resolve_session(self, req: falcon.Request) -> User | None:
        """The identity behind the request's session cookie (see ConsoleAuth)."""
        user: User | None = self.auth.resolve_session(req)
        return user

    def admits_cookies(self, cookies: str) -> bool:
        """True when the `Cookie` header names an open session (not touched: admission only)."""
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                return self.auth.sessions.get(value, touch=False) is not None
        return False

    def mount(self, app: FalconApp) -> None:
        from appliance.console.resources import add_console_routes

        add_console_routes(app, self)

    def start(self) -> None:
        return None  # sessions live in memory; nothing runs in the background

    def stop(self) -> None:
        return None


def _source(ctx: AppContext, req: falcon.Request) -> str:
    """The client's address as the TLS front saw it (the backend only sees loopback)."""
    conn = ctx.identities.resolve(req.env)
    return conn.peer_ip if conn else str(req.remote_addr or "")


def console_for(ctx: AppContext, *, secure_cookies: bool = True) -> Console:
    """Build the console over a manager context (call once, at startup)."""
    users = ctx.store.users
    auth = ConsoleAuth(
        ctx.identity.authenticate,
        SessionStore(clock=ctx.clock),
        secure_cookies=secure_cookies,
        refresh=lambda user: users.get(user.uuid),
        source_of=lambda req: _source(ctx, req),
    )
    overview = DetectionOverview(ctx.store.db.query, clock=ctx.clock)
    return Console(auth=auth, overview=overview)
