"""Updates by sha256: applied once, persisted, bad ones rejected with the previous set kept."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agent.link.transport import MemoryTransport
from agent.link.updates import Updater
from rules import wire

from .fakemanager import FakeManager


class Agent:
    def __init__(self) -> None:
        self.rules: list[str] = []
        self.iocs: list[list[wire.Ioc]] = []
        self.configs: list[dict] = []
        self.sysmon: list[bytes] = []

    def reload_rules(self, text: str) -> None:
        if "BAD" in text:
            raise ValueError("rule syntax error in database.gen:1")
        self.rules.append(text)


def make(tmp_path: Path, mgr: FakeManager, agent: Agent) -> Updater:
    return Updater(
        MemoryTransport(mgr),
        tmp_path / "u",
        {
            "rules": agent.reload_rules,
            "iocs": agent.iocs.append,
            "config": agent.configs.append,
            "sysmon": agent.sysmon.append,
        },
    )


def test_updates_apply_once_and_persist(tmp_path: Path) -> None:
    mgr, agent = FakeManager(), Agent()
    mgr.rules = '{"Name": "r1"}\n'
    mgr.iocs = [{"value": "evil.com", "type": "domain"}, {"value": "a" * 64, "type": "sha256"}]
    mgr.config = {"general": {"log_all": True}}
    xml_sha = hashlib.sha256(b"<Sysmon/>").hexdigest()
    mgr.sysmon = json.dumps({"OS": "linux", "xml": "<Sysmon/>", "XmlSha256": xml_sha}).encode()
    up = make(tmp_path, mgr, agent)
    assert up.check() == {
        "rules": "updated",
        "iocs": "updated",
        "config": "updated",
        "sysmon": "updated",
    }
    assert agent.rules == ['{"Name": "r1"}\n'] and agent.iocs[0][0].value == "evil.com"
    assert agent.sysmon == ["<Sysmon/>"]
    assert up.check() == {k: "unchanged" for k in ("rules", "iocs", "config", "sysmon")}
    # restart: stored bodies are re-applied before the manager is even asked
    agent2 = Agent()
    up2 = make(tmp_path, mgr, agent2)
    assert sorted(up2.restore()) == ["config", "iocs", "rules", "sysmon"]
    assert agent2.rules == agent.rules and up2.check()["rules"] == "unchanged"


def test_no_config_on_manager_is_fine(tmp_path: Path) -> None:
    mgr, agent = FakeManager(), Agent()
    up = make(tmp_path, mgr, agent)
    assert up.check()["config"] == "none" and up.check()["sysmon"] == "none"


def test_bad_rules_rejected_previous_kept_not_refetched(tmp_path: Path, caplog) -> None:
    mgr, agent = FakeManager(), Agent()
    mgr.rules = '{"Name": "good"}\n'
    up = make(tmp_path, mgr, agent)
    up.check_item("rules")
    good = up.status()["rules"].applied
    mgr.rules = "BAD\n"
    assert up.check_item("rules") == "rejected"
    assert "keeping" in caplog.text and "database.gen:1" in caplog.text
    st = up.status()["rules"]
    assert st.applied == good and st.rejected == wire.rules_sha256("BAD\n")
    assert up.check_item("rules") == "rejected-before"
    assert agent.rules == ['{"Name": "good"}\n']
    assert (tmp_path / "u" / "rules.body").read_text() == '{"Name": "good"}\n'
    mgr.rules = '{"Name": "fixed"}\n'
    assert up.check_item("rules") == "updated"


def test_hash_mismatch_and_garbage_are_not_applied(tmp_path: Path) -> None:
    mgr, agent = FakeManager(), Agent()
    mgr.rules = "x\n"
    up = make(tmp_path, mgr, agent)
    orig = mgr._get_rules
    mgr._get_rules = lambda req: orig(req).__class__(200, b"tampered\n")  # type: ignore
    assert up.check_item("rules") == "error: hash mismatch" and agent.rules == []
    mgr._get_iocs_sha256 = lambda req: orig(req).__class__(200, b"<html>")  # type: ignore
    assert up.check_item("iocs").startswith("error: not a sha256")
    mgr.up = False
    assert up.check_item("rules").startswith("error: connection refused")
