"""Suppressions on the manager: applied at ingest, made from an alert, tried on stored events.

Agents apply suppressions after their rules engine, but only once they fetched them (their next
update check) and only if they run this version. So that "suppress" takes effect at once and for
every agent, `/logs` applies the suppressions of the endpoint's group too, before the batch is
journaled: the suppressed signatures leave `Event.Detection` (the whole block when none is left),
so no alert, stream or MISP sighting is made for them. A partly suppressed detection keeps its
criticality and ATT&CK (the manager does not re-run the rules to recompute them).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from rules.suppress import Suppression, SuppressionError, SuppressionSet

from ..core.errors import ValidationError
from .hunting import Hunting
from .tuning import Tuning

__all__ = ["ActiveSuppressions", "MATCH_FIELDS", "from_event", "preview"]

# Alert field → (suppression condition, how the event value becomes the condition's value).
MATCH_FIELDS: dict[str, tuple[str, str, Callable[[str], str]]] = {
    "image": ("Image", "image_prefix", lambda v: v),
    "parent": ("ParentImage", "parent_prefix", lambda v: v),
    "command_line": ("CommandLine", "command_line_regex", lambda v: f"^{re.escape(v)}$"),
    "user": ("User", "user", lambda v: v),
}
logger = logging.getLogger(__name__)
RELOAD_SECONDS = 2.0  # other front-ends' (cluster) changes are seen within this
PREVIEW_MAX = 10_000


class ActiveSuppressions:
    """The suppressions per host group, cached; rebuilt on a local change or every 2 s."""

    def __init__(self, tuning: Tuning, clock: Callable[[], float]) -> None:
        self.tuning = tuning
        self.clock = clock
        self.suppressed: dict[str, int] = {}  # rule -> detections silenced at ingest
        self._lock = threading.Lock()
        self._items: list[Suppression] = []
        self._by_group: dict[str, SuppressionSet] = {}
        self._stamp = (-1, float("-inf"))

    def for_group(self, group: str) -> SuppressionSet:
        with self._lock:
            generation, loaded = self._stamp
            if generation != self.tuning.generation or self.clock() - loaded > RELOAD_SECONDS:
                self._stamp = (self.tuning.generation, self.clock())
                self._items = _parse(self.tuning.all())
                self._by_group = {}
            found = self._by_group.get(group)
            if found is None:
                found = SuppressionSet(s for s in self._items if s.group in ("", group))
                self._by_group[group] = found
            return found

    def apply(self, events: Iterable[dict[str, Any]], group: str) -> int:
        """Remove suppressed signatures from the events' detections; the signatures removed."""
        sset = self.for_group(group)
        if not len(sset):
            return 0
        removed = 0
        for event in events:
            inner = event.get("Event")
            det = inner.get("Detection") if isinstance(inner, dict) else None
            if not isinstance(det, dict) or not det.get("Signature"):
                continue
            sigs = det["Signature"] if isinstance(det["Signature"], list) else [det["Signature"]]
            data = inner.get("EventData") if isinstance(inner, dict) else None
            gone = sset.suppressed([str(s) for s in sigs], data if isinstance(data, dict) else {})
            if not gone:
                continue
            with self._lock:
                for sig in gone:
                    self.suppressed[sig] = self.suppressed.get(sig, 0) + 1
            removed += len(gone)
            left = [s for s in sigs if str(s) not in gone]
            if left:
                det["Signature"] = left
            else:
                del event["Event"]["Detection"]
        return removed


def _parse(docs: list[dict[str, str]]) -> list[Suppression]:
    """The stored suppressions that parse (each was validated when added; never fail ingest)."""
    out = []
    for doc in docs:
        try:
            out.append(Suppression.from_dict(doc))
        except SuppressionError as ex:
            logger.warning("stored suppression %s ignored: %s", doc.get("id", "?"), ex)
    return out


def from_event(
    event: dict[str, Any],
    *,
    rules: list[str],
    match: list[str],
    group: str = "",
    comment: str = "",
) -> list[dict[str, str]]:
    """Suppression documents (one per rule) matching this stored event on the `match` fields."""
    inner = event.get("Event") if isinstance(event.get("Event"), dict) else {}
    data = inner.get("EventData") if isinstance(inner, dict) else None
    data = data if isinstance(data, dict) else {}
    if not match:
        raise ValidationError(f"match: give at least one of {', '.join(MATCH_FIELDS)}")
    conditions: dict[str, str] = {}
    for name in match:
        if name not in MATCH_FIELDS:
            raise ValidationError(f"match: {name!r} is not one of {', '.join(MATCH_FIELDS)}")
        field, key, convert = MATCH_FIELDS[name]
        value = data.get(field)
        if not isinstance(value, str) or not value:
            raise ValidationError(f"match: the event has no {field} to suppress on")
        conditions[key] = convert(value)
    docs = []
    for rule in rules:
        doc = dict(conditions, rule=rule, group=group, comment=comment)
        try:
            Suppression.from_dict(doc)
        except SuppressionError as ex:
            raise ValidationError(str(ex)) from ex
        docs.append(doc)
    return docs


def preview(
    doc: dict[str, Any], hunting: Hunting, *, since: float, limit: int = PREVIEW_MAX
) -> dict[str, Any]:
    """How many stored detections since `since` this suppression would have silenced."""
    try:
        sup = Suppression.from_dict({k: v for k, v in doc.items() if k != "id"})
    except SuppressionError as ex:
        raise ValidationError(str(ex)) from ex
    query = "*" if sup.rule == "*" else 'signature:"' + sup.rule.replace('"', '\\"') + '"'
    scanned = matched = 0
    samples: list[dict[str, Any]] = []
    cursor: str | None = None
    while scanned < limit:
        page = hunting.search(
            query,
            since=since,
            until=None,
            endpoint=None,
            detections_only=True,
            limit=min(1000, limit - scanned),
            cursor=cursor,
        )
        for event in page["events"]:
            scanned += 1
            inner = event.get("Event", {})
            sigs = inner.get("Detection", {}).get("Signature") or []
            data = inner.get("EventData")
            hits = any(sup.applies_to(str(s)) for s in sigs) and sup.matches(
                data if isinstance(data, dict) else {}
            )
            if hits:
                matched += 1
                if len(samples) < 5:
                    samples.append(_sample(inner))
        cursor = page["next_cursor"]
        if cursor is None or not page["events"]:
            break
    return {
        "scanned": scanned,
        "matched": matched,
        "truncated": cursor is not None,
        "samples": samples,
    }


def _sample(inner: dict[str, Any]) -> dict[str, Any]:
    edr: dict[str, Any] = inner.get("EdrData") or {}
    data: dict[str, Any] = inner.get("EventData") or {}
    return {
        "endpoint": edr.get("Endpoint", {}).get("UUID", ""),
        "event_hash": edr.get("Event", {}).get("Hash", ""),
        "signatures": inner.get("Detection", {}).get("Signature") or [],
        "image": data.get("Image", ""),
        "command_line": data.get("CommandLine", ""),
    }
