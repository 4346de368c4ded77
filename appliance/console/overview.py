"""Detection overview for the console's charts: counts over time, per rule and per endpoint.

The fleet store keeps one summary row per detection (`detections`: endpoint, ts, signatures as a
JSON list, criticality). The dashboard and the rules page want aggregates over a time window, not
thousands of full events, so this module answers one read-only query set:

* `buckets`: detections per equal time slot (for the line chart);
* `rules`: hits per rule signature (bar chart, rule hit counts);
* `endpoints`: detections and highest criticality per endpoint.

It only reads, through the store's `query(sql, params)` (the store owns DuckDB and its errors).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import falcon

from appliance.core.errors import InvalidParam

__all__ = ["DetectionOverview", "OverviewResource", "MAX_HOURS", "MAX_BUCKETS"]

logger = logging.getLogger(__name__)

Query = Callable[[str, list[Any]], list[tuple[Any, ...]]]
MAX_HOURS = 24 * 90
MAX_BUCKETS = 500


class DetectionOverview:
    """Aggregates of the `detections` table over a window ending now.

    Args:
        query: the store's read query function, `query(sql, params) -> rows`.
        clock: current time in seconds.
    """

    def __init__(self, query: Query, *, clock: Callable[[], float] = time.time) -> None:
        self._query = query
        self._clock = clock

    def summary(self, *, hours: float = 24.0, buckets: int = 48, top: int = 10) -> dict[str, Any]:
        """Counts over the last `hours`, in `buckets` slots, with the `top` rules and endpoints."""
        until = self._clock()
        since = until - hours * 3600.0
        width = (until - since) / buckets
        counts = [0] * buckets
        for slot, n in self._query(
            "SELECT CAST(floor((ts - ?) / ?) AS INTEGER) AS slot, count(*) FROM detections "
            "WHERE ts >= ? AND ts <= ? GROUP BY slot",
            [since, width, since, until],
        ):
            if slot is not None and 0 <= int(slot) < buckets:
                counts[int(slot)] += int(n)
            elif slot is not None and int(slot) == buckets:  # ts == until exactly
                counts[-1] += int(n)
        rules: Counter[str] = Counter()
        for sigs, n in self._query(
            "SELECT signatures, count(*) FROM detections WHERE ts >= ? AND ts <= ? "
            "GROUP BY signatures",
            [since, until],
        ):
            for name in _signatures(sigs):
                rules[name] += int(n)
        endpoints = [
            {"uuid": uuid, "detections": int(n), "max_criticality": int(crit or 0)}
            for uuid, n, crit in self._query(
                "SELECT endpoint, count(*) AS n, max(criticality) FROM detections "
                "WHERE ts >= ? AND ts <= ? GROUP BY endpoint ORDER BY n DESC, endpoint LIMIT ?",
                [since, until, top],
            )
        ]
        return {
            "since": since,
            "until": until,
            "bucket_seconds": width,
            "buckets": [{"t": since + i * width, "count": c} for i, c in enumerate(counts)],
            "total": sum(counts),
            "rules": [{"name": k, "hits": v} for k, v in rules.most_common()],
            "endpoints": endpoints,
        }


def _signatures(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(s) for s in raw]
    try:
        value = json.loads(raw) if raw else []
    except (TypeError, ValueError):
        logger.warning("unreadable signatures in the detections table: %r", raw)
        return []
    return [str(s) for s in value] if isinstance(value, list) else []


class OverviewResource:
    """GET /console/api/overview?hours=24&buckets=48: detection aggregates for the charts."""

    QUERY = {"get": {"hours": "number", "buckets": "integer", "top": "integer"}}

    def __init__(self, overview: DetectionOverview) -> None:
        self._overview = overview

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Detections over time, per rule and per endpoint (any role may read)."""
        hours = _number(req, "hours", 24.0, 0.1, MAX_HOURS)
        buckets = int(_number(req, "buckets", 48, 1, MAX_BUCKETS))
        top = int(_number(req, "top", 10, 1, 1000))
        data = self._overview.summary(hours=hours, buckets=buckets, top=top)
        resp.media = {"data": data, "message": "OK", "error": ""}
        resp.cache_control = ["no-store"]


def _number(req: falcon.Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as ex:
        raise InvalidParam(f"{name} must be a number") from ex
    if not lo <= value <= hi or value != value:  # NaN check
        raise InvalidParam(f"{name} must be between {lo:g} and {hi:g}")
    return value
