"""Heron's own Windows default pack (appliance/defaults/windows.gen): every rule mapped to
ATT&CK and firing on real attack events of ../shared/corpus (EVTX-ATTACK-SAMPLES as the Gene
oracle corpus holds them), across the tactics the issue names."""

from __future__ import annotations

import gzip
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

import rules
from appliance.services.content import DEFAULTS_DIR

PACK = DEFAULTS_DIR / "windows.gen"
TACTICS = {
    "execution": "Execution",
    "persistence": "Persistence",
    "credential-access": "Credential Access",
    "defense-evasion": "Defense Evasion",
    "discovery": None,
    "lateral-movement": "Lateral Movement",
    "command-and-control": "Command and Control",
}

ALL_TACTICS = {
    *TACTICS,
    "initial-access",
    "privilege-escalation",
    "collection",
    "exfiltration",
    "impact",
    "reconnaissance",
    "resource-development",
}


@pytest.fixture(scope="module")
def hits(shared_dir: Path) -> tuple[dict[str, Counter[str]], int, int]:
    """rule name → corpus directory → matched events; detected events; corpus events."""
    engine = rules.Engine(rules.load([PACK]), show_attack=True)
    out: dict[str, Counter[str]] = defaultdict(Counter)
    detected = total = 0
    with gzip.open(shared_dir / "gene-oracle" / "corpus-events.jsonl.gz") as fh:
        for line in fh:
            item = orjson.loads(line)
            total += 1
            det = engine.evaluate(item["event"])
            if det is not None and det.signatures:
                detected += 1
                for name in det.signatures:
                    out[name][item["file"].split("/")[0]] += 1
    return out, detected, total


def _rules() -> list[dict]:
    return [orjson.loads(line) for line in PACK.read_text().splitlines() if line.strip()]


def test_every_rule_is_mapped_to_attack_and_scored() -> None:
    for rule in _rules():
        meta = rule["Meta"]
        assert meta["ATTACK"] and meta["Criticality"] > 0, rule["Name"]
        for item in meta["ATTACK"]:
            assert item["ID"].startswith("T") and item["Tactic"] in ALL_TACTICS, rule["Name"]
            assert item["Reference"].startswith("https://attack.mitre.org/techniques/T")


def test_every_rule_fires_on_real_attack_events(hits: tuple) -> None:
    by_rule, _, _ = hits
    silent = [r["Name"] for r in _rules() if not by_rule.get(r["Name"])]
    assert silent == []


def test_each_tactic_is_detected_in_its_corpus_samples(hits: tuple) -> None:
    by_rule, _, _ = hits
    for tactic, directory in TACTICS.items():
        names = [
            r["Name"] for r in _rules() if any(a["Tactic"] == tactic for a in r["Meta"]["ATTACK"])
        ]
        fired = sum(sum(by_rule[n].values()) for n in names)
        assert fired, tactic
        if directory is not None:
            assert sum(by_rule[n][directory] for n in names), (tactic, directory)


def test_the_pack_stays_quiet_on_most_of_the_corpus(hits: tuple) -> None:
    _, detected, total = hits
    # the samples are attack recordings, but most of their events are benign background
    assert 100 < detected < total * 0.05
