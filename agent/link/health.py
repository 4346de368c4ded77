"""Health events the spool reports to the manager (`Heron-Agent` channel, WHIDS event shape).

They travel in the spool's priority lane, so the manager learns of evictions, oversize events,
rejected batches and data-disk trouble before the bulk events behind them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = [
    "HEALTH_CHANNEL",
    "HEALTH_DISK",
    "HEALTH_EVICTED",
    "HEALTH_OVERSIZE",
    "HEALTH_REJECTED",
    "health_event",
]

HEALTH_CHANNEL = "Heron-Agent"
HEALTH_EVICTED = 9001  # EventID: events evicted because the queue was full
HEALTH_OVERSIZE = 9002  # EventID: an event larger than the wire limit was dropped
HEALTH_REJECTED = 9003  # EventID: the manager refused a batch as malformed
HEALTH_DISK = 9005  # EventID: events dropped because the data disk was full or failing


def health_event(event_id: int, message: str, hostname: str, **data: Any) -> dict[str, Any]:
    """Build a `Heron-Agent` health event in the WHIDS event shape."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "Event": {
            "EventData": {"Message": message, **{k: v for k, v in data.items()}},
            "System": {
                "Channel": HEALTH_CHANNEL,
                "Computer": hostname,
                "EventID": event_id,
                "TimeCreated": {"SystemTime": now},
                "Provider": {"Name": HEALTH_CHANNEL},
            },
        }
    }
