"""Time conversions at the API edge: epoch seconds ↔ RFC 3339 strings, WHIDS window params."""

from __future__ import annotations

import datetime as dt
import re

from .errors import InvalidParam

__all__ = ["parse_duration", "parse_time", "rfc3339", "time_window", "to_datetime"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds → `YYYY-MM-DDTHH:MM:SS.ffffffZ` (None stays None)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def to_datetime(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)


def parse_time(text: str, *, name: str = "time") -> float:
    """RFC 3339 / ISO 8601 (naive = UTC) → epoch seconds; InvalidParam otherwise."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Go emits nanoseconds; Python parses at most microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as ex:
        raise InvalidParam(f"{name}: not an RFC 3339 time: {text!r}") from ex
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def parse_duration(text: str, *, name: str = "duration") -> float:
    """Go-style duration (`1h30m`, `90s`) or `Nd` → seconds."""
    value = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise InvalidParam(f"{name}: not a duration: {text!r}")
    return total


def time_window(
    *,
    since: str | None,
    until: str | None,
    last: str | None,
    pivot: str | None,
    delta: str | None,
    now: float,
    default_last: float = 3600.0,
) -> tuple[float, float]:
    """WHIDS window parameters (docs/reference/whids.md §2.8) → (start, stop) epoch seconds.

    `last` wins; then `pivot` ± `delta` (default 10 m); `since` without `until` runs to now;
    nothing at all means the last hour. `since > until` is an error.
    """
    if last:
        return now - parse_duration(last, name="last"), now
    if pivot:
        center = parse_time(pivot, name="pivot")
        span = parse_duration(delta, name="delta") if delta else 600.0
        return center - span, center + span
    if since or until:
        start = parse_time(since, name="since") if since else 0.0
        stop = parse_time(until, name="until") if until else now
        if start > stop:
            raise InvalidParam("since is after until")
        return start, stop
    return now - default_last, now
