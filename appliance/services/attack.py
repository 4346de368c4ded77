"""MITRE ATT&CK over detections: techniques per rule (from each rule's `Meta.ATTACK`) and the
tactic × technique matrix of detection counts the console draws.

Detections are stored as summaries (endpoint, time, signatures); their techniques come from the
rules' metadata, so a rule edited later re-labels its past detections.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from rules.errors import RuleSyntaxError
from rules.rule import Attack

__all__ = ["TACTICS", "attack_matrix", "rule_attack", "techniques_for"]

TACTICS = (
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)


def _tactic(text: str) -> str:
    return "-".join(text.strip().lower().replace("_", " ").split()) or "unspecified"


def _rule_entries(text: str) -> list[Attack]:
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    meta = (
        next((v for k, v in doc.items() if k.lower() == "meta"), None)
        if isinstance(doc, dict)
        else None
    )
    raw = (
        next((v for k, v in meta.items() if k.lower() == "attack"), None)
        if isinstance(meta, dict)
        else None
    )
    out = []
    for entry in raw if isinstance(raw, list) else []:
        try:
            attack = Attack.from_dict(entry)
        except RuleSyntaxError:
            continue
        if attack.id:
            out.append(attack)
    return out


def rule_attack(rules: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """Rule name → its ATT&CK references `[{id, tactic, name}]` (rules without any left out)."""
    out: dict[str, list[dict[str, str]]] = {}
    for name, text in rules.items():
        entries = [
            {"id": a.id, "tactic": _tactic(a.tactic), "name": a.description}
            for a in _rule_entries(text)
        ]
        if entries:
            out[name] = entries
    return out


def techniques_for(signatures: list[str], by_rule: dict[str, list[dict[str, str]]]) -> list[str]:
    """The technique ids of a detection (sorted, unique)."""
    return sorted({a["id"] for s in signatures for a in by_rule.get(s, [])})


def attack_matrix(
    counts: list[tuple[list[str], int]], by_rule: dict[str, list[dict[str, str]]]
) -> dict[str, Any]:
    """`counts`: (signatures, detections) pairs → `{tactics: [{tactic, count, techniques:
    [{id, name, count, rules: [{name, count}]}]}], unmapped}` (ATT&CK tactic order first)."""
    tech_count: Counter[tuple[str, str]] = Counter()
    tech_rules: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    names: dict[str, str] = {}
    unmapped = 0
    for sigs, n in counts:
        keys = {(a["tactic"], a["id"]) for s in sigs for a in by_rule.get(s, [])}
        if not keys:
            unmapped += n
        for key in keys:
            tech_count[key] += n
            for s in sigs:
                if any((a["tactic"], a["id"]) == key for a in by_rule.get(s, [])):
                    tech_rules[key][s] += n
        for s in sigs:
            for a in by_rule.get(s, []):
                if a["name"] and not names.get(a["id"]):
                    names[a["id"]] = a["name"]
    tactics: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (tactic, tid), n in tech_count.items():
        tactics[tactic].append(
            {
                "id": tid,
                "name": names.get(tid, ""),
                "count": n,
                "rules": [
                    {"name": r, "count": c} for r, c in tech_rules[(tactic, tid)].most_common()
                ],
            }
        )
    order = {t: i for i, t in enumerate(TACTICS)}
    ordered = sorted(tactics, key=lambda t: (order.get(t, len(TACTICS)), t))
    return {
        "tactics": [
            {
                "tactic": t,
                "count": sum(x["count"] for x in tactics[t]),
                "techniques": sorted(tactics[t], key=lambda x: (-x["count"], x["id"])),
            }
            for t in ordered
        ],
        "unmapped": unmapped,
    }
