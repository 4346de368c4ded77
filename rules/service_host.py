"""Run a program until stopped: signals in the foreground, the SCM as a Windows service.

``heron-agent run`` and ``heron-manager run`` share this: both pass their one "run until
``stop`` is set" function to ``run_until_stopped``. In the foreground (and under systemd,
which runs the program in the foreground) SIGTERM/SIGINT set ``stop``; with ``service=True``
on Windows the process hosts a ``win32serviceutil.ServiceFramework`` itself (a frozen program
has no ``pythonservice.exe``) whose SvcStop/SvcShutdown set the same event.

Why in ``rules``: it is the only package that both ``agent`` and ``appliance`` may import (they
never import each other, tests/test_layering.py), and this needs nothing but the standard
library. pywin32 is imported inside the functions, on Windows only, so ``heron`` scans never
load it and tests inject fakes through ``sys.modules``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ServiceSpec", "host_service", "make_service_class", "run_until_stopped"]

# The SCM did not start this process: StartServiceCtrlDispatcher fails with this error.
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063

RunUntilStopped = Callable[[threading.Event], int]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How a program registers with the Windows service control manager."""

    name: str  # the service name (`sc query <name>`)
    display_name: str
    description: str
    class_name: str  # of the generated ServiceFramework subclass (tracebacks, event log)


def make_service_class(run: RunUntilStopped, spec: ServiceSpec) -> type[object]:
    """A ``win32serviceutil.ServiceFramework`` subclass whose SvcDoRun calls ``run(stop)``.

    SvcStop reports SERVICE_STOP_PENDING and sets ``stop``; pywin32's host reports
    SERVICE_STOPPED once SvcDoRun has returned, that is after the clean shutdown. The exit
    code of ``run`` is kept in ``exit_code``.
    """
    import servicemanager
    import win32service
    import win32serviceutil

    class HeronService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = spec.name
        _svc_display_name_ = spec.display_name
        _svc_description_ = spec.description

        def __init__(self, args: list[str]) -> None:
            win32serviceutil.ServiceFramework.__init__(self, args)
            self.stop_event = threading.Event()
            self.exit_code: int | None = None

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self.stop_event.set()

        def SvcShutdown(self) -> None:
            # Defining it makes pywin32 accept SERVICE_CONTROL_SHUTDOWN; without it Windows
            # kills the process at reboot, without the clean stop.
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

    HeronService.__name__ = HeronService.__qualname__ = spec.class_name
    return HeronService


def host_service(service_class: type[object], name: str) -> int:
    """Hand this process to the SCM; blocks until the service has stopped.

    Started from a console instead of by the SCM, StartServiceCtrlDispatcher fails with
    error 1063: say so and return 1.
    """
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service_class)
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except Exception as ex:  # pywintypes.error
        if getattr(ex, "winerror", None) == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
            print(
                f"{name}: --service is for the service control manager; "
                "use `run` without --service in a console",
                file=sys.stderr,
            )
            return 1
        raise
    return 0


def run_until_stopped(
    run: RunUntilStopped, spec: ServiceSpec, *, service: bool, platform: str | None = None
) -> int:
    """Call ``run(stop)``: hosted by the SCM (``service`` on Windows), else until a signal.

    ``platform`` defaults to ``sys.platform`` (tests pass "win32" with fake pywin32 modules).
    """
    platform = sys.platform if platform is None else platform
    if service and platform == "win32":
        return host_service(make_service_class(run, spec), spec.name)
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        # From another thread: Event.set() inside a handler could wait on the lock that the
        # interrupted main thread holds (in `stop.wait()`).
        threading.Thread(target=stop.set, name=f"{spec.name}-signal", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run(stop)
