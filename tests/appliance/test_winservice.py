"""`heron-manager run --service`: foreground on Linux, SCM-hosted on Windows (fake pywin32)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from appliance import cli
from appliance.runtime import winservice

ROOT = Path(__file__).resolve().parents[2]
STOP_PENDING = 3
ACCEPT_STOP, ACCEPT_SHUTDOWN = 0x1, 0x4  # win32service.SERVICE_ACCEPT_*
CONTROL_STOP, CONTROL_SHUTDOWN = 0x1, 0x5  # win32service.SERVICE_CONTROL_*


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
            monkeypatch.setitem(sys.modules, name, getattr(self, name))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def _run_args(*extra: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["run", *extra])


def test_parser_accepts_service() -> None:
    assert _run_args("--service", "--data-dir", "x").service is True
    assert _run_args().service is False


def test_service_flag_on_linux_runs_in_the_foreground(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[argparse.Namespace, threading.Event]] = []
    monkeypatch.setattr(cli, "run_manager", lambda a, stop: seen.append((a, stop)) or 0)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # cmd_run's handlers: not in pytest
    args = _run_args("--service", "--data-dir", "d")
    assert cli.cmd_run(args, platform="linux") == 0
    assert seen and seen[0][0] is args and not seen[0][1].is_set()


def test_service_class_runs_and_stops_through_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePywin32()
    fake.install(monkeypatch)
    started = threading.Event()
    seen: list[threading.Event] = []

    def run(stop: threading.Event) -> int:
        seen.append(stop)
        started.set()
        stop.wait(30)
        return 0

    cls = winservice.make_service_class(run)
    assert cls._svc_name_ == "heron-manager"
    svc = cls(["heron-manager"])
    t = threading.Thread(target=svc.SvcDoRun)
    t.start()
    assert started.wait(10)
    assert t.is_alive() and not seen[0].is_set()
    svc.SvcStop()
    t.join(timeout=10)
    assert not t.is_alive() and seen[0].is_set() and svc.exit_code == 0
    assert fake.names() == ["ServiceFramework.__init__", "LogMsg", "ReportServiceStatus", "LogMsg"]
    assert ("ReportServiceStatus", STOP_PENDING) in fake.calls


def test_service_flag_on_win32_hosts_the_manager_class(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[argparse.Namespace, threading.Event]] = []

    def run_manager(a: argparse.Namespace, stop: threading.Event) -> int:
        ran.append((a, stop))
        stop.wait(30)
        return 0

    def dispatch(cls: type[Any]) -> None:  # what the SCM does: instantiate, run, stop
        svc = cls([cls._svc_name_])
        t = threading.Thread(target=svc.SvcDoRun)
        t.start()
        svc.SvcStop()
        t.join(timeout=10)
        assert not t.is_alive()

    fake = FakePywin32(dispatch=dispatch)
    fake.install(monkeypatch)
    monkeypatch.setattr(cli, "run_manager", run_manager)
    monkeypatch.setattr(signal, "signal", lambda *a: pytest.fail("no signal handlers on win32"))
    args = _run_args("--service", "--data-dir", "C:/ProgramData/Heron/Manager")
    assert cli.cmd_run(args, platform="win32") == 0
    assert fake.names()[:3] == ["Initialize", "PrepareToHostSingle", "StartServiceCtrlDispatcher"]
    assert fake.hosted is not None and fake.hosted._svc_name_ == "heron-manager"
    assert len(ran) == 1 and ran[0][0] is args and ran[0][1].is_set()
    assert ("ReportServiceStatus", STOP_PENDING) in fake.calls


def test_started_from_a_console_on_win32_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class NotFromScm(Exception):
        winerror = 1063

    def dispatch(cls: type[Any]) -> None:
        raise NotFromScm()

    FakePywin32(dispatch=dispatch).install(monkeypatch)
    assert winservice.host_service(winservice.make_service_class(lambda stop: 0)) == 1
    assert "service control manager" in capsys.readouterr().err


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


def test_system_shutdown_stops_the_service_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    """SvcShutdown exists (SCM sends SHUTDOWN at reboot) and ends the run like SvcStop."""
    FakePywin32().install(monkeypatch)
    started = threading.Event()

    def run(stop: threading.Event) -> int:
        started.set()
        return 0 if stop.wait(30) else 9

    svc = winservice.make_service_class(run)(["heron-manager"])
    assert svc.GetAcceptedControls() == ACCEPT_STOP | ACCEPT_SHUTDOWN
    t = threading.Thread(target=svc.SvcDoRun)
    t.start()
    assert started.wait(10)
    svc.ServiceCtrlHandlerEx(CONTROL_SHUTDOWN, 0, None)
    t.join(timeout=10)
    assert not t.is_alive() and svc.exit_code == 0
