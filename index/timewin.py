"""WHIDS-compatible time windows: ``since``/``until``/``last``/``pivot``±``delta``.

GENE/WHIDS (``api/server`` ``parseTimeWindow``): ``last`` (a Go duration, or ``Nd`` for days)
wins over everything; ``pivot`` (RFC 3339) gives ``[pivot-delta, pivot+delta]`` with ``delta``
defaulting to 10 minutes; ``since`` without ``until`` means "until now"; no parameter at all
means the last hour. Unlike WHIDS, unparsable values are errors (``IndexQueryError``) rather
than silently ignored, and ``since > until`` is an error as in WHIDS.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from index.errors import IndexQueryError

__all__ = ["parse_datetime", "parse_duration", "parse_time_window"]

DEFAULT_DELTA = timedelta(minutes=10)
DEFAULT_WINDOW = timedelta(hours=1)

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")

TimeLike = datetime | str | int | float | None


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration (``1h30m``, ``90s``, ``250ms``) or WHIDS days (``7d``).

    Raises:
        IndexQueryError: the text is not a duration.
    """
    raw = text.strip()
    if not raw:
        raise IndexQueryError("empty duration", query=text)
    sign = -1 if raw.startswith("-") else 1
    body = raw.lstrip("+-")
    if body == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            raise IndexQueryError(f"invalid duration {text!r}", query=text, position=pos)
        total += float(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise IndexQueryError(f"invalid duration {text!r}", query=text)
    return timedelta(microseconds=sign * total / 1_000)


def parse_datetime(value: datetime | str | int | float) -> datetime:
    """Return an aware UTC datetime from RFC 3339 text, epoch seconds or a datetime.

    Naive datetimes and naive text are taken as UTC. Fractions beyond microseconds are cut.

    Raises:
        IndexQueryError: the value is not a time.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str):
        raise IndexQueryError(f"not a time: {value!r}")
    text = value.strip()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError as ex:
        raise IndexQueryError(f"not an RFC 3339 time: {value!r}", query=value) from ex
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_time_window(
    *,
    since: TimeLike = None,
    until: TimeLike = None,
    last: str | timedelta | None = None,
    pivot: TimeLike = None,
    delta: str | timedelta | None = None,
    clock: Callable[[], float] = time.time,
    default: timedelta | None = DEFAULT_WINDOW,
) -> tuple[datetime | None, datetime | None]:
    """Resolve WHIDS search parameters into a ``(since, until)`` pair of UTC datetimes.

    Args:
        since: Start (inclusive); without ``until`` the window ends now.
        until: End (inclusive); alone, the window is unbounded below.
        last: Go duration or ``Nd``; wins over every other parameter.
        pivot: Centre of a ``[pivot-delta, pivot+delta]`` window.
        delta: Half-width around ``pivot`` (default 10 minutes).
        clock: Returns "now" as epoch seconds.
        default: Window used when no parameter is given (``None`` means unbounded).

    Raises:
        IndexQueryError: a value does not parse, or ``since`` is after ``until``.
    """
    now = datetime.fromtimestamp(clock(), UTC)
    if last not in (None, ""):
        span = last if isinstance(last, timedelta) else parse_duration(str(last))
        return now - span, now
    if pivot not in (None, ""):
        center = parse_datetime(pivot)
        if delta in (None, ""):
            half = DEFAULT_DELTA
        else:
            half = delta if isinstance(delta, timedelta) else parse_duration(str(delta))
        return center - abs(half), center + abs(half)
    start = None if since in (None, "") else parse_datetime(since)
    end = None if until in (None, "") else parse_datetime(until)
    if start is None and end is None:
        return (None, None) if default is None else (now - default, now)
    if start is not None and end is None:
        end = now
    if start is not None and end is not None and start > end:
        raise IndexQueryError(f"since ({start.isoformat()}) is after until ({end.isoformat()})")
    return start, end
