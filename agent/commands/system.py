"""Host commands: processes, modules, drivers, terminate, osquery and the IR report.

`processes`/`modules`/`drivers` answer from the agent's tracker when one is attached (the WHIDS
`map guid→ProcessTrack` shape), otherwise from a live psutil snapshot.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from .context import CommandContext, CommandError


def _live_processes() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    attrs = ["pid", "ppid", "name", "exe", "cmdline", "username", "create_time"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        key = f"pid:{info['pid']}:{int((info.get('create_time') or 0) * 1000)}"
        out[key] = {
            "PID": info["pid"],
            "PPID": info.get("ppid"),
            "Image": info.get("exe") or "",
            "Name": info.get("name") or "",
            "CommandLine": " ".join(info.get("cmdline") or []),
            "User": info.get("username") or "",
            "CreateTime": datetime.fromtimestamp(info.get("create_time") or 0, UTC).isoformat(),
        }
    return out


def cmd_processes(args: list[str], ctx: CommandContext) -> dict[str, Any]:
    snap = getattr(ctx.tracker, "snapshot", None)
    return snap() if callable(snap) else _live_processes()


def cmd_modules(args: list[str], ctx: CommandContext) -> list[dict[str, Any]]:
    mods = getattr(ctx.tracker, "modules", None)
    if callable(mods):
        return list(mods())
    seen: dict[str, dict[str, Any]] = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            for m in proc.memory_maps(grouped=True):
                if m.path and m.path.startswith(("/", "C:", "c:")) and m.path not in seen:
                    seen[m.path] = {"ImageLoaded": m.path, "FirstPID": proc.pid}
        except (psutil.Error, OSError):
            continue
    return sorted(seen.values(), key=lambda m: m["ImageLoaded"])


def cmd_drivers(args: list[str], ctx: CommandContext) -> list[dict[str, Any]]:
    drivers = getattr(ctx.tracker, "driver_list", None)
    if callable(drivers):
        return list(drivers())
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/modules", encoding="ascii") as fh:
                return [{"Name": line.split()[0], "Size": int(line.split()[1])} for line in fh]
        except FileNotFoundError:
            return []  # kernel without loadable modules (or a container without /proc/modules)
        except OSError as ex:
            raise CommandError(f"cannot read /proc/modules: {ex}") from ex
    return []


def cmd_terminate(args: list[str], ctx: CommandContext) -> dict[str, Any]:
    if not args or not args[0].isdigit():
        raise CommandError("usage: terminate PID")
    pid = int(args[0])
    if pid == ctx.own_pid or pid <= 1:
        raise CommandError(f"refusing to terminate pid {pid} (the agent or init)")
    try:
        proc = psutil.Process(pid)
        name = proc.name()
        proc.kill()
        proc.wait(timeout=5)
    except psutil.NoSuchProcess as ex:
        raise CommandError(f"no process {pid}") from ex
    except (psutil.Error, OSError) as ex:
        raise CommandError(f"cannot terminate {pid}: {ex}") from ex
    return {"pid": pid, "name": name, "terminated": True}


def osquery(table: str, ctx: CommandContext, timeout: float = 60.0) -> Any:
    """Run `osqueryi --json -A TABLE` and return its parsed JSON."""
    if not table.replace("_", "").isalnum():
        raise CommandError(f"bad osquery table name {table!r}")
    exe = find_tool("osqueryi", ctx)
    if exe is None:
        raise CommandError("osqueryi is not installed (PATH or the tools directory)")
    proc = ctx.runner([exe, "--json", "-A", table], timeout)
    if proc.returncode != 0:
        raise CommandError(
            f"osqueryi failed ({proc.returncode}): {proc.stderr.decode('utf-8', 'replace')[:500]}"
        )
    try:
        return json.loads(proc.stdout or b"[]")
    except ValueError as ex:
        raise CommandError(f"osqueryi returned invalid JSON: {ex}") from ex


def find_tool(name: str, ctx: CommandContext) -> str | None:
    """Look a program up in the tools directory first, then in PATH."""
    if ctx.tools_dir is not None:
        for candidate in (name, name + ".exe"):
            p = ctx.tools_dir / candidate
            if p.is_file():
                return str(p)
    return shutil.which(name)


def cmd_osquery(args: list[str], ctx: CommandContext) -> Any:
    if not args:
        raise CommandError("usage: osquery TABLE")
    return osquery(args[0], ctx)


def cmd_report(args: list[str], ctx: CommandContext) -> dict[str, Any]:
    """The IR report (docs/reference/whids.md §1.9): the agent's builder, or a live fallback."""
    if ctx.report is not None:
        return ctx.report()
    start = datetime.now(UTC).isoformat()
    commands = []
    for table in ctx.osquery_tables:
        entry: dict[str, Any] = {
            "name": "osqueryi",
            "args": ["--json", "-A", table],
            "expect-json": True,
            "stdout": None,
            "stderr": "",
            "error": "",
            "timestamp": datetime.now(UTC).isoformat(),
        }
        try:
            entry["stdout"] = osquery(table, ctx)
        except CommandError as ex:
            entry["error"] = str(ex)
        commands.append(entry)
    conns = []
    try:
        for c in psutil.net_connections(kind="inet"):
            conns.append(
                {
                    "pid": c.pid,
                    "status": c.status,
                    "laddr": f"{c.laddr.ip}:{c.laddr.port}" if c.laddr else "",
                    "raddr": f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else "",
                }
            )
    except (psutil.Error, OSError):
        pass
    return {
        "processes": cmd_processes([], ctx),
        "modules": cmd_modules([], ctx),
        "drivers": cmd_drivers([], ctx),
        "connections": conns,
        "commands": commands,
        "start-timestamp": start,
        "stop-timestamp": datetime.now(UTC).isoformat(),
        "uptime": time.time() - psutil.boot_time(),
    }
