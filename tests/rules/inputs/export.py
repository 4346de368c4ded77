"""Test-side exporters: Heron's EVTX rendering of an event written as Windows XML or Winlogbeat.

They write what `wevtutil qe /f:xml` and Winlogbeat 8 write for the same record, as far as the
rendering holds it: hex values unpadded (`0x3e7`), 9-digit `SystemTime` fractions, braced
lower-case GUIDs in Winlogbeat, unnamed `<Data>` as `param1…`, display names for level/opcode.
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import orjson

SYSTEM_ORDER = (
    "Provider",
    "EventID",
    "Version",
    "Level",
    "Task",
    "Opcode",
    "Keywords",
    "TimeCreated",
    "EventRecordID",
    "Correlation",
    "Execution",
    "Channel",
    "Computer",
    "Security",
)
_PADDED_HEX = re.compile(r"^0x0+([0-9a-f]+)$")
_TIME = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")
NS = "http://schemas.microsoft.com/win/2004/08/events/event"


def _esc(value: str) -> str:
    """Text content; CR as a character reference, as conforming writers keep it."""
    return escape(value).replace("\r", "&#13;")


def windows_text(value: str) -> str:
    """golang-evtx's zero-padded hex (`0x000003e7`) as Windows writes it (`0x3e7`)."""
    m = _PADDED_HEX.match(value)
    return f"0x{m.group(1)}" if m else value


def windows_time(value: str) -> str:
    m = _TIME.match(value)
    if not m:
        return value
    return f"{m.group(1)}.{(m.group(2) or '').ljust(9, '0')}Z"


def _attrs(d: dict[str, Any]) -> str:
    return "".join(f" {k}={quoteattr(str(v))}" for k, v in d.items())


def _generic(tag: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_generic(tag, v) for v in value)
    if isinstance(value, dict):
        attrs = {k: v for k, v in value.items() if k.startswith("xmlns")}
        body = "".join(_generic(k, v) for k, v in value.items() if k not in attrs)
        return f"<{tag}{_attrs(attrs)}>{body}</{tag}>" if body else f"<{tag}{_attrs(attrs)}/>"
    if value is None:
        return f"<{tag}/>"
    return f"<{tag}>{_esc(windows_text(str(value)))}</{tag}>"


def _system(system: dict[str, Any]) -> str:
    out = []
    keys = [k for k in SYSTEM_ORDER if k in system]
    classic = [k for k in system if k not in SYSTEM_ORDER and system[k] == ""]
    for key in classic:
        out.append(f"<Provider Name={quoteattr(key)}/>")
    for key in keys:
        value = system[key]
        if key == "EventID" and isinstance(value, dict):
            out.append(
                f"<EventID Qualifiers={quoteattr(value['Qualifiers'])}>"
                f"{escape(value['Value'])}</EventID>"
            )
        elif key == "TimeCreated":
            out.append(f"<TimeCreated SystemTime={quoteattr(windows_time(value['SystemTime']))}/>")
        elif isinstance(value, dict):
            out.append(f"<{key}{_attrs(value)}/>")
        else:
            out.append(f"<{key}>{_esc(value)}</{key}>")
    return "<System>" + "".join(out) + "</System>"


def _event_data(data: dict[str, Any]) -> str:
    out: list[str] = []
    for key, value in data.items():
        if key == "Data" and isinstance(value, list):
            out.extend(f"<Data>{_esc(windows_text(v))}</Data>" for v in value)
        elif key == "Binary":
            out.append(f"<Binary>{_esc(value)}</Binary>" if value else "<Binary></Binary>")
        else:
            out.append(f"<Data Name={quoteattr(key)}>{_esc(windows_text(str(value)))}</Data>")
    return "<EventData>" + "".join(out) + "</EventData>" if out else "<EventData/>"


def to_xml(event: dict[str, Any]) -> str:
    """One event as `wevtutil qe /f:xml` prints it (no declaration, no line break)."""
    ev = event["Event"]
    parts = [f"<Event xmlns='{NS}'>", _system(ev["System"])]
    for key, value in ev.items():
        if key == "System":
            continue
        parts.append(_event_data(value) if key == "EventData" else _generic(key, value))
    parts.append("</Event>")
    return "".join(parts)


_LEVEL_NAMES = {
    "0": "information",
    "1": "critical",
    "2": "error",
    "3": "warning",
    "4": "information",
    "5": "verbose",
}


def _guid(value: str) -> str:
    return value.lower() if value.startswith("{") else "{" + value.lower() + "}"


def to_winlogbeat(event: dict[str, Any]) -> bytes:
    """One event as Winlogbeat 8 (`winlog.*`, ECS) ships it, one JSON line."""
    ev = event["Event"]
    system = ev["System"]
    eid = system["EventID"]
    eid = eid["Value"] if isinstance(eid, dict) else eid  # Winlogbeat has no Qualifiers
    provider = system.get("Provider") or {}
    name = provider.get("Name") or next(
        (k for k in system if k not in SYSTEM_ORDER and system[k] == ""), ""
    )
    ts = system["TimeCreated"]["SystemTime"]
    m = _TIME.match(ts)
    stamp = f"{m.group(1)}.{(m.group(2) or '')[:3].ljust(3, '0')}Z" if m else ts
    winlog: dict[str, Any] = {
        "api": "wineventlog",
        "channel": system["Channel"],
        "computer_name": system["Computer"],
        "event_id": eid,
        "provider_name": name,
        "record_id": system["EventRecordID"],
    }
    if provider.get("Guid"):
        winlog["provider_guid"] = _guid(provider["Guid"])
    if "Version" in system:
        winlog["version"] = int(system["Version"])
    if system.get("Opcode") == "0":
        winlog["opcode"] = "Info"
    execution = system.get("Execution") or {}
    if execution:
        winlog["process"] = {
            "pid": int(execution["ProcessID"]),
            "thread": {"id": int(execution["ThreadID"])},
        }
    user = (system.get("Security") or {}).get("UserID")
    if user:
        winlog["user"] = {"identifier": user}
    activity = (system.get("Correlation") or {}).get("ActivityID")
    if activity:
        winlog["activity_id"] = _guid(activity)
    data = ev.get("EventData")
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "Data" and isinstance(value, list):
                out.update((f"param{i}", windows_text(v)) for i, v in enumerate(value, 1))
            elif value is not None:
                out[key] = windows_text(str(value))
        winlog["event_data"] = out
    user_data = ev.get("UserData")
    if isinstance(user_data, dict) and len(user_data) == 1:
        ((root, inner),) = user_data.items()
        winlog["user_data"] = {"xml_name": root, **{k: v for k, v in inner.items()}}
    doc = {
        "@timestamp": stamp,
        "agent": {"type": "winlogbeat", "version": "8.11.0"},
        "ecs": {"version": "8.0.0"},
        "event": {"code": eid, "kind": "event", "provider": name},
        "host": {"name": system["Computer"]},
        "log": {"level": _LEVEL_NAMES.get(system.get("Level", "4"), "information")},
        "winlog": winlog,
        "message": "",
    }
    return orjson.dumps(doc)
