"""Admin API of the MISP sync: settings, connection test, status, sync now.

| route | method | role | body → data |
|---|---|---|---|
| /misp/settings | GET | admin | – → settings without the API key (`api_key_set`) |
| /misp/settings | PUT | admin | partial settings → the new settings |
| /misp/test | POST | admin | `{}` or settings to try → `{ok, error, version, user, role, …}` |
| /misp/status | GET | any | – → last runs, counts, errors, queue sizes |
| /misp/sync | POST | admin | `{"full": bool}` → status after a pull, flush and push |
| /misp/false-positive | POST | admin, analyst | `{"event": {...}}` → `{"values"}` (type 1) |
| /misp/instances | GET / POST | any / admin | – / `{name, settings}` → instances, their state |
| /misp/instances/{name} | DELETE | admin | – → `{deleted}` (its IoCs leave the table) |
| /misp/dead-letters | GET | admin | `?stream=reports` → items refused or failing too often |
| /misp/dead-letters/retry | POST | admin | `{"ids": [...]}` (none: all) → `{"requeued": n}` |
| /misp/dead-letters/discard | POST | admin | `{"ids": [...]}` (none: all) → `{"discarded": n}` |

Every route takes `?instance=<name>` to address an extra MISP instance (default: the first one).
Resources translate `MispError` into the manager's domain errors (422 invalid settings, 409 not
configured); the manager's error table renders them in the `{data, message, error}` envelope. The
service is built by `MispExtension` on the first request (or when the worker starts), so building
the app touches nothing on disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import falcon

from ..api.common import envelope
from ..api.middleware import ALL_ROLES, JsonBody
from ..core.errors import Conflict, NotFound, ValidationError
from ..store import Role
from .errors import MispSettingsError
from .instances import MispInstances
from .service import MispSync
from .settings import SETTINGS

if TYPE_CHECKING:  # integration mounts these routes: no import back at run time
    from .integration import MispExtension

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

    def __init__(self, misp: MispExtension) -> None:
        self.misp = misp

    def sync_for(self, req: falcon.Request) -> MispSync:
        """The instance named by `?instance=` (the default one without it)."""
        name = req.get_param("instance")
        try:
            return self.misp.instances().get(name)
        except KeyError:
            raise NotFound(f"no MISP instance {name!r}") from None


class MispSettingsResource(_MispResource):
    """GET/PUT /misp/settings."""

    READ_ROLES = ADMIN_ONLY
    WRITE_ROLES = ADMIN_ONLY
    BODY = {"put": JsonBody(_object, _SETTINGS_SCHEMA)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The MISP settings (the API key is never returned)."""
        envelope(resp, self.sync_for(req).settings.to_public_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Change some MISP settings; the API key is stored encrypted."""
        try:
            settings = self.sync_for(req).update_settings(req.context.body)
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
        envelope(resp, self.sync_for(req).test_connection(req.context.body))


class MispStatusResource(_MispResource):
    """GET /misp/status."""

    READ_ROLES = ALL_ROLES

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Last runs, counts, errors and queue sizes of the MISP sync."""
        envelope(resp, self.sync_for(req).status())


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
            status = self.sync_for(req).sync_now(full=req.context.body)
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
        found = self.misp.host.store.endpoints.find(ep_uuid) if ep_uuid else None
        if found is not None:
            endpoint = found
        # Without ?instance=, every instance whose sightings are configured hears the verdict.
        targets = (
            [self.sync_for(req)]
            if req.get_param("instance")
            else [s for _, s in self.misp.instances().all()]
        )
        values: set[str] = set()
        errors = []
        for sync in targets:
            try:
                values.update(sync.false_positive(endpoint, event))
            except MispSettingsError as ex:
                errors.append(str(ex))
        if len(errors) == len(targets):
            raise Conflict(errors[0])
        envelope(resp, {"values": sorted(values)})


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
        envelope(resp, self.sync_for(req).dead_letters(stream))


class MispDeadLetterRetryResource(_MispResource):
    """POST /misp/dead-letters/retry."""

    WRITE_ROLES = ADMIN_ONLY
    BODY = {"post": JsonBody(_ids_body, _IDS_SCHEMA)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Put dead letters back in their queues (after fixing the cause)."""
        envelope(resp, {"requeued": self.sync_for(req).retry_dead_letters(req.context.body)})


class MispDeadLetterDiscardResource(_MispResource):
    """POST /misp/dead-letters/discard."""

    WRITE_ROLES = ADMIN_ONLY
    BODY = {"post": JsonBody(_ids_body, _IDS_SCHEMA)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Forget dead letters."""
        envelope(resp, {"discarded": self.sync_for(req).discard_dead_letters(req.context.body)})


def _instance_summary(name: str, sync: MispSync) -> dict[str, Any]:
    status = sync.status()
    return {
        "name": name,
        "url": status["url"],
        "enabled": status["enabled"],
        "configured": status["configured"],
        "source_name": sync.settings.source_name,
        "connected": status["connected"],
        "last_error": status["last_error"],
        "streams": {k: status[k]["state"] for k in ("pull", "sightings", "reports")},
        "dead_letters": status["dead_letters"],
    }


def _create_body(data: Any) -> dict[str, Any]:
    body = _object(data)
    name = body.get("name")
    settings = body.get("settings", {})
    if not isinstance(name, str) or not isinstance(settings, dict):
        raise ValidationError("expected {name, settings}")
    return {"name": name, "settings": settings}


class MispInstancesResource(_MispResource):
    """GET/POST /misp/instances."""

    READ_ROLES = ALL_ROLES
    WRITE_ROLES = ADMIN_ONLY
    BODY = {
        "post": JsonBody(
            _create_body,
            {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "settings": _SETTINGS_SCHEMA},
            },
        )
    }

    @property
    def instances(self) -> MispInstances:
        return self.misp.instances()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Every MISP instance with its state (`?instance=<name>` selects one on /misp/*)."""
        envelope(resp, [_instance_summary(n, s) for n, s in self.instances.all()])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Add a MISP instance (its own settings, state, queues; `source_name` misp-<name>)."""
        body = req.context.body
        try:
            sync = self.instances.create(body["name"], body["settings"])
        except MispSettingsError as ex:
            raise ValidationError(str(ex)) from ex
        envelope(resp, _instance_summary(body["name"], sync))


class MispInstanceResource(_MispResource):
    """DELETE /misp/instances/{name}."""

    WRITE_ROLES = ADMIN_ONLY

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """Remove an extra instance; its IoCs leave the IoC table."""
        instances = self.misp.instances()
        if name not in instances.names()[1:]:
            raise NotFound(f"no extra MISP instance {name!r}")
        instances.delete(name)
        envelope(resp, {"deleted": name})


MISP_ROUTES: list[tuple[str, type[_MispResource], str | None]] = [
    ("/misp/settings", MispSettingsResource, None),
    ("/misp/test", MispTestResource, None),
    ("/misp/status", MispStatusResource, None),
    ("/misp/sync", MispSyncResource, None),
    ("/misp/false-positive", MispFalsePositiveResource, None),
    ("/misp/instances", MispInstancesResource, None),
    ("/misp/instances/{name}", MispInstanceResource, None),
    ("/misp/dead-letters", MispDeadLettersResource, None),
    ("/misp/dead-letters/retry", MispDeadLetterRetryResource, None),
    ("/misp/dead-letters/discard", MispDeadLetterDiscardResource, None),
]
