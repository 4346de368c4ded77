"""Admin API, tuning side: per-rule suppressions and the noisiest-rules view."""

from __future__ import annotations

from typing import Any

import falcon

from ..core.errors import ValidationError
from ..runtime.context import AppContext
from .common import envelope, q_int
from .middleware import JsonBody

__all__ = ["TUNING_ROUTES"]

_SUPPRESSION_SCHEMA = {
    "type": "object",
    "required": ["rule"],
    "properties": {
        k: {"type": "string"}
        for k in (
            "rule",
            "image_prefix",
            "parent_prefix",
            "command_line_regex",
            "user",
            "group",
            "comment",
        )
    },
}


def _object(data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    return data


class Suppressions:
    """GET /suppressions (all), POST /suppressions (one; validated, gets an id)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_object, _SUPPRESSION_SCHEMA)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List the suppressions."""
        envelope(resp, self.ctx.tuning.all())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Add a suppression; agents of its group (all if none) pick it up by hash."""
        envelope(resp, self.ctx.tuning.add(req.context.body))


class Suppression:
    """DELETE /suppressions/{sid}."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        """Delete one suppression."""
        self.ctx.tuning.delete(sid)
        envelope(resp, {"deleted": sid})


class NoisiestRules:
    """GET /stats/rules?days=1&limit=50: detections and artifact bytes per rule."""

    QUERY = {"get": {"days": "integer", "limit": "integer"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The noisiest rules of the last days."""
        envelope(
            resp,
            self.ctx.tuning.noisiest_rules(
                days=float(q_int(req, "days", 1, lo=1, hi=365)),
                limit=q_int(req, "limit", 50, lo=1, hi=1000),
            ),
        )


TUNING_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/suppressions", Suppressions, None),
    ("/suppressions/{sid}", Suppression, None),
    ("/stats/rules", NoisiestRules, None),
]
