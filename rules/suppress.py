"""Per-rule suppressions (tuning exclusions) shared by the manager and the agent.

A suppression silences one rule (or every rule with ``rule = "*"``) on the events whose fields
match **all** of its non-empty conditions:

* ``image_prefix`` — ``Image`` starts with it (case-insensitive on Windows-style paths);
* ``parent_prefix`` — ``ParentImage`` starts with it;
* ``command_line_regex`` — Python ``re.search`` on ``CommandLine``;
* ``user`` — ``User`` equals it (case-insensitive);
* ``group`` — the endpoint's host group; the manager only sends a suppression to the endpoints of
  its group (empty: every endpoint), the agent does not evaluate it.

The manager serves the suppressions of an endpoint at ``GET /suppressions`` (JSON list) with
``GET /suppressions/sha256`` = ``suppressions_sha256(list)``; the agent applies them after the
rules engine: suppressed signatures are removed from ``Event.Detection`` (criticality and
actions recomputed from the remaining rules) and counted per rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields

__all__ = ["Suppression", "SuppressionError", "SuppressionSet", "suppressions_sha256"]

_MAX_TEXT = 1024


class SuppressionError(ValueError):
    """A suppression that cannot be accepted (names the field)."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """One exclusion of one rule (``"*"``: every rule)."""

    rule: str
    image_prefix: str = ""
    parent_prefix: str = ""
    command_line_regex: str = ""
    user: str = ""
    group: str = ""
    comment: str = ""
    id: str = ""
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> Suppression:
        if not isinstance(doc, Mapping):
            raise SuppressionError("a suppression must be a JSON object")
        known = {f.name for f in fields(cls) if not f.name.startswith("_")}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise SuppressionError(f"unknown suppression field: {unknown[0]}")
        values: dict[str, str] = {}
        for name in known:
            value = doc.get(name, "")
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise SuppressionError(f"{name} must be a string of at most {_MAX_TEXT} chars")
            values[name] = value
        if not values["rule"].strip():
            raise SuppressionError("rule is required (a rule name, or * for every rule)")
        if not any(
            values[k] for k in ("image_prefix", "parent_prefix", "command_line_regex", "user")
        ):
            raise SuppressionError(
                "at least one of image_prefix, parent_prefix, command_line_regex, user is required"
            )
        regex = None
        if values["command_line_regex"]:
            try:
                regex = re.compile(values["command_line_regex"])
            except re.error as ex:
                raise SuppressionError(f"command_line_regex: {ex}") from ex
        return cls(**values, _regex=regex)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def applies_to(self, rule: str) -> bool:
        return self.rule in ("*", rule)

    def matches(self, data: Mapping[str, object]) -> bool:
        """True when every non-empty condition holds for this ``EventData``."""
        if self.image_prefix and not _prefix(data.get("Image"), self.image_prefix):
            return False
        if self.parent_prefix and not _prefix(data.get("ParentImage"), self.parent_prefix):
            return False
        if self._regex is not None:
            cl = data.get("CommandLine")
            if not isinstance(cl, str) or self._regex.search(cl) is None:
                return False
        if self.user and str(data.get("User", "")).lower() != self.user.lower():
            return False
        return True


def _prefix(value: object, prefix: str) -> bool:
    if not isinstance(value, str):
        return False
    if "\\" in prefix or ":" in prefix[:2]:  # Windows paths are case-insensitive
        return value.lower().startswith(prefix.lower())
    return value.startswith(prefix)


def suppressions_sha256(items: Iterable[Mapping[str, object]]) -> str:
    """Hash of a suppression list as served (order-independent, canonical JSON)."""
    canon = sorted(json.dumps(dict(i), sort_keys=True, separators=(",", ":")) for i in items)
    return hashlib.sha256("\n".join(canon).encode("utf-8")).hexdigest()


class SuppressionSet:
    """Suppressions indexed by rule name, applied to an engine's detection."""

    def __init__(self, items: Iterable[Suppression] = ()) -> None:
        self.items = tuple(items)
        self._by_rule: dict[str, list[Suppression]] = {}
        for s in self.items:
            self._by_rule.setdefault(s.rule, []).append(s)

    @classmethod
    def from_dicts(cls, docs: Iterable[Mapping[str, object]]) -> SuppressionSet:
        return cls(Suppression.from_dict(d) for d in docs)

    def __len__(self) -> int:
        return len(self.items)

    def suppressed(self, signatures: Iterable[str], data: Mapping[str, object]) -> list[str]:
        """The signatures silenced for this event."""
        if not self.items:
            return []
        wild = self._by_rule.get("*", [])
        out = []
        for sig in signatures:
            if any(s.matches(data) for s in (*self._by_rule.get(sig, ()), *wild)):
                out.append(sig)
        return out
