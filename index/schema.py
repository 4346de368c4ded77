"""The Tantivy schema of the event index and the document built for each event.

Field layout (all text lower-cased at ingestion so queries are case-insensitive):

* ``seq`` (u64, stored, fast): store sequence number, the document identity.
* ``ts`` / ``rt`` (i64 microseconds since the epoch, fast): event and receipt time (UTC).
* ``endpoint``, ``host``, ``channel``, ``computer``, ``sig``, ``hash``, ``ehash``: ``raw`` exact
  tokens. SECURITY/PERF: hashes live in raw fields because the ``default`` tokenizer drops
  tokens longer than 40 characters (a SHA-256 would never match).
* ``event_id``, ``crit``, ``det``, ``retro`` (u64, fast).
* promoted EventData fields (``image``, ``command_line``, …): the ``heron`` analyzer (simple
  tokenizer + lower-case, *no* 40-character limit) with positions, for phrases and wildcards.
* ``data`` (JSON, ``heron`` analyzer): every EventData/UserData value under its lower-cased name.
* ``kv`` (raw): ``name=value`` tokens for exact values and anchored wildcards on any field.
* ``all`` (``heron`` analyzer): every value, the target of free text.
* ``raw`` (bytes, stored): the full event JSON returned by searches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import tantivy

from index.fields import PROMOTED, IndexedEvent, kv_term

__all__ = [
    "ANALYZER",
    "BOOL_FIELDS",
    "DATE_FIELDS",
    "NUMERIC_FIELDS",
    "RAW_FIELDS",
    "SCHEMA_VERSION",
    "TEXT_FIELDS",
    "build_schema",
    "from_micros",
    "make_document",
    "register_analyzers",
    "to_micros",
]

SCHEMA_VERSION = 1
ANALYZER = "heron"
RAW_FIELDS = ("endpoint", "host", "channel", "computer", "sig", "hash", "ehash")
NUMERIC_FIELDS = ("seq", "event_id", "crit")
BOOL_FIELDS = ("det", "retro")
DATE_FIELDS = ("ts", "rt")
TEXT_FIELDS = tuple(PROMOTED.values())


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
    sb.add_json_field("data", stored=False, tokenizer_name=ANALYZER, index_option="position")
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




def make_document(ev: IndexedEvent) -> tantivy.Document:
    """Return the Tantivy document of one event."""
    doc = tantivy.Document()
    doc.add_unsigned("seq", ev.seq)
    doc.add_integer("ts", to_micros(ev.ts))
    doc.add_integer("rt", to_micros(ev.rt))
    doc.add_text("endpoint", ev.endpoint.lower())
    if ev.hostname:
        doc.add_text("host", ev.hostname.lower())
    doc.add_text("channel", ev.channel.lower())
    doc.add_text("computer", ev.computer.lower())
    doc.add_unsigned("event_id", ev.event_id)
    doc.add_unsigned("crit", ev.criticality)
    doc.add_unsigned("det", int(ev.detection))
    doc.add_unsigned("retro", int(ev.retro))
    doc.add_text("ehash", ev.event_hash)
    for sig in ev.signatures:
        doc.add_text("sig", sig.lower())
    for digests in ev.hashes.values():
        for digest in digests:
            doc.add_text("hash", digest)
    data = ev.data
    lowered: dict[str, str] = {}
    for key, value in data.items():
        low = key.lower()
        lowered[low] = value
        promoted = PROMOTED.get(low)
        if promoted is not None:
            doc.add_text(promoted, value)
        doc.add_text("kv", kv_term(low, value))
        doc.add_text("all", value)
    doc.add_text("all", ev.computer)
    doc.add_text("all", ev.channel)
    for sig in ev.signatures:
        doc.add_text("all", sig)
    doc.add_json("data", lowered)
    doc.add_bytes("raw", ev.raw)
    return doc
