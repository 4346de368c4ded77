"""System information (docs/reference/whids.md §1.13), POSTed to `/info/system` only when it
changes.

The document keeps the WHIDS `SystemInfo` keys (`edr`, `system`, `bios`, `os`, `cpu`, `sysmon`,
`error`) plus `network` (hostname and addresses). Only stable values go in, so its sha256 changes
only when the host really changed. Linux reads DMI from /sys; Windows reads the registry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from rules import wire

from .errors import LinkError
from .identity import write_atomic
from .transport import Request, Transport

logger = logging.getLogger(__name__)

VERSION = wire.USER_AGENT.split("/", 1)[1]
_VIRTUAL = (
    "vmware",
    "virtualbox",
    "kvm",
    "qemu",
    "xen",
    "hyper-v",
    "virtual machine",
    "bochs",
    "parallels",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _linux() -> dict[str, Any]:
    dmi = "/sys/class/dmi/id/"
    try:
        rel = platform.freedesktop_os_release()
    except OSError:
        rel = {}
    cpu = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "system": {"manufacturer": _read(dmi + "sys_vendor"), "name": _read(dmi + "product_name")},
        "bios": {"version": _read(dmi + "bios_version"), "date": _read(dmi + "bios_date")},
        "os": {
            "name": rel.get("NAME", platform.system()),
            "build": platform.release(),
            "version": rel.get("VERSION_ID", ""),
            "product": rel.get("PRETTY_NAME", ""),
            "edition": rel.get("VARIANT", ""),
        },
        "cpu": {"name": cpu or platform.processor(), "count": psutil.cpu_count() or 0},
    }


if sys.platform == "win32":  # pragma: no cover - Windows only

    def _windows() -> dict[str, Any]:
        import winreg

        def reg(path: str, name: str) -> str:
            try:
                with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
                    return str(winreg.QueryValueEx(key, name)[0])
            except OSError:
                return ""

        bios = r"HARDWARE\DESCRIPTION\System\BIOS"
        nt = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion"
        return {
            "system": {
                "manufacturer": reg(bios, "SystemManufacturer"),
                "name": reg(bios, "SystemProductName"),
            },
            "bios": {"version": reg(bios, "BIOSVersion"), "date": reg(bios, "BIOSReleaseDate")},
            "os": {
                "name": "windows",
                "build": reg(nt, "CurrentBuild"),
                "version": reg(nt, "DisplayVersion"),
                "product": reg(nt, "ProductName"),
                "edition": reg(nt, "EditionID"),
            },
            "cpu": {
                "name": reg(
                    r"HARDWARE\DESCRIPTION\System\CentralProcessor\0", "ProcessorNameString"
                ),
                "count": psutil.cpu_count() or 0,
            },
        }


def collect(hostname: str = "") -> dict[str, Any]:
    """Gather the system-information document."""
    error = ""
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            info = _windows()
        else:
            info = _linux()
    except Exception as ex:  # noqa: BLE001 - report what failed instead of nothing
        info, error = {}, f"{type(ex).__name__}: {ex}"
    product = " ".join(str(v) for v in info.get("system", {}).values()).lower()
    info.setdefault("system", {})["virtual"] = any(v in product for v in _VIRTUAL)
    addrs = sorted(
        a.address
        for nics in psutil.net_if_addrs().values()
        for a in nics
        if a.family in (socket.AF_INET, socket.AF_INET6)
        and not a.address.startswith(("127.", "::1", "fe80"))
    )
    return {
        "edr": {"version": VERSION, "commit": ""},
        **info,
        "network": {"hostname": hostname or socket.gethostname(), "addresses": addrs},
        "sysmon": {},
        "error": error,
    }


def info_sha256(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()


class SysInfoReporter:
    """Posts the document when its hash differs from the last one the manager accepted."""

    def __init__(
        self,
        transport: Transport,
        state_file: Path,
        *,
        collector: Callable[[], dict[str, Any]] = collect,
    ) -> None:
        self.transport = transport
        self.state_file = Path(state_file)
        self.collector = collector

    def run_once(self) -> bool:
        """Returns True when a new document was posted."""
        doc = self.collector()
        sha = info_sha256(doc)
        if self.state_file.exists() and self.state_file.read_text().strip() == sha:
            return False
        try:
            resp = self.transport.send(
                Request(
                    "POST",
                    wire.ROUTE_SYSTEM_INFO,
                    json.dumps(doc).encode("utf-8"),
                    {"Content-Type": wire.CONTENT_JSON},
                )
            )
        except LinkError as ex:
            logger.debug("system info not posted: %s", ex)
            return False
        if resp.status != 200:
            logger.warning("manager refused system info: HTTP %d", resp.status)
            return False
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_file, sha.encode())
        logger.info("system information posted (%s)", sha[:12])
        return True
