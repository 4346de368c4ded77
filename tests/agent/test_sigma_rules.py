"""The agent loads Sigma rules from `rules.paths` next to Gene rules, and from /rules bodies."""

from __future__ import annotations

import json
from pathlib import Path

from agent.detect import Detector

SIGMA = """title: Agent Sigma
status: test
level: high
tags: [attack.execution, attack.t1059.001]
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|contains|all: ['-enc', 'powershell']}
  condition: sel
"""
GENE = {
    "Name": "GeneRule",
    "Meta": {
        "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
        "Criticality": 3,
        "Schema": "2.0.0",
    },
    "Matches": ["$c: CommandLine ~= 'powershell'"],
    "Condition": "$c",
}


def _event(cmd: str) -> dict[str, object]:
    return {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": "1",
                "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
            },
            "EventData": {"CommandLine": cmd},
        }
    }


def test_rule_paths_mix_sigma_and_gene(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(SIGMA)
    (tmp_path / "b.gen").write_text(json.dumps(GENE))
    (tmp_path / "c.yml").write_text(
        SIGMA.replace("status: test", "status: experimental").replace("Agent Sigma", "Experimental")
    )
    det = Detector(rule_paths=[tmp_path])
    assert det.engine.rule_count == 2  # the experimental rule is filtered (listed, not run)
    found = det.engine.match(_event("C:\\powershell.exe -Enc AAA"))
    assert found is not None
    assert set(found.signatures) == {"Agent Sigma", "GeneRule"}
    assert found.criticality == 10 and found.attack[0]["ID"] == "T1059.001"
    assert det.engine.match(_event("cmd.exe")) is None


def test_reload_from_manager_body(tmp_path: Path) -> None:
    det = Detector()
    body = json.dumps({"Name": "Agent Sigma", "Sigma": SIGMA}) + "\n" + json.dumps(GENE) + "\n"
    assert det.reload_rules(body) == 2
