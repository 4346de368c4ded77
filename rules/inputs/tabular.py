"""CSV/TSV exports with a header row → JSON-like rows for `jsonshapes.classify`.

Dotted column names are nested (`Event.System.Channel`, `winlog.event_data.Image`), so a CSV
written from any JSON shape reads back as that shape; plain columns (`EventID`, `Channel`,
`Image`, Splunk's `EventCode`/`LogName`/`ComputerName`) make flattened events. Empty cells are
absent fields: wide exports carry the union of every event type's columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["iter_rows", "dialect_of"]

csv.field_size_limit(16 << 20)


def dialect_of(sample: str) -> type[csv.Dialect] | None:
    """The CSV dialect of a text sample with a header row, or None when it is not CSV."""
    lines = [line for line in sample.splitlines()[:20] if line.strip()]
    if len(lines) < 1:
        return None
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
    except csv.Error:
        return None
    header = next(csv.reader([lines[0]], dialect))
    if len(header) < 2 or any(not h.strip() for h in header):
        return None
    return dialect


def _nest(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if not value or key is None:
            continue
        if "." not in key or key.startswith("@"):
            out[key] = value
            continue
        parts = key.split(".")
        cur = out
        for part in parts[:-1]:
            nxt = cur.get(part)
            if nxt.__class__ is not dict:
                nxt = cur[part] = {}
            cur = nxt
        cur[parts[-1]] = value
    return out


def iter_rows(fh: TextIO, name: str, error: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Rows of a CSV file as dicts (header names → cell values)."""
    sample = fh.read(64 * 1024)
    dialect = dialect_of(sample)
    if dialect is None:
        error(f"{name}: not a CSV file with a header row")
        return
    reader = csv.DictReader(_chain(sample, fh), dialect=dialect)
    try:
        for row in reader:
            if None in row:
                error(f"{name}:{reader.line_num}: more cells than header columns")
                row.pop(None)
            yield _nest(row)
    except csv.Error as ex:
        error(f"{name}:{reader.line_num}: {ex}")


def _chain(sample: str, fh: TextIO) -> Iterator[str]:
    """Lines of `sample` followed by the rest of `fh` (the sample may end mid-line)."""
    parts = list(io.StringIO(sample, newline=""))
    tail = parts.pop() if parts and not parts[-1].endswith(("\n", "\r")) else ""
    yield from parts
    first = True
    for line in fh:
        if first:
            line = tail + line
            tail = ""
            first = False
        yield line
    if tail:
        yield tail
