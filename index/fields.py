"""What the store reads from one WHIDS/Gene event: times, ids, hashes and field values.

The event stays a nested dict (``{"Event": {"System": …, "EventData": …}}``). These helpers
give the values that the Tantivy document, the DuckDB row and the query language share.
Event ids, times, hashes and ``%v`` text come from ``rules.event`` (the engine's event
model), so the indexed values are the ones rules match on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rules.event import Event, go_string
from rules.event import event_hash as _event_hash
from rules.event import event_time as _event_time

# EventData names (lower-case) promoted to their own Tantivy field and DuckDB column.
PROMOTED: dict[str, str] = {
    "image": "image",
    "commandline": "command_line",
    "parentimage": "parent_image",
    "parentcommandline": "parent_command_line",
    "targetfilename": "target_filename",
    "targetobject": "target_object",
    "queryname": "query_name",
}
# Further EventData names (lower-case) that only get a DuckDB column.
COLUMNS_ONLY: dict[str, str] = {
    "user": "user",
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
_ATTACK_MAX = 64  # ATTACK entries read per detection (hostile input is bounded)
_ATTACK_LEN = 64


def event_hash(data: object) -> str:
    """Return ``EdrData.Event.Hash``: sha1 of the canonical event JSON (``rules.event``)."""
    return _event_hash(data)


def event_id_of(data: Mapping[str, object]) -> int:
    """Return ``System.EventID`` as the engine reads it (``Value`` of Qualifiers objects)."""
    return Event(data).event_id


def event_time(data: object) -> datetime | None:
    """Return the event time (``System.TimeCreated.SystemTime``) in UTC, or ``None``."""
    return _event_time(data)


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


def flat_values(section: Any, out: dict[str, str]) -> None:
    """Copy the scalar values of a (nested) EventData/UserData section into ``out``."""
    if not isinstance(section, dict):
        return
    for key, value in section.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool | int | float) or value is None:
            out[key] = go_string(value)  # GENE: non-string values match as Go %v text
        elif isinstance(value, dict):
            flat_values(value, out)


def detection_of(inner: dict[str, Any]) -> tuple[list[str], int]:
    """Return ``(signatures, criticality)`` of ``Event.Detection`` (``([], 0)`` if none)."""
    detection = inner.get("Detection")
    if not isinstance(detection, dict):
        return [], 0
    raw_sigs = detection.get("Signature") or []
    sigs = [str(s) for s in raw_sigs] if isinstance(raw_sigs, list) else [str(raw_sigs)]
    try:
        crit = int(detection.get("Criticality") or 0)
    except (TypeError, ValueError):
        crit = 0
    return sigs, max(0, min(crit, 255))


def attack_tactic(value: str) -> str:
    """A tactic as it is indexed: lower-case, words joined by ``-`` ("Defense Evasion" →
    ``defense-evasion``, the ATT&CK short name most rules use)."""
    return "-".join(value.lower().replace("_", " ").split())


def attack_of(inner: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return ``(technique IDs, tactics)`` of ``Event.Detection.ATTACK`` (upper-case IDs, tactics
    as :func:`attack_tactic`), deduplicated in order; ``([], [])`` when there is none."""
    detection = inner.get("Detection")
    items = detection.get("ATTACK") if isinstance(detection, dict) else None
    if not isinstance(items, list):
        return [], []
    techniques: dict[str, None] = {}
    tactics: dict[str, None] = {}
    for item in items[:_ATTACK_MAX]:
        if not isinstance(item, dict):
            continue
        tid, tactic = item.get("ID"), item.get("Tactic")
        if isinstance(tid, str) and tid.strip():
            techniques[tid.strip().upper()[:_ATTACK_LEN]] = None
        if isinstance(tactic, str) and tactic.strip():
            tactics[attack_tactic(tactic)[:_ATTACK_LEN]] = None
    return list(techniques), list(tactics)


def attack_terms(techniques: list[str], tactics: list[str]) -> list[str]:
    """The ``attack`` index tokens: each technique, its parent (``T1059.004`` → also ``t1059``,
    so ``attack:T1059`` finds sub-techniques) and each tactic, lower-case."""
    out: dict[str, None] = {}
    for tid in techniques:
        low = tid.lower()
        out[low] = None
        out[low.split(".", 1)[0]] = None
    for tactic in tactics:
        out[tactic] = None
    return list(out)


def kv_term(key: str, value: str) -> str:
    """Return the exact-value keyword token ``key=value`` (lower-case, bounded length)."""
    return f"{key.lower()}={value.lower()}"[:_KV_MAX]
