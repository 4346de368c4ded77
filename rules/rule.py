"""The Gene rule model: `Rule`, `Meta`, `Attack`, decoded from one JSON object
(docs/reference/gene.md §1–§2).

GENE: keys match case-insensitively (last duplicate wins), Schema must be >= 2.0.0, EventIDs
must be JSON integers. Like Gene v2.3.0 (the version WHIDS pins) unknown keys are tolerated:
they are kept in `extra` so that `rules.validate` can report them. Both `Meta.Criticality`
(gene-rules, v2.x) and `Meta.Severity` (Gene HEAD) are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RuleSyntaxError, SchemaError

__all__ = ["Rule", "Meta", "Attack", "parse_version", "LOG_TYPES"]

LOG_TYPES: dict[str, tuple[str, ...]] = {"winevt": ("Event", "EventData"), "kunai": ("data",)}
VALID_OS = frozenset(
    "aix android darwin dragonfly freebsd illumos ios js linux netbsd openbsd plan9 solaris "
    "wasip1 windows".split()
)
_VERSION = re.compile(r"\s*([+-]?\d+)(?:\.([+-]?\d+)(?:\.([+-]?\d+))?)?")
OLD_FORMAT_KEYS = frozenset({"eventids", "channels", "traces", "eventid", "computer"})


def parse_version(text: str) -> tuple[int, int, int]:
    """GENE: scanf `%d.%d.%d`; whatever does not parse stays 0 (`"2.1"` → (2, 1, 0))."""
    m = _VERSION.match(text or "")
    if m is None:
        return (0, 0, 0)
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


def _fold(obj: Mapping[str, Any], known: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map keys case-insensitively onto `known` (last wins); return (known, extra)."""
    lower = {k.lower(): k for k in known}
    found: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        canon = lower.get(key.lower())
        if canon is None:
            extra[key] = value
        else:
            found[canon] = value
    return found, extra


def _strings(value: Any, what: str, *, lenient: bool = False) -> tuple[str, ...]:
    if value is None:
        return ()
    if lenient and isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleSyntaxError(f"{what} must be a list of strings, got {value!r}")
    return tuple(value)


def _int(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleSyntaxError(f"{what} must be an integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Attack:
    """One MITRE ATT&CK reference of a rule."""

    id: str
    tactic: str = ""
    description: str = ""
    reference: str = ""

    @classmethod
    def from_dict(cls, obj: object) -> Attack:
        if not isinstance(obj, dict):
            raise RuleSyntaxError(f"ATTACK entries must be objects, got {obj!r}")
        found, _ = _fold(obj, ("ID", "Tactic", "Description", "Reference"))
        for key, value in found.items():
            if not isinstance(value, str):
                raise RuleSyntaxError(f"ATTACK.{key} must be a string, got {value!r}")
        return cls(
            found.get("ID", ""),
            found.get("Tactic", ""),
            found.get("Description", ""),
            found.get("Reference", ""),
        )

    def to_dict(self) -> dict[str, str]:
        return {
            "ID": self.id,
            "Tactic": self.tactic,
            "Description": self.description,
            "Reference": self.reference,
        }


@dataclass(frozen=True, slots=True)
class Meta:
    """The `Meta` section of a rule."""

    events: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    computers: tuple[str, ...] = ()
    attack: tuple[Attack, ...] = ()
    criticality: int = 0
    disable: bool = False
    filter: bool = False
    schema: str = ""
    log_type: str = ""
    oss: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    severity_key: str = "Criticality"
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = (
        "Events",
        "Computers",
        "ATTACK",
        "Criticality",
        "Severity",
        "Disable",
        "Filter",
        "Schema",
        "LogType",
        "OSs",
        "Authors",
        "Comments",
    )

    @classmethod
    def from_dict(cls, obj: object) -> Meta:
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise RuleSyntaxError(f"Meta must be an object, got {obj!r}")
        found, extra = _fold(obj, cls._KEYS)
        old = sorted(k for k in extra if k.lower() in OLD_FORMAT_KEYS)
        if old:
            raise RuleSyntaxError(
                f"old v1 rule format (Meta.{', Meta.'.join(old)}); migrate to Meta.Events"
            )
        events_raw = found.get("Events") or {}
        if not isinstance(events_raw, dict):
            raise RuleSyntaxError(f"Meta.Events must be an object, got {events_raw!r}")
        events: dict[str, tuple[int, ...]] = {}
        for channel, ids in events_raw.items():
            if ids is None:
                ids = []
            if not isinstance(ids, list):
                raise RuleSyntaxError(f"Meta.Events[{channel!r}] must be a list of EventIDs")
            events[channel] = tuple(_int(i, f"EventID in Meta.Events[{channel!r}]") for i in ids)
        oss = tuple(o.lower() for o in _strings(found.get("OSs"), "Meta.OSs"))
        bad_os = [o for o in oss if o not in VALID_OS]
        if bad_os:
            raise RuleSyntaxError(f"invalid OS {bad_os[0]!r}")
        attack_raw = found.get("ATTACK") or []
        if not isinstance(attack_raw, list):
            raise RuleSyntaxError("Meta.ATTACK must be a list")
        severity_key = "Severity" if "Severity" in found else "Criticality"
        for key in ("Disable", "Filter"):
            if found.get(key) is not None and not isinstance(found[key], bool):
                raise RuleSyntaxError(f"Meta.{key} must be a boolean, got {found[key]!r}")
        for key in ("Schema", "LogType"):
            if found.get(key) is not None and not isinstance(found[key], str):
                raise RuleSyntaxError(f"Meta.{key} must be a string, got {found[key]!r}")
        return cls(
            events=events,
            computers=_strings(found.get("Computers"), "Meta.Computers"),
            attack=tuple(Attack.from_dict(a) for a in attack_raw),
            criticality=_int(found.get(severity_key), f"Meta.{severity_key}"),
            disable=bool(found.get("Disable")),
            filter=bool(found.get("Filter")),
            schema=found.get("Schema") or "",
            log_type=found.get("LogType") or "",
            oss=oss,
            authors=_strings(found.get("Authors"), "Meta.Authors", lenient=True),
            comments=_strings(found.get("Comments"), "Meta.Comments", lenient=True),
            severity_key=severity_key,
            extra=extra,
        )

    def effective_log_type(self) -> str:
        """GENE: LogType, else inferred from the Events keys (docs/reference/gene.md §2); "" when
        unknown."""
        if self.log_type:
            return self.log_type
        keys = list(self.events)
        if len(keys) == 1 and keys[0] == "kunai":
            return "kunai"
        if sum(1 for k in keys if k == "Security" or k.startswith("Microsoft")) == len(keys):
            return "winevt"
        return ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Events": {k: list(v) for k, v in self.events.items()},
            "Computers": list(self.computers),
        }
        if self.log_type:
            out = {"LogType": self.log_type, **out}
        if self.oss:
            out["OSs"] = list(self.oss)
        if self.attack:
            out["ATTACK"] = [
                {k: v for k, v in a.to_dict().items() if v or k != "Description"}
                for a in self.attack
            ]
        out[self.severity_key] = self.criticality
        out["Disable"] = self.disable
        out["Filter"] = self.filter
        out["Schema"] = self.schema
        if self.authors:
            out["Authors"] = list(self.authors)
        if self.comments:
            out["Comments"] = list(self.comments)
        return out


@dataclass(frozen=True, slots=True)
class Rule:
    """One Gene rule, after template substitution, with where it was loaded from."""

    name: str
    meta: Meta
    matches: tuple[str, ...] = ()
    condition: str = ""
    tags: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    source: str = "<string>"
    line: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    _KEYS = ("Name", "Tags", "Meta", "Matches", "Condition", "Actions")

    @classmethod
    def from_dict(
        cls,
        obj: Any,
        *,
        source: str = "<string>",
        line: int = 1,
        templates: Mapping[str, str] | None = None,
        check_schema: bool = True,
    ) -> Rule:
        """Decode and check one rule object; errors carry source, line and rule name."""
        name = None
        try:
            if not isinstance(obj, dict):
                raise RuleSyntaxError(f"a rule must be a JSON object, got {type(obj).__name__}")
            found, extra = _fold(obj, cls._KEYS)
            name = found.get("Name")
            if not isinstance(name, str) or not name:
                raise RuleSyntaxError("rule has no Name")
            meta = Meta.from_dict(found.get("Meta"))
            if check_schema and parse_version(meta.schema) < (2, 0, 0):
                raise SchemaError(f"expecting rule version >= 2.0.0, got Schema {meta.schema!r}")
            matches = _strings(found.get("Matches"), "Matches")
            for key, value in (templates or {}).items():
                token = "{{" + key + "}}"
                matches = tuple(m.replace(token, value) for m in matches)
            condition = found.get("Condition") or ""
            if not isinstance(condition, str):
                raise RuleSyntaxError(f"Condition must be a string, got {condition!r}")
            return cls(
                name,
                meta,
                matches,
                condition,
                _strings(found.get("Tags"), "Tags"),
                _strings(found.get("Actions"), "Actions"),
                source,
                line,
                extra,
            )
        except (RuleSyntaxError, SchemaError) as ex:
            raise ex.located(source=source, line=line, rule=name) from ex

    @property
    def criticality(self) -> int:
        """GENE: Severity capped at 10 at compile time, no lower bound."""
        return min(self.meta.criticality, 10)

    def to_dict(self) -> dict[str, Any]:
        """The rule as Gene's `-dump` writes it (compiled.gen shape)."""
        return {
            "Name": self.name,
            "Tags": list(self.tags),
            "Meta": self.meta.to_dict(),
            "Matches": list(self.matches),
            "Condition": self.condition,
            "Actions": list(self.actions) if self.actions else None,
        }
