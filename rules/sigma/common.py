"""What Sigma detection and correlation rules share: levels, ATT&CK tags, metadata, the error.

A module of its own so that ``rules.sigma.correlation`` and ``rules.sigma.rule`` do not import
each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import RuleSyntaxError
from ..rule import Attack, Meta

LEVELS: dict[str, int] = {"informational": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
_TACTICS = frozenset(
    "reconnaissance resource_development initial_access execution persistence "
    "privilege_escalation defense_evasion credential_access discovery lateral_movement "
    "collection command_and_control exfiltration impact".split()
)


class SigmaUnsupported(RuleSyntaxError):
    """A Sigma rule Heron cannot run (reason names the logsource or feature)."""


def attack_of(tags: Sequence[Any]) -> tuple[Attack, ...]:
    tactic = ""
    ids: list[str] = []
    for t in tags:
        if str(t.namespace).lower() != "attack":
            continue
        name = str(t.name).lower()
        if name in _TACTICS:
            tactic = tactic or name.replace("_", "-")
        elif name[:1] == "t" and name[1:5].isdigit():
            ids.append(name.upper())
    out = []
    for i in dict.fromkeys(ids):
        url = "https://attack.mitre.org/techniques/" + i.replace(".", "/") + "/"
        out.append(Attack(i, tactic, "", url))
    return tuple(out)


def level_of(r: Any) -> str:
    return str(r.level) if r.level else ""


def rule_meta(r: Any, events: Mapping[str, Any]) -> Meta:
    """The Gene `Meta` of a pySigma rule: Criticality from its level, ATT&CK from its tags."""
    return Meta(
        events=events,
        attack=attack_of(r.tags),
        criticality=LEVELS.get(level_of(r), 0),
        log_type="winevt",
        schema="2.0.0",
    )


def rule_extra(r: Any) -> dict[str, Any]:
    """The Sigma fields the API and console show (id, name, level, status, false positives)."""
    return {
        "id": str(r.id or ""),
        "name": r.name or "",
        "level": level_of(r),
        "status": str(r.status or ""),
        "falsepositives": list(r.falsepositives or []),
    }


def tag_names(r: Any) -> tuple[str, ...]:
    return tuple(f"{t.namespace}.{t.name}" for t in r.tags)
