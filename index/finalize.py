"""The stored form of an event: ``Event.EdrData`` set, and its JSON encoded once."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from index.errors import InvalidEventError
from index.fields import event_hash

__all__ = ["finalize_batch", "finalize_event"]

# the options of rules.event.event_hash (the canonical event JSON)
_HASH_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def finalize_batch(
    events: Sequence[Mapping[str, object]], endpoint: dict[str, str], receipt: str, retro: bool
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """``finalize_event`` of each event of a batch: the final events and their stored JSON."""
    finals: list[dict[str, Any]] = []
    encoded: list[bytes] = []
    for i, ev in enumerate(events):
        final, blob = finalize_event(ev, i, endpoint, receipt, retro)
        finals.append(final)
        encoded.append(blob)
    return finals, encoded


def finalize_event(
    event: Mapping[str, object], pos: int, endpoint: dict[str, str], receipt: str, retro: bool
) -> tuple[dict[str, Any], bytes]:
    """Return the final event (``EdrData`` set) and its stored JSON.

    Performance: the event hash is the sha1 of the sorted-keys JSON of the event without
    ``EdrData``; the stored JSON reuses that encoding with ``EdrData`` spliced in as the
    last key of ``Event`` (one encoding per event instead of two).
    """
    inner = event.get("Event") if isinstance(event, dict) else None
    if not isinstance(inner, dict):
        raise InvalidEventError('not an {"Event": {...}} object', position=pos)
    # any System shape is stored (a missing or odd one reads as no System);
    # refusing it refused the agent's whole batch.
    edr_prev = inner.get("EdrData")
    if not isinstance(edr_prev, dict):
        edr_prev = {}
    prev_hash = (edr_prev.get("Event") or {}).get("Hash") if retro else None
    detection = inner.get("Detection")
    clean = inner if "EdrData" not in inner else {k: v for k, v in inner.items() if k != "EdrData"}
    blob: bytes | None = None
    if prev_hash:
        digest = prev_hash
    elif len(event) == 1 and clean:
        blob = orjson.dumps({"Event": clean}, option=_HASH_OPTS)
        digest = hashlib.sha1(blob, usedforsecurity=False).hexdigest()
    else:
        digest = event_hash(event)
    edr_event: dict[str, Any] = {
        "Hash": digest,
        "Detection": bool(isinstance(detection, dict) and detection.get("Signature")),
        "ReceiptTime": receipt,
    }
    if retro:
        edr_event["Retro"] = True
    edr = {"Endpoint": endpoint, "Event": edr_event}
    final = {**event, "Event": {**clean, "EdrData": edr}}
    if blob is not None and blob.endswith(b"}}"):
        return final, b"".join((blob[:-2], b',"EdrData":', orjson.dumps(edr), b"}}"))
    return final, orjson.dumps(final)
