"""ETW records → WHIDS events (pure): ``render_etw`` and the Kernel-File correlation filter.

Unit-tested with recorded pywintrace ``(event_id, dict)`` callbacks on any platform.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from agent.render import make_event

from .providers import PROVIDERS

__all__ = [
    "DESCRIPTION_FIELD",
    "TASK_FIELD",
    "KernelFileFilter",
    "filetime_to_epoch",
    "render_etw",
]

_FILETIME_EPOCH = 116444736000000000  # 1601-01-01 → 1970-01-01 in 100 ns units
DESCRIPTION_FIELD = "\x00Description"  # the event's own Description property (package doc)
TASK_FIELD = "\x00TaskName"  # the task name as the manifest spells it
_BY_GUID = {p.guid.upper(): p for p in PROVIDERS.values()}
_META_KEYS = frozenset(
    {
        "EventHeader",
        "Task Name",
        "Description",
        "UserData",
        "EventExtendedData",
        TASK_FIELD,
        DESCRIPTION_FIELD,
    }
)


def filetime_to_epoch(filetime: int) -> float:
    """Windows FILETIME (100 ns since 1601, UTC) → seconds since the Unix epoch."""
    return (int(filetime) - _FILETIME_EPOCH) / 1e7


def _value(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, bytes | bytearray):
        return v.hex().upper()
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    if v is None:
        return None
    return str(v)


def _norm_guid(g: str) -> str:
    g = str(g).strip().upper()
    return g if g.startswith("{") else "{" + g + "}"


def render_etw(event_id: int, record: dict[str, Any], *, computer: str) -> dict[str, Any]:
    """Render one pywintrace callback ``(event_id, record)`` as a WHIDS event."""
    header = record.get("EventHeader", {})
    desc = header.get("EventDescriptor", {})
    guid = _norm_guid(header.get("ProviderId", ""))
    provider = _BY_GUID.get(guid)
    name = provider.name if provider else record.get("Task Name", "") or guid
    channel = provider.channel if provider else f"{name}/Operational"
    data = {k: _value(v) for k, v in record.items() if k not in _META_KEYS}
    if DESCRIPTION_FIELD in record:
        data["Description"] = _value(record[DESCRIPTION_FIELD])
    task_name = str(record.get(TASK_FIELD) or record.get("Task Name", ""))
    return make_event(
        channel=channel,
        provider=name,
        provider_guid=guid,
        event_id=int(desc.get("Id", event_id)),
        data=data,
        computer=computer,
        ts=filetime_to_epoch(header.get("TimeStamp", _FILETIME_EPOCH)),
        pid=int(header.get("ProcessId", 0)),
        tid=int(header.get("ThreadId", 0)),
        task=int(desc.get("Task", 0)),
        task_name=task_name,
        level=int(desc.get("Level", 4)),
        opcode=int(desc.get("Opcode", 0)),
        keywords=int(desc.get("Keyword", 0)),
        activity_id=str(header.get("ActivityId", "")).strip("{}").upper()
        if header.get("ActivityId") not in (None, "{00000000-0000-0000-0000-000000000000}")
        else "",
    )


class KernelFileFilter:
    """WHIDS Kernel-File correlation: FileObject of create (12) → name; close (14) forgets it.

    Read (15) and write (16) pass only for the first occurrence per FileObject, with
    ``TargetFilename`` set to the name seen at create. Memory is bounded (LRU of open objects).
    """

    CREATE, CLOSE, READ, WRITE = 12, 14, 15, 16

    def __init__(self, max_open: int = 65536) -> None:
        self.max_open = max_open
        self._open: OrderedDict[str, tuple[str, set[int]]] = OrderedDict()

    def accept(self, event: dict[str, Any]) -> bool:
        ev = event["Event"]
        eid = int(ev["System"]["EventID"])
        data = ev["EventData"]
        fobj = str(data.get("FileObject", ""))
        if eid == self.CREATE:
            self._open[fobj] = (str(data.get("FileName", "")), set())
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
            return False
        if eid == self.CLOSE:
            self._open.pop(fobj, None)
            return False
        if eid in (self.READ, self.WRITE):
            entry = self._open.get(fobj)
            if entry is None or eid in entry[1]:
                return False
            entry[1].add(eid)
            data["TargetFilename"] = entry[0]
            data.setdefault("FileName", entry[0])
            return True
        return True
