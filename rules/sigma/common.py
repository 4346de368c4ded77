"""What Sigma detection and correlation rules share: levels, ATT&CK tags, the error.

A module of its own so that ``rules.sigma.correlation`` and ``rules.sigma.rule`` do not import
each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import RuleSyntaxError
from ..rule import Attack

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
