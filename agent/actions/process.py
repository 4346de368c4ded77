"""Process actions: ``kill`` and ``blacklist`` (the runner's priority path, never behind dumps).

``kill`` refuses the agent itself, its parent, pid 0/1/4, and a pid whose current process is
not the detected one (pid reuse: on Linux the GUID recomputed from /proc must match, elsewhere
the executable path must equal the event's image).
"""

from __future__ import annotations

import logging
import os
import sys

import psutil

from agent.actions.base import ActionContext
from agent.errors import ActionError

__all__ = ["blacklist", "kill", "resume", "suspend"]

logger = logging.getLogger(__name__)

_PROTECTED = frozenset({0, 1, 4})


def _check_target(ctx: ActionContext) -> psutil.Process:
    pid = ctx.pid
    if pid in _PROTECTED or pid == os.getpid() or pid == os.getppid():
        raise ActionError(f"refusing to act on protected pid {pid}")
    if sys.platform.startswith("linux"):
        info = ctx.host.pids.get(pid)
        if info is None:
            raise ActionError(f"pid {pid} is gone")
        if info.guid.strip("{}").upper() != ctx.process_guid.strip("{}").upper():
            raise ActionError(f"pid {pid} now belongs to another process (guid mismatch)")
    try:
        proc = psutil.Process(pid)
        if not sys.platform.startswith("linux") and ctx.image not in ("", "?", "-"):
            exe = proc.exe()
            if exe and exe.lower() != ctx.image.lower():  # Windows: pid reused by another image
                raise ActionError(f"pid {pid} now runs {exe}, not {ctx.image}")
        return proc
    except psutil.Error as ex:
        raise ActionError(f"pid {pid}: {ex}") from ex


def suspend(ctx: ActionContext) -> bool:
    """Freeze the target before evidence collection; False when that was not possible."""
    try:
        _check_target(ctx).suspend()
        return True
    except (ActionError, psutil.Error) as ex:
        logger.info("suspend of pid %d skipped: %s", ctx.pid, ex)
        return False


def resume(ctx: ActionContext) -> None:
    try:
        psutil.Process(ctx.pid).resume()
    except psutil.Error:
        pass


def kill(ctx: ActionContext) -> None:
    """Terminate the detected process (SIGKILL / TerminateProcess)."""
    proc = _check_target(ctx)
    try:
        proc.kill()
        proc.wait(timeout=5)
    except psutil.NoSuchProcess:
        return
    except psutil.Error as ex:
        raise ActionError(f"kill pid {ctx.pid}: {ex}") from ex
    logger.warning(
        "killed pid %d (%s) for %s",
        ctx.pid,
        ctx.image,
        ",".join(ctx.detection.get("Signature", [])),
    )


def blacklist(ctx: ActionContext) -> None:
    """Remember the command line; later process creations with it are killed on sight."""
    if ctx.command_line and ctx.command_line != "?":
        with ctx.tracker.lock:
            ctx.tracker.blacklist.add(ctx.command_line)
