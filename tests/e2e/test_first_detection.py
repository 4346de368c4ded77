"""From install to first detection (issue 15 acceptance), as an admin does it after a .deb
install, without `make run`: `heron-manager init` + `run`, token enrollment with the CA pinned
by its fingerprint, the agent running its live sources as root with its default settings.

The manager serves its default packs from the first start, the agent reports its rule state,
`bash -c 'echo aGkK | base64 -d | sh'` twice gives two detections carrying ATT&CK, searchable
by technique within 5 s (and on the SSE stream and in the endpoint report), and a plain `ls`
is forwarded by the default forwarding filter and searchable too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ROOT, WAIT_LIMIT, ManagerProc, agent_env, enroll_cli, wait_for
from .test_story import SseReader

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.live,
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0, reason="live Linux agent needs root"
    ),
]

# Only what an admin must set: where the agent keeps its state. Forwarding, thresholds and
# intervals are the defaults.
AGENT_CONFIG = """
[general]
data_dir = "{data}"

[link]
state_dir = "{state}"
"""


@pytest.fixture()
def manager(tmp_path: Path) -> Iterator[ManagerProc]:
    mgr = ManagerProc(tmp_path / "manager")  # heron-manager init --json
    mgr.start()  # heron-manager run
    yield mgr
    mgr.stop()


@pytest.fixture()
def agent(manager: ManagerProc, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    state, data = tmp_path / "agent-link", tmp_path / "agent"
    uuid = enroll_cli(manager, state)  # token + --ca-sha256 from init
    config = tmp_path / "agent.toml"
    config.write_text(AGENT_CONFIG.format(data=data, state=state), encoding="utf-8")
    log = tmp_path / "agent.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=agent_env(),
            cwd=ROOT,
        )
    try:
        wait_for(
            lambda: "agent started" in log.read_text(errors="replace"),
            60,
            lambda: f"agent start; log: {log.read_text(errors='replace')[-2000:]}",
        )
        yield uuid, log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _search(manager: ManagerProc, uuid: str, query: str) -> list[dict]:
    q = urllib.parse.quote(query)
    return list(manager.admin("GET", f"/search?q={q}&endpoint={uuid}&limit=100")["events"])


def test_fresh_install_detects_with_attack_and_forwards_hunting_events(
    manager: ManagerProc, agent: tuple[str, Path], tmp_path: Path
) -> None:
    uuid, log = agent
    assert manager.admin("GET", "/rules"), "the manager serves its default rules"
    served = manager.admin("GET", "/endpoints/" + uuid)

    # the agent took the pushed default rules and says so (GET /endpoints, /metrics)
    def rules_state() -> dict | None:
        got = manager.admin("GET", "/endpoints/" + uuid)["rules"]
        return got if got and got["status"] == "ok" and got["source"] == "manager" else None

    state = wait_for(
        rules_state,
        60,
        lambda: (
            f"rule state; agent log: {log.read_text(errors='replace')[-1500:]}; endpoint: {served}"
        ),
    )
    assert state["count"] > 10 and len(state["sha256"]) == 64
    assert "rules reloaded" in log.read_text(errors="replace")

    stream = SseReader(manager)
    try:
        pids = []
        for _ in range(2):
            proc = subprocess.Popen(
                ["bash", "-c", "echo aGkK | base64 -d | sh"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            pids.append(proc.pid)
            proc.wait(10)
        ran = time.monotonic()
        ls = subprocess.Popen(["ls"], cwd=tmp_path, stdout=subprocess.DEVNULL)
        ls.wait(10)
        query = "attack:T1140 AND tactic:defense-evasion AND ProcessId:({})".format(
            " OR ".join(str(p) for p in pids)
        )
        found = wait_for(
            lambda: (lambda hits: hits if len(hits) >= 2 else None)(_search(manager, uuid, query)),
            WAIT_LIMIT,  # the figure is printed below; a busy box must not fail the test
            "two ATT&CK detections searchable",
        )
        searchable_after = time.monotonic() - ran
        assert len(found) == 2
        for event in found:
            det = event["Event"]["Detection"]
            assert "LinuxBase64DecodeToShell" in det["Signature"]
            assert {"ID": "T1140", "Tactic": "defense-evasion"}.items() <= det["ATTACK"][0].items()
        # the plain ls: a hunting event (no detection) forwarded by the default filter
        wait_for(
            lambda: _search(manager, uuid, f"ProcessId:{ls.pid} AND detection:false"),
            10,
            "the ls process creation in search",
        )
        # the same detections on the SSE stream and in the endpoint report
        wait_for(
            lambda: (
                sum(
                    1
                    for p in stream.payloads
                    if p["Event"].get("Detection", {}).get("ATTACK")
                    and p["Event"]["EventData"].get("ProcessId") in map(str, pids)
                )
                >= 2
            ),
            10,
            "the ATT&CK detections on /stream/detections",
        )
        report = manager.admin("GET", f"/endpoints/{uuid}/report")
        assert "T1140" in report["techniques"] and "defense-evasion" in report["tactics"]
        print(f"detections searchable {searchable_after:.2f} s after the commands ran")
    finally:
        stream.close()
