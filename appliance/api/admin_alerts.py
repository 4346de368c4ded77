"""Admin API, alert triage: status, assignee and comments of detections (the console's queue).

Analysts triage: unlike the rest of the admin API, these writes are open to the analyst role.
Every change is also written to the audit log with its old and new values. An alert moved to
`false_positive` is also told to every MISP instance whose sightings are configured (type-1
sightings of the MISP IoCs its stored event carries), as `POST /misp/false-positive` does.
"""

from __future__ import annotations

from typing import Any

import falcon

from ..core.errors import InvalidParam, ValidationError
from ..misp.errors import MispSettingsError
from ..misp.integration import MispExtension
from ..runtime.context import AppContext
from ..services.attack import attack_matrix, rule_attack, techniques_for
from ..services.hunting import Hunting
from ..store import Role
from ..store.alerts import MAX_COMMENT, AlertFilter, AlertStatus, parse_status
from .common import envelope, q_int, q_str, uuid_param
from .middleware import JsonBody

__all__ = ["ALERT_ROUTES"]

TRIAGE_ROLES = frozenset({Role.ADMIN, Role.ANALYST})
MAX_BULK = 1000
_HASH_CHARS = frozenset("0123456789abcdefABCDEF")
_CHANGE_PROPS: dict[str, Any] = {
    "status": {"type": "string", "enum": [s.value for s in AlertStatus]},
    "assignee": {"type": "string", "description": "a user identifier; empty to unassign"},
    "comment": {"type": "string", "maxLength": MAX_COMMENT},
}
_REF_SCHEMA = {
    "type": "object",
    "required": ["endpoint", "event_hash"],
    "properties": {"endpoint": {"type": "string"}, "event_hash": {"type": "string"}},
}


def alert_hash(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or not set(value) <= _HASH_CHARS:
        raise InvalidParam("event_hash must be 1–128 hex digits")
    return value.lower()


def _change(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    out: dict[str, Any] = {}
    if data.get("status") is not None:
        out["status"] = parse_status(data["status"])
    if data.get("assignee") is not None:
        if not isinstance(data["assignee"], str) or len(data["assignee"]) > 256:
            raise ValidationError("assignee must be a user identifier")
        out["assignee"] = data["assignee"]
    if data.get("comment") is not None:
        text = data["comment"]
        if not isinstance(text, str) or len(text) > MAX_COMMENT:
            raise ValidationError(f"comment must be a string of at most {MAX_COMMENT} characters")
        if text.strip():
            out["comment"] = text
    if not out:
        raise ValidationError("nothing to change: give status, assignee or comment")
    return out


def _bulk(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise ValidationError('expected {"alerts": [{"endpoint", "event_hash"}, ...], ...}')
    refs = data["alerts"]
    if not 1 <= len(refs) <= MAX_BULK:
        raise ValidationError(f"alerts must hold 1 to {MAX_BULK} items")
    out = _change({k: v for k, v in data.items() if k != "alerts"})
    parsed = []
    for ref in refs:
        if not isinstance(ref, dict):
            raise ValidationError("each alert is {endpoint, event_hash}")
        parsed.append(
            (
                uuid_param(str(ref.get("endpoint", "")), "endpoint"),
                alert_hash(ref.get("event_hash")),
            )
        )
    out["refs"] = list(dict.fromkeys(parsed))
    return out


def apply_change(
    ctx: AppContext, req: falcon.Request, refs: list[tuple[str, str]], change: dict[str, Any]
) -> list[dict[str, Any]]:
    assignee = change.get("assignee")
    if assignee:
        ctx.store.users.get(assignee)  # NotFound → 404: only known users are assigned
    user = req.context.user
    now = ctx.clock()
    changes = ctx.store.alerts.update(
        refs,
        by=user.identifier,
        now=now,
        status=change.get("status"),
        assignee=assignee,
        comment=change.get("comment"),
    )
    role = str(getattr(user.role, "value", user.role))
    for c in changes:
        detail = {k: v for k, v in c.items() if k not in ("endpoint", "event_hash")}
        if detail:
            ctx.store.audit.record(
                now,
                user.identifier,
                role,
                "alert.update",
                f"{c['endpoint']}/{c['event_hash']}",
                detail,
            )
    return changes


def tell_misp(ctx: AppContext, changes: list[dict[str, Any]]) -> list[str]:
    """Queue false-positive sightings for alerts that just became false positives."""
    fps = [c for c in changes if c.get("status", [None, None])[1] == "false_positive"]
    if not fps:
        return []
    misp = ctx.extensions.get(MispExtension)
    syncs = [s for _, s in misp.instances().all()] if misp is not None else []
    if not any(s.settings.configured and s.settings.sightings_enabled for s in syncs):
        return []
    hunting = Hunting(ctx.events)
    values: set[str] = set()
    for c in fps:
        event = hunting.detection_event(c["endpoint"], c["event_hash"])
        if event is None:
            continue
        endpoint: Any = ctx.store.endpoints.find(c["endpoint"]) or {"uuid": c["endpoint"]}
        for sync in syncs:
            try:
                values.update(sync.false_positive(endpoint, event))
            except MispSettingsError:
                continue
    return sorted(values)


def _by_rule(ctx: AppContext) -> dict[str, list[dict[str, str]]]:
    """Rule → ATT&CK map, re-parsed only when the rules table changed (digest computed in SQL)."""
    key = ctx.store.db.query(
        "SELECT count(*), md5(coalesce(string_agg(name || chr(0) || text, chr(1) ORDER BY name),"
        " '')) FROM rules"
    )[0]
    cached = ctx.attack_by_rule
    if cached is not None and cached[0] == key:
        return cached[1]
    by_rule = rule_attack(ctx.store.rules.all())
    ctx.attack_by_rule = (key, by_rule)
    return by_rule


def label(ctx: AppContext, alerts: list[dict[str, Any]]) -> None:
    """`attack` of each alert: the technique ids its detection carried (`Detection.ATTACK`), or
    for detections stored before they were kept, those of its rules' Meta.ATTACK today."""
    missing = [a for a in alerts if a.get("attack") is None]
    if not missing:
        return
    by_rule = _by_rule(ctx)
    for a in missing:
        a["attack"] = techniques_for(a["signatures"], by_rule)


class AlertAttack:
    """GET /alerts/attack: detections per ATT&CK tactic and technique (with the rules behind)."""

    QUERY = {"get": {"status": "string", "hours": "integer", "endpoint": "string"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The matrix over the last `hours` (default 720) for alerts of `status` (default all)."""
        hours = q_int(req, "hours", 720, lo=1, hi=24 * 366)
        endpoint = q_str(req, "endpoint", "", 64)
        f = AlertFilter(
            status=q_str(req, "status", "all", 32),
            endpoint=uuid_param(endpoint, "endpoint") if endpoint else "",
            since=self.ctx.clock() - hours * 3600,
        )
        counts = self.ctx.store.alerts.signature_counts(f)
        data = attack_matrix(counts, _by_rule(self.ctx))
        data["hours"] = hours
        data["detections"] = sum(n for _, n in counts)
        envelope(resp, data)


class AlertList:
    """GET /alerts: the triage queue, keyset-paged (`cursor` from the previous page's `next`)."""

    QUERY = {
        "get": {
            "status": "string",
            "sort": "string",
            "endpoint": "string",
            "assignee": "string",
            "signature": "string",
            "min_criticality": "integer",
            "since": "number",
            "limit": "integer",
            "cursor": "string",
        }
    }

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of alerts (default: the open queue, newest first)."""
        endpoint = q_str(req, "endpoint", "", 64)
        since = q_str(req, "since", "", 32)
        try:
            since_f = float(since) if since else 0.0
        except ValueError as ex:
            raise InvalidParam("since must be epoch seconds") from ex
        f = AlertFilter(
            status=q_str(req, "status", "open", 32),
            sort=q_str(req, "sort", "newest", 16),
            endpoint=uuid_param(endpoint, "endpoint") if endpoint else "",
            assignee=req.get_param("assignee"),
            signature=q_str(req, "signature", "", 256),
            min_criticality=q_int(req, "min_criticality", 0, hi=10),
            since=since_f,
        )
        page = self.ctx.store.alerts.page(
            f,
            limit=q_int(req, "limit", 100, lo=1, hi=1000),
            cursor=q_str(req, "cursor", "", 512) or None,
        )
        label(self.ctx, page["alerts"])
        envelope(resp, page)


class Alert:
    """GET /alerts/{uuid}/{event_hash} (with comments); POST a change (status/assignee/comment)."""

    WRITE_ROLES = TRIAGE_ROLES

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_change, {"type": "object", "properties": _CHANGE_PROPS})}

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, uuid: str, event_hash: str
    ) -> None:
        """One alert and its comments."""
        alert = self.ctx.store.alerts.get(uuid_param(uuid), alert_hash(event_hash))
        label(self.ctx, [alert])
        envelope(resp, alert)

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, uuid: str, event_hash: str
    ) -> None:
        """Change status and/or assignee, and/or add a comment; answers the alert."""
        ref = (uuid_param(uuid), alert_hash(event_hash))
        changes = apply_change(self.ctx, req, [ref], req.context.body)
        alert = self.ctx.store.alerts.get(*ref)
        label(self.ctx, [alert])
        alert["misp_false_positive"] = tell_misp(self.ctx, changes)
        envelope(resp, alert)


class AlertBulk:
    """POST /alerts/bulk: one change to many alerts (all or nothing)."""

    WRITE_ROLES = TRIAGE_ROLES

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                _bulk,
                {
                    "type": "object",
                    "required": ["alerts"],
                    "properties": {
                        "alerts": {"type": "array", "items": _REF_SCHEMA, "maxItems": MAX_BULK},
                        **_CHANGE_PROPS,
                    },
                },
            )
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Apply the change; answers `{changed, changes}`."""
        body = req.context.body
        changes = apply_change(self.ctx, req, body["refs"], body)
        changed = sum(1 for c in changes if len(c) > 2)
        envelope(
            resp,
            {
                "changed": changed,
                "changes": changes,
                "misp_false_positive": tell_misp(self.ctx, changes),
            },
        )


ALERT_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/alerts", AlertList, None),
    ("/alerts/bulk", AlertBulk, None),
    ("/alerts/attack", AlertAttack, None),
    ("/alerts/{uuid}/{event_hash}", Alert, None),
]
