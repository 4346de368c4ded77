"""`make run`'s launcher: first run initialises and enrolls, a second run reuses the data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .harness import ROOT, STARTUP_LIMIT, WAIT_LIMIT, agent_env, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="live agent: root"),
]


def _run_once(data: Path, admin: int, endpoint: int, log: Path) -> str:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance.runtime.devrun",
                "--data-dir",
                str(data),
                "--admin-listen",
                f"127.0.0.1:{admin}",
                "--endpoint-listen",
                f"127.0.0.1:{endpoint}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=agent_env(),
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + STARTUP_LIMIT
            while "agent started" not in log.read_text(errors="replace"):
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(WAIT_LIMIT)
    text = log.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "agent stopped" in text
    return text


def test_make_run_starts_twice_on_the_same_data_dir(tmp_path: Path) -> None:
    data, admin, endpoint = tmp_path / "heron", free_port(), free_port()
    first = _run_once(data, admin, endpoint, tmp_path / "first.log")
    assert "API key" in first and f"https://127.0.0.1:{admin}" in first
    assert "enrolled endpoint" in first
    key = next(line for line in first.splitlines() if "API key" in line).split(":", 1)[1].strip()
    second = _run_once(data, admin, endpoint, tmp_path / "second.log")
    assert key in second  # the same admin key is shown again: nothing was re-initialised
    assert "enrolled endpoint" not in second  # the agent kept its identity
    assert f"https://127.0.0.1:{admin}/console/" in second


def test_make_run_with_other_ports_on_an_existing_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "heron"
    _run_once(data, free_port(), free_port(), tmp_path / "first.log")
    admin, endpoint = free_port(), free_port()
    second = _run_once(data, admin, endpoint, tmp_path / "second.log")
    assert f"https://127.0.0.1:{admin}/console/" in second
    assert "enrolled endpoint" in second  # re-enrolled against the new endpoint port
