"""Mounts every core admin API route (fleet, content, events); extensions mount their own."""

from __future__ import annotations

from ..runtime.context import AppContext
from .admin_alerts import ALERT_ROUTES
from .admin_commands import COMMAND_ROUTES
from .admin_content import CONTENT_ROUTES
from .admin_enroll import ENROLL_ROUTES
from .admin_fleet import FLEET_ROUTES
from .admin_hunts import HUNT_ROUTES
from .admin_search import SEARCH_ROUTES
from .admin_suppress import SUPPRESS_ROUTES
from .admin_tuning import TUNING_ROUTES
from .maintenance import MAINTENANCE_ROUTES
from .openapi import FalconApp

__all__ = ["add_admin_routes"]


def add_admin_routes(app: FalconApp, ctx: AppContext) -> None:
    """Instantiate each resource once per route and mount it."""
    for path, factory, suffix in [
        *FLEET_ROUTES,
        *COMMAND_ROUTES,
        *CONTENT_ROUTES,
        *TUNING_ROUTES,
        *SEARCH_ROUTES,
        *HUNT_ROUTES,
        *ALERT_ROUTES,
        *SUPPRESS_ROUTES,
        *ENROLL_ROUTES,
        *MAINTENANCE_ROUTES,
    ]:
        resource = factory(ctx)
        if suffix:
            app.add_route(path, resource, suffix=suffix)
        else:
            app.add_route(path, resource)
