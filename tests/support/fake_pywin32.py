"""A recording fake of the pywin32 modules a Windows service uses (installed via sys.modules).

Used by the service-host tests of rules, agent and appliance: it mimics pywin32's own control
dispatch (a control is accepted and routed only when the class defines its ``Svc*`` method)
and records every call, so a test can assert what the SCM would have seen.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

import pytest

STOP_PENDING = 3  # win32service.SERVICE_STOP_PENDING
ACCEPT_STOP, ACCEPT_SHUTDOWN = 0x1, 0x4  # win32service.SERVICE_ACCEPT_*
CONTROL_STOP, CONTROL_SHUTDOWN = 0x1, 0x5  # win32service.SERVICE_CONTROL_*

Dispatch = Callable[[type], None]


class FakePywin32:
    """Records what the service code asks of ``win32serviceutil``, ``win32service`` and
    ``servicemanager``; ``dispatch(cls)`` plays the SCM inside StartServiceCtrlDispatcher."""

    def __init__(self, *, dispatch: Dispatch | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.hosted: type | None = None
        self.dispatch = dispatch
        fake = self

        class ServiceFramework:
            def __init__(self, args: list[str]) -> None:
                fake.calls.append(("ServiceFramework.__init__", list(args)))

            def ReportServiceStatus(self, status: int) -> None:
                fake.calls.append(("ReportServiceStatus", status))

            def GetAcceptedControls(self) -> int:
                accepted = 0
                if hasattr(self, "SvcStop"):
                    accepted |= ACCEPT_STOP
                if hasattr(self, "SvcShutdown"):
                    accepted |= ACCEPT_SHUTDOWN
                return accepted

            def ServiceCtrlHandlerEx(self, control: int, event_type: int, data: object) -> object:
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

        def prepare(cls: type) -> None:
            fake.hosted = cls
            fake.calls.append(("PrepareToHostSingle", cls))

        def start() -> None:
            fake.calls.append(("StartServiceCtrlDispatcher", None))
            if fake.dispatch is not None and fake.hosted is not None:
                fake.dispatch(fake.hosted)

        sm.PrepareToHostSingle = prepare  # type: ignore[attr-defined]
        sm.StartServiceCtrlDispatcher = start  # type: ignore[attr-defined]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakePywin32:
        for name in ("win32serviceutil", "win32service", "servicemanager"):
            monkeypatch.setitem(sys.modules, name, getattr(self, name))
        return self

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]
