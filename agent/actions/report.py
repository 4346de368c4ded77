"""IR report (docs/reference/whids.md §1.9) and the ``report`` / ``brief`` actions.

``build_report`` returns::

    {"start-timestamp", "stop-timestamp", "hostname",
     "processes": [ProcessTrack JSON…], "tree": [the detected process, ancestors, descendants],
     "modules": […], "drivers": […], "connections": [{pid, process_guid, image, proto, laddr,
     raddr, status}], "dns": {guid: {ip: {qname: n}}}, "last_files": {guid: [paths]},
     "commands": [{"description", "name", "args", "expect-json", "stdout", "stderr", "error",
                   "timestamp", "timeout"}]}

Modules and drivers come from Sysmon 7/6 on Windows; on Linux from the /proc/PID/maps of the
reported processes and from /proc/modules. ``brief`` is the same without running commands.
Every command runs with its own timeout; a missing program or a timeout is recorded in
``error``, never raised.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from agent.actions.base import ActionContext
from agent.render import rfc3339_nano

if TYPE_CHECKING:
    from agent.config import ReportingConfig
    from agent.host import Host
    from agent.tracking.tracker import Tracker

__all__ = [
    "brief_action",
    "build_report",
    "cap_report",
    "connections",
    "report_action",
    "run_commands",
]

logger = logging.getLogger(__name__)

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


def _run_one(
    name: str,
    args: list[str],
    *,
    timeout: float,
    expect_json: bool,
    description: str,
    runner: Runner,
    clock: Callable[[], float],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "description": description,
        "name": name,
        "args": list(args),
        "expect-json": expect_json,
        "stdout": None,
        "stderr": "",
        "error": "",
        "timestamp": rfc3339_nano(clock()),
        "timeout": timeout,
    }
    exe = shutil.which(name) or (name if "/" in name or "\\" in name else None)
    if exe is None:
        entry["error"] = f"{name}: not found"
        return entry
    try:
        proc = runner([exe, *args], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        entry["error"] = f"timeout after {timeout:g}s"
        return entry
    except OSError as ex:
        entry["error"] = str(ex)
        return entry
    out = proc.stdout.decode("utf-8", "replace")
    entry["stderr"] = proc.stderr.decode("utf-8", "replace")[-65536:]
    if proc.returncode != 0:
        entry["error"] = f"exit status {proc.returncode}"
    if expect_json:
        try:
            entry["stdout"] = json.loads(out) if out.strip() else None
        except ValueError as ex:
            entry["error"] = entry["error"] or f"invalid JSON: {ex}"
            entry["stdout"] = out[-1_000_000:]
    else:
        entry["stdout"] = out[-1_000_000:]
    return entry


def run_commands(
    config: ReportingConfig,
    *,
    runner: Runner = subprocess.run,
    clock: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """osqueryi tables (when osqueryi is on PATH) then ``reporting.commands``."""
    results = []
    if shutil.which("osqueryi"):
        for table in config.osquery_tables:
            results.append(
                _run_one(
                    "osqueryi",
                    ["--json", "-A", table],
                    timeout=config.timeout,
                    expect_json=True,
                    description=f"osquery {table}",
                    runner=runner,
                    clock=clock,
                )
            )
    for cmd in config.commands:
        results.append(
            _run_one(
                cmd.name,
                list(cmd.args),
                timeout=cmd.timeout or config.timeout,
                expect_json=cmd.expect_json,
                description=cmd.description,
                runner=runner,
                clock=clock,
            )
        )
    return results


def connections(tracker: Tracker, host: Host | None = None) -> list[dict[str, Any]]:
    """Current inet sockets with their owning process (psutil)."""
    out: list[dict[str, Any]] = []
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError) as ex:
        logger.info("net_connections unavailable: %s", ex)
        return out
    for c in conns:
        pid = c.pid or 0
        track = tracker.by_pid(pid) if pid else None
        info = host.pids.get(pid) if host is not None and pid and track is None else None
        out.append(
            {
                "pid": pid,
                "process_guid": track.guid if track else (info.guid if info else ""),
                "image": track.image if track else (info.image if info else ""),
                "proto": "tcp" if c.type == socket.SOCK_STREAM else "udp",
                "laddr": f"{c.laddr.ip}:{c.laddr.port}" if c.laddr else "",
                "raddr": f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else "",
                "status": c.status,
            }
        )
    return out


def linux_modules(pids: list[int], root: str = "/proc", limit: int = 4096) -> list[dict[str, Any]]:
    """Shared objects mapped by ``pids`` (from /proc/PID/maps), as WHIDS ModuleInfo dicts."""
    seen: dict[str, dict[str, Any]] = {}
    for pid in pids:
        try:
            text = open(f"{root}/{pid}/maps", encoding="utf-8", errors="replace").read()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split(None, 5)
            if (
                len(parts) == 6
                and parts[5].startswith("/")
                and (".so" in parts[5] or "x" in parts[1])
            ):
                entry = seen.setdefault(parts[5], {"image": parts[5], "load-count": 0, "pids": []})
                if pid not in entry["pids"]:
                    entry["pids"].append(pid)
                    entry["load-count"] += 1
            if len(seen) >= limit:
                return list(seen.values())
    return list(seen.values())


def linux_drivers(path: str = "/proc/modules") -> list[dict[str, Any]]:
    """Loaded kernel modules (the Linux counterpart of Windows drivers)."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        cols = line.split()
        if len(cols) >= 3:
            out.append(
                {
                    "image": cols[0],
                    "size": int(cols[1]),
                    "instances": int(cols[2]),
                    "state": cols[4] if len(cols) > 4 else "",
                }
            )
    return out


def build_report(
    tracker: Tracker,
    *,
    host: Host | None = None,
    reporting: ReportingConfig | None = None,
    guid: str = "",
    commands: bool = True,
    runner: Runner = subprocess.run,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Collect the IR report; ``commands=False`` gives the brief variant."""
    start = clock()
    processes = tracker.snapshot()
    report: dict[str, Any] = {
        "start-timestamp": rfc3339_nano(start),
        "hostname": host.hostname if host else socket.gethostname(),
        "processes": list(processes.values()),
        "tree": tracker.tree(guid) if guid else [],
        "modules": tracker.modules(),
        "drivers": tracker.driver_list(),
        "connections": connections(tracker, host),
        "dns": {},
        "last_files": {},
        "commands": [],
    }
    with tracker.lock:
        for g in processes:
            track = tracker.get(g)
            if track is None:
                continue
            if track.dns:
                report["dns"][g] = {ip: dict(q) for ip, q in track.dns.items()}
            files = [f for f in track.last_files if f]
            if files:
                report["last_files"][g] = files
    if sys.platform.startswith("linux"):
        if not report["modules"]:
            pids = [p["pid"] for p in report["tree"]] or [p["pid"] for p in report["processes"]]
            report["modules"] = linux_modules(pids)
        if not report["drivers"]:
            report["drivers"] = linux_drivers()
    if commands and reporting is not None:
        report["commands"] = run_commands(reporting, runner=runner, clock=clock)
    report["stop-timestamp"] = rfc3339_nano(clock())
    return report


_CAPPED = ("processes", "tree", "modules", "drivers", "connections", "commands")


def cap_report(report: dict[str, Any], max_items: int, guid: str = "") -> dict[str, Any]:
    """Cut long lists to ``max_items`` (0: no cap), in place; the detected process tree first.

    Items about the processes of ``tree`` (by pid / process GUID) are kept before the others.
    The report's ``truncated`` maps every cut list (and the ``dns``/``last_files`` maps) to
    ``{"kept": N, "total": M}``, so a reader sees what is missing and how much.
    """
    if max_items <= 0:
        return report
    tree = report.get("tree") or []
    pids = {p.get("pid") for p in tree if isinstance(p, dict)}
    guids = {
        str(p.get("process-guid", "")).strip("{}").upper() for p in tree if isinstance(p, dict)
    }
    guids.add(guid.strip("{}").upper())

    def related(item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        g = str(item.get("process-guid", item.get("process_guid", ""))).strip("{}").upper()
        return item.get("pid") in pids or (bool(g) and g in guids)

    cut: dict[str, dict[str, int]] = {}
    for key in _CAPPED:
        items = report.get(key)
        if isinstance(items, list) and len(items) > max_items:
            first = [i for i in items if related(i)]
            rest = [i for i in items if not related(i)]
            cut[key] = {"kept": max_items, "total": len(items)}
            report[key] = (first + rest)[:max_items]
    for key in ("dns", "last_files"):
        mapping = report.get(key)
        if isinstance(mapping, dict) and len(mapping) > max_items:
            keys = sorted(mapping, key=lambda k: k.strip("{}").upper() not in guids)
            cut[key] = {"kept": max_items, "total": len(mapping)}
            report[key] = {k: mapping[k] for k in keys[:max_items]}
    if cut:
        report["truncated"] = cut
    return report


def _action(ctx: ActionContext, commands: bool) -> None:
    report = build_report(
        ctx.tracker,
        host=ctx.host,
        reporting=ctx.settings.reporting,
        guid=ctx.process_guid,
        commands=commands,
        clock=ctx.clock,
    )
    cap_report(report, ctx.settings.max_report_items, ctx.process_guid)
    ctx.artifacts.add_json("report.json", report, "report")


def report_action(ctx: ActionContext) -> None:
    """Full report, configured commands included."""
    _action(ctx, True)


def brief_action(ctx: ActionContext) -> None:
    """Report without running commands."""
    _action(ctx, False)
