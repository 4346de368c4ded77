"""Windows ``memdump``: minidumps through ``dbghelp!MiniDumpWriteDump``, bounded in size.

* DbgHelp is single-threaded (Microsoft: "all DbgHelp functions are single threaded"; concurrent
  calls can corrupt memory), and two action workers may dump at once: every call holds
  ``DBGHELP_LOCK``, one lock for the whole process.
* A full-memory minidump is as large as the process's committed memory, with no cap of its own,
  and an artifact over ``wire.MAX_UPLOAD_SIZE`` (512 MiB) is never uploaded. The dump kinds are
  tried from the richest to the smallest: the full dump is skipped when the process's private
  bytes alone exceed ``actions.max_memdump_size``, and a dump that still comes out larger is
  deleted and the next kind written. The kind is in the file name (``…_full.dmp``).

The selection (``dump_bounded``) is pure and tested with a fake writer; the ctypes writer runs
only on Windows.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from agent.actions.base import ActionContext
from agent.errors import ActionError

__all__ = ["DBGHELP_LOCK", "DUMP_KINDS", "dump_bounded", "memdump_windows"]

logger = logging.getLogger(__name__)

DBGHELP_LOCK = threading.Lock()

_DATA_SEGS, _FULL_MEMORY, _HANDLE_DATA = 0x1, 0x2, 0x4
_UNLOADED_MODULES, _PRIVATE_RW_MEMORY, _FULL_MEMORY_INFO, _THREAD_INFO = 0x20, 0x200, 0x800, 0x1000
_COMMON = _HANDLE_DATA | _UNLOADED_MODULES | _FULL_MEMORY_INFO | _THREAD_INFO
# MINIDUMP_TYPE flags, richest first.
DUMP_KINDS: tuple[tuple[str, int], ...] = (
    ("full", _FULL_MEMORY | _COMMON),
    ("private", _PRIVATE_RW_MEMORY | _DATA_SEGS | _COMMON),  # heaps and stacks, no images
    ("normal", _COMMON),  # threads, stacks, modules
)

Writer = Callable[[Path, int], None]  # (file, MINIDUMP_TYPE) → the dump written there


def dump_bounded(
    write: Writer, tmp: Callable[[str], Path], *, limit: int, private_bytes: int | None
) -> tuple[Path, str]:
    """Write the richest dump kind that fits ``limit``; returns (file, kind)."""
    kinds = [
        k
        for k in DUMP_KINDS
        if not (k[0] == "full" and private_bytes is not None and private_bytes > limit)
    ]
    for name, flags in kinds:
        path = tmp(name)
        try:
            with DBGHELP_LOCK:
                write(path, flags)
            size = path.stat().st_size
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if size <= limit:
            return path, name
        path.unlink(missing_ok=True)
        logger.info(
            "memdump: %s minidump is %d bytes > %d, trying a smaller kind", name, size, limit
        )
    raise ActionError(
        f"memdump: even a {kinds[-1][0]} minidump exceeds actions.max_memdump_size ({limit} bytes)"
    )


def _private_bytes(pid: int) -> int | None:
    try:
        import psutil

        return int(getattr(psutil.Process(pid).memory_info(), "private", 0)) or None
    except Exception:  # noqa: BLE001 - only an estimate; the size check after writing decides
        return None


def _minidump_writer(pid: int) -> Writer:  # pragma: no cover - Windows only
    import ctypes
    import msvcrt
    from ctypes import wintypes

    process_query_information, process_vm_read = 0x0400, 0x0010
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    dbghelp = ctypes.WinDLL("dbghelp", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    dbghelp.MiniDumpWriteDump.argtypes = [
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.HANDLE,
        wintypes.DWORD,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]

    def write(path: Path, flags: int) -> None:
        handle = kernel32.OpenProcess(process_query_information | process_vm_read, False, pid)
        if not handle:
            raise ActionError(f"OpenProcess({pid}) failed: {ctypes.get_last_error()}")  # type: ignore[attr-defined]
        try:
            with path.open("wb") as fh:
                fhandle = msvcrt.get_osfhandle(fh.fileno())  # type: ignore[attr-defined]
                ok = dbghelp.MiniDumpWriteDump(handle, pid, fhandle, flags, None, None, None)
            if not ok:
                raise ActionError(f"MiniDumpWriteDump({pid}) failed: {ctypes.get_last_error()}")  # type: ignore[attr-defined]
        finally:
            kernel32.CloseHandle(handle)

    return write


def memdump_windows(ctx: ActionContext, *, write: Writer | None = None) -> Path:
    """Dump ``ctx.pid`` into the artifact directory (registered as ``memdump``)."""
    if write is None:
        if sys.platform != "win32":
            raise ActionError("MiniDumpWriteDump needs Windows")
        write = _minidump_writer(ctx.pid)
    stem = (
        f"{os.path.basename(ctx.image.replace(chr(92), '/')) or 'process'}_{ctx.pid}_"
        f"{int(ctx.clock() * 1e9)}"
    )
    tmp, kind = dump_bounded(
        write,
        lambda kind: ctx.artifacts.unique(f".{stem}_{kind}.dmp.tmp"),
        limit=ctx.settings.max_memdump_size,
        private_bytes=_private_bytes(ctx.pid),
    )
    path = ctx.artifacts.unique(f"{stem}_{kind}.dmp")
    os.replace(tmp, path)
    ctx.artifacts.register(path, "memdump")
    return path
