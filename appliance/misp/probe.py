"""The MISP connection test of the admin API, and the role permissions each feature needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .client import MispClient, role_of
from .errors import MispError, MispRateLimited, MispSettingsError
from .settings import MispSettings

if TYPE_CHECKING:
    from .service import MispSync

__all__ = ["PERMISSIONS", "PERMISSION_EFFECTS", "connection_test", "needed_permissions"]

PERMISSIONS = (
    "perm_add",
    "perm_modify",
    "perm_modify_org",
    "perm_publish",
    "perm_sighting",
    "perm_tagger",
    "perm_tag_editor",
)
PERMISSION_EFFECTS = {
    "perm_add": "reports cannot be pushed (events/add, objects/add)",
    "perm_modify": "reports cannot be added to the day event",
    "perm_publish": "report_publish is skipped: the day event stays unpublished",
    "perm_sighting": "sightings cannot be sent",
    "perm_tagger": "report_tags are not set on the day event",
    "perm_tag_editor": "report_tags that MISP does not have yet are dropped by MISP",
}


def connection_test(sync: MispSync, patch: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Connect afresh and report what MISP says.

    No back-off; the settings may be patched; never raises.
    """
    try:
        settings = sync.settings.merged(patch or {})
        if not settings.url or not settings.api_key:
            raise MispSettingsError("url and api_key are required", operation="test")
        settings = settings.merged({"enabled": True})
        client = MispClient(settings, factory=sync.factory, clock=sync.clock)
        try:
            version = client.call("servers/getVersion", lambda api: api.misp_instance_version)
            role = client.call("users/view/me", role_of)
            limits = _probe_rate_limit(client)
        finally:
            client.close()
    except MispError as ex:
        return {"ok": False, "error": str(ex)}
    perms = role.get("perms", {})
    needed = needed_permissions(settings)
    missing = [p for p in needed if not perms.get(p)]
    return {
        "ok": True,
        "error": "",
        "version": version.get("version", ""),
        "user": role.get("email", ""),
        "role": role.get("role", ""),
        "permissions": {p: bool(perms.get(p)) for p in PERMISSIONS},
        "missing_permissions": missing,
        "effects": [PERMISSION_EFFECTS[p] for p in missing],
        "rate_limit": limits,
    }


def needed_permissions(s: MispSettings) -> list[str]:
    """The role flags the enabled features need."""
    needed = []
    if s.reports_enabled:
        needed += ["perm_add", "perm_modify"]
        if s.report_tags:
            needed += ["perm_tagger", "perm_tag_editor"]
        if s.report_publish:
            needed.append("perm_publish")
    if s.sightings_enabled:
        needed.append("perm_sighting")
    return needed


def _probe_rate_limit(client: MispClient) -> dict[str, str]:
    """One restSearch of one row: MISP's RateLimitComponent headers, if the role is limited."""
    try:
        client.call(
            "attributes/restSearch (rate-limit probe)",
            lambda api: api.search(
                controller="attributes", return_format="json", limit=1, page=1, type_attribute="md5"
            ),
        )
    except MispRateLimited:
        pass
    return dict(client.rate_limit)
