"""The Agent pipeline: forwarding decision, own events, IoCs, reloads, drops, sinks, limits."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.actions.artifacts import ArtifactDir, verify
from agent.errors import AgentClosedError
from agent.monitor import ResourceGuard
from agent.service import AgentState, build_agent
from agent.sinks import AlertLog, MemorySink, read_alerts
from agent.sources import MemorySource
from tests.agent.conftest import LINUX_CHANNEL, gene_rule

EVENTS = {LINUX_CHANNEL: [1]}
RULES = "\n".join(
    [
        gene_rule(
            "High", ["$i: /Event/EventData/Image = '/bin/evil'"], "$i", events=EVENTS, criticality=8
        ),
        gene_rule(
            "Low", ["$i: /Event/EventData/Image = '/bin/meh'"], "$i", events=EVENTS, criticality=2
        ),
        gene_rule(
            "OnlyFilter",
            ["$i: /Event/EventData/Image = '/bin/filtered'"],
            "$i",
            events=EVENTS,
            filter_=True,
        ),
    ]
)


def proc_event(
    image: str, pid: int = 4242, ppid: int = 1, guid: str = "", **extra: str
) -> dict[str, Any]:
    data = {
        "ProcessGuid": guid or f"{{G-{pid}}}",
        "ProcessId": str(pid),
        "Image": image,
        "CommandLine": image,
        "ParentProcessId": str(ppid),
        "ParentProcessGuid": "{G-1}",
        "User": "root",
        "IntegrityLevel": "High",
    }
    data.update(extra)
    return {
        "Event": {
            "System": {
                "Channel": LINUX_CHANNEL,
                "EventID": 1,
                "Computer": "h",
                "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
            },
            "EventData": data,
        }
    }


@pytest.fixture
def agent_factory(config_factory: Any) -> Iterator[Any]:
    made = []

    def make(**sections: Any) -> Any:
        sections.setdefault("general", {}).setdefault("ignore_self", True)
        sections.setdefault("actions", {}).setdefault("allowed", [])
        config = config_factory(**sections)
        sink = MemorySink()
        agent = build_agent(config, sources=[], sinks=[sink])
        agent.reload_rules(RULES)
        made.append(agent)
        return agent, sink

    yield make
    for a in made:
        a.close()


def _sigs(sink: MemorySink) -> list[list[str]]:
    return [e["Event"].get("Detection", {}).get("Signature", []) for e in sink.events]


def test_forwarding_decision(agent_factory: Any) -> None:
    agent, sink = agent_factory()
    assert agent.process(proc_event("/bin/evil")) is True
    assert agent.process(proc_event("/bin/meh")) is True  # by default every detection
    assert agent.process(proc_event("/bin/filtered")) is True  # filters on
    assert agent.process(proc_event("/bin/ok")) is False
    assert _sigs(sink) == [["High"], ["Low"], []]
    agent0, sink0 = agent_factory(general={"criticality_threshold": 5})
    assert agent0.process(proc_event("/bin/meh")) is False  # below the threshold
    assert agent.counters.detections == 2 and agent.counters.filtered == 1
    agent2, sink2 = agent_factory(
        general={"enable_filters": False, "log_all": False, "criticality_threshold": 1}
    )
    for image in ("/bin/evil", "/bin/meh", "/bin/filtered"):
        agent2.process(proc_event(image))
    assert _sigs(sink2) == [["High"], ["Low"]]
    agent3, sink3 = agent_factory(general={"log_all": True})
    agent3.process(proc_event("/bin/ok"))
    assert len(sink3.events) == 1


def test_own_events_and_children_are_dropped_when_live(agent_factory: Any) -> None:
    agent, sink = agent_factory()
    me = os.getpid()
    child = proc_event("/bin/evil", pid=9001, ppid=me, guid="{CHILD}")
    grandchild = proc_event(
        "/bin/evil", pid=9002, ppid=9001, guid="{GRAND}", ParentProcessGuid="{CHILD}"
    )
    assert agent.process(child, live=True) is False
    assert agent.process(grandchild, live=True) is False
    assert agent.process(proc_event("/bin/evil", pid=9003), live=True) is True
    assert agent.process(proc_event("/bin/evil", pid=9004, ppid=me)) is True  # replay: kept
    assert agent.counters.own_events == 2


def test_iocs_add_signatures_and_reload_keeps_builtin_rules(
    agent_factory: Any, tmp_path: Path
) -> None:
    agent, sink = agent_factory(
        canaries={"enable": True, "directories": [str(tmp_path)], "files": ["c.txt"]}
    )
    assert agent.detector.rule_count == 3 + 3  # test rules + canary rules
    assert (
        agent.set_iocs(
            [{"type": "sha256", "value": "AB" * 32}, {"type": "domain", "value": "evil.test"}]
        )
        == 2
    )
    agent.process(proc_event("/bin/ok", Hashes=f"SHA256={'ab' * 32}"))
    det = sink.events[-1]["Event"]["Detection"]
    assert det["Signature"] == ["IoC:sha256"] and det["Criticality"] == 10
    assert det["Actions"] == agent.config.actions.critical  # the critical band's defaults
    agent.process(proc_event("/bin/evil", Hashes=f"SHA256={'ab' * 32}"))
    assert sink.events[-1]["Event"]["Detection"]["Signature"] == ["High", "IoC:sha256"]
    with pytest.raises(ValueError, match="holds no rules"):
        agent.reload_rules("")  # an empty push never ends detection
    assert agent.detector.rule_count == 3 + 3
    assert agent.detector.user_rule_count == 3
    agent.process(proc_event("/bin/evil"))
    assert sink.events[-1]["Event"]["Detection"]["Signature"][0] == "High"


def test_an_agent_without_rules_says_so(config_factory: Any, caplog: Any) -> None:
    agent = build_agent(
        config_factory(general={"ignore_self": True}), sources=[], sinks=[MemorySink()]
    )
    try:
        assert agent.detector.user_rule_count == 0
        agent.start()
        assert "no detection rules loaded" in caplog.text
        assert any(
            r.levelname == "WARNING"
            for r in caplog.records
            if "no detection rules" in r.getMessage()
        )
    finally:
        agent.close()


def test_blacklisted_command_lines_are_killed_on_sight(agent_factory: Any) -> None:
    agent, _ = agent_factory(actions={"allowed": ["kill"]})
    jobs: list[Any] = []
    agent.runner.submit = jobs.append  # type: ignore[method-assign]
    agent.tracker.blacklist.add("/bin/ok")
    agent.process(proc_event("/bin/ok", pid=5555), live=True)
    assert [(j.pid, j.plan.run, j.detection["Signature"]) for j in jobs] == [
        (5555, ("kill",), ["Builtin:Blacklisted"])
    ]


def test_actions_only_for_live_events_and_planned_from_bands(agent_factory: Any) -> None:
    agent, _ = agent_factory(actions={"allowed": ["brief", "filedump"], "high": ["brief"]})
    jobs: list[Any] = []
    agent.runner.submit = jobs.append  # type: ignore[method-assign]
    agent.process(proc_event("/bin/evil", pid=7001))  # replayed: no action
    assert jobs == []
    agent.process(proc_event("/bin/evil", pid=7002), live=True)
    (job,) = jobs
    assert job.plan.run == ("brief",) and len(job.event_hash) == 40
    assert job.process_guid == "{G-7002}"


def test_lossy_source_drops_when_the_queue_is_full(config_factory: Any) -> None:
    gate = threading.Event()
    config = config_factory(general={"queue_size": 5})
    events = [proc_event("/bin/ok", pid=i) for i in range(50)]
    source = MemorySource(events, name="flood", live=False, lossless=False)
    sink = MemorySink()
    agent = build_agent(config, sources=[source], sinks=[sink])
    original = agent.process

    def slow(event: dict[str, Any], *, live: bool = False, degraded: bool = False) -> bool:
        gate.wait(5)
        return original(event, live=live, degraded=degraded)

    agent.process = slow  # type: ignore[method-assign]
    agent.start()
    try:
        for t in agent._source_threads:
            t.join(5)
        gate.set()
        assert agent.wait_idle(10)
        c = agent.counters.sources["flood"]
        assert c.events + c.drops == 50 and c.drops >= 40
        assert agent.counters.processed == c.events
        st = agent.status()
        assert st["sources"]["flood"]["drops"] == c.drops and st["queue"]["max"] == 5
    finally:
        agent.close()
    assert agent.state is AgentState.CLOSED
    with pytest.raises(AgentClosedError):
        agent.start()
    status = json.loads((config.data_dir / "status.json").read_text())
    assert status["state"] == "closed"


def test_alert_log_rotation_and_detections_only(tmp_path: Path) -> None:
    now = [0.0]
    log = AlertLog(tmp_path, max_bytes=400, rotation_interval=100, keep=2, clock=lambda: now[0])
    det = proc_event("/bin/x")
    det["Event"]["Detection"] = {"Signature": ["S"], "Criticality": 5, "Actions": []}
    log.submit(proc_event("/bin/no-detection"))
    for _ in range(3):
        log.submit(det)
    now[0] = 200.0
    log.submit(det)
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["alerts.log", "alerts.log.1", "alerts.log.2"]
    assert len(read_alerts(tmp_path)) <= 4 and log.written == 4
    assert all(a["Event"]["Detection"]["Signature"] == ["S"] for a in read_alerts(tmp_path))


def test_artifact_manifest_chain_of_custody(tmp_path: Path) -> None:
    art = ArtifactDir(
        tmp_path,
        process_guid="{ABC}",
        event_hash="e" * 40,
        endpoint="ep-1",
        hostname="h",
        rule=["R"],
        ts=0.0,
    )
    art.add_json("event.json", {"a": 1}, "event")
    art.add_bytes("1_evil:stream.bin", b"payload", "filedump")
    art.add_bytes("1_evil:stream.bin", b"payload2", "filedump")
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert art.path == tmp_path / "ABC" / ("e" * 40)
    assert [f["name"] for f in manifest["files"]] == [
        "event.json",
        "1_evil_ADS_stream.bin",
        "1_evil_ADS_stream-1.bin",
    ]
    assert manifest["endpoint"] == "ep-1" and manifest["time"] == "1970-01-01T00:00:00.000000000Z"
    assert verify(art.path) == []
    (art.path / "1_evil_ADS_stream.bin").write_bytes(b"tampered")
    assert verify(art.path) == ["sha256 mismatch 1_evil_ADS_stream.bin"]


def test_resource_guard_throttles_and_trims_with_log_lines(caplog: Any) -> None:
    samples = iter([(90.0, 10 << 20), (1.0, 500 << 20), (1.0, 10 << 20)])
    trims: list[int] = []
    guard = ResourceGuard(
        max_cpu_percent=50,
        max_rss_mb=100,
        interval=1,
        trim=lambda: trims.append(1),
        sample=lambda: next(samples),
    )
    guard.check()
    assert guard.throttle and not trims
    guard.check()
    assert not guard.throttle and trims == [1] and guard.over_memory
    guard.check()
    assert not guard.over_memory
    text = caplog.text
    assert "CPU self-limit exceeded" in text and "memory self-limit exceeded" in text


def test_per_process_limit_is_counted_at_planning_time(agent_factory: Any) -> None:
    agent, _ = agent_factory(
        actions={"allowed": ["brief"], "high": ["brief"], "max_per_process": 2}
    )
    jobs: list[Any] = []
    agent.runner.submit = lambda job: jobs.append(job) or True  # type: ignore[method-assign]
    agent.process(proc_event("/bin/ok", pid=8000), live=True)  # creates the track
    for _ in range(5):  # a burst before any worker ran
        agent.process(proc_event("/bin/evil", pid=8000), live=True)
    assert len(jobs) == 2


def test_apply_config_live_and_restart_sections(
    agent_factory: Any, tmp_path: Path, caplog: Any
) -> None:
    from dataclasses import replace

    agent, sink = agent_factory(general={"criticality_threshold": 5})
    assert agent.process(proc_event("/bin/meh")) is False  # criticality 2 < 5
    cfg = agent.config
    iocs = tmp_path / "iocs.txt"
    iocs.write_text("domain:evil.test\n# comment\n")
    new = replace(
        cfg,
        general=replace(cfg.general, criticality_threshold=2, queue_size=7),
        actions=replace(cfg.actions, allowed=["kill"], low=["kill"]),
        rules=replace(cfg.rules, ioc_file=str(iocs)),
        limits=replace(cfg.limits, max_rss_mb=1),
    )
    restart = agent.apply_config(new)
    assert restart == ["limits", "general/actions queue sizes, workers or data_dir"]
    assert agent.config.general.criticality_threshold == 2
    assert agent.config.general.queue_size == cfg.general.queue_size
    assert agent.runner.config is agent.config
    assert "opt-in response action ENABLED: kill" in caplog.text
    assert len(agent.detector.iocs) == 1
    assert agent.process(proc_event("/bin/meh")) is True
    det = sink.events[-1]["Event"]["Detection"]
    assert det["Signature"] == ["Low"] and det["Actions"] == ["kill"]  # new band defaults
    assert agent.detector.rule_count == 3  # pushed rules survived the rebuild


def test_detector_swaps_keep_the_other_rule_sources(tmp_path: Path) -> None:
    from agent.detect import Detector

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "local.gen").write_text(RULES + "\n")
    canary = gene_rule(
        "Canary",
        ["$f: /Event/EventData/Image = '/bin/canary'"],
        "$f",
        events=EVENTS,
        criticality=10,
    )
    d = Detector(rule_paths=[rules_dir / "local.gen"], extra_rules=canary)
    assert d.rule_count == 4
    assert d.set_extra_rules("") == 3  # local rules stay
    with pytest.raises(Exception, match="already exists"):
        d.set_extra_rules(RULES)  # duplicate names: refused, previous engine kept
    assert d.rule_count == 3
    assert d.reload_rules(canary) == 1  # pushed rules supersede the local files
    from rules import RuleError

    with pytest.raises(RuleError):
        d.reload_rules("{not json")
    assert d.rule_count == 1


def test_warns_while_sysmon_never_reports_terminations(agent_factory: Any, caplog: Any) -> None:
    agent, _ = agent_factory()
    ev = {
        "Event": {
            "System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 3},
            "EventData": {"ProcessGuid": "{A}"},
        }
    }
    for _ in range(1000):
        agent.process(ev, live=True)
    assert "no process termination (EventID 5)" in caplog.text
    caplog.clear()
    agent.process(
        {
            "Event": {
                "System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 5},
                "EventData": {},
            }
        },
        live=True,
    )
    for _ in range(1000):
        agent.process(ev, live=True)
    assert "EventID 5" not in caplog.text


def net_event(pid: int) -> dict[str, Any]:
    return {
        "Event": {
            "System": {"Channel": LINUX_CHANNEL, "EventID": 3, "Computer": "h"},
            "EventData": {
                "ProcessGuid": f"{{G-{pid}}}",
                "ProcessId": str(pid),
                "Image": "/bin/net",
                "DestinationIp": "10.0.0.1",
            },
        }
    }


def test_backlog_sheds_optional_events_first_and_counts_every_loss(agent_factory: Any) -> None:
    agent, _ = agent_factory(general={"queue_size": 100})
    events = []
    for i in range(400):
        events.append(net_event(i) if i % 4 else proc_event("/bin/ok", pid=10_000 + i))
    source = MemorySource(events, name="live", live=True, lossless=False)
    agent._pump(source)  # the pipeline is not running: the queue only fills
    c = agent.counters.source("live")
    assert c.events + c.drops + c.shed == 400  # nothing is lost uncounted
    queued = [item[0] for item in list(agent.queue.items.queue)]
    assert len(queued) == 100
    kept_proc = sum(1 for e in queued if e["Event"]["System"]["EventID"] == 1)
    assert kept_proc == 80 // 4 + 20  # past 80 % full only process creations got in
    assert c.shed == 400 - 100 - c.drops and c.shed > 0
    assert all(e["Event"]["System"]["EventID"] == 1 for e in queued[80:])


def test_degraded_processing_skips_enrichment_and_evidence_but_keeps_response(
    agent_factory: Any,
) -> None:
    agent, sink = agent_factory(
        actions={"allowed": ["kill", "report", "brief"], "high": ["report", "kill"]}
    )
    jobs: list[Any] = []
    agent.runner.submit = lambda job: jobs.append(job) or True  # type: ignore[method-assign]
    agent.process(proc_event("/bin/ok", pid=9000), live=True)
    agent.process(
        proc_event("/bin/evil", pid=9001, ppid=9000, ParentProcessGuid="{G-9000}"),
        live=True,
        degraded=True,
    )
    data = sink.events[-1]["Event"]["EventData"]
    assert "Ancestors" not in data  # enrichment skipped
    assert sink.events[-1]["Event"]["Detection"]["Signature"] == ["High"]  # still detected
    (job,) = jobs
    assert job.plan.run == ("kill",)
    assert agent.runner.status()["skipped"] == {"cpu pressure": 1}
    agent.process(
        proc_event("/bin/evil", pid=9002, ppid=9000, ParentProcessGuid="{G-9000}"), live=True
    )
    assert "Ancestors" in sink.events[-1]["Event"]["EventData"]
    assert jobs[-1].plan.run == ("report", "kill")


def test_full_data_disk_keeps_whole_alert_lines_and_logs_once(
    config_factory: Any, tmp_path: Path, caplog: Any
) -> None:
    from tests.agent.tmpfs import fill, small_tmpfs

    with small_tmpfs(tmp_path / "mnt", "256k") as mnt:
        config = config_factory(general={"data_dir": str(mnt / "data")})
        sink = AlertLog(mnt / "alerts")
        agent = build_agent(config, sources=[], sinks=[sink])
        agent.reload_rules(RULES)
        try:
            agent.process(proc_event("/bin/evil", pid=1))
            filler = fill(mnt)
            with caplog.at_level("WARNING", logger="agent.pipeline"):
                for i in range(200):
                    agent.process(proc_event("/bin/evil", pid=2 + i))
            failures = [r for r in caplog.records if "failed" in r.getMessage()]
            assert len(failures) == 1 and failures[0].exc_info is None
            assert "data disk full" in failures[0].getMessage()
            assert agent.counters.sink_errors >= 190 and sink.dropped >= 190
            filler.unlink()
            agent.process(proc_event("/bin/evil", pid=999))
            assert any("works again" in r.getMessage() for r in caplog.records)
            raw = (mnt / "alerts" / "alerts.log").read_bytes()
            lines = raw.splitlines(keepends=True)
            assert all(line.endswith(b"\n") and json.loads(line) for line in lines)
            assert len(lines) == 1 + (200 - sink.dropped) + 1
        finally:
            agent.close()


def test_rule_rate_limits_and_quota_follow_a_pushed_config(agent_factory: Any) -> None:
    from dataclasses import replace

    agent, _ = agent_factory()
    acts = replace(
        agent.config.actions,
        max_per_rule_hour=2,
        rule_limits=["Noisy=0"],
        artifact_quota_bytes=1234,
        artifact_quota_per_hour=99,
    )
    restart = agent.apply_config(replace(agent.config, actions=acts))
    assert restart == []
    assert agent.runner.limiter.default == 2 and agent.runner.limiter.limit("Noisy") == 0
    assert (agent.runner.store.quota_bytes, agent.runner.store.quota_per_hour) == (1234, 99)
    assert agent.runner.limiter.allow(["R"]) and agent.runner.limiter.allow(["R"])
    assert not agent.runner.limiter.allow(["R"])
