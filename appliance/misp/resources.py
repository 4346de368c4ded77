"""Admin API of the MISP sync: settings, connection test, status, sync now.

| route | method | role | body → data |
|---|---|---|---|
| /misp/settings | GET | admin | – → settings without the API key (`api_key_set`) |
| /misp/settings | PUT | admin | partial settings → the new settings |
| /misp/test | POST | admin | `{}` or settings to try → `{ok, error, version, user, role, …}` |
| /misp/status | GET | any | – → last runs, counts, errors, queue sizes |
| /misp/sync | POST | admin | `{"full": bool}` → status after a pull, flush and push |
| /misp/false-positive | POST | admin, analyst | `{"event": {...}}` → `{"values"}` (type 1) |
| /misp/dead-letters | GET | admin | `?stream=reports` → items refused or failing too often |
| /misp/dead-letters/retry | POST | admin | `{"ids": [...]}` (none: all) → `{"requeued": n}` |
| /misp/dead-letters/discard | POST | admin | `{"ids": [...]}` (none: all) → `{"discarded": n}` |

Resources translate `MispError` into the manager's domain errors (422 invalid settings, 409 not
configured); the manager's error table renders them in the `{data, message, error}` envelope. The
service is attached to the context on the first request (or when the worker starts), so building the
app touches nothing on disk.
"""

from __future__ import annotations

from typing import Any

import falcon

from ..errors import Conflict, ValidationError
from ..middleware import ALL_ROLES, JsonBody
from ..resources.common import envelope
from ..store import Role
from .errors import MispSettingsError
from .integration import attach_misp
from .service import MispSync
from .settings import SETTINGS

__all__ = ["MISP_ROUTES"]

ADMIN_ONLY = frozenset({Role.ADMIN})
_SETTINGS_SCHEMA = {
    "type": "object",
    "properties": {s.name: {"description": s.help} for s in SETTINGS},
}


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    return data


def _sync_body(data: Any) -> bool:
    body = _object(data)
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise ValidationError("full must be true or false")
    return full


class _MispResource:
    """Base of the /misp resources: the context's MispSync, attached on first use."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    @property
    def sync(self) -> MispSync:
        return attach_misp(self.ctx)


class MispSettingsResource(_MispResource):
    """GET/PUT /misp/settings."""

    READ_ROLES = ADMIN_ONLY
    WRITE_ROLES = ADMIN_ONLY
    BODY = {"put": JsonBody(_object, _SETTINGS_SCHEMA)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The MISP settings (the API key is never returned)."""
        envelope(resp, self.sync.settings.to_public_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Change some MISP settings; the API key is stored encrypted."""
        try:
            settings = self.sync.update_settings(req.context.body)
        except MispSettingsError as ex:
            raise ValidationError(str(ex)) from ex
        envelope(resp, settings.to_public_dict())


class MispTestResource(_MispResource):
    """POST /misp/test."""

    WRITE_ROLES = ADMIN_ONLY
    BODY = {"post": JsonBody(_object, _SETTINGS_SCHEMA)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Test the connection with these settings.

        The stored settings, or them patched by the body; never stored.
        """
        envelope(resp, self.sync.test_connection(req.context.body))


class MispStatusResource(_MispResource):
    """GET /misp/status."""

    READ_ROLES = ALL_ROLES

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Last runs, counts, errors and queue sizes of the MISP sync."""
        envelope(resp, self.sync.status())


class MispSyncResource(_MispResource):
    """POST /misp/sync."""

    WRITE_ROLES = ADMIN_ONLY
    BODY = {
        "post": JsonBody(
            _sync_body, {"type": "object", "properties": {"full": {"type": "boolean"}}}
        )
    }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Test the connection with these settings.

        The stored settings, or them patched by the body; never stored.
        """
        try:
            status = self.sync.sync_now(full=req.context.body)
        except MispSettingsError as ex:
            raise Conflict(str(ex)) from ex
        envelope(resp, status)


def _ids_body(data: Any) -> list[str] | None:
    body = _object(data)
    ids = body.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationError("ids must be a list of dead-letter ids")
    return ids


_IDS_SCHEMA = {
    "type": "object",
    "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
}


def _fp_body(data: Any) -> dict[str, Any]:
    body = _object(data)
    event = body.get("event")
    if not isinstance(event, dict):
        raise ValidationError("event must be the detection's event object")
    endpoint = body.get("endpoint")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ValidationError("endpoint must be an endpoint uuid")
    return {"event": event, "endpoint": endpoint}


class MispFalsePositiveResource(_MispResource):
    """POST /misp/false-positive."""

    WRITE_ROLES = frozenset({Role.ADMIN, Role.ANALYST})
    BODY = {
        "post": JsonBody(
            _fp_body,
            {
                "type": "object",
                "required": ["event"],
                "properties": {"event": {"type": "object"}, "endpoint": {"type": "string"}},
            },
        )
    }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Sight the MISP IoCs of a detection closed as a false positive (type 1)."""
        body = req.context.body
        event = body["event"]
        ep_uuid = body["endpoint"] or _event_endpoint(event)
        endpoint: Any = {"uuid": ep_uuid}
        found = self.ctx.store.endpoints.find(ep_uuid) if ep_uuid else None
        if found is not None:
            endpoint = found
        try:
            values = self.sync.false_positive(endpoint, event)
        except MispSettingsError as ex:
            raise Conflict(str(ex)) from ex
        envelope(resp, {"values": values})


def _event_endpoint(event: dict[str, Any]) -> str:
    """The endpoint uuid the manager stamped on a stored event (`Event.EdrData.Endpoint.UUID`)."""
    root = event.get("Event", event)
    edr = root.get("EdrData") if isinstance(root, dict) else None
    ep = edr.get("Endpoint") if isinstance(edr, dict) else None
    return str(ep.get("UUID") or ep.get("uuid") or "") if isinstance(ep, dict) else ""


class MispDeadLettersResource(_MispResource):
    """GET /misp/dead-letters."""

    READ_ROLES = ADMIN_ONLY

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Items MISP refused, or that failed too often, with their errors."""
        stream = req.get_param("stream")
        if stream not in (None, "reports", "sightings"):
            raise ValidationError("stream must be reports or sightings")
        envelope(resp, self.sync.dead_letters(stream))


class MispDeadLetterRetryResource(_MispResource):
    """POST /misp/dead-letters/retry."""

    WRITE_ROLES = ADMIN_ONLY
    BODY = {"post": JsonBody(_ids_body, _IDS_SCHEMA)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Put dead letters back in their queues (after fixing the cause)."""
        envelope(resp, {"requeued": self.sync.retry_dead_letters(req.context.body)})


class MispDeadLetterDiscardResource(_MispResource):
    """POST /misp/dead-letters/discard."""

    WRITE_ROLES = ADMIN_ONLY
    BODY = {"post": JsonBody(_ids_body, _IDS_SCHEMA)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Forget dead letters."""
        envelope(resp, {"discarded": self.sync.discard_dead_letters(req.context.body)})


MISP_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/misp/settings", MispSettingsResource, None),
    ("/misp/test", MispTestResource, None),
    ("/misp/status", MispStatusResource, None),
    ("/misp/sync", MispSyncResource, None),
    ("/misp/false-positive", MispFalsePositiveResource, None),
    ("/misp/dead-letters", MispDeadLettersResource, None),
    ("/misp/dead-letters/retry", MispDeadLetterRetryResource, None),
    ("/misp/dead-letters/discard", MispDeadLetterDiscardResource, None),
]
