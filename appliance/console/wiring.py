"""The console as one object the manager holds: `AppContext.console = console_for(ctx)`.

`Console` bundles the session authority (`ConsoleAuth`) and the detection overview; it exposes
`resolve_session(req)`, which is all the manager's `AdminAuth` middleware needs, and is what
`add_console_routes` mounts. `console_for(ctx)` builds it from the manager's services: API keys are
checked by `ctx.identity.authenticate`, open sessions are re-read from the user table on every
request (a deleted or demoted user is logged out at once), aggregates read the fleet store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import falcon

from appliance.console.auth import ConsoleAuth
from appliance.console.overview import DetectionOverview
from appliance.console.sessions import SessionStore

if TYPE_CHECKING:
    from appliance.runtime.context import AppContext

__all__ = ["Console", "console_for"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Console:
    """What the admin app needs from the console."""

    auth: ConsoleAuth
    overview: DetectionOverview | None = None

    def resolve_session(self, req: falcon.Request) -> Any | None:
        """The identity behind the request's session cookie (see ConsoleAuth)."""
        return self.auth.resolve_session(req)


def console_for(ctx: AppContext, *, secure_cookies: bool = True) -> Console:
    """Build the console over a manager context (call once, at startup)."""
    users = ctx.store.users
    auth = ConsoleAuth(
        ctx.identity.authenticate,
        SessionStore(clock=ctx.clock),
        secure_cookies=secure_cookies,
        refresh=lambda user: users.get(user.uuid),
    )
    overview = DetectionOverview(ctx.store.db.query, clock=ctx.clock)
    return Console(auth=auth, overview=overview)
