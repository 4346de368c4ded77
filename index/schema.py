"""The Tantivy schema of the event index and the document built for each event.

Field layout (all text lower-cased at ingestion so queries are case-insensitive):

* ``seq`` (u64, stored, fast): store sequence number, the document identity.
* ``ts`` / ``rt`` (i64 microseconds since the epoch, fast): event and receipt time (UTC).
* ``endpoint``, ``host``, ``channel``, ``computer``, ``sig``, ``hash``, ``ehash``: ``raw`` exact
  tokens. SECURITY/PERF: hashes live in raw fields because the ``default`` tokenizer drops
  tokens longer than 40 characters (a SHA-256 would never match).
* ``event_id``, ``crit``, ``det``, ``retro`` (u64, fast).
* promoted high-cardinality EventData fields (``image``, ``command_line``, …): the ``heron``
  analyzer (simple tokenizer + lower-case, *no* 40-character limit) with positions.
* ``kv`` (raw): one ``name=value`` token per EventData/UserData field (lower-case), except
  command lines (:data:`NO_KV`). Exact values, anchored wildcards and word matches on any
  other field are regexes over the ``name=`` slice of this term dictionary (cost grows with
  that field's distinct values).
* ``all`` (``heron`` analyzer, positions): every value that has no promoted field; free text
  searches ``all`` and the promoted fields.

PERF(index): an earlier layout also indexed every field in a tokenized JSON field; it
doubled indexing time for little gain, so per-field words go through ``kv`` instead.
* ``raw`` (bytes, stored): the full event JSON returned by searches.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import tantivy

from index.fields import (
    COLUMNS_ONLY,
    HASH_ALGOS,
    PROMOTED,
    detection_of,
    event_id_of,
    event_time,
    flat_values,
    kv_term,
    parse_hashes,
)

__all__ = [
    "ANALYZER",
    "BOOL_FIELDS",
    "DATE_FIELDS",
    "NOT_INDEXED",
    "NO_KV",
    "NUMERIC_FIELDS",
    "RAW_FIELDS",
    "SCHEMA_VERSION",
    "TEXT_FIELDS",
    "build_schema",
    "from_micros",
    "Projection",
    "project",
    "register_analyzers",
    "to_micros",
]

SCHEMA_VERSION = 4
ANALYZER = "heron"
RAW_FIELDS = ("endpoint", "host", "channel", "computer", "sig", "hash", "ehash")
NUMERIC_FIELDS = ("seq", "event_id", "crit")
BOOL_FIELDS = ("det", "retro")
DATE_FIELDS = ("ts", "rt")
TEXT_FIELDS = tuple(PROMOTED.values())
# PERF(index): command lines are long and unique; they get no kv token (wildcards on them are
# token-level, see query.py).
NO_KV = frozenset({"commandline", "parentcommandline"})
# PERF(index): Sysmon's per-event UTC times duplicate ``ts`` and are unique tokens (7 per value);
# they are stored (``raw``) but not indexed. Query the event time with ``ts:``.
NOT_INDEXED = frozenset({"utctime", "creationutctime", "previouscreationutctime"})
_COLUMN_OF: dict[str, str] = {**PROMOTED, **COLUMNS_ONLY}
_COLUMNS: tuple[str, ...] = tuple(_COLUMN_OF.values())


def build_schema() -> tantivy.Schema:
    """Return the Tantivy schema described in the module docstring."""
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("seq", stored=True, indexed=True, fast=True)
    # NOTE(index): tantivy date fields keep whole seconds; microseconds as i64 sort exactly.
    sb.add_integer_field("ts", stored=False, indexed=True, fast=True)
    sb.add_integer_field("rt", stored=False, indexed=True, fast=True)
    for name in RAW_FIELDS:
        sb.add_text_field(name, stored=False, tokenizer_name="raw", index_option="basic")
    for name in ("event_id", "crit", *BOOL_FIELDS):
        sb.add_unsigned_field(name, stored=False, indexed=True, fast=True)
    for name in TEXT_FIELDS:
        sb.add_text_field(name, stored=False, tokenizer_name=ANALYZER, index_option="position")
    sb.add_text_field("kv", stored=False, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("all", stored=False, tokenizer_name=ANALYZER, index_option="position")
    sb.add_bytes_field("raw", stored=True, indexed=False, fast=False)
    return sb.build()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Return microseconds since the epoch of an aware (or naive UTC) datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICRO


def from_micros(value: int) -> datetime:
    """Return the aware UTC datetime of microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=value)


def register_analyzers(index: tantivy.Index) -> None:
    """Register the ``heron`` analyzer (must be done every time an index is opened)."""
    analyzer = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(255))
        .filter(tantivy.Filter.lowercase())
        .build()
    )
    index.register_tokenizer(ANALYZER, analyzer)




@dataclass(frozen=True, slots=True)
class Projection:
    """One event as the writer stores it.

    Attributes:
        seq: Store sequence number.
        doc_json: The Tantivy document as JSON text (for ``IndexWriter.add_json``).
        row: The DuckDB ``events`` row, in ``tables.EVENT_COLUMNS`` order.
    """

    seq: int
    doc_json: str
    row: tuple[Any, ...]


def project(
    event: dict[str, Any], *, seq: int, rt: datetime, endpoint: str, hostname: str, raw: bytes
) -> Projection:
    """Build the Tantivy document and the DuckDB row of one final event in one pass.

    PERF(index): this is the ingest hot path (one JSON document per event, handed to
    Tantivy with ``add_json``; ~3× cheaper than ``Document.add_*`` calls).
    """
    inner = event["Event"]
    system = inner.get("System")
    if not isinstance(system, dict):
        system = {}
    data: dict[str, str] = {}
    flat_values(inner.get("EventData"), data)
    flat_values(inner.get("UserData"), data)
    sigs, crit = detection_of(inner)
    edr_event = (inner.get("EdrData") or {}).get("Event") or {}
    retro = bool(edr_event.get("Retro"))
    ts = event_time(event) or rt
    channel = system.get("Channel")
    channel = channel if isinstance(channel, str) else ""
    computer = system.get("Computer")
    computer = computer if isinstance(computer, str) else ""
    event_id = event_id_of(event)
    columns: dict[str, str] = {}
    hashes: dict[str, str] = {}
    digests: list[str] = []
    kv: list[str] = []
    doc: dict[str, Any] = {
        "seq": seq,
        "ts": to_micros(ts),
        "rt": to_micros(rt),
        "endpoint": endpoint,
        "channel": channel.lower(),
        "computer": computer.lower(),
        "event_id": event_id,
        "crit": crit,
        "det": 1 if sigs else 0,
        "retro": 1 if retro else 0,
        "ehash": edr_event.get("Hash", ""),
    }
    if hostname:
        doc["host"] = hostname.lower()
    free: list[str] = [computer, channel, *sigs]
    for key, value in data.items():
        low = key.lower()
        if low in NOT_INDEXED:
            continue
        column = _COLUMN_OF.get(low)
        if column is not None:
            columns[column] = value
            if low in PROMOTED:
                doc[column] = value
        if low not in PROMOTED:
            free.append(value)
        if "hash" in low:
            for algo, found in parse_hashes(value).items():
                digests.extend(found)
                hashes.setdefault(algo, found[0])
        if low not in NO_KV:
            kv.append(kv_term(low, value))
    doc["kv"] = kv
    doc["all"] = free
    if sigs:
        doc["sig"] = [s.lower() for s in sigs]
    if digests:
        doc["hash"] = digests
    doc["raw"] = base64.b64encode(raw).decode("ascii")
    row = (
        seq,
        ts.replace(tzinfo=None),
        rt.replace(tzinfo=None),
        endpoint,
        hostname,
        channel,
        event_id,
        computer,
        *(columns.get(name) for name in _COLUMNS),
        *(hashes.get(algo) for algo in HASH_ALGOS),
        sigs,
        crit,
        bool(sigs),
        retro,
        doc["ehash"],
    )
    return Projection(seq, orjson.dumps(doc).decode(), row)
