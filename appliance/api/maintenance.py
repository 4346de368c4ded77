"""Admin maintenance routes: `POST /maintenance/retention` runs one retention pass now."""

from __future__ import annotations

from typing import Any

import falcon

from ..core.errors import Conflict
from ..runtime.context import AppContext
from ..store import Role
from .common import envelope

__all__ = ["MAINTENANCE_ROUTES"]


class RetentionResource:
    """POST /maintenance/retention (admins only)."""

    WRITE_ROLES = frozenset({Role.ADMIN})

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Run one retention pass now ([retention] settings) and return what it removed.

        409 while a pass (the periodic one or another request) is running.
        """
        result = self.ctx.retention.run_once(blocking=False)
        if result is None:
            raise Conflict("a retention pass is already running")
        envelope(resp, result.to_dict())


MAINTENANCE_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/maintenance/retention", RetentionResource, None),
]
