"""MISP sync built into the manager: IoCs in, sightings and edr-report objects out.

`MispSync` is the service (see service.py); `appliance.misp.resources` adds its admin routes. Only
the names below are public.
"""

from __future__ import annotations

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
from .service import MispStorage, MispSync, MispWorker
from .settings import SETTINGS, MispSettings, SettingsStore
from .sightings import FlushResult

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
