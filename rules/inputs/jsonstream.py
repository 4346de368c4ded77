"""The one JSON stream decoder: `heron scan` input, agent replay and manager import.

In a module of its own (no imports of ours) so that ``rules.scan`` and ``rules.inputs`` both
use it without importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

__all__ = ["ErrorCounter", "iter_json_stream"]

_DECODER = json.JSONDecoder()


class ErrorCounter(Protocol):
    """Where undecodable input is counted (`rules.scan.ScanStats`, `rules.inputs.Tally`)."""

    def parse_error(self, message: str) -> None: ...


def iter_json_stream(fh: Iterable[bytes], stats: ErrorCounter, name: str) -> Iterator[Any]:
    """Decode whitespace-separated JSON values, fast path one object per line.

    A line that is not a complete value starts multi-line decoding (pretty-printed input);
    the buffered lines are decoded when a line starts with `}`/`]` or the buffer has doubled
    since the last try, so large values cost O(n log n), not O(n^2). Undecodable text is
    counted as a parse error and skipped.
    """
    loads = orjson.loads
    pending: list[bytes] = []
    size = next_try = 0
    lineno = 0
    for line in fh:
        lineno += 1
        if pending:
            pending.append(line)
            size += len(line)
            if line[:1] not in (b"}", b"]") and size < next_try:
                continue
            values, rest, bad = _drain(b"".join(pending))
            yield from values
            if bad:
                stats.parse_error(f"{name}:{lineno}: invalid JSON")
            pending = [rest] if rest else []
            size = len(rest)
            next_try = 2 * size
            continue
        if not line.strip():
            continue
        try:
            yield loads(line)
        except orjson.JSONDecodeError:
            values, rest, bad = _drain(line)
            yield from values
            if bad:
                stats.parse_error(f"{name}:{lineno}: invalid JSON")
            pending = [rest] if rest else []
            size = len(rest)
            next_try = 2 * size
    if pending and b"".join(pending).strip():
        stats.parse_error(f"{name}: truncated JSON at end of input")


def _drain(buf: bytes) -> tuple[list[Any], bytes, bool]:
    """Decode complete values from `buf`; return (values, incomplete rest, had_error)."""
    try:
        text = buf.decode("utf-8")
    except UnicodeDecodeError:
        return [], b"", True
    values: list[Any] = []
    pos, end = 0, len(text.rstrip())
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return values, b"", False
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as ex:
            if ex.pos >= end:
                return values, text[pos:].encode("utf-8"), False  # needs more lines
            return values, b"", True
        values.append(value)
