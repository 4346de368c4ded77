"""MISP sync built into the manager: IoCs in, sightings and edr-report objects out.

`MispSync` is the service (see service.py); `appliance.misp.resources` adds its admin routes.
Only the names below are public. They are imported on first use (PEP 562), so that
`appliance.core.config`, which needs only `MispSettings`, does not pay for importing PyMISP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        MispError,
        MispRateLimited,
        MispRejected,
        MispServerError,
        MispSettingsError,
        MispUnavailable,
    )
    from .iocs import IocSink, MemoryIocSink, PullResult
    from .reports import PushResult, day_event_uuid
    from .service import MispSync
    from .settings import SETTINGS, MispSettings, SettingsStore
    from .sightings import FlushResult
    from .storage import MispStorage
    from .worker import MispWorker

__all__ = [
    "SETTINGS",
    "FlushResult",
    "IocSink",
    "MemoryIocSink",
    "MispError",
    "MispRateLimited",
    "MispRejected",
    "MispServerError",
    "MispSettings",
    "MispSettingsError",
    "MispStorage",
    "MispSync",
    "MispUnavailable",
    "MispWorker",
    "PullResult",
    "PushResult",
    "SettingsStore",
    "day_event_uuid",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use.

    The imports are explicit, so PyInstaller still sees them.
    """
    if name in (
        "MispError",
        "MispRateLimited",
        "MispRejected",
        "MispServerError",
        "MispSettingsError",
        "MispUnavailable",
    ):
        from . import errors

        return getattr(errors, name)
    if name in ("SETTINGS", "MispSettings", "SettingsStore"):
        from . import settings

        return getattr(settings, name)
    if name in ("IocSink", "MemoryIocSink", "PullResult"):
        from . import iocs

        return getattr(iocs, name)
    if name in ("PushResult", "day_event_uuid"):
        from . import reports

        return getattr(reports, name)
    if name == "MispSync":
        from . import service

        return service.MispSync
    if name == "MispStorage":
        from . import storage

        return storage.MispStorage
    if name == "MispWorker":
        from . import worker

        return worker.MispWorker
    if name == "FlushResult":
        from . import sightings

        return sightings.FlushResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
