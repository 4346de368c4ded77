"""`heron-manager run --service`: foreground on Linux, SCM-hosted on Windows (fake pywin32)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from appliance import cli
from appliance.cli import run as cli_run
from tests.support.fake_pywin32 import STOP_PENDING, FakePywin32

ROOT = Path(__file__).resolve().parents[3]


def _run_args(*extra: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["run", *extra])


def test_parser_accepts_service() -> None:
    assert _run_args("--service", "--data-dir", "x").service is True
    assert _run_args().service is False


def test_service_flag_on_linux_runs_in_the_foreground(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[argparse.Namespace, threading.Event]] = []
    monkeypatch.setattr(cli_run, "run_manager", lambda a, stop: seen.append((a, stop)) or 0)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # cmd_run's handlers: not in pytest
    args = _run_args("--service", "--data-dir", "d")
    assert cli_run.cmd_run(args, platform="linux") == 0
    assert seen and seen[0][0] is args and not seen[0][1].is_set()


def test_service_flag_on_win32_hosts_the_manager_class(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[argparse.Namespace, threading.Event]] = []

    def run_manager(a: argparse.Namespace, stop: threading.Event) -> int:
        ran.append((a, stop))
        stop.wait(30)
        return 0

    def dispatch(cls: type) -> None:  # what the SCM does: instantiate, run, stop
        svc = cls([cls._svc_name_])
        t = threading.Thread(target=svc.SvcDoRun)
        t.start()
        svc.SvcStop()
        t.join(timeout=10)
        assert not t.is_alive()

    fake = FakePywin32(dispatch=dispatch)
    fake.install(monkeypatch)
    monkeypatch.setattr(cli_run, "run_manager", run_manager)
    monkeypatch.setattr(signal, "signal", lambda *a: pytest.fail("no signal handlers on win32"))
    args = _run_args("--service", "--data-dir", "C:/ProgramData/Heron/Manager")
    assert cli_run.cmd_run(args, platform="win32") == 0
    assert fake.names()[:3] == ["Initialize", "PrepareToHostSingle", "StartServiceCtrlDispatcher"]
    assert fake.hosted is not None and fake.hosted._svc_name_ == "heron-manager"
    assert fake.hosted.__name__ == "HeronManagerService"
    assert len(ran) == 1 and ran[0][0] is args and ran[0][1].is_set()
    assert ("ReportServiceStatus", STOP_PENDING) in fake.calls


@pytest.mark.skipif(sys.platform == "win32", reason="--service hosts the SCM service on Windows")
def test_run_service_on_linux_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env_cmd = [sys.executable, "-m", "appliance"]
    subprocess.run(
        [*env_cmd, "init", "--data-dir", str(data), "--json"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    proc = subprocess.Popen(
        [
            *env_cmd,
            "run",
            "--service",
            "--data-dir",
            str(data),
            "--memory-events",
            "--admin-listen",
            "127.0.0.1:0",
            "--endpoint-listen",
            "127.0.0.1:0",
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, proc.stderr.read()  # type: ignore[union-attr]
        assert json.loads(line)["admin"].startswith("https://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "shutting down" in err
    # Service mode also writes the rotating log file, in the same JSON-lines format.
    lines = (data / "logs" / "heron-manager.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r["msg"] == "shutting down" for r in records)
