"""Evidence actions: ``filedump``, ``memdump`` and ``regdump`` (docs/reference/whids.md §1.5).

Linux memdump format (``<image>_<pid>_<unixnano>.memdump``)::

    b"HERONMEM1\\n"
    one JSON line: {"pid", "image", "time", "truncated": bool,
                    "regions": [{"start", "end", "perms", "offset", "path", "size", "data_offset"}]}
    the bytes of every dumped region, concatenated in the listed order

``start``/``end`` are hex virtual addresses from /proc/PID/maps, ``data_offset`` is the offset of
the region's bytes counted from the first byte after the JSON line. Only readable regions are
dumped (``[vvar]``, ``[vsyscall]`` and unreadable pages are skipped), up to
``actions.max_memdump_size`` bytes. On Windows memdump writes the richest minidump that fits
``actions.max_memdump_size`` through ``dbghelp!MiniDumpWriteDump`` (``.dmp``, see
``agent.actions.windump``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from agent.actions.base import ActionContext
from agent.errors import ActionError
from agent.tracking.hooks import sysmon_archive_name

__all__ = ["filedump", "filedump_candidates", "memdump", "read_linux_memory", "regdump"]

logger = logging.getLogger(__name__)

MEMDUMP_MAGIC = b"HERONMEM1\n"
_MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+\s*(.*)$")
_SKIP_REGIONS = ("[vvar]", "[vsyscall]", "[vvar_vclock]")
_FILE_FIELDS = (
    "Image",
    "ParentImage",
    "SourceImage",
    "ImageLoaded",
    "TargetFilename",
    "Destination",
)


def _tokens(command_line: str) -> list[str]:
    try:
        return shlex.split(command_line, posix=not command_line.count("\\"))
    except ValueError:
        return command_line.split()


def filedump_candidates(ctx: ActionContext) -> list[str]:
    """Existing files referenced by the event: images, targets, command-line arguments."""
    data = ctx.event_data
    seen: dict[str, None] = {}
    for key in _FILE_FIELDS:
        v = data.get(key)
        if isinstance(v, str) and v not in ("", "-", "?"):
            seen[v] = None
    if data.get("Details") not in (None, "", "Binary Data") and isinstance(
        data.get("Details"), str
    ):
        seen[str(data["Details"])] = None
    if (
        ctx.event.get("Event", {}).get("System", {}).get("EventID") in (23, "23")
        and str(data.get("Archived", "")).lower() == "true"
    ):
        archive = ctx.settings.sysmon_archive_dir
        hashes = data.get("Hashes")
        target = str(data.get("TargetFilename", ""))
        if archive and isinstance(hashes, str) and hashes:
            ext = os.path.splitext(target.replace("\\", "/"))[1]
            seen[os.path.join(archive, sysmon_archive_name(hashes) + ext)] = None
    cwd = str(data.get("CurrentDirectory", "") or "")
    for cl_key in ("CommandLine", "ParentCommandLine"):
        cl = data.get(cl_key)
        if not isinstance(cl, str):
            continue
        for tok in _tokens(cl)[:64]:
            tok = tok.strip("\"'")
            if not tok or tok.startswith("-"):
                continue
            if os.path.isabs(tok):
                seen[tok] = None
            elif cwd and cwd not in ("?", "-"):
                seen[os.path.join(cwd, tok)] = None
    if not seen and ctx.image:
        seen[ctx.image] = None
    return [p for p in seen if os.path.isfile(p)]


def _sha256_of(ctx: ActionContext, path: str) -> str:
    """sha256 of ``path``: from the host's hash cache (enrichment already hashed most images)."""
    hashes = ctx.host.hasher.hash_file(path)
    if hashes is not None:
        return hashes.sha256
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _copy(src: str, dst: Path) -> str:
    """Stream ``src`` to ``dst`` atomically (no whole-file buffer); sha256 of what was copied."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)
    return h.hexdigest()


def filedump(ctx: ActionContext) -> None:
    """Copy every referenced file (≤ ``actions.max_file_size``) once per sha256 in the store.

    A file whose sha256 was already dumped (in this directory or anywhere in the artifact store)
    is not copied again: ``filerefs.json`` lists ``{path, sha256, size, ref}`` with ``ref`` the
    first copy (``<guid>/<event-hash>/<name>`` relative to the artifact root).
    """
    limit = ctx.settings.max_file_size
    dumped: set[str] = {f.sha256 for f in ctx.artifacts.files() if f.kind == "filedump"}
    ns = int(ctx.clock() * 1e9)
    errors = []
    refs: list[dict[str, Any]] = []
    copied = 0
    for path in filedump_candidates(ctx):
        try:
            size = os.path.getsize(path)
            if size > limit:
                logger.info("filedump: %s skipped (%d bytes > %d)", path, size, limit)
                continue
            digest = _sha256_of(ctx, path)
        except OSError as ex:
            errors.append(f"{path}: {ex}")
            continue
        if digest in dumped:
            continue
        dumped.add(digest)
        first = ctx.store.known(digest) if ctx.store is not None else None
        if first is not None:
            refs.append({"path": path, "sha256": digest, "size": size, "ref": first})
            if ctx.store is not None:
                ctx.store.referenced(size)
            continue
        name = f"{ns}_{os.path.basename(path.replace(chr(92), '/'))}.bin"
        dst = ctx.artifacts.unique(name)
        try:
            digest = _copy(path, dst)
        except OSError as ex:
            dst.unlink(missing_ok=True)
            errors.append(f"{path}: {ex}")
            continue
        ctx.artifacts.register(dst, "filedump")
        copied += 1
        if ctx.store is not None:
            ctx.store.dumped(digest, dst)
    if refs:
        ctx.artifacts.add_json("filerefs.json", refs, "fileref")
    if errors and not copied and not refs:
        raise ActionError("filedump: " + "; ".join(errors))


# --- memdump ---------------------------------------------------------------------------------


def read_linux_memory(
    pid: int, max_bytes: int, root: str = "/proc"
) -> tuple[list[dict[str, Any]], list[bytes], bool]:
    """Readable regions of ``pid``: (region headers, region bytes, truncated)."""
    regions: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    total = 0
    truncated = False
    try:
        maps = Path(f"{root}/{pid}/maps").read_text(encoding="utf-8", errors="replace")
        mem = open(f"{root}/{pid}/mem", "rb", buffering=0)
    except OSError as ex:
        raise ActionError(f"memdump pid {pid}: {ex}") from ex
    with mem:
        for line in maps.splitlines():
            m = _MAPS_RE.match(line)
            if not m:
                continue
            start, end, perms, offset, path = m.groups()
            if perms[0] != "r" or path.strip() in _SKIP_REGIONS:
                continue
            lo, hi = int(start, 16), int(end, 16)
            size = hi - lo
            if total + size > max_bytes:
                size = max_bytes - total
                truncated = True
            if size <= 0:
                truncated = True
                break
            try:
                mem.seek(lo)
                data = mem.read(size)
            except (OSError, OverflowError, ValueError):
                continue
            if not data:
                continue
            regions.append(
                {
                    "start": start,
                    "end": end,
                    "perms": perms,
                    "offset": offset,
                    "path": path.strip(),
                    "size": len(data),
                    "data_offset": total,
                }
            )
            chunks.append(data)
            total += len(data)
            if truncated:
                break
    return regions, chunks, truncated


def _memdump_linux(ctx: ActionContext) -> None:
    regions, chunks, truncated = read_linux_memory(ctx.pid, ctx.settings.max_memdump_size)
    header = {
        "pid": ctx.pid,
        "image": ctx.image,
        "time": ctx.artifacts.time,
        "truncated": truncated,
        "regions": regions,
    }
    name = f"{os.path.basename(ctx.image) or 'process'}_{ctx.pid}_{int(ctx.clock() * 1e9)}.memdump"
    path = ctx.artifacts.unique(name)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(MEMDUMP_MAGIC)
        fh.write(json.dumps(header).encode("utf-8") + b"\n")
        for chunk in chunks:
            fh.write(chunk)
    os.replace(tmp, path)
    ctx.artifacts.register(path, "memdump")


def _memdump_windows(ctx: ActionContext) -> None:
    from agent.actions.windump import memdump_windows  # DbgHelp lock, size bound

    memdump_windows(ctx)


def memdump(ctx: ActionContext) -> None:
    """Dump the process memory once per process GUID."""
    track = ctx.tracker.get(ctx.process_guid)
    if track is not None and track.memory_dumped:
        return
    if sys.platform == "win32":
        _memdump_windows(ctx)
    elif sys.platform.startswith("linux"):
        _memdump_linux(ctx)
    else:
        raise ActionError(f"memdump unsupported on {sys.platform}")
    if track is not None:
        track.memory_dumped = True


# --- regdump ---------------------------------------------------------------------------------

_HIVES = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKU": "HKEY_USERS",
    "HKCR": "HKEY_CLASSES_ROOT",
}


def split_registry_path(path: str) -> tuple[str, str, str]:
    """``HKLM\\Soft\\Key\\Value`` → (hive constant name, key, value name).

    Sysmon names a key's default value ``(Default)``; winreg wants the empty name for it.
    """
    hive, _, rest = path.partition("\\")
    hive_name = _HIVES.get(hive.upper(), hive.upper())
    key, _, value = rest.rpartition("\\")
    return hive_name, key, "" if value == "(Default)" else value


def regdump(ctx: ActionContext) -> None:
    """Sysmon 13 with ``Details == "Binary Data"``: save the registry value (Windows)."""
    data = ctx.event_data
    target = str(data.get("TargetObject", ""))
    if data.get("Details") != "Binary Data" or not target:
        return
    result: dict[str, Any] = {"path": target, "data": None, "error": ""}
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import base64
        import winreg

        hive_name, key, value = split_registry_path(target)
        try:
            hive = getattr(winreg, hive_name)
            with winreg.OpenKey(hive, key) as handle:
                raw, _type = winreg.QueryValueEx(handle, value)
            result["data"] = base64.b64encode(
                raw if isinstance(raw, bytes) else str(raw).encode()
            ).decode()
        except (OSError, AttributeError) as ex:
            result["error"] = str(ex)
    else:
        result["error"] = f"registry not available on {sys.platform}"
    ctx.artifacts.add_json("registry.json", result, "regdump")
