"""The event model: WHIDS/Gene JSON events, field paths, Go `%v` text and timestamps.

Owns the one implementation of `/Event/EventData/Image` path resolution and of Go `fmt` `%v`
formatting (docs/reference/gene.md §4) used by the engine, the index and the CLI. An event is a
plain dict in the
WHIDS shape `{"Event": {"System": {...}, "EventData": {...}}}`; kunai/Linux events use
`{"info": {...}, "data": {...}}`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import orjson

from .goparse import parse_int

__all__ = [
    "Event",
    "MISSING",
    "event_hash",
    "event_time",
    "go_string",
    "split_path",
    "lookup",
    "is_winevt",
    "WINEVT_DATA",
    "KUNAI_DATA",
]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Sentinel returned by `lookup` for an absent field (a JSON null is present: `None`)."""

WINEVT_DATA = ("Event", "EventData")
KUNAI_DATA = ("data",)
_SYSTEM_TIME = ("Event", "System", "TimeCreated", "SystemTime")


def split_path(path: str) -> tuple[str, ...]:
    """Split a Gene path on `/`, dropping empty segments (`/Event//X/` → `Event`, `X`)."""
    return tuple(p for p in path.split("/") if p)


def lookup(data: Any, keys: tuple[str, ...]) -> Any:
    """Walk nested dicts along `keys`; return `MISSING` when any key is absent."""
    cur = data
    for key in keys:
        if cur.__class__ is not dict:
            return MISSING
        cur = cur.get(key, MISSING)
        if cur is MISSING:
            return MISSING
    return cur


def is_winevt(data: object) -> bool:
    """GENE: an event is winevt iff `/Event/System/TimeCreated/SystemTime` exists, else kunai."""
    return lookup(data, _SYSTEM_TIME) is not MISSING


def _go_float(f: float) -> str:
    """Format like Go `strconv.FormatFloat(f, 'g', -1, 64)` (what `%v` does for float64)."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    x = len(ds) + int(exp) - 1  # decimal exponent of the first digit
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if x < 0:
        return f"{neg}0.{'0' * (-x - 1)}{ds}"
    if len(ds) <= x + 1:
        return f"{neg}{ds}{'0' * (x + 1 - len(ds))}"
    return f"{neg}{ds[: x + 1]}.{ds[x + 1 :]}"


def go_string(value: object) -> str:
    """Render a decoded JSON value as Go `fmt` `%v` does (docs/reference/gene.md §4).

    Strings are returned unchanged; numbers print as float64 (`1234567` → `1.234567e+06`),
    `None` → `<nil>`, lists → `[a b]`, dicts → `map[k:v]` with sorted keys.
    """
    # exact class tests, not isinstance: bool is an int, and this is the matching hot path
    cls = value.__class__
    if cls is str:
        return cast(str, value)
    if value is None:
        return "<nil>"
    if cls is bool:
        return "true" if value else "false"
    if cls is int or cls is float:
        try:
            return _go_float(float(cast(float, value)))
        except OverflowError:
            return str(value)
    if cls is list or cls is tuple:
        return "[" + " ".join(go_string(v) for v in cast("list[object]", value)) + "]"
    if cls is dict:
        d = cast("dict[str, object]", value)
        return "map[" + " ".join(f"{k}:{go_string(d[k])}" for k in sorted(d)) + "]"
    return str(value)


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?$"
)


def _parse_time(text: str) -> datetime | None:
    m = _RFC3339.match(text.strip())
    if m is None:
        return None
    date, clock, frac, tz = m.groups()
    iso = f"{date}T{clock}"
    if frac:
        iso += "." + (frac + "000000")[:6]
    if tz and tz not in ("Z", "z"):
        iso += tz if ":" in tz else f"{tz[:3]}:{tz[3:]}"
    try:
        ts = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def event_time(data: object) -> datetime | None:
    """Timestamp of an event in UTC, or `None` when it has none or it does not parse.

    winevt: `/Event/System/TimeCreated/SystemTime`; kunai: `/info/utc_time`.
    """
    raw = lookup(data, _SYSTEM_TIME)
    if raw is MISSING:
        raw = lookup(data, ("info", "utc_time"))
    if raw.__class__ is not str:
        return None
    return _parse_time(raw)


def event_hash(data: object) -> str:
    """SHA-1 hex of the event's canonical JSON (sorted keys), ignoring any `EdrData`."""
    if isinstance(data, dict):
        inner = data.get("Event")
        if isinstance(inner, dict) and "EdrData" in inner:
            data = {**data, "Event": {k: v for k, v in inner.items() if k != "EdrData"}}
        if "EdrData" in data:
            data = {k: v for k, v in data.items() if k != "EdrData"}
    blob = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()


def parse_event_id(value: object) -> int:
    """GENE: EventID = `%v` text parsed as a 32-bit base-0 integer; anything else → 0."""
    text = cast(str, value)
    if value.__class__ is str and text.isascii() and text.isdigit() and text[0] != "0":
        n = int(text)
        return n if n < 2**31 else 0
    if value.__class__ is int and 0 <= value < 1_000_000:
        return value  # Performance: %v prints it as its digits
    n2 = parse_int(go_string(value))
    if n2 is None or not -(2**31) <= n2 < 2**31:
        return 0
    return n2


class Event:
    """A WHIDS/Gene event dict with typed accessors (the dict is shared, not copied)."""

    __slots__ = ("data",)

    def __init__(self, data: Mapping[str, object]) -> None:
        self.data = data

    def get(self, path: str) -> object:
        """Value at an absolute path such as `/Event/EventData/Image`, or `None` if absent."""
        value = lookup(self.data, split_path(path))
        return None if value is MISSING else value

    @property
    def is_winevt(self) -> bool:
        return is_winevt(self.data)

    def _sys(self, winevt: tuple[str, ...], kunai: tuple[str, ...]) -> Any:
        return lookup(self.data, winevt if self.is_winevt else kunai)

    @property
    def channel(self) -> str:
        value = self._sys(("Event", "System", "Channel"), ("info", "event", "source"))
        return "" if value is MISSING else go_string(value)

    @property
    def event_id(self) -> int:
        """EventID as an int; the `Value` when EventID is `{"Qualifiers", "Value"}`."""
        value = self._sys(("Event", "System", "EventID"), ("info", "event", "id"))
        if value.__class__ is dict and "Value" in value:
            value = value["Value"]
        return 0 if value is MISSING else parse_event_id(value)

    @property
    def computer(self) -> str:
        value = self._sys(("Event", "System", "Computer"), ("info", "host", "hostname"))
        return "" if value is MISSING else go_string(value)

    @property
    def timestamp(self) -> datetime | None:
        return event_time(self.data)

    @property
    def detection(self) -> Mapping[str, object] | None:
        inner = self.data.get("Event")
        if isinstance(inner, dict) and isinstance(inner.get("Detection"), dict):
            return cast("dict[str, object]", inner["Detection"])
        det = self.data.get("detection")
        return cast("dict[str, object]", det) if isinstance(det, dict) else None

    @property
    def hash(self) -> str:
        return event_hash(self.data)

    def __repr__(self) -> str:
        return f"Event(channel={self.channel!r}, event_id={self.event_id})"
