"""Rendering of agent-produced events in the WHIDS/Gene JSON shape (docs/reference/whids.md §3).

Owns the ``System`` block layout, timestamps, process GUIDs and the Sysmon / Sysmon-for-Linux
channel constants shared by every live source.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "LINUX_CHANNEL",
    "LINUX_PROVIDER",
    "LINUX_PROVIDER_GUID",
    "SYSMON_CHANNEL",
    "SYSMON_PROVIDER",
    "SYSMON_PROVIDER_GUID",
    "make_event",
    "process_guid",
    "rfc3339_nano",
    "sysmon_time",
]

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
SYSMON_PROVIDER = "Microsoft-Windows-Sysmon"
SYSMON_PROVIDER_GUID = "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}"
LINUX_CHANNEL = "Linux-Sysmon/Operational"
LINUX_PROVIDER = "Linux-Sysmon"
LINUX_PROVIDER_GUID = "{FF032593-A8D3-4F13-B0D6-01FC615A0F97}"

# Sysmon task names by EventID (Task.Name in the WHIDS System block).
SYSMON_TASKS = {
    1: "Process Create (rule: ProcessCreate)",
    3: "Network connection detected (rule: NetworkConnect)",
    5: "Process terminated (rule: ProcessTerminate)",
    11: "File created (rule: FileCreate)",
    23: "File Delete archived (rule: FileDelete)",
    26: "File Delete logged (rule: FileDeleteDetected)",
}
_LEVELS = {1: "Critical", 2: "Error", 3: "Warning", 4: "Information", 5: "Verbose"}


@functools.lru_cache(maxsize=8)
def _second(whole: int) -> str:
    """Performance: live events of one second share this strftime (several µs a call)."""
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339_nano(ts: float) -> str:
    """UTC RFC 3339 timestamp with nanosecond digits, as WHIDS writes ``SystemTime``."""
    whole = int(ts)
    nanos = int(round((ts - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return f"{_second(whole)}.{nanos:09d}Z"


def sysmon_time(ts: float) -> str:
    """Sysmon ``UtcTime`` format: ``YYYY-MM-DD HH:MM:SS.mmm`` (UTC)."""
    whole = int(ts) if ts >= 0 else int(ts) - 1
    micros = round((ts - whole) * 1e6)  # datetime.fromtimestamp rounds to the microsecond
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_second(whole).replace('T', ' ')}.{micros // 1000:03d}"


def process_guid(boot_id: str, pid: int, start_ticks: int) -> str:
    """Stable process GUID (braced, upper case) from boot id, pid and start time.

    Sysmon for Linux derives its ProcessGuid from the machine id, start time and
    pid; we hash the same ingredients so a process keeps one GUID across every event of this boot.
    """
    digest = hashlib.sha1(f"{boot_id}:{pid}:{start_ticks}".encode()).digest()
    return "{" + str(uuid.UUID(bytes=digest[:16])).upper() + "}"


def make_event(
    *,
    channel: str,
    provider: str,
    provider_guid: str,
    event_id: int,
    data: dict[str, Any],
    computer: str,
    ts: float,
    pid: int = 0,
    tid: int = 0,
    task: int | None = None,
    task_name: str | None = None,
    level: int = 4,
    opcode: int = 0,
    keywords: int = 0x8000000000000000,
    activity_id: str = "",
    user_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one event ``{"Event": {"EventData", "System"}}`` in the WHIDS forwarded shape."""
    system = {
        "Channel": channel,
        "Computer": computer,
        "EventID": int(event_id),
        "Correlation": {"ActivityID": activity_id, "RelatedActivityID": ""},
        "Execution": {"ProcessID": int(pid), "ThreadID": int(tid)},
        "Keywords": {"Value": int(keywords), "Name": ""},
        "Level": {"Value": int(level), "Name": _LEVELS.get(level, "")},
        "Opcode": {"Value": int(opcode), "Name": "Info" if opcode == 0 else ""},
        "Task": {
            "Value": int(event_id if task is None else task),
            "Name": task_name if task_name is not None else SYSMON_TASKS.get(event_id, ""),
        },
        "Provider": {"Guid": provider_guid, "Name": provider},
        "TimeCreated": {"SystemTime": rfc3339_nano(ts)},
    }
    event: dict[str, Any] = {"EventData": {k: data[k] for k in sorted(data)}, "System": system}
    if user_data is not None:
        event["UserData"] = user_data
    return {"Event": event}
