"""Live: a kill never waits behind evidence (real agent process, real processes, root).

The agent's only evidence worker is kept busy by reports whose command sleeps 8 s, and its
evidence queue overflows; a process matching a kill rule must still die within seconds, and the
overflow is counted per action in status.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def _status(base: Path) -> dict:
    try:
        return dict(json.loads((base / "data" / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


@pytest.fixture
def agent_dir(tmp_path: Path) -> Iterator[Path]:
    rules = "\n".join(
        [
            gene_rule(
                "SlowEvidence",
                [f"$c: CommandLine ~= 'heron-slowev-{TOKEN}'"],
                "$c",
                events=EVENTS,
                criticality=6,
                actions=["report"],
            ),
            gene_rule(
                "UrgentKill",
                [f"$c: CommandLine ~= 'heron-urgent-{TOKEN}'"],
                "$c",
                events=EVENTS,
                criticality=9,
                actions=["kill"],
            ),
        ]
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "live.gen").write_text(rules + "\n")
    (tmp_path / "config.toml").write_text(f"""
[general]
data_dir = "{tmp_path / "data"}"
[sources]
enabled = ["linux-proc"]
[rules]
paths = ["{tmp_path / "rules" / "live.gen"}"]
[actions]
allowed = ["kill", "report"]
medium = []
high = []
critical = []
workers = 1
queue_size = 2
[reporting]
osquery_tables = []
[[reporting.commands]]
name = "sh"
args = ["-c", "while [ ! -e '{tmp_path / "release"}' ]; do sleep 0.05; done"]
timeout = 300.0
""")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--standalone",
            "-c",
            str(tmp_path / "config.toml"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "agent.log", "wb"),
    )
    try:
        wait_for(
            lambda: _status(tmp_path).get("sources", {}).get("linux-proc", {}).get("running"),
            30,
            "the agent to start",
        )
        yield tmp_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_kill_lands_while_the_evidence_worker_is_stuck(agent_dir: Path) -> None:
    noisy = [
        subprocess.Popen(["sh", "-c", "sleep 30; true", f"heron-slowev-{TOKEN}-{i}"])
        for i in range(6)
    ]
    release = agent_dir / "release"
    try:
        # the worker is stuck (its report command waits for `release`) and the 2-job queue
        # overflowed
        wait_for(
            lambda: _status(agent_dir).get("actions", {}).get("dropped_actions"),
            60,
            "evidence jobs to overflow the queue",
        )
        target = subprocess.Popen(  # a long-lived target for the kill (its sleep is the behaviour)
            [sys.executable, "-c", "import time; time.sleep(300)", f"heron-urgent-{TOKEN}"]
        )
        try:
            target.wait(timeout=120)
        finally:
            if target.poll() is None:
                target.kill()
        # the kill landed while the report still waited for `release` (made only below): it
        # did not queue behind the stuck evidence worker (a condition, not a time margin)
        assert target.returncode == -signal.SIGKILL, (agent_dir / "agent.log").read_text()
        st = wait_for(
            lambda: (s := _status(agent_dir)) and s["actions"]["runs"].get("kill") and s,
            60,
            "the status to show the kill",
        )
        assert st["actions"]["dropped_actions"]["report"] >= 1
        assert st["actions"]["urgent_queue"] == 0
    finally:
        release.touch()
        for p in noisy:
            p.kill()
            p.wait()
