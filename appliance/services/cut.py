"""Per-event stored byte cap: the longest string fields of an oversized event are cut.

An event up to `limits.event_line` bytes is accepted (WHIDS cut silently at 64 KiB; we never
refuse it), but one stored event is read back by every page, stream and export that holds it
(120 events of 3.9 MB made a 468 MB endpoint page). So an event whose NDJSON line is longer than
`limits.event_stored` is stored with its longest strings cut to `KEEP` characters followed by a
marker that keeps the original length, until it fits.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KEEP", "MARK", "cut_event", "long_lines"]

KEEP = 8192
MARK = "…[cut by the manager: {n} characters]"


def long_lines(data: bytes, limit: int) -> dict[int, int]:
    """{index among non-blank lines: length} of the NDJSON lines of `data` longer than `limit`."""
    out: dict[int, int] = {}
    if len(data) <= limit:
        return out
    pos, index, end = 0, 0, len(data)
    while pos < end:
        nl = data.find(b"\n", pos)
        stop = end if nl < 0 else nl
        length = stop - pos
        if data[pos:stop].strip():  # blank lines are skipped by the decoder
            if length > limit:
                out[index] = length
            index += 1
        pos = stop + 1
    return out


def cut_event(event: dict[str, Any], size: int, budget: int) -> int:
    """Cut `event` (about `size` bytes) to about `budget` bytes; returns the fields cut."""
    found: list[tuple[int, dict[str, Any] | list[Any], Any]] = []
    stack: list[Any] = [event]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, str) and len(value) > KEEP + len(MARK) + 16:
                found.append((len(value), node, key))
            elif isinstance(value, dict | list):
                stack.append(value)
    found.sort(key=lambda item: item[0], reverse=True)
    cut = 0
    for length, node, key in found:
        if size <= budget:
            break
        short = node[key][:KEEP] + MARK.format(n=length)
        size -= length - len(short)
        node[key] = short
        cut += 1
    return cut
