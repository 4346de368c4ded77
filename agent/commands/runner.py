"""Running one manager command: drop files, built-in or allowed tool, timeout, fetch files.

`run_command(command, ctx) -> CommandResult` never raises: every failure lands in
`CommandResult.error`. Built-ins come from the explicit `COMMANDS` registry and answer JSON;
any other name must be listed in `CommandContext.allowed_tools` and is run without a shell from
a fresh temporary directory holding the dropped files (removed afterwards).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rules import wire

from . import containment, files, system
from .context import CommandContext, CommandError

logger = logging.getLogger(__name__)

Handler = Callable[[list[str], CommandContext], Any]

# The built-in commands (docs/reference/whids.md §1.8). Names are what the manager sends.
COMMANDS: dict[str, Handler] = {
    "hash": files.cmd_hash,
    "rexhash": files.cmd_rexhash,
    "stat": files.cmd_stat,
    "ls": files.cmd_ls,
    "walk": files.cmd_walk,
    "find": files.cmd_find,
    "processes": system.cmd_processes,
    "modules": system.cmd_modules,
    "drivers": system.cmd_drivers,
    "report": system.cmd_report,
    "terminate": system.cmd_terminate,
    "osquery": system.cmd_osquery,
    "contain": containment.cmd_contain,
    "uncontain": containment.cmd_uncontain,
}

MAX_OUTPUT = 8 * 1024 * 1024  # stdout/stderr kept per command; the rest is cut and said so


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _run_with_timeout(fn: Handler, args: list[str], ctx: CommandContext, timeout: float) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(args, ctx)
        except BaseException as ex:  # noqa: BLE001 - handed to the caller thread
            box["error"] = ex

    t = threading.Thread(target=target, name="heron-command", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise CommandError(f"timeout after {timeout:g}s (the command keeps running detached)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _drop(workdir: Path, drop: list[dict[str, str]]) -> None:
    for item in drop:
        name = str(item.get("name", ""))
        if not name or name != os.path.basename(name) or name in (".", ".."):
            raise CommandError(f"bad drop file name {name!r}")
        try:
            data = base64.b64decode(item.get("data", ""), validate=True)
        except (binascii.Error, ValueError) as ex:
            raise CommandError(f"drop file {name!r}: bad base64: {ex}") from ex
        (workdir / name).write_bytes(data)


def _fetch(paths: list[str], workdir: Path, limit: int) -> list[dict[str, str]]:
    out = []
    for path in paths:
        p = Path(path) if os.path.isabs(path) else workdir / path
        item = wire.FetchedFile(path=path)
        try:
            size = p.stat().st_size
            if size > limit:
                item = wire.FetchedFile(
                    path=path, error=f"file is {size} bytes, over the {limit}-byte fetch limit"
                )
            else:
                data = p.read_bytes()
                item = wire.FetchedFile(
                    path=path,
                    data=base64.b64encode(data).decode("ascii"),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
        except OSError as ex:
            item = wire.FetchedFile(path=path, error=f"{type(ex).__name__}: {ex.strerror or ex}")
        out.append({k: str(v) for k, v in item.to_dict().items()})  # every field is a str
    return out


def _text(data: bytes) -> str:
    if len(data) > MAX_OUTPUT:
        data = data[:MAX_OUTPUT] + f"\n[cut: {len(data) - MAX_OUTPUT} more bytes]".encode()
    return data.decode("utf-8", "replace")


def _tool(command: wire.Command, ctx: CommandContext, workdir: Path) -> dict[str, Any]:
    name = command.name
    if name not in ctx.allowed_tools:
        raise CommandError(f"unknown command {name!r} (not a built-in, not an allowed tool)")
    dropped = workdir / name
    exe = str(dropped) if dropped.is_file() else system.find_tool(name, ctx)
    if exe is None:
        raise CommandError(f"tool {name!r} not found in the tools directory or PATH")
    if dropped.is_file():
        dropped.chmod(0o700)
    try:
        proc = ctx.runner([exe, *command.args], command.timeout, cwd=str(workdir))
    except subprocess.TimeoutExpired as ex:
        raise CommandError(f"timeout after {command.timeout:g}s: {name} killed") from ex
    except OSError as ex:
        raise CommandError(f"cannot run {name}: {ex}") from ex
    out: dict[str, Any] = {
        "exit_code": proc.returncode,
        "stdout": _text(proc.stdout or b""),
        "stderr": _text(proc.stderr or b""),
    }
    if command.expect_json:
        try:
            out["json"] = json.loads(proc.stdout or b"null")
        except ValueError as ex:
            out["error"] = f"output is not JSON: {ex}"
    return out


def run_command(command: wire.Command, ctx: CommandContext | None = None) -> wire.CommandResult:
    """Run one command and describe the outcome (never raises)."""
    ctx = ctx or CommandContext()
    started = _now()
    fields: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="heron-cmd-"))
    try:
        _drop(workdir, command.drop)
        handler = COMMANDS.get(command.name)
        if handler is not None:
            fields["json"] = _run_with_timeout(handler, list(command.args), ctx, command.timeout)
            fields["exit_code"] = 0
        else:
            fields.update(_tool(command, ctx, workdir))
    except CommandError as ex:
        fields["error"] = str(ex)
    except Exception as ex:
        logger.error("command %s (%s) crashed", command.id, command.name, exc_info=True)
        fields["error"] = f"{type(ex).__name__}: {ex}"
    fetched = _fetch(list(command.fetch), workdir, ctx.max_fetch_size) if command.fetch else []
    shutil.rmtree(workdir, ignore_errors=True)
    logger.info(
        "command %s %s finished%s",
        command.id,
        command.name,
        f": {fields['error']}" if fields.get("error") else "",
    )
    return wire.CommandResult(
        id=command.id, fetched=fetched, started=started, finished=_now(), **fields
    )
