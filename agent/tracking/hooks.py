"""Enrichment hooks (WHIDS ``hookdefs.go``), registered in one explicit dict.

Each ``Hook`` names the Sysmon EventIDs it applies to (on the Windows Sysmon channel and on
``Linux-Sysmon/Operational``). *Tracking* hooks only update the tracker and run on every event,
replayed ones included; *enrichment* hooks add fields to the event and run only on live events
(replayed events describe another host, so hashing local files for them would be wrong).
Unknown values are ``"?"`` and every added value is a string, as in WHIDS.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from agent.render import LINUX_CHANNEL, SYSMON_CHANNEL
from agent.tracking.tracker import DriverInfo, ModuleInfo, Tracker

if TYPE_CHECKING:
    from agent.tracking.hashes import FileHasher

__all__ = ["HOOKS", "Hook", "HookContext", "run_hooks"]

SYSMON_CHANNELS = frozenset({SYSMON_CHANNEL, LINUX_CHANNEL})
SECURITY_CHANNELS = frozenset({"Security"})
KERNEL_FILE_CHANNELS = frozenset({"Microsoft-Windows-Kernel-File/Analytic"})
_KERNEL_FILE_OPS = {
    10: "Create",
    11: "Cleanup",
    12: "Create",
    13: "Cleanup",
    14: "Close",
    15: "Read",
    16: "Write",
    26: "DeletePath",
    27: "RenamePath",
}
UNKNOWN = "?"


@dataclass(frozen=True, slots=True)
class HookContext:
    """What hooks may use: the tracker, the hasher (None for replay) and a service lookup."""

    tracker: Tracker
    hasher: FileHasher | None
    services: Callable[[int], str]
    ts: float
    pid: int = 0  # System.Execution.ProcessID of the event (set for Kernel-File events)
    archive_dir: str = ""  # Sysmon ArchiveDirectory (clipboard captures)


HookFn = Callable[[HookContext, dict[str, Any], int], None]


@dataclass(frozen=True, slots=True)
class Hook:
    """One registered hook."""

    event_ids: frozenset[int] | None  # None: every event of the channels
    enrich: bool  # True: live events only, adds fields
    fn: HookFn
    exclude: frozenset[int] = frozenset()
    channels: frozenset[str] = SYSMON_CHANNELS


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


# --- tracking hooks --------------------------------------------------------------------------


def _track_create(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    guid = str(data.get("ProcessGuid", ""))
    if not guid:
        return
    try:
        pid = int(data.get("ProcessId", 0))
    except (TypeError, ValueError):
        pid = 0
    hashes = _parse_hashes(str(data.get("Hashes", "")))
    ctx.tracker.create(
        guid,
        pid,
        image=str(data.get("Image", UNKNOWN)),
        command_line=str(data.get("CommandLine", UNKNOWN)),
        cwd=str(data.get("CurrentDirectory", UNKNOWN)),
        user=str(data.get("User", UNKNOWN)),
        integrity=str(data.get("IntegrityLevel", UNKNOWN)),
        parent_guid=str(data.get("ParentProcessGuid", UNKNOWN)),
        parent_image=str(data.get("ParentImage", UNKNOWN)),
        parent_command_line=str(data.get("ParentCommandLine", UNKNOWN)),
        hashes=hashes,
        hashes_text=str(data.get("Hashes", "")),
    )


def _track_terminate(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    ctx.tracker.terminate(str(data.get("ProcessGuid", "")))


def _stats(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    track = ctx.tracker.get(str(data.get("ProcessGuid", "")))
    if track is None:
        return
    if eid == 3:
        ip = str(data.get("DestinationIp", ""))
        conn = track.connections.get(ip)
        if conn is None:
            if len(track.connections) >= 64:
                return
            conn = {
                "first-seen": ctx.ts,
                "last-seen": ctx.ts,
                "resolved": {},
                "ports": {},
                "count": 0,
            }
            track.connections[ip] = conn
        port = str(data.get("DestinationPort", ""))
        conn["ports"][port] = conn["ports"].get(port, 0) + 1
        conn["count"] += 1
        conn["last-seen"] = ctx.ts
        host = str(data.get("DestinationHostname", "")) or ""
        if host and host != "-":
            conn["resolved"][host] = conn["resolved"].get(host, 0) + 1
    elif eid == 22:
        qname = str(data.get("QueryName", ""))
        for answer in str(data.get("QueryResults", "")).split(";"):
            answer = answer.strip().removeprefix("::ffff:")
            if not answer or answer.startswith("type:"):
                continue
            entry = track.dns.setdefault(answer, {})
            if len(entry) < 32:
                entry[qname] = entry.get(qname, 0) + 1
            while len(track.dns) > 256:
                track.dns.pop(next(iter(track.dns)))
    elif eid in (11, 23, 26, 100):
        path = str(data.get("TargetFilename", ""))
        track.last_files.append(path)
        if eid == 11:
            track.file_create_count += 1
            e = _ext(path)
            track.file_create_by_ext[e] = track.file_create_by_ext.get(e, 0) + 1
        elif eid in (23, 26):
            track.file_delete_count += 1
            e = _ext(path)
            track.file_delete_by_ext[e] = track.file_delete_by_ext.get(e, 0) + 1


def _modules_drivers(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    loaded = str(data.get("ImageLoaded", ""))
    if eid == 6:
        ctx.tracker.add_driver(
            DriverInfo(
                loaded,
                str(data.get("Hashes", "")),
                str(data.get("Signed", "")),
                str(data.get("Signature", "")),
                str(data.get("SignatureStatus", "")),
            )
        )
        return
    module = ModuleInfo(
        loaded,
        str(data.get("Hashes", "")),
        str(data.get("Signature", "")),
        str(data.get("SignatureStatus", "")),
        str(data.get("Signed", "")),
    )
    guid = str(data.get("ProcessGuid", ""))
    ctx.tracker.add_module(guid, module, ctx.ts)
    track = ctx.tracker.get(guid)
    if track is not None and loaded.lower() == track.image.lower():
        track.signed = module.signed
        track.signature = module.signature
        track.signature_status = module.signature_status


# --- enrichment hooks ------------------------------------------------------------------------


def _parse_hashes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().lower()] = v.strip().lower()
    return out


def _enrich_create(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    track = ctx.tracker.get(str(data.get("ProcessGuid", "")))
    if track is None:
        return
    parent = ctx.tracker.get(track.parent_guid)
    data["Ancestors"] = "|".join(track.ancestors) if track.ancestors else UNKNOWN
    data["ParentUser"] = parent.user if parent else UNKNOWN
    data["ParentIntegrityLevel"] = parent.integrity if parent else UNKNOWN
    data["ParentServices"] = parent.services if parent else UNKNOWN
    track.services = ctx.services(track.pid)
    data["Services"] = track.services
    image = str(data.get("Image", ""))
    if ctx.hasher is not None and image:
        st: os.stat_result | None = None
        try:
            st = os.stat(image)  # Performance: one stat for the size and the hasher
        except OSError:
            data["ImageSize"] = UNKNOWN
        else:
            data["ImageSize"] = str(st.st_size)
        if not track.hashes and st is not None:
            fh = ctx.hasher.hash_file(image, st)
            if fh is not None:
                track.hashes = fh.to_dict()
                track.hashes_text = fh.sysmon()
                if data.get("Hashes") in (None, "", "-"):
                    data["Hashes"] = track.hashes_text


def _enrich_any(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    tracker = ctx.tracker
    if eid in (8, 10):
        for side in ("Source", "Target"):
            t = tracker.get(str(data.get(f"{side}ProcessGuid", "")))
            data[f"{side}User"] = t.user if t else UNKNOWN
            data[f"{side}IntegrityLevel"] = t.integrity if t else UNKNOWN
            data[f"{side}Hashes"] = t.hashes_text if t and t.hashes_text else UNKNOWN
            data[f"{side}ProcessThreatScore"] = str(t.score) if t else "-1"
            if side == "Target":
                data["TargetParentProcessGuid"] = t.parent_guid if t else UNKNOWN
        return
    track = tracker.get(str(data.get("ProcessGuid", "")))
    if track is None:
        data["ProcessThreatScore"] = "-1"
        return
    for key, value in (
        ("CommandLine", track.command_line),
        ("User", track.user),
        ("IntegrityLevel", track.integrity),
        ("CurrentDirectory", track.cwd),
    ):
        if key not in data:
            data[key] = value
    data["ImageHashes"] = track.hashes_text or UNKNOWN
    data["ImageSigned"] = track.signed
    data["ImageSignature"] = track.signature
    data["ImageSignatureStatus"] = track.signature_status
    data["ProcessThreatScore"] = str(track.score)
    data["Services"] = track.services
    if eid in (11, 23, 26):
        path = str(data.get("TargetFilename", ""))
        e = _ext(path)
        data["Extension"] = e
        if eid == 11:
            data["Count"] = str(track.file_create_count)
            data["CountByExt"] = str(track.file_create_by_ext.get(e, 0))
        else:
            data["Count"] = str(track.file_delete_count)
            data["CountByExt"] = str(track.file_delete_by_ext.get(e, 0))
    elif eid == 7:
        data["ParentImage"] = track.parent_image
        data["ParentCommandLine"] = track.parent_command_line


_ARCHIVE_NAME_RE = re.compile(r"(((SHA1|MD5|SHA256|IMPHASH)=)|,)")
MAX_CLIPBOARD = 1024 * 1024


def sysmon_archive_name(hashes: str) -> str:
    """Name Sysmon gives an archived file: its ``Hashes`` without ``TYPE=`` and commas."""
    return _ARCHIVE_NAME_RE.sub("", hashes)


def _clipboard(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    """Sysmon 24 (WHIDS hookClipboardEvents): ``ClipboardData`` from the archived capture."""
    data["ClipboardData"] = UNKNOWN
    hashes = data.get("Hashes")
    if not ctx.archive_dir or not isinstance(hashes, str) or not hashes:
        return
    path = os.path.join(ctx.archive_dir, "CLIP-" + sysmon_archive_name(hashes))
    try:
        if os.path.isfile(path) and os.path.getsize(path) < MAX_CLIPBOARD:
            with open(path, "rb") as fh:
                data["ClipboardData"] = fh.read().decode("utf-16-le", "replace")
    except OSError:
        pass


def _process_fields(track: Any, data: dict[str, Any]) -> None:
    data["ProcessGuid"] = track.guid
    data["Image"] = track.image
    data["CommandLine"] = track.command_line
    data["ImageHashes"] = track.hashes_text or UNKNOWN
    data["IntegrityLevel"] = track.integrity
    data["User"] = track.user


def _file_system_audit(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    """Security 4663 (WHIDS hookFileSystemAudit): process fields from the tracked PID."""
    try:
        pid = int(str(data.get("ProcessId", "")), 0)
    except ValueError:
        return
    track = ctx.tracker.by_pid(pid)
    if track is None:
        return
    _process_fields(track, data)
    track.last_files.append(str(data.get("ObjectName", "")))


def _kernel_file(ctx: HookContext, data: dict[str, Any], eid: int) -> None:
    """Kernel-File (WHIDS hookKernelFiles): process fields and the operation name."""
    pid = ctx.pid
    track = ctx.tracker.by_pid(pid) if pid else None
    data["EventType"] = _KERNEL_FILE_OPS.get(eid, str(eid))
    if track is None:
        return
    _process_fields(track, data)
    data["ProcessId"] = str(pid)
    data["Services"] = track.services
    data["ImageSignature"] = track.signature
    data["ImageSignatureStatus"] = track.signature_status
    name = data.get("TargetFilename") or data.get("FileName")
    if name:
        track.last_files.append(str(name))


HOOKS: dict[str, Hook] = {
    "track": Hook(frozenset({1, 103}), False, _track_create),  # 103: Linux ProcessFork (eBPF)
    "terminate": Hook(frozenset({5}), False, _track_terminate),
    "stats": Hook(frozenset({3, 11, 22, 23, 26, 100}), False, _stats),
    "image_load": Hook(frozenset({6, 7}), False, _modules_drivers),
    "enrich_create": Hook(frozenset({1}), True, _enrich_create),
    "enrich_any": Hook(None, True, _enrich_any, exclude=frozenset({1, 6, 19, 20, 21})),
    "file_system_audit": Hook(
        frozenset({4663}), True, _file_system_audit, channels=SECURITY_CHANNELS
    ),
    "kernel_file": Hook(None, True, _kernel_file, channels=KERNEL_FILE_CHANNELS),
    "clipboard": Hook(frozenset({24}), True, _clipboard),
}


def run_hooks(
    ctx: HookContext, event: dict[str, Any], *, enrich: bool, hooks: dict[str, Hook] = HOOKS
) -> None:
    """Apply every hook that fits ``event`` (tracking always, enrichment if ``enrich``)."""
    ev = event.get("Event")
    if not isinstance(ev, dict):
        return
    system = ev.get("System")
    if not isinstance(system, dict):
        return
    channel = system.get("Channel")
    if not isinstance(channel, str):  # `{}` for ETW traces converted to EVTX (issue 25)
        return
    eid_raw = system.get("EventID")
    if isinstance(eid_raw, dict):
        eid_raw = eid_raw.get("Value")
    try:
        eid = int(eid_raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    data = ev.get("EventData")
    if not isinstance(data, dict):
        return
    if channel in KERNEL_FILE_CHANNELS:  # the acting pid is only in the System block
        execution = system.get("Execution")
        if isinstance(execution, dict):
            try:
                ctx = replace(ctx, pid=int(execution.get("ProcessID", 0)))
            except (TypeError, ValueError):
                pass
    for hook in hooks.values():
        if channel not in hook.channels:
            continue
        if hook.enrich and not enrich:
            continue
        if hook.event_ids is not None and eid not in hook.event_ids:
            continue
        if eid in hook.exclude:
            continue
        hook.fn(ctx, data, eid)


def service_lookup() -> Callable[[int], str]:
    """pid → comma-separated Windows service names (``"N/A"`` elsewhere)."""
    if sys.platform != "win32":
        return lambda pid: "N/A"
    import time

    import psutil

    cache: dict[int, list[str]] = {}
    stamp = [0.0]

    def refresh() -> None:
        cache.clear()
        for svc in psutil.win_service_iter():
            try:
                pid = svc.pid()
                if pid:
                    cache.setdefault(pid, []).append(svc.name())
            except Exception:  # noqa: BLE001 - psutil raises assorted Windows errors per service
                continue
        stamp[0] = time.monotonic()

    def lookup(pid: int) -> str:
        # Performance: one service scan per 30 s, not one per event.
        if time.monotonic() - stamp[0] > 30.0 or (
            pid not in cache and time.monotonic() - stamp[0] > 2.0
        ):
            try:
                refresh()
            except Exception:  # noqa: BLE001 - enrichment degrades to UNKNOWN, never fails the event
                return UNKNOWN
        return ",".join(cache.get(pid, [])) or "N/A"

    return lookup
