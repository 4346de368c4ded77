"""The MISP service's status (the admin status API): per-stream bookkeeping and state words."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .probe import needed_permissions

if TYPE_CHECKING:
    from .service import MispSync

__all__ = ["FeatureStatus", "stream_state", "sync_status"]


class FeatureStatus:
    """Status bookkeeping of one feature."""

    def __init__(self) -> None:
        self.last_run: float | None = None
        self.last_success: float | None = None
        self.last_error = ""
        self.last_result: dict[str, Any] = {}
        self.runs = 0
        self.failures = 0

    def ok(self, now: float, result: Any) -> None:
        self.runs += 1
        self.last_run = self.last_success = now
        self.last_error = ""
        self.last_result = asdict(result) if result is not None else {}

    def failed(self, now: float, ex: BaseException) -> None:
        self.runs += 1
        self.failures += 1
        self.last_run = now
        self.last_error = str(ex)

    def to_dict(self) -> dict[str, Any]:
        return {
            "last_run": self.last_run,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_result": self.last_result,
            "runs": self.runs,
            "failures": self.failures,
        }


def sync_status(self: MispSync) -> dict[str, Any]:
    """Per-stream state, dead letters, permissions and backfill (the admin status API)."""
    s = self.settings
    client = self.client
    dead = {name: self.dead.count(name) for name in ("sightings", "reports")}
    return {
        "enabled": s.enabled,
        "configured": s.configured,
        "url": s.url,
        "connected": client.connected,
        "last_error": client.last_error,
        "next_attempt": client.next_attempt or None,
        "user": client.user,
        "role": client.role,
        "permissions": dict(client.permissions),
        "missing_permissions": [
            p for p in needed_permissions(s) if client.permissions and not client.allowed(p)
        ],
        "rate_limit": dict(client.rate_limit),
        "dead_letters": {**dead, "discarded": self.dead.discarded},
        "pull": {
            **self._features["pull"].to_dict(),
            "enabled": s.pull_enabled,
            "state": stream_state(self, "pull", s.pull_enabled),
            "next_run": self._pull_next or None,
            "cursor": self.iocs.cursor,
            "last_full": self.iocs.last_full or None,
            "attributes": self.iocs.attribute_count,
            "iocs": self.iocs.ioc_count,
            "resume": self.iocs.progress(),
        },
        "sightings": {
            **self._features["sightings"].to_dict(),
            "enabled": s.sightings_enabled,
            "state": stream_state(self, "sightings", s.sightings_enabled),
            "queued_batches": len(self.storage.sightings),
            "hits": self.sightings.hits_total,
            "sent": self.sightings.sent_total,
            "unmatched": self.sightings.unmatched_total,
            "dropped": self.sightings.dropped_total,
            "dead_letters": dead["sightings"],
            "lookup": {
                "enabled": s.sighting_lookup,
                "pending": self.sightings.lookup.pending(),
                "requests": self.sightings.lookup.requests_total,
                "found": self.sightings.lookup.found_total,
                "overflow": self.sightings.lookup.overflow_total,
            },
        },
        "reports": {
            **self._features["reports"].to_dict(),
            "enabled": s.reports_enabled,
            "state": stream_state(self, "reports", s.reports_enabled),
            "queued": len(self.storage.reports),
            "pushed": self.reports.pushed_total,
            "rejected": self.reports.rejected_total,
            "dead_letters": dead["reports"],
            "backfill": self.reports.backfill(),
            "day_generations": self.reports.generations(),
            "notes": dict(self.reports.notes),
        },
    }


def stream_state(self: MispSync, name: str, enabled: bool) -> str:
    """One word per stream: off, running, backing-off, failing or ok."""
    if not (enabled and self.settings.configured):
        return "off"
    if self._stream_locks[name].locked():
        return "running"
    if not self.client.ready():
        return "backing-off"
    feature = self._features[name]
    return "failing" if feature.last_error else ("ok" if feature.runs else "idle")
