"""The Link wired into a real agent (build_agent) against the in-memory manager."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent.link.attach import attach, link_config_for
from agent.link.config import LinkConfig
from agent.link.hooks import LinkHooks
from agent.link.link import Link
from agent.link.system_service import install_systemd, systemd_unit, uninstall_systemd
from agent.link.transport import MemoryTransport
from agent.service import build_agent
from tests.agent.conftest import gene_rule, make_config
from tests.support.events import gene_event
from tests.support.waiting import wait_for

from .fakemanager import FakeManager

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def sysmon_event(image: str, n: int = 0) -> dict:
    data = {"Image": image, "CommandLine": f"{image} {n}", "ProcessId": str(1000 + n)}
    return gene_event(
        1,
        data,
        channel=SYSMON,
        computer="ws1",
        time="2026-11-28T07:00:00.000000Z",
        provider="Microsoft-Windows-Sysmon",
    )


def test_rule_pushed_from_manager_fires_on_agent_and_detection_arrives(tmp_path: Path) -> None:
    mgr = FakeManager()
    config = make_config(tmp_path, general={"log_all": True})
    agent = build_agent(config, sources=[], sinks=[])
    link = attach(agent, config, start=False, transport_factory=lambda: MemoryTransport(mgr))
    assert link in agent.sinks
    agent.process(sysmon_event("C:\\bin\\evil.exe", 1))
    mgr.rules = (
        gene_rule("PushedRule", ["$i: Image ~= 'evil\\.exe$'"], "$i", events={SYSMON: [1]}) + "\n"
    )
    assert link.housekeeping_once()["updates"]["rules"] == "updated"
    agent.process(sysmon_event("C:\\bin\\evil.exe", 2))
    link.forwarder.drain()
    events = [e for e in mgr.events() if e["Event"]["System"]["Channel"] != "Heron-Agent"]
    assert len(events) == 2
    detected = [e for e in events if e["Event"].get("Detection")]
    assert len(detected) == 1 and detected[0]["Event"]["Detection"]["Signature"] == ["PushedRule"]
    assert detected[0] is events[0]  # the detection lane drained first
    # a broken rule set is rejected; the previous one keeps firing
    mgr.rules = "{not json\n"
    assert link.housekeeping_once() == {}  # not due yet
    link._due.clear()
    assert link.housekeeping_once()["updates"]["rules"] == "rejected"
    agent.process(sysmon_event("C:\\bin\\evil.exe", 3))
    link.forwarder.drain()
    assert mgr.events()[-1]["Event"]["Detection"]["Signature"] == ["PushedRule"]
    assert mgr.sysinfo and mgr.sysinfo[0]["edr"]["version"]
    agent.close()
    assert link.spool._closed


def test_link_threads_forward_and_run_commands(tmp_path: Path) -> None:
    mgr = FakeManager()
    cfg = LinkConfig(batch_delay=0.05, command_interval=0.05, command_burst_interval=0.05)
    mgr.commands.append({"id": "k1", "name": "stat", "args": [str(tmp_path)]})
    (tmp_path / "art" / "{g}" / ("cd" * 20)).mkdir(parents=True)
    (tmp_path / "art" / "{g}" / ("cd" * 20) / "manifest.json").write_text("{}")
    link = Link(
        cfg,
        tmp_path / "state",
        transport_factory=lambda: MemoryTransport(mgr),
        hooks=LinkHooks(artifacts_dir=tmp_path / "art"),
    )
    link.start()
    try:
        for i in range(100):
            link.submit(sysmon_event("a.exe", i))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(mgr.events()) < 100 or not mgr.results):
            time.sleep(0.05)
    finally:
        link.stop()
    assert [e["Event"]["EventData"]["ProcessId"] for e in mgr.events()] == [
        str(1000 + i) for i in range(100)
    ]
    assert mgr.results[0]["json"]["type"] == "dir"
    assert ("{g}", "cd" * 20, "manifest.json") in mgr.files
    st = link.status()
    assert st["sent"]["events"] == 100 and st["state"] == "connected"
    assert st["commands_executed"] == 1 and not st["enrolled"]


def test_pushed_agent_config_validated(tmp_path: Path) -> None:
    mgr = FakeManager()
    config = make_config(tmp_path)
    agent = build_agent(config, sources=[], sinks=[])
    link = attach(agent, config, start=False, transport_factory=lambda: MemoryTransport(mgr))
    mgr.config = {"general": {"no_such_key": 1}}
    assert link.updater.check_item("config") == "rejected"
    mgr.config = {"general": {"log_all": True}, "link": {"command_interval": 2.5}}
    assert link.updater.check_item("config") == "updated"
    assert link.poller.interval == 2.5
    mgr.config = {"link": {"command_interval": "soon"}}
    assert link.updater.check_item("config") == "rejected" and link.poller.interval == 2.5
    agent.close()


def test_systemd_unit_install_uninstall(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv):
        import subprocess

        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    argv = ["/opt/heron/heron-agent", "run", "-c", "/etc/heron agent/config.toml"]
    text = systemd_unit(argv)
    assert 'ExecStart=/opt/heron/heron-agent run -c "/etc/heron agent/config.toml"' in text
    assert "Restart=always" in text and "WantedBy=multi-user.target" in text
    unit = install_systemd(argv, unit_dir=tmp_path, runner=runner)
    assert unit.read_text() == text
    assert ["systemctl", "enable", "--now", "heron-agent.service"] in calls
    assert uninstall_systemd(unit_dir=tmp_path, runner=runner) and not unit.exists()
    assert not uninstall_systemd(unit_dir=tmp_path, runner=runner)


def test_cli_enroll_needs_arguments_and_link_status(tmp_path: Path, capsys) -> None:
    from agent.cli import main

    assert main(["enroll", "--state-dir", str(tmp_path)]) == 2
    assert "--manager" in capsys.readouterr().err
    assert main(["link", "status", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["enrolled"] is False


def test_public_surface_is_pinned() -> None:
    import agent.link

    assert sorted(agent.link.__all__) == agent.link.__all__
    assert {
        "Link",
        "attach",
        "LinkConfig",
        "Spool",
        "Forwarder",
        "Transport",
        "CertificateRejected",
    } <= set(agent.link.__all__)
    for name in agent.link.__all__:
        assert hasattr(agent.link, name)


def test_upload_artifacts_on_demand(tmp_path: Path) -> None:
    mgr = FakeManager()
    d = tmp_path / "arts" / "{g}" / ("ef" * 20)
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{}")
    with Link(LinkConfig(), tmp_path / "s", transport_factory=lambda: MemoryTransport(mgr)) as ln:
        assert ln.upload_artifacts().files == 0  # no agent artifacts dir
        assert ln.upload_artifacts(tmp_path / "arts").files == 1
    assert ("{g}", "ef" * 20, "manifest.json") in mgr.files


def test_running_link_status_is_readable_by_the_cli(tmp_path: Path, capsys) -> None:
    from agent.cli import main
    from agent.link.errors import CertificateRejected

    def refuse(req):
        raise CertificateRejected(
            "connection closed after handshake: certificate probably rejected/revoked",
            path=req.path,
        )

    cfg = LinkConfig(batch_delay=0.0, drain_on_stop=0.5)
    link = Link(cfg, tmp_path / "s", transport_factory=lambda: MemoryTransport(refuse))
    link.start()
    link.submit(sysmon_event("x.exe"))
    wait_for(lambda: link.forwarder.state.value == "cert-rejected", 60, "the rejected state")
    link.stop()
    assert main(["link", "status", "--state-dir", str(tmp_path / "s")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["running_agent"]["state"] == "cert-rejected"
    assert "revoked" in out["running_agent"]["last_error"]
    assert out["queue"]["events"] == 1


def test_endpoint_uuid_and_config_offer(tmp_path: Path) -> None:
    from agent.link.identity import IdentityStore

    from .tlsserver import MiniCA

    mgr = FakeManager()
    config = make_config(tmp_path)
    agent = build_agent(config, sources=[], sinks=[])
    told: list[str] = []
    agent.set_endpoint = told.append  # type: ignore[method-assign]
    link = attach(agent, config, start=False, transport_factory=lambda: MemoryTransport(mgr))
    assert link.sync_identity() == "" and told == []
    # the manager holds no config: the agent offers its own once, then has nothing to apply
    assert link.updater.check_item("config") == "offered"
    assert mgr.config is not None and mgr.config["general"]["data_dir"] == config.general.data_dir
    assert link.updater.check_item("config") == "unchanged"
    # enrollment while running: the agent learns its uuid
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca = MiniCA()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue("uuid-77", key.public_key()).public_bytes(serialization.Encoding.PEM)
    IdentityStore(link.state_dir / "identity").save(
        uuid="uuid-77",
        manager="m:1519",
        group="",
        ca_pem=ca.pem,
        cert_pem=cert.decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    assert link.sync_identity() == "uuid-77" and told == ["uuid-77"]
    link.sync_identity()
    assert told == ["uuid-77"]
    agent.close()


def test_link_toml_is_read_when_the_agent_config_has_no_link_table(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert config.link == {}
    (config.data_dir / "link").mkdir(parents=True, exist_ok=True)
    (config.data_dir / "link" / "link.toml").write_text("update_interval = 0.3\n")
    assert link_config_for(config).update_interval == 0.3
    assert (
        link_config_for(make_config(tmp_path / "b", link={"update_interval": 2.0})).update_interval
        == 2.0
    )


def test_rule_state_reported_at_start_and_on_every_change(tmp_path: Path) -> None:
    from rules import wire

    mgr = FakeManager()
    config = make_config(tmp_path)
    agent = build_agent(config, sources=[], sinks=[])
    link = attach(agent, config, start=False, transport_factory=lambda: MemoryTransport(mgr))

    def states() -> list[dict]:
        link.forwarder.drain()
        return [
            e["Event"]["EventData"] for e in mgr.events() if e["Event"]["System"]["EventID"] == 9011
        ]

    assert link.housekeeping_once()["rules_state"] is True
    first = states()
    assert len(first) == 1 and first[0]["RuleCount"] == "0" and first[0]["RulesSource"] == "local"
    link._due.clear()
    assert link.housekeeping_once()["rules_state"] is False  # unchanged: nothing sent
    mgr.rules = gene_rule("PushedRule", ["$i: Image ~= 'evil'"], "$i", events={SYSMON: [1]}) + "\n"
    link._due.clear()
    link.housekeeping_once()
    last = states()[-1]
    assert last["RuleCount"] == "1" and last["RulesSource"] == "manager"
    assert last["RulesSha256"] == wire.rules_sha256(mgr.rules)
    assert last["RulesUpdated"] > first[0]["RulesUpdated"]
    agent.close()
