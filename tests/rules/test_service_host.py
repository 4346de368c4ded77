"""rules.service_host: the one "run until stopped" host of heron-agent and heron-manager.

pywin32 is a recorded fake (tests/support/fake_pywin32.py); the signal path is exercised by
calling the handler the host installed, as the interpreter would on SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import pytest

from rules import service_host
from rules.service_host import ServiceSpec
from tests.support.fake_pywin32 import (
    ACCEPT_SHUTDOWN,
    ACCEPT_STOP,
    CONTROL_SHUTDOWN,
    STOP_PENDING,
    FakePywin32,
)

SPEC = ServiceSpec("heron-test", "Heron test", "a test service", "HeronTestService")


def _blocking(started: threading.Event, code: int) -> Callable[[threading.Event], int]:
    def run(stop: threading.Event) -> int:
        started.set()
        return code if stop.wait(30) else 99

    return run


def test_service_class_runs_and_stops_through_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePywin32().install(monkeypatch)
    started = threading.Event()
    cls = service_host.make_service_class(_blocking(started, 7), SPEC)
    assert cls.__name__ == "HeronTestService" and cls._svc_name_ == "heron-test"
    svc = cls(["heron-test"])
    t = threading.Thread(target=svc.SvcDoRun)
    t.start()
    assert started.wait(10) and t.is_alive()
    svc.SvcStop()
    t.join(timeout=10)
    assert not t.is_alive() and svc.exit_code == 7
    assert fake.names() == ["ServiceFramework.__init__", "LogMsg", "ReportServiceStatus", "LogMsg"]
    assert ("ReportServiceStatus", STOP_PENDING) in fake.calls


def test_system_shutdown_stops_the_service_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    """SvcShutdown exists (the SCM sends SHUTDOWN at reboot) and ends the run like SvcStop."""
    FakePywin32().install(monkeypatch)
    started = threading.Event()
    svc = service_host.make_service_class(_blocking(started, 0), SPEC)(["heron-test"])
    assert svc.GetAcceptedControls() == ACCEPT_STOP | ACCEPT_SHUTDOWN
    t = threading.Thread(target=svc.SvcDoRun)
    t.start()
    assert started.wait(10)
    svc.ServiceCtrlHandlerEx(CONTROL_SHUTDOWN, 0, None)
    t.join(timeout=10)
    assert not t.is_alive() and svc.exit_code == 0


def test_started_from_a_console_on_win32_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class NotFromScm(Exception):
        winerror = service_host.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT

    def dispatch(cls: type) -> None:
        raise NotFromScm()

    FakePywin32(dispatch=dispatch).install(monkeypatch)
    cls = service_host.make_service_class(lambda stop: 0, SPEC)
    assert service_host.host_service(cls, "heron-test") == 1
    assert "heron-test: --service is for the service control manager" in capsys.readouterr().err


def test_other_dispatcher_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def dispatch(cls: type) -> None:
        raise OSError("access denied")

    FakePywin32(dispatch=dispatch).install(monkeypatch)
    with pytest.raises(OSError, match="access denied"):
        service_host.host_service(service_host.make_service_class(lambda s: 0, SPEC), "x")


def test_service_on_win32_is_hosted_and_installs_no_signal_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[threading.Event] = []

    def run(stop: threading.Event) -> int:
        ran.append(stop)
        stop.wait(30)
        return 0

    def dispatch(cls: type) -> None:  # the SCM: instantiate, run, stop
        svc = cls([SPEC.name])
        t = threading.Thread(target=svc.SvcDoRun)
        t.start()
        svc.SvcStop()
        t.join(timeout=10)
        assert not t.is_alive()

    fake = FakePywin32(dispatch=dispatch).install(monkeypatch)
    monkeypatch.setattr(signal, "signal", lambda *a: pytest.fail("no signal handlers on win32"))
    assert service_host.run_until_stopped(run, SPEC, service=True, platform="win32") == 0
    assert fake.names()[:3] == ["Initialize", "PrepareToHostSingle", "StartServiceCtrlDispatcher"]
    assert len(ran) == 1 and ran[0].is_set()


@pytest.mark.parametrize(("service", "platform"), [(False, "win32"), (True, "linux")])
def test_foreground_stops_on_sigterm_and_sigint(
    monkeypatch: pytest.MonkeyPatch, service: bool, platform: str
) -> None:
    """Foreground (and `--service` under systemd): SIGTERM or SIGINT sets the stop event."""
    handlers: dict[int, Callable[..., object]] = {}
    monkeypatch.setattr(signal, "signal", lambda sig, fn: handlers.__setitem__(sig, fn))

    def run(stop: threading.Event) -> int:
        assert set(handlers) == {signal.SIGTERM, signal.SIGINT}
        handlers[signal.SIGTERM](signal.SIGTERM, None)  # what the interpreter does on SIGTERM
        return 0 if stop.wait(10) else 9

    assert service_host.run_until_stopped(run, SPEC, service=service, platform=platform) == 0
