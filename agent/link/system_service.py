"""Service integration: a systemd unit on Linux, a pywin32 service on Windows.

`heron-agent service install` writes `/etc/systemd/system/heron-agent.service` (generated here,
pointing at this executable and config), reloads systemd and enables + starts it; `uninstall`
stops, disables and removes it. On Windows the same subcommands register `HeronAgentService`
(a `win32serviceutil.ServiceFramework` that runs the agent in-process) with the SCM.
All external programs run through an injected runner.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
    return "\n".join([
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
    ])


def _check(proc: subprocess.CompletedProcess[bytes], what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): "
                           f"{proc.stderr.decode('utf-8', 'replace').strip()[:300]}")


def install_systemd(argv: Sequence[str], *, unit_dir: Path = UNIT_DIR, enable: bool = True,
                    runner: Runner = _run) -> Path:
    """Write the unit, reload systemd, and (by default) enable and start it."""
    unit = Path(unit_dir) / f"{SERVICE_NAME}.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(systemd_unit(argv), encoding="utf-8")
    unit.chmod(0o644)
    _check(runner(["systemctl", "daemon-reload"]), "systemctl daemon-reload")
    if enable:
        _check(runner(["systemctl", "enable", "--now", f"{SERVICE_NAME}.service"]),
               "systemctl enable")
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


if sys.platform == "win32":  # pragma: no cover - Windows only
    import servicemanager
    import win32event
    import win32service
    import win32serviceutil

    class HeronAgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        """Runs the agent inside the Windows service control manager."""

        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = "Heron endpoint detection and response agent"
        config_path: str | None = None

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            self._stop_event = win32event.CreateEvent(None, 0, 0, None)
            self._agent: object | None = None

        def SvcStop(self) -> None:  # noqa: N802 - pywin32 API
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            stop = getattr(self._agent, "stop", None)
            if callable(stop):
                stop()
            win32event.SetEvent(self._stop_event)

        def SvcDoRun(self) -> None:  # noqa: N802 - pywin32 API
            from agent.config import load_config
            from agent.service import build_agent

            from .link import attach

            servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE,
                                  servicemanager.PYS_SERVICE_STARTED, (self._svc_name_, ""))
            config = load_config(self.config_path)
            agent = build_agent(config)
            attach(agent, config)
            self._agent = agent
            agent.run()

    def install_windows(config: str | None) -> None:
        HeronAgentService.config_path = config
        win32serviceutil.InstallService(
            win32serviceutil.GetServiceClassString(HeronAgentService), SERVICE_NAME,
            DISPLAY_NAME, startType=win32service.SERVICE_AUTO_START,
            exeArgs=f'-c "{config}"' if config else None)
        win32serviceutil.StartService(SERVICE_NAME)

    def uninstall_windows() -> None:
        try:
            win32serviceutil.StopService(SERVICE_NAME)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        win32serviceutil.RemoveService(SERVICE_NAME)
