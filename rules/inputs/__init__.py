"""Event inputs: every common export of Windows and Linux events, read as Heron events.

Owns format detection and the readers behind `heron scan`, agent replay and `heron-manager
import`: EVTX, WHIDS/Gene JSON, Winlogbeat/ECS JSON, flattened JSON (OTRF/Mordor, NXLog),
Windows event XML, Sysmon for Linux (syslog, journald), CSV with a header and Linux audit logs,
plain or inside `.gz`, `.zip` and `.tar(.gz)` archives (read in place, streamed). Every reader
yields events in the golang-evtx rendering the rules see for `.evtx` files (docs/reference/gene.md
§12.2), and
counts each event under the shape it was recognised as in `tally.shapes`; events in no known
shape are passed on unchanged and counted as `unrecognised`, so a scan never reports nothing
silently.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from . import jsonshapes
from .auditd import iter_audit
from .jsonshapes import UNKNOWN, classify, from_ecs, from_flat, is_gene
from .jsonstream import iter_json_stream
from .tabular import dialect_of, iter_rows
from .winxml import iter_line_events, iter_xml_events

__all__ = [
    "FORMATS",
    "UNRECOGNISED",
    "SKIPPED_LINES",
    "Tally",
    "InputStats",
    "read_path",
    "read_stream",
    "normalize",
    "sniff",
    "wanted",
    "summary_lines",
]

FORMATS = ("auto", "evtx", "json", "winlogbeat", "flat", "xml", "sysmon-linux", "csv", "auditd")
UNRECOGNISED = UNKNOWN
SKIPPED_LINES = jsonshapes.SKIPPED  # text lines without an event (other programs' syslog lines)
WARN_FRACTION = 0.02
_HEAD = 64 * 1024
_EXTENSIONS = (
    ".evtx",
    ".json",
    ".jsonl",
    ".ndjson",
    ".xml",
    ".csv",
    ".tsv",
    ".log",
    ".zip",
    ".tar",
    ".tgz",
    ".gz",
    ".audit",
    ".syslog",
)
_AUDIT = re.compile(r"^(?:node=\S+ )?type=\S+ msg=audit\(\d+")
_EVENT_TAG = re.compile(r"<(?:\w+:)?Event[\s>]")
_EVTX_MAGIC = b"ElfFile\x00"
_7Z_MAGIC = b"7z\xbc\xaf\x27\x1c"


class Tally(Protocol):
    """Where readers count: `rules.scan.ScanStats` or `InputStats`."""

    events: int
    shapes: dict[str, int]

    def parse_error(self, message: str) -> None: ...


@dataclass(slots=True)
class InputStats:
    """Counters of a read outside `heron scan` (agent replay, manager import)."""

    events: int = 0
    parse_errors: int = 0
    shapes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def parse_error(self, message: str) -> None:
        self.parse_errors += 1
        if len(self.errors) < 100:
            self.errors.append(message)

    @property
    def unrecognised(self) -> int:
        return self.shapes.get(UNRECOGNISED, 0)


def _add(tally: Tally, shape: str, n: int = 1) -> None:
    tally.shapes[shape] = tally.shapes.get(shape, 0) + n


def wanted(name: str) -> bool:
    """Whether a directory walk reads this file (event exports and archives by name)."""
    low = name.lower()
    return low.endswith(_EXTENSIONS) or low.startswith(("audit.log", "syslog", "messages"))


# --- format detection ------------------------------------------------------------------------
def _encoding(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head[1:2] == b"\x00" and head[:1] in (b"<", b"{", b"[", b"t", b"n"):
        return "utf-16-le"
    if head[:1] == b"\x00" and head[1:2] in (b"<", b"{", b"["):
        return "utf-16-be"
    return "utf-8-sig"


def sniff(head: bytes) -> str:
    """The format of a file from its first bytes: a `FORMATS` name, `zip`, `tar`, `gzip`, `7z`
    or `unknown`."""
    if head.startswith(_EVTX_MAGIC):
        return "evtx"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(_7Z_MAGIC):
        return "7z"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    text = head.decode(_encoding(head), errors="replace").lstrip("\ufeff")
    lines = [line.strip() for line in text.splitlines()[:50] if line.strip()]
    if not lines:
        return "json"  # empty input: nothing to count either way
    first = lines[0]
    if first[:1] in ("{", "["):
        return "json"
    if _AUDIT.match(first):
        return "auditd"
    if first.startswith("<"):
        return "xml" if _EVENT_TAG.search(text) else "unknown"
    if _EVENT_TAG.search(text):  # anywhere in the head: syslog mixes other programs' lines
        return "sysmon-linux"
    if dialect_of(text) is not None:
        return "csv"
    return "unknown"


class _Rewound(io.RawIOBase):
    """A stream whose first bytes were read for sniffing, served again before the rest."""

    def __init__(self, head: bytes, fh: IO[bytes]) -> None:
        self.head = head
        self.fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.fh.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _text(fh: BinaryIO, head: bytes, newline: str | None = None) -> io.TextIOWrapper:
    return io.TextIOWrapper(fh, encoding=_encoding(head), errors="replace", newline=newline)


# --- reading ---------------------------------------------------------------------------------
def normalize(
    values: Iterable[Any], tally: Tally, fmt: str = "json", prefix: str = ""
) -> Iterator[Any]:
    """Map decoded JSON values to Heron events by shape (`fmt` json: detect; winlogbeat, flat:
    forced), counting shapes; values in no known shape are passed on unchanged."""
    shapes = tally.shapes
    native = 0
    gene = prefix + jsonshapes.GENE
    try:
        for obj in values:
            if fmt == "json":
                if obj.__class__ is dict and is_gene(obj):
                    native += 1  # Performance: the common case costs a few lookups
                    yield obj
                    continue
                if obj.__class__ is list:  # a JSON array of events (Kibana, jq -s)
                    yield from normalize(obj, tally, fmt, prefix)
                    continue
                shape, event = classify(obj)
            else:
                mapped = (
                    (from_ecs if fmt == "winlogbeat" else from_flat)(obj)
                    if obj.__class__ is dict
                    else None
                )
                shape = (
                    (jsonshapes.ECS if fmt == "winlogbeat" else jsonshapes.FLAT)
                    if mapped is not None
                    else UNKNOWN
                )
                event = mapped if mapped is not None else obj
            key = shape if shape in (UNKNOWN, SKIPPED_LINES) else prefix + shape
            shapes[key] = shapes.get(key, 0) + 1
            if event is not None:
                yield event
    finally:
        if native:
            shapes[gene] = shapes.get(gene, 0) + native


def read_path(
    path: str | Path,
    fmt: str = "auto",
    tally: Tally | None = None,
    keep: Callable[[str, int], bool] | None = None,
) -> Iterator[dict[str, object]]:
    """Events of one file (any supported format or archive); errors are counted in `tally`."""
    tally = tally if tally is not None else InputStats()
    name = str(path)
    try:
        fh = open(path, "rb")
    except OSError as ex:
        tally.parse_error(f"{name}: {ex}")
        return
    with fh:
        yield from read_stream(name, fh, fmt, tally, keep, real_path=True)


def read_stream(
    name: str,
    fh: BinaryIO,
    fmt: str,
    tally: Tally,
    keep: Callable[[str, int], bool] | None = None,
    *,
    real_path: bool = False,
) -> Iterator[Any]:
    """Events of a binary stream named `name` (archive members are `archive!member`)."""
    try:
        head = fh.read(_HEAD)
    except (OSError, EOFError, zipfile.BadZipFile) as ex:
        tally.parse_error(f"{name}: {ex}")
        return
    kind = sniff(head)
    stream: BinaryIO = io.BufferedReader(_Rewound(head, fh), 1 << 16)
    try:
        if kind in ("zip", "tar", "gzip", "7z"):
            if real_path:
                fh.seek(0)
            yield from _archive(
                name, kind, fh if real_path else stream, fmt, tally, keep, real_path
            )
        elif fmt == "evtx" or (fmt == "auto" and kind == "evtx"):
            yield from _evtx(name, fh if real_path else stream, tally, keep, real_path)
        else:
            yield from _text_events(name, stream, head, kind if fmt == "auto" else fmt, tally)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as ex:
        tally.parse_error(f"{name}: {ex}")


def _evtx(
    name: str, fh: BinaryIO, tally: Tally, keep: Callable[[str, int], bool] | None, real_path: bool
) -> Iterator[dict[str, Any]]:
    from ..evtx import EvtxStats, read_evtx

    stats = EvtxStats()
    spooled = ""
    try:
        if real_path:
            yield from read_evtx(name, stats, keep=keep)
        else:  # the EVTX parser needs a file: spool the member, streamed
            with tempfile.NamedTemporaryFile(suffix=".evtx") as tmp:
                spooled = tmp.name
                shutil.copyfileobj(fh, tmp, 1 << 20)
                tmp.flush()
                yield from read_evtx(tmp.name, stats, keep=keep)
    finally:
        for i in range(stats.errors):
            message = stats.messages[i] if i < len(stats.messages) else f"{name}: EVTX error"
            tally.parse_error(message.replace(spooled, name) if spooled else message)
        tally.events += stats.skipped
        _add(tally, "evtx", stats.records)


def _archive(
    name: str,
    kind: str,
    fh: BinaryIO,
    fmt: str,
    tally: Tally,
    keep: Callable[[str, int], bool] | None,
    real_path: bool,
) -> Iterator[Any]:
    if kind == "7z":
        tally.parse_error(
            f"{name}: 7z archives are not read in place (no maintained pure-Python "
            "reader): extract it first, e.g. `7z x FILE`, and scan the folder"
        )
        return
    if kind == "gzip":
        low = name.lower()
        inner = (
            name
            if low.endswith((".tar.gz", ".tgz"))
            else name[:-3]
            if low.endswith(".gz")
            else name + "!gunzip"
        )
        with gzip.GzipFile(fileobj=fh) as gz:
            yield from read_stream(inner, gz, fmt, tally, keep)  # type: ignore[arg-type]
        return
    if kind == "tar":
        with tarfile.open(fileobj=fh, mode="r|*") as tar:
            for member in tar:
                if member.isfile() and wanted(member.name):
                    data = tar.extractfile(member)
                    if data is not None:
                        yield from read_stream(
                            f"{name}!{member.name}",
                            data,  # type: ignore
                            fmt,
                            tally,
                            keep,
                        )
        return
    if not real_path:  # zip needs random access: spool nested or piped archives
        with tempfile.TemporaryFile() as tmp:
            shutil.copyfileobj(fh, tmp, 1 << 20)
            tmp.seek(0)
            yield from _zip(name, tmp, fmt, tally, keep)
        return
    yield from _zip(name, fh, fmt, tally, keep)


def _zip(
    name: str, fh: BinaryIO, fmt: str, tally: Tally, keep: Callable[[str, int], bool] | None
) -> Iterator[Any]:
    with zipfile.ZipFile(fh) as archive:
        for info in archive.infolist():
            if info.is_dir() or not wanted(info.filename):
                continue
            try:
                with archive.open(info) as member:
                    yield from read_stream(
                        f"{name}!{info.filename}",
                        member,  # type: ignore
                        fmt,
                        tally,
                        keep,
                    )
            except RuntimeError as ex:  # encrypted member without a password
                tally.parse_error(f"{name}!{info.filename}: {ex}")


def _text_events(
    name: str, stream: BinaryIO, head: bytes, kind: str, tally: Tally
) -> Iterator[Any]:
    error = tally.parse_error

    def skipped() -> None:
        _add(tally, SKIPPED_LINES)

    if kind in ("json", "winlogbeat", "flat"):
        yield from normalize(iter_json_stream(stream, tally, name), tally, kind)
    elif kind == "xml":
        yield from _counted(iter_xml_events(_text(stream, head), name, error), tally, "windows-xml")
    elif kind == "sysmon-linux":
        yield from _counted(
            iter_line_events(_text(stream, head), name, error, skipped),
            tally,
            "sysmon-linux-syslog",
        )
    elif kind == "auditd":
        yield from _counted(iter_audit(_text(stream, head), skipped), tally, "auditd")
    elif kind == "csv":
        rows = iter_rows(_text(stream, head, newline=""), name, error)
        yield from normalize(rows, tally, "json", prefix="csv:")
    else:
        lines = sum(1 for line in _text(stream, head) if line.strip())
        _add(tally, UNRECOGNISED, lines)
        tally.events += lines
        error(
            f"{name}: format not recognised ({lines} lines not read); "
            f"use --input-format ({', '.join(FORMATS[1:])})"
        )


def _counted(events: Iterator[Any], tally: Tally, shape: str) -> Iterator[Any]:
    n = 0
    try:
        for event in events:
            n += 1
            yield event
    finally:
        _add(tally, shape, n)


def summary_lines(shapes: dict[str, int], events: int) -> tuple[list[str], str | None]:
    """Lines describing the input shapes, and a warning when too many were unrecognised."""
    lines = []
    for shape, n in sorted(shapes.items(), key=lambda kv: (-kv[1], kv[0])):
        if shape not in (UNRECOGNISED, SKIPPED_LINES):
            lines.append(f"  {n:>8}  {shape}")
    unknown = shapes.get(UNRECOGNISED, 0)
    lines.append(f"  {unknown:>8}  in no known shape")
    if shapes.get(SKIPPED_LINES):
        lines.append(f"  {shapes[SKIPPED_LINES]:>8}  text lines without an event (skipped)")
    warning = None
    if unknown and unknown > WARN_FRACTION * max(events, 1):
        warning = (
            f"WARNING: {unknown} of {events} events ({unknown / max(events, 1):.0%}) are "
            "in no known shape: the rules cannot see their fields. Hint: check the "
            "export format and pass --input-format (" + ", ".join(FORMATS[1:]) + "); "
            'known shapes are WHIDS/Gene JSON {"Event": {"System", "EventData"}}, '
            "Winlogbeat/ECS (winlog.*), flattened (EventID + Channel at the top level), "
            "Windows XML, Sysmon for Linux, CSV with a header, audit.log."
        )
    return lines, warning
