"""Admin API: suppressions made from an alert, and tried on stored events before they are saved.

`POST /alerts/{uuid}/{event_hash}/suppress` builds one suppression per rule of the alert from
the stored event's fields (`match`: image, parent, command_line, user), saves them and, with
`close`, marks the alert a false positive; with `dry_run` it saves nothing and answers what
each would have silenced over the last 30 days. `POST /suppressions/test` answers how many stored
detections of the last `days` a suppression would have silenced, with a few samples. Both are
open to analysts (triage), and audited.
"""

from __future__ import annotations

from typing import Any

import falcon

from ..core.errors import NotFound, ValidationError
from ..runtime.context import AppContext
from ..services.hunting import Hunting
from ..services.suppressing import MATCH_FIELDS, from_event, preview
from ..store import Role
from ..store.alerts import AlertStatus
from .admin_alerts import TRIAGE_ROLES, alert_hash, apply_change, label, tell_misp
from .common import envelope, uuid_param
from .middleware import JsonBody

__all__ = ["SUPPRESS_ROUTES"]

MAX_DAYS = 365
_TEXT = {"type": "string", "maxLength": 1024}


def _from_alert(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    rules = data.get("rules")
    if rules is not None and (
        not isinstance(rules, list) or not all(isinstance(r, str) and r for r in rules)
    ):
        raise ValidationError("rules must be a list of rule names (default: the alert's)")
    match = data.get("match", ["image"])
    if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
        raise ValidationError(f"match must be a list of {', '.join(MATCH_FIELDS)}")
    for key in ("group", "comment"):
        if not isinstance(data.get(key, ""), str):
            raise ValidationError(f"{key} must be a string")
    return {
        "rules": rules,
        "match": match,
        "group": data.get("group", ""),
        "comment": data.get("comment", ""),
        "close": bool(data.get("close", False)),
        "dry_run": bool(data.get("dry_run", False)),
    }


def _test(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object: a suppression, and days")
    days = data.get("days", 30)
    if not isinstance(days, int | float) or isinstance(days, bool) or not 0 < days <= MAX_DAYS:
        raise ValidationError(f"days must be a number in (0, {MAX_DAYS}]")
    return {"days": float(days), "suppression": {k: v for k, v in data.items() if k != "days"}}


def _stored_event(ctx: AppContext, endpoint: str, event_hash: str) -> dict[str, Any]:
    event = Hunting(ctx.events).detection_event(endpoint, event_hash)
    if event is None:
        raise NotFound(f"no stored event {event_hash} for endpoint {endpoint}")
    return event


class AlertSuppress:
    """POST /alerts/{uuid}/{event_hash}/suppress: suppressions from this alert's event."""

    WRITE_ROLES = TRIAGE_ROLES

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        schema = {
            "type": "object",
            "properties": {
                "rules": {"type": "array", "items": _TEXT},
                "match": {"type": "array", "items": {"enum": list(MATCH_FIELDS)}},
                "group": _TEXT,
                "comment": _TEXT,
                "close": {"type": "boolean"},
                "dry_run": {"type": "boolean"},
            },
        }
        self.BODY = {"post": JsonBody(_from_alert, schema)}

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, uuid: str, event_hash: str
    ) -> None:
        """Save the suppressions; answers them and, with `close`, the alert marked."""
        ref = (uuid_param(uuid), alert_hash(event_hash))
        body = req.context.body
        alert = self.ctx.store.alerts.get(*ref)
        rules = body["rules"] or [str(s) for s in alert["signatures"]]
        unknown = sorted(set(rules) - {str(s) for s in alert["signatures"]})
        if unknown:
            raise ValidationError(f"rules: {unknown[0]!r} did not fire on this alert")
        docs = from_event(
            _stored_event(self.ctx, *ref),
            rules=rules,
            match=body["match"],
            group=body["group"],
            comment=body["comment"] or f"from alert {ref[0]}/{ref[1]}",
        )
        if body["dry_run"]:
            since = self.ctx.clock() - 30 * 86400.0
            hunting = Hunting(self.ctx.events)
            tests = [preview(d, hunting, since=since) for d in docs]
            envelope(resp, {"suppressions": docs, "tests": tests, "saved": False})
            return
        saved = [self.ctx.tuning.add(d) for d in docs]
        user = req.context.user
        self.ctx.store.audit.record(
            self.ctx.clock(),
            user.identifier,
            str(getattr(user.role, "value", user.role)),
            "alert.suppress",
            f"{ref[0]}/{ref[1]}",
            {"suppressions": [s["id"] for s in saved]},
        )
        out: dict[str, Any] = {"suppressions": saved, "saved": True}
        if body["close"]:
            change = {"status": AlertStatus.FALSE_POSITIVE, "comment": "suppressed"}
            changes = apply_change(self.ctx, req, [ref], change)
            out["misp_false_positive"] = tell_misp(self.ctx, changes)
        out["alert"] = self.ctx.store.alerts.get(*ref)
        label(self.ctx, [out["alert"]])
        envelope(resp, out)


class SuppressionTest:
    """POST /suppressions/test: stored detections a suppression would silence (nothing saved)."""

    WRITE_ROLES = frozenset({Role.ADMIN, Role.ANALYST})

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_test, {"type": "object"})}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """`{scanned, matched, truncated, samples}` over the last `days` (default 30)."""
        body = req.context.body
        since = self.ctx.clock() - body["days"] * 86400.0
        envelope(resp, preview(body["suppression"], Hunting(self.ctx.events), since=since))


SUPPRESS_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/alerts/{uuid}/{event_hash}/suppress", AlertSuppress, None),
    ("/suppressions/test", SuppressionTest, None),
]
