"""End to end: a real `heron-manager` subprocess on 127.0.0.1, agents over mutual TLS.

Covers enrollment with a token (the `heron-agent enroll` CLI), events arriving and being
searchable, a command round trip, a rule pushed from the manager firing on the agent, and the
fault cases: manager down while events are produced, agent `kill -9` mid-send, queue cap
eviction, and a revoked certificate.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.link.attach import attach
from agent.link.config import LinkConfig
from agent.link.forwarder import LinkState
from agent.link.health import HEALTH_CHANNEL, HEALTH_EVICTED
from agent.link.link import Link
from tests.support.events import gene_event

from .harness import (
    PY,
    ROOT,
    STARTUP_LIMIT,
    WAIT_LIMIT,
    ManagerProc,
    agent_env,
    enroll_cli,
    wait_for,
)

pytestmark = pytest.mark.e2e

FAST = {
    "batch_delay": 0.05,
    "command_interval": 0.2,
    "command_burst_interval": 0.1,
    "update_interval": 0.3,
    "backoff_base": 0.1,
    "backoff_cap": 0.5,
    "fsync_interval": 0.0,
    "segment_events": 50,
}


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProc]:
    mgr = ManagerProc(tmp_path_factory.mktemp("manager") / "data")
    mgr.start()
    yield mgr
    mgr.stop()


def event(n: int, marker: str, image: str = "C:\\Windows\\notepad.exe") -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = {"Image": image, "CommandLine": f"{marker} {n}", "ProcessId": str(n)}
    return gene_event(1, data, computer="e2e-host", time=now, provider="Microsoft-Windows-Sysmon")


def numbers(events: list[dict[str, Any]], marker: str) -> list[int]:
    out = []
    for e in events:
        cmd = str(e["Event"].get("EventData", {}).get("CommandLine", ""))
        if cmd.startswith(marker + " "):
            out.append(int(cmd.split()[1]))
    return sorted(out)


def test_enroll_forward_search_and_command(manager: ManagerProc, tmp_path: Path) -> None:
    state = tmp_path / "link"
    uid = enroll_cli(manager, state)
    assert oct((state / "identity" / "key.pem").stat().st_mode & 0o777) == "0o600"
    with Link(LinkConfig.from_dict(FAST), state) as link:
        link.start()
        for i in range(200):
            link.submit(event(i, "fwd"))
        wait_for(
            lambda: numbers(manager.events(uid), "fwd") == list(range(200)),
            what="200 events searchable",
        )
        queued = manager.admin(
            "POST", f"/endpoints/{uid}/command", {"name": "stat", "args": [str(tmp_path)]}
        )
        assert queued["command"]["state"] in ("queued", "sent", "completed")
        done = manager.admin("GET", f"/endpoints/{uid}/command?wait=true&timeout=20")
        assert done["state"] == "completed", done
        result = manager.admin("GET", f"/endpoints/{uid}/command/json")
        assert result["type"] == "dir"
        assert link.forwarder.state is LinkState.CONNECTED


def test_rule_pushed_from_manager_fires_on_agent(manager: ManagerProc, tmp_path: Path) -> None:
    from agent.service import build_agent
    from tests.agent.conftest import make_config

    config = make_config(tmp_path, link=dict(FAST))  # the [link] table wins over link.toml
    state = config.data_dir / "link"
    uid = enroll_cli(manager, state)
    agent = build_agent(config, sources=[], sinks=[])
    link = attach(agent, config)
    assert link.config.update_interval == FAST["update_interval"]
    try:
        # the link polls /rules/sha256 every update_interval, also while the rule is POSTed
        wait_for(
            lambda: link.updater.status()["rules"].applied,
            what=lambda: f"first rules poll applied: {link.updater.status()}",
        )
        name = f"E2E_{uuid.uuid4().hex[:8]}"
        rule = {
            "Name": name,
            "Tags": ["e2e"],
            "Meta": {
                "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
                "Criticality": 9,
                "Schema": "2.0.0",
                "LogType": "winevt",
            },
            "Matches": ["$i: Image ~= 'e2e-evil\\.exe$'"],
            "Condition": "$i",
            "Actions": [],
        }
        sha = manager.admin("POST", "/rules?update=true", [rule])["sha256"]
        wait_for(
            lambda: link.updater.status()["rules"].applied == sha,
            what=lambda: f"rules {sha} applied: {link.updater.status()}",
        )
        agent.process(event(1, "rule", image="C:\\tmp\\e2e-evil.exe"))
        found = wait_for(lambda: manager.events(uid, detections=True), what="detection")
        assert name in found[0]["Event"]["Detection"]["Signature"]
    finally:
        agent.close()


def test_heron_agent_run_cli_forwards_through_the_link(
    manager: ManagerProc, tmp_path: Path
) -> None:
    data = tmp_path / "agent-data"
    uid = enroll_cli(manager, data / "link")
    (data / "link" / "link.toml").write_text("\n".join(f"{k} = {v}" for k, v in FAST.items()))
    config = tmp_path / "config.toml"
    config.write_text(f'[general]\ndata_dir = "{data}"\nlog_all = true\n')
    replay = tmp_path / "events.jsonl"
    replay.write_text("".join(json.dumps(event(i, "cli")) + "\n" for i in range(120)))
    out = subprocess.run(
        [PY, "-m", "agent.cli", "run", "-c", str(config), "--replay", str(replay)],
        capture_output=True,
        env=agent_env(),
        cwd=ROOT,
        timeout=STARTUP_LIMIT,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    # the agent exited after the replay; the link's final drain delivered everything
    wait_for(
        lambda: numbers(manager.events(uid), "cli") == list(range(120)),
        what="replayed events searchable",
    )


def test_manager_down_then_up_delivers_all_exactly_once(
    manager: ManagerProc, tmp_path: Path
) -> None:
    state = tmp_path / "link"
    uid = enroll_cli(manager, state)
    with Link(LinkConfig.from_dict(FAST), state) as link:
        link.start()
        link.submit(event(0, "outage"))
        wait_for(lambda: numbers(manager.events(uid), "outage") == [0], what="first event")
        manager.stop()
        for i in range(1, 301):
            link.submit(event(i, "outage"))
        wait_for(lambda: link.forwarder.state is LinkState.UNREACHABLE, what="unreachable")
        manager.start()
        wait_for(
            lambda: len(numbers(manager.events(uid), "outage")) >= 301,
            timeout=WAIT_LIMIT,
            what="replay after restart",
        )
        # every batch acknowledged: no resend can follow, so the count below is final
        wait_for(lambda: link.status()["queue"]["events"] == 0, what="the agent spool drained")
        assert numbers(manager.events(uid), "outage") == list(range(301))


AGENT_SCRIPT = r"""
import sys, time
from pathlib import Path
from agent.link.config import LinkConfig
from agent.link.link import Link
state, count = Path(sys.argv[1]), int(sys.argv[2])
link = Link(LinkConfig(batch_delay=0.0, segment_events=10, fsync_interval=0.0), state)
for i in range(count):
    link.submit({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational",
        "EventID": 1, "Computer": "e2e", "TimeCreated": {"SystemTime": sys.argv[3]}},
        "EventData": {"CommandLine": f"kill9 {i}"}}})
print("queued", flush=True)
link.start()
while True:  # the link's threads do the work; the test kills this process
    time.sleep(1)
"""


def _queued(state: Path) -> int | None:
    """Events the agent in `state` still holds, from the status file it writes every 5 s."""
    try:
        return int(json.loads((state / "status.json").read_text())["queue"]["events"])
    except (OSError, ValueError, KeyError):
        return None


def test_agent_kill9_mid_send_loses_nothing(manager: ManagerProc, tmp_path: Path) -> None:
    state = tmp_path / "link"
    uid = enroll_cli(manager, state)
    script = tmp_path / "heron_agent_proc.py"
    script.write_text(AGENT_SCRIPT)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    n = 600
    proc = subprocess.Popen(
        [PY, str(script), str(state), str(n), now],
        env=agent_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    segments = state / "queue" / "events"
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"queued"
        # kill as soon as the manager acknowledged (and the agent deleted) a first batch
        wait_for(
            lambda: len(list(segments.glob("*.seg"))) < n // 10,
            timeout=WAIT_LIMIT,
            what="first acknowledged batch",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT_LIMIT)
        assert proc.stdout is not None
        proc.stdout.close()
    assert list(segments.glob("*")), "the agent finished before it was killed; raise n"
    proc = subprocess.Popen(
        [PY, str(script), str(state), "0", now], env=agent_env(), cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        wait_for(
            lambda: len(numbers(manager.events(uid), "kill9")) >= n,
            timeout=WAIT_LIMIT,
            what="replay after kill -9",
        )
        # every batch acknowledged (the agent's status file): no resend can follow
        wait_for(lambda: _queued(state) == 0, what="the agent spool drained")
        assert numbers(manager.events(uid), "kill9") == list(range(n))
    finally:
        proc.kill()
        proc.wait(WAIT_LIMIT)
        assert proc.stdout is not None
        proc.stdout.close()


def test_queue_cap_eviction_is_reported(manager: ManagerProc, tmp_path: Path) -> None:
    state = tmp_path / "link"
    uid = enroll_cli(manager, state)
    cfg = LinkConfig.from_dict({**FAST, "queue_max_bytes": 64 * 1024, "segment_events": 20})
    with Link(cfg, state) as link:  # not started: the manager is "unreachable"
        for i in range(1000):
            link.submit(event(i, "cap"))
        evicted = link.spool.stats().evicted_events
        assert evicted > 0
        link.start()
        wait_for(lambda: link.spool.stats().queued_events == 0, what="queue drained")

    def reported() -> int:  # the manager may still be indexing: wait for every report
        return sum(
            int(e["Event"]["EventData"]["DroppedEvents"])
            for e in manager.events(uid)
            if e["Event"]["System"]["Channel"] == HEALTH_CHANNEL
            and e["Event"]["System"]["EventID"] == HEALTH_EVICTED
        )

    wait_for(lambda: reported() >= evicted, what=lambda: f"eviction reports ({reported()})")
    assert reported() == evicted
    wait_for(lambda: len(numbers(manager.events(uid), "cap")) + evicted >= 1000, what="kept events")
    kept = numbers(manager.events(uid), "cap")
    assert len(kept) + evicted == 1000 and kept == list(range(1000 - len(kept), 1000))


def test_revoked_certificate_is_reported_and_events_buffered(
    manager: ManagerProc, tmp_path: Path, caplog
) -> None:
    state = tmp_path / "link"
    uid = enroll_cli(manager, state)
    with Link(LinkConfig.from_dict(FAST), state) as link:
        link.start()
        link.submit(event(0, "rev"))
        wait_for(lambda: numbers(manager.events(uid), "rev") == [0], what="first event")
        manager.admin("POST", f"/endpoints/{uid}/revoke")
        for i in range(1, 51):
            link.submit(event(i, "rev"))
        wait_for(lambda: link.forwarder.state is LinkState.CERT_REJECTED, what="rejection")
        assert "revoked" in caplog.text and "re-enroll" in caplog.text
        assert link.spool.stats().queued_events == 50
    assert numbers(manager.events(uid), "rev") == [0]
