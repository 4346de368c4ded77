"""EVTX reading with the `evtx` package (pyevtx-rs), rendered as golang-evtx renders it.

Owns the normalisation of docs/reference/gene.md §12.2–§12.3, so that rules see EVTX events exactly
as Gene
sees the JSON that golang-evtx produces: attributes flattened, every leaf a string, EventID
with Qualifiers as `{"Qualifiers","Value"}`, hex-typed values zero-padded (`0x%04x` 32-bit,
`0x%08x` 64-bit), FILETIMEs with 100-ns precision, unnamed `Data` lists without trailing
empty strings, classic providers as a provider-named `System` key.

pyevtx-rs drops the value types and truncates FILETIMEs to microseconds, so this module also
scans each record's BinXML substitution array (`_typed_values`) to recover hex widths and the
full FILETIME. Corrupt chunks and records are skipped and counted in `EvtxStats`; reading never
raises for bad input data and never loops forever.
"""

from __future__ import annotations

import base64
import logging
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO

import evtx
import orjson

__all__ = ["EvtxStats", "read_evtx", "normalize_record", "typed_values", "quick_key"]

logger = logging.getLogger(__name__)

_FILE_HEADER = 4096
_CHUNK = 65536
_CHUNK_HEADER = 512
_RECORD_MAGIC = b"\x2a\x2a\x00\x00"
_EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MAX_DEPTH = 8
# BinXML value types (MS-EVEN6 §2.2.13)
_T_ANSI, _T_SIZET, _T_FILETIME, _T_HEX32, _T_HEX64, _T_BINXML = 0x02, 0x10, 0x11, 0x14, 0x15, 0x21
_INTERESTING = re.compile(rb"[\x02\x10\x11\x14\x15\x21]")


@dataclass(slots=True)
class EvtxStats:
    """Counters of one or more EVTX reads."""

    files: int = 0
    records: int = 0  # records read, including `skipped` ones
    errors: int = 0
    skipped: int = 0  # records read but not rendered because `keep` refused them
    messages: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.messages) < 100:
            self.messages.append(message)


_DAYS: dict[int, str] = {}
_TABLES: dict[int, Callable[[bytes], tuple[int, ...]]] = {}
_WANTED: dict[bytes, tuple[int, ...]] = {}


def _filetime_texts(ticks: int) -> tuple[str, str]:
    """(pyevtx-rs text, golang-evtx text) of a FILETIME.

    pyevtx-rs: microseconds, zeros kept; golang-evtx: 100-ns digits, trailing zeros removed.
    """
    seconds, rem = divmod(ticks, 10_000_000)
    days, clock = divmod(seconds, 86400)
    day = _DAYS.get(days)
    if day is None:
        try:
            day = (_EPOCH_1601 + timedelta(days=days)).strftime("%Y-%m-%d")
        except OverflowError:
            return "", ""
        if len(_DAYS) > 4096:
            _DAYS.clear()
        _DAYS[days] = day
    hours, clock = divmod(clock, 3600)
    base = f"{day}T{hours:02d}:{clock // 60:02d}:{clock % 60:02d}"
    micro = f"{base}.{rem // 10:06d}Z"
    return micro, (f"{base}.{rem:07d}".rstrip("0") + "Z") if rem else base + "Z"


def _values(chunk: bytes, pos: int, end: int, out: dict[str, Any], depth: int) -> None:
    """Read a BinXML fragment's template-instance substitution values (best effort)."""
    if depth > _MAX_DEPTH or pos + 14 > end or chunk[pos] != 0x0F:
        return
    pos += 4
    if chunk[pos] != 0x0C:
        return
    def_offset = _U32.unpack_from(chunk, pos + 6)[0]
    pos += 10
    if def_offset == pos:
        if pos + 24 > end:
            return
        pos += 24 + _U32.unpack_from(chunk, pos + 20)[0]
    if pos + 4 > end:
        return
    count = _U32.unpack_from(chunk, pos)[0]
    pos += 4
    if count > 4096 or pos + 4 * count > end:
        return
    table = chunk[pos : pos + 4 * count]
    types = table[2::4]
    wanted = _WANTED.get(types)
    if wanted is None:  # Performance: one entry per template layout
        wanted = tuple(m.start() for m in _INTERESTING.finditer(types))
        if len(_WANTED) > 4096:
            _WANTED.clear()
        _WANTED[types] = wanted
    if not wanted:
        return
    unpack = _TABLES.get(count)
    if unpack is None:
        unpack = _TABLES[count] = struct.Struct(f"<{2 * count}H").unpack
    sizes = unpack(table)[0::2]
    offsets = list(accumulate(sizes, initial=pos + 4 * count))
    for i in wanted:
        if offsets[i] + sizes[i] > end:
            return
        _value(chunk, types[i], sizes[i], offsets[i], out, depth)


def _value(chunk: bytes, vtype: int, size: int, off: int, out: dict[str, Any], depth: int) -> None:
    """Record how golang-evtx renders one typed substitution value."""
    if vtype == _T_HEX32 and size == 4:
        v = _U32.unpack_from(chunk, off)[0]
        _put(out, f"0x{v:x}", f"0x{v:04x}")
    elif vtype == _T_HEX64 and size == 8:
        v = _U64.unpack_from(chunk, off)[0]
        _put(out, f"0x{v:x}", f"0x{v:08x}")
    elif vtype == _T_SIZET and size in (4, 8):
        v = (_U32 if size == 4 else _U64).unpack_from(chunk, off)[0]
        _put(out, f"0x{v:x}", f"0x{v:0{2 * size}x}")
    elif vtype == _T_FILETIME and size == 8:
        _put(out, *_filetime_texts(_U64.unpack_from(chunk, off)[0]))
    elif vtype == _T_ANSI and size:
        # golang-evtx keeps AnsiString values as []byte, which JSON renders as base64
        raw = bytes(chunk[off : off + size])
        _put(
            out,
            raw.rstrip(b"\0").decode("cp1252", errors="replace"),
            base64.b64encode(raw).decode(),
        )
    elif vtype == _T_BINXML:
        _values(chunk, off, off + size, out, depth + 1)


def _put(out: dict[str, Any], key: str, value: str) -> None:
    """Record a rendering; the same text rendered two ways becomes an ordered list."""
    have = out.get(key)
    if have is None:
        out[key] = value
    elif isinstance(have, list):
        have.append(value)
    elif have != value:
        out[key] = [have, value]


def typed_values(data: bytes) -> dict[int, dict[str, Any]]:
    """Map record ID → {pyevtx text: golang-evtx text} for the record's typed values."""
    found: dict[int, dict[str, Any]] = {}
    for start in range(_FILE_HEADER, len(data) - _CHUNK_HEADER + 1, _CHUNK):
        chunk = data[start : start + _CHUNK]
        if not chunk.startswith(b"ElfChnk\x00"):
            continue
        pos = _CHUNK_HEADER
        while pos + 28 <= len(chunk) and chunk.startswith(_RECORD_MAGIC, pos):
            size = _U32.unpack_from(chunk, pos + 4)[0]
            if size < 28 or pos + size > len(chunk):
                break
            record_id = _U64.unpack_from(chunk, pos + 8)[0]
            out: dict[str, Any] = {}
            try:
                _values(chunk, pos + 24, pos + size - 4, out, 0)
            except (struct.error, IndexError):  # pragma: no cover - bounds are checked
                out = {}
            if out:
                found[record_id] = out
            pos += size
    return found


def _leaf(value: Any, typed: dict[str, Any]) -> Any:
    cls = value.__class__
    if cls is str:
        if not typed:
            return value
        found = typed.get(value)
        if found is None:
            return value
        if found.__class__ is list:
            return found.pop(0) if len(found) > 1 else found[0]
        return found
    if cls is int:
        return str(value)
    if cls is bool:
        return "true" if value else "false"
    if value is None:
        return None
    if cls is float:
        return repr(value)
    if cls is list:
        return [_leaf(v, typed) if v.__class__ is not dict else _element(v, typed) for v in value]
    return _element(value, typed)


def _element(node: dict[str, Any], typed: dict[str, Any]) -> Any:
    """Flatten one element: attributes become keys, `#text` becomes the value."""
    attrs = node.get("#attributes")
    text = node.get("#text", _NO_TEXT)
    out: dict[str, Any] = {}
    if attrs:
        for k, v in attrs.items():
            out[k] = _leaf(v, typed)
    for k, v in node.items():
        if k == "#attributes" or k == "#text":
            continue
        out[k] = _leaf(v, typed) if v is not None else None
    if text is not _NO_TEXT:
        value = _leaf(text, typed)
        if not out:
            return value
        out["Value"] = value
    return out


_NO_TEXT = object()


def _text(value: str, typed: dict[str, Any]) -> Any:
    found = typed.get(value)
    if found is None:
        return value
    return found if found.__class__ is str else _leaf(value, typed)


def _attrs(attrs: dict[str, Any], typed: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        cls = value.__class__
        if cls is str:
            out[key] = _text(value, typed) if value in typed else value
        elif cls is int:
            out[key] = str(value)
        else:
            out[key] = _leaf(value, typed)
    return out


def _system(system: dict[str, Any], typed: dict[str, Any]) -> dict[str, Any]:
    """Performance: System elements are attribute-only or scalar; flatten them inline."""
    out: dict[str, Any] = {}
    for key, value in system.items():
        cls = value.__class__
        if cls is str:
            out[key] = _text(value, typed) if value in typed else value
        elif cls is int:
            out[key] = str(value)
        elif value is None:
            out[key] = {}  # empty element (Correlation, Security) → {}
        elif cls is dict and len(value) == 1 and "#attributes" in value:
            attrs = value["#attributes"]
            if key == "Provider" and len(attrs) == 1 and "Name" in attrs:
                out[str(attrs["Name"])] = ""  # GENE/golang-evtx: classic provider
            else:
                out[key] = _attrs(attrs, typed)
        else:
            out[key] = _leaf(value, typed)
    return out


def _flat_in_place(data: dict[str, Any], typed: dict[str, Any]) -> dict[str, Any]:
    """Performance: named-Data EventData (Sysmon, Security) only needs leaf fixes."""
    for key, value in data.items():
        cls = value.__class__
        if cls is str:
            found = typed.get(value)
            if found is not None:
                data[key] = found if found.__class__ is str else _leaf(value, typed)
        elif cls is int:
            data[key] = str(value)
        elif value is not None:
            data[key] = _leaf(value, typed)
    return data


def _event_data(data: Any, typed: dict[str, Any]) -> Any:
    if data.__class__ is not dict:
        return _leaf(data, typed)
    if "#attributes" not in data and "Data" not in data and "#text" not in data:
        return _flat_in_place(data, typed)
    out: dict[str, Any] = {}
    attrs = data.get("#attributes")
    if attrs:
        for k, v in attrs.items():
            out[k] = _leaf(v, typed)
    for key, value in data.items():
        if key == "#attributes":
            continue
        if key == "Data" or key == "#text":
            inner = value.get("#text", value) if value.__class__ is dict else value
            if inner.__class__ is list:
                items = [_leaf(v, typed) for v in inner]
                while items and items[-1] == "":
                    items.pop()
                out["Data"] = items
                continue
            if key == "Data" and value.__class__ is dict:
                out[key] = _leaf(inner, typed)
                continue
            out[key] = [_leaf(inner, typed)] if key == "Data" else _leaf(inner, typed)
            continue
        if value.__class__ is str:  # Performance: inline the common leaf
            found = typed.get(value)
            if found is None:
                out[key] = value
            else:
                out[key] = found if found.__class__ is str else _leaf(value, typed)
        elif value.__class__ is int:
            out[key] = str(value)
        else:
            out[key] = _leaf(value, typed)
    return out


def normalize_record(record: dict[str, Any], typed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn one pyevtx-rs JSON record into golang-evtx's rendering (docs/reference/gene.md
    §12.2)."""
    typed = typed or {}
    event = record.get("Event")
    if event.__class__ is not dict:
        return {"Event": _leaf(event, typed)} if event is not None else {"Event": {}}
    out: dict[str, Any] = {}
    for key, value in event.items():
        if key == "#attributes":
            continue
        if key == "System" and value.__class__ is dict:
            out[key] = _system(value, typed)
        elif key == "EventData":
            out[key] = _event_data(value, typed) if value is not None else {}
        else:
            out[key] = _leaf(value, typed) if value is not None else {}
    return {"Event": out}


class _TypedIndex:
    """Streams `typed_values` chunk by chunk, in step with pyevtx-rs's record order."""

    LOOKAHEAD = 4  # chunks scanned past the last hit before giving up on a record

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh  # Performance: read one 64 KiB chunk at a time, never the whole file
        self.next_chunk = _FILE_HEADER
        self.pending: dict[int, dict[str, Any]] = {}
        self.misses = 0

    def _scan_next(self) -> bool:
        start = self.next_chunk
        self.fh.seek(start)
        chunk = self.fh.read(_CHUNK)
        if len(chunk) < _CHUNK_HEADER:
            return False
        self.next_chunk += _CHUNK
        if not chunk.startswith(b"ElfChnk\x00"):
            return True
        pos = _CHUNK_HEADER
        while pos + 28 <= len(chunk) and chunk.startswith(_RECORD_MAGIC, pos):
            size = _U32.unpack_from(chunk, pos + 4)[0]
            if size < 28 or pos + size > len(chunk):
                break
            out: dict[str, Any] = {}
            try:
                _values(chunk, pos + 24, pos + size - 4, out, 0)
            except (struct.error, IndexError, ValueError):  # pragma: no cover - defensive
                out = {}
            self.pending[_U64.unpack_from(chunk, pos + 8)[0]] = out
            pos += size
        return True

    def get(self, record_id: int) -> dict[str, Any] | None:
        scanned = 0
        while record_id not in self.pending:
            if scanned >= self.LOOKAHEAD or not self._scan_next():
                self.misses += 1
                return None
            scanned += 1
        found = self.pending.pop(record_id)
        if len(self.pending) > 50_000:  # stale entries of records pyevtx-rs skipped
            self.pending.clear()
        return found


def _batch(iterator: Any, size: int, stats: EvtxStats, path: str) -> tuple[list[Any], bool]:
    """Pull up to `size` records; warnings and errors are counted, never raised."""
    out: list[Any] = []
    done = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for _ in range(size):
                out.append(next(iterator))
        except StopIteration:
            done = True
        except (RuntimeError, OSError, ValueError) as ex:
            stats.error(f"{path}: {ex}")
            done = True
        except BaseException as ex:  # pyo3 PanicException derives from BaseException
            if isinstance(ex, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)):
                raise
            stats.error(f"{path}: parser panic: {ex}")
            done = True
    for warning in caught:
        stats.error(f"{path}: {warning.message}")
    return out, done


Keep = Callable[[str, int], bool]


def quick_key(raw: Any) -> tuple[str, int] | None:
    """(channel, Gene EventID) of a raw pyevtx-rs record, or None when not obvious.

    Equals what the engine computes on the rendered event: a Qualifiers EventID renders as an
    object, which Gene parses as 0 (docs/reference/gene.md §4). Anything unusual gives None (render
    it).
    """
    event = raw.get("Event") if raw.__class__ is dict else None
    system = event.get("System") if event.__class__ is dict else None
    if system.__class__ is not dict:
        return None
    created = system.get("TimeCreated")
    attrs = created.get("#attributes") if created.__class__ is dict else None
    channel = system.get("Channel")
    if attrs.__class__ is not dict or "SystemTime" not in attrs or channel.__class__ is not str:
        return None
    event_id = system.get("EventID")
    if event_id.__class__ is int:
        return (channel, event_id) if 0 <= event_id < 2**31 else None
    if event_id.__class__ is dict and event_id.get("#attributes"):
        return channel, 0
    return None


def read_evtx(
    path: str | Path, stats: EvtxStats | None = None, *, keep: Keep | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the events of an EVTX file in golang-evtx's JSON rendering.

    Corrupt chunks/records are skipped and counted in `stats`; the file itself not being an
    EVTX file is also counted (one error), never raised. With `keep(channel, event_id)`,
    records it refuses are counted (`stats.skipped`) but not rendered nor yielded: the
    scanner uses it to skip events that no rule can match.
    """
    stats = stats if stats is not None else EvtxStats()
    stats.files += 1
    name = str(path)
    try:
        fh = open(path, "rb")
    except OSError as ex:
        stats.error(f"{name}: {ex}")
        return
    try:
        yield from _read_open(fh, name, stats, keep)
    finally:
        fh.close()


def _read_open(
    fh: BinaryIO, name: str, stats: EvtxStats, keep: Keep | None
) -> Iterator[dict[str, Any]]:
    try:
        parser = evtx.PyEvtxParser(name, number_of_threads=1, skip_errors=True)
        iterator = parser.records_json()
    except (OSError, RuntimeError, ValueError) as ex:
        stats.error(f"{name}: {ex}")
        return
    except BaseException as ex:  # pragma: no cover - pyo3 panic at open
        if isinstance(ex, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)):
            raise
        stats.error(f"{name}: parser panic: {ex}")
        return
    index = _TypedIndex(fh)
    done = False
    while not done:
        records, done = _batch(iterator, 256, stats, name)
        for record in records:
            try:
                raw = orjson.loads(record["data"])
                if keep is not None:
                    key = quick_key(raw)
                    if key is not None and not keep(*key):
                        stats.records += 1
                        stats.skipped += 1
                        continue
                event = normalize_record(raw, index.get(record["event_record_id"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as ex:
                stats.error(f"{name}: record {record.get('event_record_id')}: {ex}")
                continue
            stats.records += 1
            yield event
