"""What the store extracts from one WHIDS/Gene event: times, ids, hashes and field values.

The event stays a nested dict (``{"Event": {"System": …, "EventData": …}}``). This module
turns it into an :class:`IndexedEvent`: the values that the Tantivy schema, the DuckDB
table and the query language share. Path lookup and timestamp parsing follow
``rules.event`` (the engine's event model) so the indexed values are the ones rules match on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

try:  # NOTE(index): rules.event is written concurrently; fall back until it lands.
    from rules.event import event_hash as _rules_event_hash
except ImportError:  # pragma: no cover - depends on the rules package state
    _rules_event_hash = None

__all__ = [
    "PROMOTED",
    "IndexedEvent",
    "event_hash",
    "event_id_of",
    "event_time",
    "extract",
    "parse_hashes",
]

# EventData names (lower-case) promoted to their own Tantivy field and DuckDB column.
PROMOTED: dict[str, str] = {
    "image": "image",
    "commandline": "command_line",
    "parentimage": "parent_image",
    "parentcommandline": "parent_command_line",
    "user": "user",
    "targetfilename": "target_filename",
    "targetobject": "target_object",
    "queryname": "query_name",
}
# Further EventData names (lower-case) that only get a DuckDB column.
COLUMNS_ONLY: dict[str, str] = {
    "processguid": "process_guid",
    "parentprocessguid": "parent_process_guid",
    "processid": "process_id",
    "destinationip": "destination_ip",
    "destinationport": "destination_port",
    "destinationhostname": "destination_hostname",
    "sourceip": "source_ip",
    "sourceport": "source_port",
}
HASH_ALGOS = ("md5", "sha1", "sha256", "imphash")
_HEX = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_HEX_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}
_KV_MAX = 512


@dataclass(frozen=True, slots=True)
class IndexedEvent:
    """The searchable projection of one stored event.

    Attributes:
        seq: Store-wide sequence number (unique, increasing in receipt order).
        ts: Event time (``System.TimeCreated.SystemTime``, UTC; receipt time if missing).
        rt: Receipt time at the manager (UTC).
        endpoint: Endpoint UUID (lower-case).
        hostname: Endpoint hostname as enrolled.
        channel: ``System.Channel``.
        event_id: ``System.EventID`` as an int (``Value`` of ``{"Qualifiers","Value"}``).
        computer: ``System.Computer``.
        data: EventData (and flat UserData) values as strings, original keys.
        hashes: Lower-case hex digests found in hash fields, by algorithm.
        signatures: Detection signatures (empty when there is no detection).
        criticality: Detection criticality (0 when there is none).
        detection: True when the event carries a non-empty detection.
        retro: True when the detection comes from a retro-hunt.
        event_hash: ``EdrData.Event.Hash``.
        raw: The full event as JSON bytes (with ``EdrData``).
    """

    seq: int
    ts: datetime
    rt: datetime
    endpoint: str
    hostname: str
    channel: str
    event_id: int
    computer: str
    data: dict[str, str]
    hashes: dict[str, tuple[str, ...]]
    signatures: tuple[str, ...]
    criticality: int
    detection: bool
    retro: bool
    event_hash: str
    raw: bytes


def _strip_edr(data: dict[str, Any]) -> dict[str, Any]:
    inner = data.get("Event")
    if isinstance(inner, dict) and "EdrData" in inner:
        inner = {k: v for k, v in inner.items() if k != "EdrData"}
        return {**data, "Event": inner}
    return data


def event_hash(data: dict[str, Any]) -> str:
    """Return the sha1 hex of the canonical JSON of the event without ``EdrData``."""
    if _rules_event_hash is not None:
        return str(_rules_event_hash(data))
    canon = orjson.dumps(_strip_edr(data), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha1(canon, usedforsecurity=False).hexdigest()


def event_id_of(system: dict[str, Any]) -> int:
    """Return ``System.EventID`` as an int (``Value`` when it is a Qualifiers object)."""
    raw = system.get("EventID")
    if isinstance(raw, dict):
        raw = raw.get("Value")
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def event_time(system: dict[str, Any]) -> datetime | None:
    """Return ``System.TimeCreated.SystemTime`` as an aware UTC datetime, or ``None``."""
    created = system.get("TimeCreated")
    text = created.get("SystemTime") if isinstance(created, dict) else created
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_hashes(value: str) -> dict[str, list[str]]:
    """Split a Sysmon ``Hashes`` value (``SHA1=…,MD5=…``) or a bare digest by algorithm."""
    found: dict[str, list[str]] = {}
    for part in value.split(","):
        algo, sep, digest = part.partition("=")
        if not sep:
            algo, digest = "", algo
        digest = digest.strip().lower()
        if not _HEX.fullmatch(digest):
            continue
        name = algo.strip().lower() or _HEX_LENGTHS.get(len(digest), "hash")
        if name not in HASH_ALGOS:
            name = _HEX_LENGTHS.get(len(digest), "hash")
        found.setdefault(name, []).append(digest)
    return found


def _flat_values(section: Any, out: dict[str, str]) -> None:
    if not isinstance(section, dict):
        return
    for key, value in section.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool | int | float):
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
        elif isinstance(value, dict):
            _flat_values(value, out)


def extract(
    event: dict[str, Any],
    *,
    seq: int,
    rt: datetime,
    endpoint: str,
    hostname: str,
    ehash: str,
    raw: bytes,
) -> IndexedEvent:
    """Build the :class:`IndexedEvent` of a finalized event (``EdrData`` already set)."""
    inner = event.get("Event") if isinstance(event.get("Event"), dict) else {}
    assert isinstance(inner, dict)
    system = inner.get("System") if isinstance(inner.get("System"), dict) else {}
    assert isinstance(system, dict)
    data: dict[str, str] = {}
    _flat_values(inner.get("EventData"), data)
    _flat_values(inner.get("UserData"), data)
    hashes: dict[str, list[str]] = {}
    for key, value in data.items():
        if "hash" in key.lower():
            for algo, digests in parse_hashes(value).items():
                hashes.setdefault(algo, []).extend(digests)
    detection = inner.get("Detection")
    sigs: tuple[str, ...] = ()
    crit = 0
    if isinstance(detection, dict):
        raw_sigs = detection.get("Signature") or []
        sigs = tuple(str(s) for s in raw_sigs) if isinstance(raw_sigs, list) else (str(raw_sigs),)
        try:
            crit = int(detection.get("Criticality") or 0)
        except (TypeError, ValueError):
            crit = 0
    edr = inner.get("EdrData") if isinstance(inner.get("EdrData"), dict) else {}
    edr_event = edr.get("Event") if isinstance(edr, dict) else None
    retro = bool(edr_event.get("Retro")) if isinstance(edr_event, dict) else False
    computer = system.get("Computer")
    channel = system.get("Channel")
    return IndexedEvent(
        seq=seq,
        ts=event_time(system) or rt,
        rt=rt,
        endpoint=endpoint,
        hostname=hostname,
        channel=channel if isinstance(channel, str) else "",
        event_id=event_id_of(system),
        computer=computer if isinstance(computer, str) else "",
        data=data,
        hashes={k: tuple(v) for k, v in hashes.items()},
        signatures=sigs,
        criticality=max(0, min(crit, 255)),
        detection=bool(sigs),
        retro=retro,
        event_hash=ehash,
        raw=raw,
    )


def kv_term(key: str, value: str) -> str:
    """Return the exact-value keyword token ``key=value`` (lower-case, bounded length)."""
    return f"{key.lower()}={value.lower()}"[:_KV_MAX]
