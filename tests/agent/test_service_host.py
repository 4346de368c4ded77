"""`heron-agent run --service`: foreground on Linux, SCM-hosted on Windows (fake pywin32)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from agent import cli
from agent.link import system_service

STOP_PENDING = 3
ACCEPT_STOP, ACCEPT_SHUTDOWN = 0x1, 0x4  # win32service.SERVICE_ACCEPT_*
CONTROL_STOP, CONTROL_SHUTDOWN = 0x1, 0x5  # win32service.SERVICE_CONTROL_*


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


class FakePywin32:
    """Records what the service code asks of pywin32 (win32serviceutil, servicemanager, ...)."""

    def __init__(self, *, dispatch: Any = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.hosted: type[Any] | None = None
        self.dispatch = dispatch  # called with the hosted class by StartServiceCtrlDispatcher
        fake = self

        class ServiceFramework:
            def __init__(self, args: list[str]) -> None:
                fake.calls.append(("ServiceFramework.__init__", list(args)))

            def ReportServiceStatus(self, status: int) -> None:
                fake.calls.append(("ReportServiceStatus", status))

            # pywin32's own dispatch (win32serviceutil.ServiceFramework): a control is only
            # accepted, and routed, when the class defines its Svc* method.
            def GetAcceptedControls(self) -> int:
                accepted = 0
                if hasattr(self, "SvcStop"):
                    accepted |= ACCEPT_STOP
                if hasattr(self, "SvcShutdown"):
                    accepted |= ACCEPT_SHUTDOWN
                return accepted

            def ServiceCtrlHandlerEx(
                self,
                control: int,
                event_type: int,
                data: Any,
            ) -> Any:
                if control == CONTROL_STOP:
                    return self.SvcStop()  # type: ignore[attr-defined]
                if control == CONTROL_SHUTDOWN:
                    return self.SvcShutdown()  # type: ignore[attr-defined]
                return None

        self.win32serviceutil = types.ModuleType("win32serviceutil")
        self.win32serviceutil.ServiceFramework = ServiceFramework  # type: ignore[attr-defined]
        self.win32service = types.ModuleType("win32service")
        self.win32service.SERVICE_STOP_PENDING = STOP_PENDING  # type: ignore[attr-defined]
        self.win32service.SERVICE_STOPPED = 1  # type: ignore[attr-defined]
        sm = self.servicemanager = types.ModuleType("servicemanager")
        sm.EVENTLOG_INFORMATION_TYPE = 4  # type: ignore[attr-defined]
        sm.PYS_SERVICE_STARTED = 0x1002  # type: ignore[attr-defined]
        sm.PYS_SERVICE_STOPPED = 0x1004  # type: ignore[attr-defined]
        sm.LogMsg = lambda *a: fake.calls.append(("LogMsg", a[1]))  # type: ignore[attr-defined]
        sm.Initialize = lambda: fake.calls.append(("Initialize", None))  # type: ignore[attr-defined]

        def prepare(cls: type[Any]) -> None:
            fake.hosted = cls
            fake.calls.append(("PrepareToHostSingle", cls))

        def start() -> None:
            fake.calls.append(("StartServiceCtrlDispatcher", None))
            if fake.dispatch is not None:
                fake.dispatch(fake.hosted)

        sm.PrepareToHostSingle = prepare  # type: ignore[attr-defined]
        sm.StartServiceCtrlDispatcher = start  # type: ignore[attr-defined]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("win32serviceutil", "win32service", "servicemanager"):
            monkeypatch.setitem(__import__("sys").modules, name, getattr(self, name))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


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


def test_service_class_runs_and_stops_through_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePywin32()
    fake.install(monkeypatch)
    started = threading.Event()
    seen: list[threading.Event] = []

    def run(stop: threading.Event) -> int:
        seen.append(stop)
        started.set()
        stop.wait(30)
        return 7

    cls = system_service.make_service_class(run)
    assert cls._svc_name_ == "heron-agent"
    svc = cls(["heron-agent"])
    t = threading.Thread(target=svc.SvcDoRun)
    t.start()
    assert started.wait(10)
    assert t.is_alive() and not seen[0].is_set()
    svc.SvcStop()
    t.join(timeout=10)
    assert not t.is_alive() and seen[0].is_set() and svc.exit_code == 7
    assert ("ReportServiceStatus", STOP_PENDING) in fake.calls
    assert fake.names() == ["ServiceFramework.__init__", "LogMsg", "ReportServiceStatus", "LogMsg"]


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
    assert json.loads(capsys.readouterr().out)["processed"] == 5  # same code path as `run`


def test_started_from_a_console_on_win32_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class NotFromScm(Exception):
        winerror = 1063

    def dispatch(cls: type[Any]) -> None:
        raise NotFromScm()

    FakePywin32(dispatch=dispatch).install(monkeypatch)
    cls = system_service.make_service_class(lambda stop: 0)
    assert system_service.host_service(cls) == 1
    assert "service control manager" in capsys.readouterr().err


def test_system_shutdown_stops_the_service_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    """SvcShutdown exists (SCM sends SHUTDOWN at reboot) and ends the run like SvcStop."""
    FakePywin32().install(monkeypatch)
    started = threading.Event()

    def run(stop: threading.Event) -> int:
        started.set()
        return 0 if stop.wait(30) else 9

    svc = system_service.make_service_class(run)(["heron-agent"])
    assert svc.GetAcceptedControls() == ACCEPT_STOP | ACCEPT_SHUTDOWN
    t = threading.Thread(target=svc.SvcDoRun)
    t.start()
    assert started.wait(10)
    svc.ServiceCtrlHandlerEx(CONTROL_SHUTDOWN, 0, None)
    t.join(timeout=10)
    assert not t.is_alive() and svc.exit_code == 0


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
