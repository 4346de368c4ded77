"""Service integration: a systemd unit on Linux, a pywin32 service on Windows.

`heron-agent service install` writes `/etc/systemd/system/heron-agent.service` (generated here,
pointing at this executable and config), reloads systemd and enables + starts it; `uninstall`
stops, disables and removes it. On Windows the same subcommands register the service with the
SCM as `<program> run --service [-c config]` (what the MSI registers too), which hosts a
`win32serviceutil.ServiceFramework` through `make_service_class` + `host_service`. pywin32 is
imported inside the functions, so Linux never imports it and tests inject fakes.
All external programs run through an injected runner.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SERVICE_NAME = "heron-agent"
DISPLAY_NAME = "Heron EDR agent"
UNIT_DIR = Path("/etc/systemd/system")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), capture_output=True, timeout=120, check=False)


def agent_command(config: str | None = None, exe: str | None = None) -> list[str]:
    """The command line a service runs: the frozen binary, the console script or `-m`."""
    if exe:
        argv = [exe]
    elif getattr(sys, "frozen", False):
        argv = [sys.executable]
    elif (which := shutil.which("heron-agent")) is not None:
        argv = [which]
    else:
        argv = [sys.executable, "-m", "agent.cli"]
    argv.append("run")
    if config:
        argv += ["-c", str(Path(config).resolve())]
    return argv


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-=:" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(argv: Sequence[str]) -> str:
    """Render the unit file. The agent runs as root: it reads /proc, fanotify and netfilter."""
    return "\n".join(
        [
            "[Unit]",
            f"Description={DISPLAY_NAME}",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            "ExecStart=" + " ".join(_quote(a) for a in argv),
            "Restart=always",
            "RestartSec=5",
            "KillMode=mixed",
            "TimeoutStopSec=30",
            "LimitNOFILE=65536",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "ProtectHome=read-only",
            "StateDirectory=heron-agent",
            "StateDirectoryMode=0700",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def _check(proc: subprocess.CompletedProcess[bytes], what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({proc.returncode}): "
            f"{proc.stderr.decode('utf-8', 'replace').strip()[:300]}"
        )


def install_systemd(
    argv: Sequence[str], *, unit_dir: Path = UNIT_DIR, enable: bool = True, runner: Runner = _run
) -> Path:
    """Write the unit, reload systemd, and (by default) enable and start it."""
    unit = Path(unit_dir) / f"{SERVICE_NAME}.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(systemd_unit(argv), encoding="utf-8")
    unit.chmod(0o644)
    _check(runner(["systemctl", "daemon-reload"]), "systemctl daemon-reload")
    if enable:
        _check(
            runner(["systemctl", "enable", "--now", f"{SERVICE_NAME}.service"]), "systemctl enable"
        )
    logger.info("installed %s", unit)
    return unit


def uninstall_systemd(*, unit_dir: Path = UNIT_DIR, runner: Runner = _run) -> bool:
    """Stop, disable and remove the unit; False when it was not installed."""
    unit = Path(unit_dir) / f"{SERVICE_NAME}.service"
    if not unit.exists():
        return False
    runner(["systemctl", "disable", "--now", f"{SERVICE_NAME}.service"])
    unit.unlink()
    _check(runner(["systemctl", "daemon-reload"]), "systemctl daemon-reload")
    logger.info("removed %s", unit)
    return True


def make_service_class(
    run: Callable[[threading.Event], int],
    *,
    name: str = SERVICE_NAME,
    display_name: str = DISPLAY_NAME,
    description: str = "Heron endpoint detection and response agent",
) -> type[Any]:
    """A `win32serviceutil.ServiceFramework` subclass whose SvcDoRun calls ``run(stop)``.

    ``run`` is the same "run until stopped" function the foreground CLI uses. SvcStop reports
    SERVICE_STOP_PENDING and sets ``stop``, the same event SIGTERM/SIGINT set in the foreground;
    pywin32's SvcRun/host reports SERVICE_STOPPED once SvcDoRun has returned. The pywin32 modules
    are imported here, at call time, so Linux never imports them and tests can inject fakes.
    """
    import servicemanager
    import win32service
    import win32serviceutil

    class HeronService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = name
        _svc_display_name_ = display_name
        _svc_description_ = description

        def __init__(self, args: list[str]) -> None:
            win32serviceutil.ServiceFramework.__init__(self, args)
            self.stop_event = threading.Event()
            self.exit_code: int | None = None

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self.stop_event.set()

        def SvcShutdown(self) -> None:
            # defining it makes pywin32 accept SERVICE_CONTROL_SHUTDOWN; without it
            # Windows kills the process at reboot, without the clean stop.
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

    HeronService.__name__ = HeronService.__qualname__ = "HeronAgentService"
    return HeronService


def host_service(service_class: type[Any]) -> int:
    """Hand this process to the SCM (the pattern for frozen programs: no pythonservice.exe).

    Blocks until the service has stopped. Started from a console instead of by the SCM,
    StartServiceCtrlDispatcher fails with error 1063: say so and return 1.
    """
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service_class)
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except Exception as ex:  # pywintypes.error
        if getattr(ex, "winerror", None) == 1063:  # ERROR_FAILED_SERVICE_CONTROLLER_CONNECT
            print(
                f"{service_class._svc_name_}: --service is for the service control manager; "
                "use `run` without --service in a console",
                file=sys.stderr,
            )
            return 1
        raise
    return 0


def service_argv(config: str | None = None, exe: str | None = None) -> list[str]:
    """What the Windows SCM starts: ``<program> run --service [-c <config>]``.

    The SCM talks only to the process it started, which must call StartServiceCtrlDispatcher:
    the frozen ``heron-agent.exe`` does, a pip console-script launcher (which runs Python as a
    child) would not, so an unfrozen agent registers the interpreter with ``-m agent.cli``.
    """
    if exe:
        argv = [exe]
    elif getattr(sys, "frozen", False):
        argv = [sys.executable]
    else:
        argv = [sys.executable, "-m", "agent.cli"]
    argv += ["run", "--service"]
    if config:
        argv += ["-c", str(Path(config).resolve())]
    return argv


def install_windows(config: str | None, exe: str | None = None) -> list[str]:
    """Register ``heron-agent`` (auto start, LocalSystem) and start it; returns its command line.

    ``InstallService`` with an ``exeName`` writes ``"<exe>" <exeArgs>`` as the service's
    ImagePath; without ``pythonClassString`` no pythonservice.exe class entry is written.
    """
    import win32service
    import win32serviceutil

    argv = service_argv(config, exe)
    win32serviceutil.InstallService(
        None,
        SERVICE_NAME,
        DISPLAY_NAME,
        startType=win32service.SERVICE_AUTO_START,
        exeName=argv[0],
        exeArgs=subprocess.list2cmdline(argv[1:]),
        description="Heron endpoint detection and response agent",
    )
    win32serviceutil.StartService(SERVICE_NAME)
    return argv


def uninstall_windows() -> None:
    import win32serviceutil

    try:
        win32serviceutil.StopService(SERVICE_NAME)
    except Exception:  # noqa: BLE001 - already stopped
        pass
    win32serviceutil.RemoveService(SERVICE_NAME)
