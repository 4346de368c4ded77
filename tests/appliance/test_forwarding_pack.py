"""The default forwarding pack (appliance/defaults/forwarding.gen): Gene Filter rules that pick
the events hunting needs out of everything the agent sees (docs/manager.md "Forwarding")."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

import rules
from appliance.services.content import DEFAULTS_DIR

PACK = DEFAULTS_DIR / "forwarding.gen"
LINUX = "Linux-Sysmon/Operational"


def _engine() -> rules.Engine:
    return rules.Engine(rules.load([PACK]))


def _linux(eid: int, **data: str) -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": LINUX,
                "EventID": eid,
                "Computer": "h",
                "TimeCreated": {"SystemTime": "2026-01-01T00:00:00Z"},
            },
            "EventData": data,
        }
    }


def _filtered(engine: rules.Engine, event: dict[str, Any]) -> bool:
    det = engine.evaluate(event)
    return det is not None and det.filtered and not det.signatures


def test_every_rule_is_a_filter_with_no_score() -> None:
    for line in PACK.read_text().splitlines():
        rule = orjson.loads(line)
        assert rule["Meta"]["Filter"] is True and rule["Meta"]["Criticality"] == 0, rule["Name"]
        assert rule["Name"].startswith("Fwd")


@pytest.mark.parametrize(
    ("event", "kept"),
    [
        (_linux(1, Image="/usr/bin/ls", CommandLine="ls"), True),
        (_linux(5, Image="/usr/bin/ls"), True),
        (_linux(3, Image="/usr/bin/curl", DestinationIp="192.0.2.1", Initiated="true"), True),
        (_linux(3, Image="/usr/sbin/sshd", DestinationPort="22", Initiated="false"), True),
        (_linux(3, Image="/usr/sbin/nginx", DestinationPort="443", Initiated="false"), False),
        (_linux(11, TargetFilename="/tmp/x/payload"), True),
        (_linux(11, TargetFilename="/home/u/run.sh"), True),
        (_linux(11, TargetFilename="/etc/cron.d/job"), True),
        (_linux(11, TargetFilename="/root/.ssh/authorized_keys"), True),
        (_linux(11, TargetFilename="/var/log/syslog.1"), False),
        (_linux(23, TargetFilename="/tmp/x"), False),
    ],
)
def test_linux_hunting_events(event: dict[str, Any], kept: bool) -> None:
    assert _filtered(_engine(), event) is kept


def _eid(system: dict[str, Any]) -> str:
    value = system["EventID"]
    return str(value.get("Value") if isinstance(value, dict) else value)


def test_corpus_hunting_events_kept_and_noise_left_out(shared_dir: Path) -> None:
    engine = _engine()
    kept: Counter[tuple[str, str]] = Counter()
    seen: Counter[tuple[str, str]] = Counter()
    with gzip.open(shared_dir / "gene-oracle" / "corpus-events.jsonl.gz") as fh:
        for line in fh:
            event = orjson.loads(line)["event"]
            system = event["Event"]["System"]
            key = (system["Channel"], _eid(system))
            seen[key] += 1
            kept[key] += _filtered(engine, event)
    sysmon = "Microsoft-Windows-Sysmon/Operational"
    # every process creation/exit, DNS query and logon of the corpus is kept
    for key in [
        (sysmon, "1"),
        (sysmon, "5"),
        (sysmon, "22"),
        ("Security", "4624"),
        ("Security", "4688"),
        ("Security", "4698"),
        ("Microsoft-Windows-PowerShell/Operational", "4104"),
    ]:
        assert seen[key] and kept[key] == seen[key], key
    # file creation and registry: only executables/scripts and autorun locations
    # file creation, registry and connections: executables/scripts, autorun locations,
    # outbound connections and inbound ones to remote-administration ports
    for key in [(sysmon, "11"), (sysmon, "13"), (sysmon, "12"), (sysmon, "3")]:
        assert 0 < kept[key] < seen[key], (key, kept[key], seen[key])
    # high-volume events hunting rarely needs stay on the endpoint
    for key in [(sysmon, "7"), (sysmon, "10"), ("Security", "5145"), ("Security", "5156")]:
        assert seen[key] and kept[key] == 0, key
    assert 0.2 < sum(kept.values()) / sum(seen.values()) < 0.5
