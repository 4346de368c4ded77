"""Service integration: a systemd unit on Linux, a pywin32 service on Windows.

`heron-agent service install` writes `/etc/systemd/system/heron-agent.service` (generated here,
pointing at this executable and config), reloads systemd and enables + starts it; `uninstall`
stops, disables and removes it. On Windows the same subcommands register the service with the
SCM as `<program> run --service [-c config]` (what the MSI registers too); `run --service` then
hosts the service described by ``SERVICE`` through `rules.service_host`. pywin32 is imported
inside the functions, so Linux never imports it and tests inject fakes.
All external programs run through an injected runner.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rules.service_host import ServiceSpec

logger = logging.getLogger(__name__)

SERVICE_NAME = "heron-agent"
DISPLAY_NAME = "Heron EDR agent"
DESCRIPTION = "Heron endpoint detection and response agent"
SERVICE = ServiceSpec(SERVICE_NAME, DISPLAY_NAME, DESCRIPTION, "HeronAgentService")
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
        description=DESCRIPTION,
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
