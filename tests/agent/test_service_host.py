"""`heron-agent run --service`: foreground on Linux, SCM-hosted on Windows (fake pywin32)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from agent import cli
from agent.link import system_service
from tests.support.fake_pywin32 import FakePywin32


def _events(path: Path, n: int = 5) -> Path:
    lines = [
        json.dumps(
            {
                "Event": {
                    "System": {
                        "Channel": "c",
                        "EventID": 1,
                        "EventRecordID": str(i),
                        "TimeCreated": {"SystemTime": f"2020-01-01T00:00:0{i}Z"},
                    },
                    "EventData": {},
                }
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="--service hosts the SCM service on Windows")
def test_service_flag_on_linux_behaves_like_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # pytest's handlers make main()'s basicConfig a no-op
    events = _events(tmp_path / "e.jsonl")
    assert (
        cli.main(
            [
                "run",
                "--service",
                "--standalone",
                "--data-dir",
                str(tmp_path / "d"),
                "--replay",
                str(events),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["processed"] == 5
    log = (tmp_path / "d" / "logs" / "heron-agent.log").read_text()
    assert "service mode: logging to" in log


def test_run_without_service_writes_no_log_file(tmp_path: Path) -> None:
    events = _events(tmp_path / "e.jsonl")
    assert (
        cli.main(
            ["run", "--standalone", "--data-dir", str(tmp_path / "d"), "--replay", str(events)]
        )
        == 0
    )
    assert not (tmp_path / "d" / "logs").exists()


def test_run_agent_returns_when_stop_is_set(tmp_path: Path) -> None:
    events = _events(tmp_path / "e.jsonl")
    args = cli.build_parser().parse_args(
        [
            "run",
            "--standalone",
            "--data-dir",
            str(tmp_path),
            "--replay",
            str(events),
            "--loop",
            "--rate",
            "50",
        ]
    )
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(cli.run_agent(args, stop)))
    t.start()
    assert not stop.wait(0.5) and t.is_alive()  # --loop: runs until stopped
    stop.set()
    t.join(timeout=30)
    assert not t.is_alive() and result == [0]


def test_service_flag_on_win32_hosts_the_class_with_the_run_args(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _events(tmp_path / "e.jsonl")

    def dispatch(cls: type[Any]) -> None:  # what the SCM does: instantiate, SvcRun
        svc = cls([cls._svc_name_])
        svc.SvcDoRun()  # the replay ends by itself
        assert svc.exit_code == 0

    fake = FakePywin32(dispatch=dispatch)
    fake.install(monkeypatch)
    args = cli.build_parser().parse_args(
        [
            "run",
            "--service",
            "--standalone",
            "--data-dir",
            str(tmp_path / "d"),
            "--replay",
            str(events),
        ]
    )
    assert cli._cmd_run(args, platform="win32") == 0
    assert fake.names()[:3] == ["Initialize", "PrepareToHostSingle", "StartServiceCtrlDispatcher"]
    assert fake.hosted is not None and fake.hosted._svc_name_ == "heron-agent"
    assert fake.hosted.__name__ == "HeronAgentService"
    assert json.loads(capsys.readouterr().out)["processed"] == 5  # same code path as `run`


def test_service_install_registers_run_service_with_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`heron-agent service install` on Windows: the frozen exe with `run --service -c ...`."""
    fake = FakePywin32()
    fake.install(monkeypatch)
    fake.win32service.SERVICE_AUTO_START = 2  # type: ignore[attr-defined]
    installed: list[dict[str, Any]] = []

    def install_service(cls: Any, name: str, display: str, **kw: Any) -> None:
        installed.append({"cls": cls, "name": name} | kw)

    fake.win32serviceutil.InstallService = install_service  # type: ignore[attr-defined]
    fake.win32serviceutil.StartService = (  # type: ignore[attr-defined]
        lambda name: fake.calls.append(("StartService", name))
    )
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", r"C:\Program Files\Heron\Agent\heron-agent.exe")
    config = tmp_path / "my config.toml"
    argv = system_service.install_windows(str(config))
    assert argv == [sys.executable, "run", "--service", "-c", str(config)]
    [svc] = installed
    assert svc["cls"] is None  # no pythonservice.exe class entry
    assert svc["name"] == "heron-agent" and svc["startType"] == 2
    assert svc["exeName"] == sys.executable
    assert svc["exeArgs"] == f'run --service -c "{config}"'
    assert ("StartService", "heron-agent") in fake.calls


def test_unfrozen_service_runs_the_interpreter_not_the_launcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert system_service.service_argv() == [sys.executable, "-m", "agent.cli", "run", "--service"]
    assert system_service.service_argv(exe="x.exe")[:3] == ["x.exe", "run", "--service"]
