"""The Tantivy schema of the event index and the document built for each event.

Field layout (all text lower-cased at ingestion so queries are case-insensitive):

* ``seq`` (u64, stored, fast): store sequence number, the document identity.
* ``ts`` / ``rt`` (i64 microseconds since the epoch, fast): event and receipt time (UTC).
* ``endpoint``, ``host``, ``channel``, ``computer``, ``sig``, ``hash``, ``ehash``, ``attack``:
  ``raw`` exact tokens (``attack``: ATT&CK technique IDs, their parents and tactics).
  SECURITY/PERF: hashes live in raw fields because the ``default`` tokenizer drops
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

Performance: an earlier layout also indexed every field in a tokenized JSON field; it
doubled indexing time for little gain, so per-field words go through ``kv`` instead.
* ``raw`` (bytes, stored): the full event JSON returned by searches.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
import tantivy

from index.fields import (
    COLUMNS_ONLY,
    HASH_ALGOS,
    PROMOTED,
    attack_of,
    attack_terms,
    detection_of,
    event_id_of,
    event_time,
    flat_values,
    parse_hashes,
)
from rules.event import parse_event_id

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
    "project_many",
    "build_analyzer",
    "register_analyzers",
    "to_micros",
    "with_raw",
]

SCHEMA_VERSION = 5  # 5: the `attack` field (ATT&CK techniques and tactics)
ANALYZER = "heron"
RAW_FIELDS = ("endpoint", "host", "channel", "computer", "sig", "hash", "ehash", "attack")
NUMERIC_FIELDS = ("seq", "event_id", "crit")
BOOL_FIELDS = ("det", "retro")
DATE_FIELDS = ("ts", "rt")
TEXT_FIELDS = tuple(PROMOTED.values())
# Performance: command lines are long and unique; they get no kv token (wildcards on them are
# token-level, see query.py).
NO_KV = frozenset({"commandline", "parentcommandline"})
# Performance: Sysmon's per-event UTC times duplicate ``ts`` and are unique tokens (7 per value);
# they are stored (``raw``) but not indexed. Query the event time with ``ts:``.
NOT_INDEXED = frozenset({"utctime", "creationutctime", "previouscreationutctime"})
_COLUMN_OF: dict[str, str] = {**PROMOTED, **COLUMNS_ONLY}
_COLUMNS: tuple[str, ...] = tuple(_COLUMN_OF.values())
_KV_MAX = 512  # as fields.kv_term


def build_schema() -> tantivy.Schema:
    """Return the Tantivy schema described in the module docstring."""
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("seq", stored=True, indexed=True, fast=True)
    # tantivy date fields keep whole seconds; microseconds as i64 sort exactly.
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


def build_analyzer() -> tantivy.TextAnalyzer:
    """The ``heron`` analyzer: simple tokenizer, tokens up to 255 bytes, lower-cased."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(255))
        .filter(tantivy.Filter.lowercase())
        .build()
    )


def register_analyzers(index: tantivy.Index) -> None:
    """Register the ``heron`` analyzer (must be done every time an index is opened)."""
    index.register_tokenizer(ANALYZER, build_analyzer())


class Projection(NamedTuple):
    """One event as the writer stores it (Performance: a tuple is cheaper to build).

    Attributes:
        seq: Store sequence number.
        doc_json: The Tantivy document as UTF-8 JSON, without ``raw`` (see :func:`with_raw`).
        raw: The stored event JSON (the document's ``raw`` bytes).
        row: The DuckDB ``events`` row, in ``tables.EVENT_COLUMNS`` order.
    """

    seq: int
    doc_json: bytes
    raw: bytes
    row: tuple[Any, ...]


def project(
    event: dict[str, Any], *, seq: int, rt: datetime, endpoint: str, hostname: str, raw: bytes
) -> Projection:
    """Build the Tantivy document and the DuckDB row of one final event in one pass.

    Performance: this is the ingest hot path (one JSON document per event, handed to
    Tantivy with ``add_json``; ~3× cheaper than ``Document.add_*`` calls).
    """
    return project_many(
        [event], first_seq=seq, rt=rt, endpoint=endpoint, hostname=hostname, raws=[raw]
    )[0]


def with_raw(doc_json: bytes, raw: bytes) -> str:
    """The document JSON for ``add_json`` with the stored event added as ``raw``.

    Performance: done by whoever adds the document (the writer child process in the
    manager), not by the projection: encoding ``raw`` into the document is ≈ 7 µs/event
    (base64 + JSON string), a fifth of the projection's cost.
    """
    return b"".join((doc_json[:-1], b',"raw":"', base64.b64encode(raw), b'"}')).decode()


def _fast_time(system: dict[str, Any]) -> tuple[bool, datetime | None]:
    """``(True, SystemTime)`` parsed without the regex when it is plain RFC 3339 UTC.

    Performance: ``YYYY-MM-DDTHH:MM:SS[.digits]Z`` is what every Windows event carries;
    ``fromisoformat`` truncates the fraction to microseconds exactly as ``rules.event`` does.
    ``(False, None)``: not that shape, use ``rules.event``.
    """
    created = system.get("TimeCreated")
    if created.__class__ is not dict:
        return False, None
    text = created.get("SystemTime")
    if text.__class__ is not str or len(text) < 20 or text[-1] != "Z" or text[10] != "T":
        return False, None
    if len(text) > 20:
        frac = text[20:-1]
        if text[19] != "." or not (frac.isascii() and frac.isdigit()):
            return False, None
    try:
        return True, datetime.fromisoformat(text)
    except ValueError:
        return False, None


def _time_and_id(
    event: dict[str, Any], system: dict[str, Any], rt: datetime
) -> tuple[datetime, int]:
    """Event time (``rt`` when it has none) and EventID, as ``rules.event`` reads them."""
    fast, ts = _fast_time(system)
    if not fast:
        return event_time(event) or rt, event_id_of(event)
    eid = system.get("EventID", 0)
    if eid.__class__ is dict and "Value" in eid:
        eid = eid["Value"]
    return ts or rt, parse_event_id(eid)


_KeyInfo = tuple[str | None, bool, bool, str | None]
_KEY_INFO: dict[str, _KeyInfo | None] = {}
_KEY_INFO_MAX = 4096
_MISS: Any = object()


def _key_info(key: str) -> _KeyInfo | None:
    """What the projection does with an EventData name (``None``: not indexed).

    Returns ``(column, promoted, hash-bearing, kv prefix or None)``. Performance: cached per
    name (Sysmon has a few dozen), bounded so hostile names cannot grow it.
    """
    low = key.lower()
    info: _KeyInfo | None = None
    if low not in NOT_INDEXED:
        info = (
            _COLUMN_OF.get(low),
            low in PROMOTED,
            "hash" in low,
            None if low in NO_KV else low + "=",
        )
    if len(_KEY_INFO) < _KEY_INFO_MAX:
        _KEY_INFO[key] = info
    return info


def _data_items(inner: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """The scalar EventData/UserData values as ``fields.flat_values`` flattens them.

    Performance: a flat EventData of strings and no UserData (nearly every event) is iterated
    as it is, without building the merged dictionary.
    """
    event_data = inner.get("EventData")
    if (
        "UserData" not in inner
        and event_data.__class__ is dict
        and all(v.__class__ is str for v in event_data.values())
    ):
        return event_data.items()
    data: dict[str, str] = {}
    flat_values(event_data, data)
    flat_values(inner.get("UserData"), data)
    return data.items()


_HashParts = tuple[tuple[str, list[str]], ...]
_HASHES: dict[str, _HashParts] = {}
_HASHES_MAX = 65_536
_HASHES_VALUE_MAX = 512  # Sysmon's Hashes is ~200 chars; hostile values are not kept


def _hashes_of(value: str) -> _HashParts:
    """``fields.parse_hashes(value)`` as pairs, cached (Performance: binaries repeat)."""
    parts = _HASHES.get(value)
    if parts is None:
        parts = tuple(parse_hashes(value).items())
        if len(value) > _HASHES_VALUE_MAX:
            return parts
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        _HASHES[value] = parts
    return parts


def project_many(
    events: list[dict[str, Any]],
    *,
    first_seq: int,
    rt: datetime,
    endpoint: str,
    hostname: str,
    raws: list[bytes],
) -> list[Projection]:
    """:func:`project` for the consecutive events of one journal record (shared values once)."""
    rt_micros = to_micros(rt)
    rt_naive = rt.replace(tzinfo=None)
    host_low = hostname.lower()
    out: list[Projection] = []
    dumps = orjson.dumps
    key_info = _KEY_INFO
    for i, event in enumerate(events):
        seq = first_seq + i
        inner = event["Event"]
        system = inner.get("System")
        if not isinstance(system, dict):
            system = {}
        sigs, crit = detection_of(inner)
        techniques, tactics = attack_of(inner) if sigs else ([], [])
        edr_event = (inner.get("EdrData") or {}).get("Event") or {}
        retro = bool(edr_event.get("Retro"))
        ts, event_id = _time_and_id(event, system, rt)
        channel = system.get("Channel")
        channel = channel if isinstance(channel, str) else ""
        computer = system.get("Computer")
        computer = computer if isinstance(computer, str) else ""
        columns: dict[str, str] = {}
        hashes: dict[str, str] = {}
        digests: list[str] = []
        kv: list[str] = []
        ehash = edr_event.get("Hash", "")
        doc: dict[str, Any] = {
            "seq": seq,
            "ts": to_micros(ts) if ts is not rt else rt_micros,
            "rt": rt_micros,
            "endpoint": endpoint,
            "channel": channel.lower(),
            "computer": computer.lower(),
            # u64 in Tantivy; Gene reads a negative EventID (hostile input only)
            # as a 32-bit int: the document gets 0, the DuckDB row keeps the value.
            "event_id": event_id if event_id >= 0 else 0,
            "crit": crit,
            "det": 1 if sigs else 0,
            "retro": 1 if retro else 0,
            "ehash": ehash,
        }
        if host_low:
            doc["host"] = host_low
        free: list[str] = [computer, channel, *sigs]
        for key, value in _data_items(inner):
            info = key_info.get(key, _MISS)
            if info is _MISS:
                info = _key_info(key)
            if info is None:
                continue
            column, is_promoted, is_hash, kv_prefix = info
            if column is not None:
                columns[column] = value
                if is_promoted:
                    doc[column] = value
                else:
                    free.append(value)
            else:
                free.append(value)
            if is_hash:
                for algo, found in _hashes_of(value):
                    digests.extend(found)
                    hashes.setdefault(algo, found[0])
            if kv_prefix is not None:
                kv.append((kv_prefix + value.lower())[:_KV_MAX])
        doc["kv"] = kv
        doc["all"] = free
        if sigs:
            doc["sig"] = [s.lower() for s in sigs]
        if techniques or tactics:
            doc["attack"] = attack_terms(techniques, tactics)
        if digests:
            doc["hash"] = digests
        get = columns.get
        row = (
            seq,
            ts.replace(tzinfo=None) if ts is not rt else rt_naive,
            rt_naive,
            endpoint,
            hostname,
            channel,
            event_id,
            computer,
            *[get(name) for name in _COLUMNS],
            *[hashes.get(algo) for algo in HASH_ALGOS],
            sigs,
            crit,
            bool(sigs),
            retro,
            ehash,
            techniques,
            tactics,
        )
        out.append(Projection(seq, dumps(doc), raws[i], row))
    return out
