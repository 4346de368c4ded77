"""Windows service hosting for `heron-manager run --service` (what the MSI registers).

A frozen program has no `pythonservice.exe`, so the program hosts its own
`win32serviceutil.ServiceFramework` through `servicemanager.PrepareToHostSingle` +
`StartServiceCtrlDispatcher`. The service runs `appliance.cli.run_manager`, the same function as
the foreground `run`; SvcStop sets the stop event that SIGTERM/SIGINT set in the foreground.
The pywin32 modules are imported inside the functions: Linux never imports them and tests
inject fakes through `sys.modules`. The agent's counterpart is `agent.link.system_service`
(the layering keeps the two packages apart).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

SERVICE_NAME = "heron-manager"
DISPLAY_NAME = "Heron EDR manager"
DESCRIPTION = "Heron EDR manager: endpoint and admin APIs"


def make_service_class(run: Callable[[threading.Event], int]) -> type[Any]:
    """A ServiceFramework subclass whose SvcDoRun calls ``run(stop)``.

    SvcStop reports SERVICE_STOP_PENDING and sets ``stop``; pywin32's SvcRun/host reports
    SERVICE_STOPPED once SvcDoRun has returned (that is, after the clean shutdown).
    """
    import servicemanager
    import win32service
    import win32serviceutil

    class HeronManagerService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: list[str]) -> None:
            win32serviceutil.ServiceFramework.__init__(self, args)
            self.stop_event = threading.Event()
            self.exit_code: int | None = None

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self.stop_event.set()

        def SvcShutdown(self) -> None:
            # defining it makes pywin32 accept SERVICE_CONTROL_SHUTDOWN; without
            # it Windows kills the process at reboot, without the clean stop.
            self.SvcStop()

        def SvcDoRun(self) -> None:
            servicemanager.LogMsg(
                servicemanager.EVENTLOG_INFORMATION_TYPE,
                servicemanager.PYS_SERVICE_STARTED,
                (self._svc_name_, ""),
            )
            self.exit_code = run(self.stop_event)
            servicemanager.LogMsg(
                servicemanager.EVENTLOG_INFORMATION_TYPE,
                servicemanager.PYS_SERVICE_STOPPED,
                (self._svc_name_, ""),
            )

    return HeronManagerService


def host_service(service_class: type[Any]) -> int:
    """Hand the process to the SCM; blocks until the service has stopped.

    Started from a console instead of by the SCM, StartServiceCtrlDispatcher fails with error
    1063: say so and return 1.
    """
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service_class)
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except Exception as ex:  # pywintypes.error
        if getattr(ex, "winerror", None) == 1063:  # ERROR_FAILED_SERVICE_CONTROLLER_CONNECT
            print(
                f"{SERVICE_NAME}: --service is for the service control manager; "
                "use `run` without --service in a console",
                file=sys.stderr,
            )
            return 1
        raise
    return 0
