"""Live Linux acceptance: a real agent process on this host (root, proc connector, fanotify).

One agent (``python -m agent.cli run --standalone``) serves every test of the module. Its rules
only match marker strings unique to this test run, so nothing else on the host is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sinks import read_alerts
from agent.sources.procconn import proc_connector_available
from tests.agent.conftest import LINUX_CHANNEL, ROOT, gene_rule
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0, reason="needs root on Linux"
    ),
    pytest.mark.skipif(
        sys.platform.startswith("linux") and not proc_connector_available(),
        reason="proc connector unavailable",
    ),
]

TOKEN = uuid.uuid4().hex[:12]
EVENTS = {LINUX_CHANNEL: [1]}


class LiveAgent:
    def __init__(
        self, base: Path, proc: subprocess.Popen[bytes], port: int, listener: socket.socket
    ) -> None:
        self.base = base
        self.proc = proc
        self.port = port
        self.listener = listener
        self.alerts_dir = base / "data" / "alerts"
        self.artifacts = base / "data" / "artifacts"
        self.canary = base / "watch" / "canary-secrets.txt"
        self.sleeper = base / "bin" / f"heron-kill-{TOKEN}"

    def alerts(self) -> list[dict[str, Any]]:
        return read_alerts(self.alerts_dir) if self.alerts_dir.exists() else []

    def wait_alert(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any] | None:
        """The first alert matching `pred`, polled until `timeout` (generous: a busy box)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for a in self.alerts():
                if pred(a):
                    return a
            time.sleep(0.02)
        return None


def _sig(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda a: name in a["Event"].get("Detection", {}).get("Signature", [])


@pytest.fixture(scope="module")
def live_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAgent]:
    base = tmp_path_factory.mktemp("live")
    (base / "watch").mkdir()
    (base / "bin").mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    rules = "\n".join(
        [
            gene_rule(
                "LiveMarker",
                [f"$cl: /Event/EventData/CommandLine ~= 'heron-live-{TOKEN}'"],
                "$cl",
                events=EVENTS,
                criticality=6,
            ),
            gene_rule(
                "LiveKill",
                [f"$cl: /Event/EventData/CommandLine ~= 'heron-kill-{TOKEN}'"],
                "$cl",
                events=EVENTS,
                criticality=8,
                actions=["kill", "filedump"],
            ),
            gene_rule(
                "LiveFile",
                [f"$f: /Event/EventData/TargetFilename ~= 'heron-file-{TOKEN}'"],
                "$f",
                events={LINUX_CHANNEL: [11, 23]},
                criticality=6,
            ),
            gene_rule(
                "LiveConnect",
                [f"$p: /Event/EventData/DestinationPort = '{port}'"],
                "$p",
                events={LINUX_CHANNEL: [3]},
                criticality=8,
                actions=["report"],
            ),
        ]
    )
    (base / "rules").mkdir()
    (base / "rules" / "live.gen").write_text(rules + "\n")
    config = f"""
[general]
data_dir = "{base / "data"}"
criticality_threshold = 5
[sources]
enabled = ["linux-proc", "linux-net", "linux-file"]
[sources.linux]
net_poll_interval = 0.1
file_watch_dirs = ["{base / "watch"}"]
[rules]
paths = ["{base / "rules" / "live.gen"}"]
[actions]
allowed = ["kill", "filedump", "report", "brief"]
medium = []
high = []
critical = []
[canaries]
enable = true
directories = ["{base / "watch"}"]
files = ["canary-secrets.txt"]
actions = ["brief"]
[limits]
check_interval = 1.0
"""
    (base / "config.toml").write_text(config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--standalone", "-c", str(base / "config.toml")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(base / "agent.log", "wb"),
    )
    agent = LiveAgent(base, proc, port, listener)
    deadline = time.monotonic() + 300  # generous: a loaded CI box starts slowly
    status = base / "data" / "status.json"
    while time.monotonic() < deadline:  # started = status written with running sources
        if status.exists():
            st = json.loads(status.read_text())
            if all(s["running"] for s in st["sources"].values()) and len(st["sources"]) == 3:
                break
        assert proc.poll() is None, (base / "agent.log").read_text()
        time.sleep(0.1)
    else:
        pytest.fail("agent did not start: " + (base / "agent.log").read_text())

    def proc_events_seen() -> bool:  # the proc connector delivers: a new process is counted
        subprocess.run(["true"], check=True)
        return bool(json.loads(status.read_text())["sources"]["linux-proc"]["events"])

    wait_for(proc_events_seen, 120, "the agent's process source to count events")
    yield agent
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
    listener.close()


def test_matching_command_is_detected_while_it_runs(live_agent: LiveAgent) -> None:
    # two commands: the shell cannot exec the last one in place (which would change the
    # command line /proc shows before the agent reads it). The shell waits on its stdin, so the
    # alert must come from the live process event, not from a scan after it ended (a condition,
    # not a time margin; the detection latency is a figure of benchmarks/detection_latency.py)
    child = subprocess.Popen(
        ["sh", "-c", f"read _; true # heron-live-{TOKEN}"], stdin=subprocess.PIPE
    )
    try:
        alert = live_agent.wait_alert(_sig("LiveMarker"), timeout=120)
        assert alert is not None, (live_agent.base / "agent.log").read_text()[-3000:]
        assert child.poll() is None  # still waiting on its stdin: detected while it runs
        data = alert["Event"]["EventData"]
        assert alert["Event"]["System"]["Channel"] == LINUX_CHANNEL
        assert data["ProcessId"] == str(child.pid)
        assert data["Image"] in ("/usr/bin/dash", "/bin/dash", "/usr/bin/bash", "/bin/bash")
        assert data["ParentProcessId"] == str(os.getpid())
        assert "SHA256=" in data["Hashes"]
        assert data["Ancestors"] != "?"  # enrichment from the tracker (seeded /proc)
    finally:
        child.kill()
        child.wait()


def test_kill_action_kills_and_filedump_stores_the_binary(live_agent: LiveAgent) -> None:
    shutil.copy("/bin/sleep", live_agent.sleeper)
    digest = hashlib.sha256(live_agent.sleeper.read_bytes()).hexdigest()
    child = subprocess.Popen([str(live_agent.sleeper), "30"])
    try:
        rc = child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("the kill action did not kill the process")
    assert rc == -signal.SIGKILL
    alert = live_agent.wait_alert(_sig("LiveKill"))
    assert alert is not None
    guid = alert["Event"]["EventData"]["ProcessGuid"].strip("{}")
    deadline = time.monotonic() + 10
    manifest: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = list((live_agent.artifacts / guid).glob("*/manifest.json"))
        if found:
            manifest = json.loads(found[0].read_text())
            if any(f["kind"] == "filedump" for f in manifest["files"]):
                break
        time.sleep(0.1)
    dumps = [f for f in manifest.get("files", []) if f["kind"] == "filedump"]
    assert dumps, manifest
    assert digest in {f["sha256"] for f in dumps}
    folder = next((live_agent.artifacts / guid).glob("*/manifest.json")).parent
    for entry in manifest["files"]:
        assert hashlib.sha256((folder / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["rule"] == ["LiveKill"]
    assert manifest["process_guid"] == guid and manifest["event_hash"] == folder.name


def test_report_has_process_tree_and_connections(live_agent: LiveAgent) -> None:
    # the child holds its connection open until the test ends (the behaviour the report must
    # show): a fixed hold made the report miss it on a busy box
    code = (
        "import socket,sys,time; s=socket.create_connection(('127.0.0.1',int(sys.argv[1])));"
        " time.sleep(float(sys.argv[2]))"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(live_agent.port), "3600"])
    try:
        alert = live_agent.wait_alert(_sig("LiveConnect"), timeout=60)
        assert alert is not None, (live_agent.base / "agent.log").read_text()[-3000:]
        data = alert["Event"]["EventData"]
        assert data["ProcessId"] == str(child.pid)
        guid = data["ProcessGuid"].strip("{}")
        deadline = time.monotonic() + 60
        report = None
        while time.monotonic() < deadline and report is None:
            for path in (live_agent.artifacts / guid).glob("*/report.json"):
                report = json.loads(path.read_text())
            time.sleep(0.1)
        assert report is not None
        tree_pids = [p["pid"] for p in report["tree"]]
        assert child.pid in tree_pids and os.getpid() in tree_pids
        mine = [c for c in report["connections"] if c["pid"] == child.pid]
        assert any(c["raddr"] == f"127.0.0.1:{live_agent.port}" for c in mine), mine
        assert all(c["process_guid"].strip("{}") == guid for c in mine)
    finally:
        child.kill()
        child.wait()


def test_file_create_and_delete_are_attributed(live_agent: LiveAgent) -> None:
    target = live_agent.base / "watch" / f"heron-file-{TOKEN}.txt"
    # the actor lives a little while; a process that exits within a few ms can
    # be gone before /proc is read (documented limit of the /proc-based attribution).
    code = (
        "import os,sys,time; time.sleep(0.2); open(sys.argv[1],'w').close(); "
        "time.sleep(0.2); os.unlink(sys.argv[1]); time.sleep(0.3)"
    )
    child = subprocess.run([sys.executable, "-c", code, str(target)], check=True)
    assert child.returncode == 0

    def by(eid: int) -> Callable[[dict[str, Any]], bool]:
        return lambda a: (
            a["Event"]["System"]["EventID"] == eid
            and "LiveFile" in a["Event"].get("Detection", {}).get("Signature", [])
        )

    created = live_agent.wait_alert(by(11))
    deleted = live_agent.wait_alert(by(23))
    assert created is not None and deleted is not None
    c, d = created["Event"]["EventData"], deleted["Event"]["EventData"]
    assert c["TargetFilename"] == d["TargetFilename"] == str(target)
    assert c["Image"] == d["Image"] == os.path.realpath(sys.executable)
    assert c["ProcessGuid"] == d["ProcessGuid"] and c["ProcessGuid"].startswith("{")
    assert c["User"] == "root" and c["ProcessId"] == d["ProcessId"]


def test_touching_a_canary_is_detected(live_agent: LiveAgent) -> None:
    assert live_agent.canary.exists()  # created by the agent at start
    subprocess.run(["touch", str(live_agent.canary)], check=True)
    alert = live_agent.wait_alert(_sig("Builtin:CanaryModified"))
    assert alert is not None, (live_agent.base / "agent.log").read_text()[-3000:]
    assert alert["Event"]["EventData"]["TargetFilename"] == str(live_agent.canary)
    # attribution: `touch` lives ~1 ms and may be gone before /proc is read, so check it with
    # a reader that stays a moment
    code = "import sys,time; f=open(sys.argv[1],'rb'); f.read(1); time.sleep(0.3)"
    reader = subprocess.run([sys.executable, "-c", code, str(live_agent.canary)], check=True)
    assert reader.returncode == 0

    def by_reader(a: dict[str, Any]) -> bool:
        data = a["Event"]["EventData"]
        return (
            _sig("Builtin:CanaryModified")(a)
            and data.get("Operation") in ("open", "read")
            and data["Image"] == os.path.realpath(sys.executable)
        )

    read_alert = live_agent.wait_alert(by_reader)
    assert read_alert is not None
    assert read_alert["Event"]["System"]["EventID"] == 100


def test_cli_report_and_status(live_agent: LiveAgent) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "-c", str(live_agent.base / "config.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "linux-proc" in out.stdout and "drops" in out.stdout
    rep = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "report",
            "--brief",
            "-c",
            str(live_agent.base / "config.toml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rep.returncode == 0, rep.stderr
    report = json.loads(rep.stdout)
    assert any(p["pid"] == os.getpid() for p in report["processes"])
    assert report["connections"]
