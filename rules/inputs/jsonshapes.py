"""JSON event shapes: WHIDS/Gene, Winlogbeat/ECS, flattened (OTRF/Mordor, NXLog), journald.

Owns the mapping of each JSON shape to the golang-evtx rendering the rules were written for
(docs/reference/gene.md §12.2): `System` keys as strings, EventData values as strings, GUIDs
without braces
where golang-evtx writes GUID-typed values without them (`Provider/Guid`, `ActivityID`).
What a shape does not carry is left out rather than invented: Winlogbeat has no `Qualifiers`
(EventID stays a plain string), names unnamed `<Data>` `param1…paramN`, and gives `Task`,
`Opcode` and `Keywords` as display names; NXLog's `EventTime` is local time (used only when
there is no `@timestamp`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from xml.parsers import expat

from .winxml import parse_event, win_time

__all__ = ["classify", "from_ecs", "from_flat", "from_journald", "SHAPES"]

# shape names as reported in the scan summary
GENE, KUNAI, ECS, FLAT, JOURNALD, EVTX_DUMP, UNKNOWN = (
    "gene-json",
    "kunai-json",
    "winlogbeat-json",
    "flat-json",
    "sysmon-linux-journald",
    "evtx-dump-json",
    "unrecognised",
)
SHAPES = (GENE, KUNAI, ECS, FLAT, JOURNALD, EVTX_DUMP)
SKIPPED = "skipped-lines"  # text records that hold no event (not counted as events)

_LEVELS = {
    "critical": "1",
    "error": "2",
    "warning": "3",
    "information": "4",
    "info": "4",
    "verbose": "5",
}
_KEYWORDS = {
    "Audit Success": 0x8020000000000000,
    "Audit Failure": 0x8010000000000000,
    "Classic": 0x80000000000000,
}
_OPCODES = {"Info": "0", "Start": "1", "Stop": "2"}


def _s(value: Any) -> Any:
    """A leaf as golang-evtx writes it: strings, `"true"`/`"false"`, decimal integers."""
    cls = value.__class__
    if cls is str or value is None:
        return value
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return str(int(value)) if value.is_integer() else repr(value)
    if cls is dict:
        return {k: _s(v) for k, v in value.items()}
    if cls is list:
        return [_s(v) for v in value]
    return str(value)


def _guid(value: Any) -> str:
    text = str(value)
    if len(text) == 38 and text[0] == "{" and text[-1] == "}":
        return text[1:-1].upper()
    return text


_STAMP = re.compile(
    r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:[.,](\d+))?\s*"
    r"(Z|[+-]\d\d:?\d\d)?$"
)


def _time(value: Any) -> str | None:
    """A timestamp as golang-evtx writes `SystemTime` (UTC, 100-ns digits at most); times
    without a zone (NXLog `EventTime`, Splunk `_time`) are taken as UTC."""
    if value.__class__ is not str or not value:
        return None
    m = _STAMP.match(value.strip())
    if m is None:
        return value  # kept: rules.event.event_time gives None for what it cannot read
    date, clock, frac, zone = m.groups()
    base = f"{date}T{clock}"
    if zone and zone not in ("Z", "+00:00", "+0000", "-00:00"):
        try:
            when = datetime.fromisoformat(f"{base}{zone[:3]}:{zone[-2:]}")
        except ValueError:
            return value
        base = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return win_time(f"{base}.{frac}Z" if frac else f"{base}Z")


def _system(
    channel: Any, event_id: Any, computer: Any, when: str | None, provider: Any, guid: Any
) -> dict[str, Any]:
    system: dict[str, Any] = {}
    if guid:
        system["Provider"] = {"Guid": _guid(guid), "Name": _s(provider) or ""}
    elif provider:
        system[str(provider)] = ""  # classic provider, as golang-evtx renders it
    system["EventID"] = _s(event_id) if event_id is not None else "0"
    if when is not None:
        system["TimeCreated"] = {"SystemTime": when}
    system["Channel"] = _s(channel) if channel is not None else ""
    system["Computer"] = _s(computer) if computer is not None else ""
    return system


def _dict(value: Any) -> dict[str, Any]:
    return value if value.__class__ is dict else {}


def from_ecs(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Winlogbeat / Elastic Agent (`winlog.*`, ECS) → `{"Event": ...}`; None if not that shape."""
    w = obj.get("winlog")
    if w.__class__ is not dict:
        return None
    ecs_event = _dict(obj.get("event"))
    host = _dict(obj.get("host"))
    log = _dict(obj.get("log"))
    event_id = w.get("event_id", ecs_event.get("code"))
    system = _system(
        w.get("channel"),
        event_id,
        w.get("computer_name", host.get("name")),
        _time(obj.get("@timestamp")),
        w.get("provider_name", ecs_event.get("provider")),
        w.get("provider_guid"),
    )
    if "version" in w:
        system["Version"] = _s(w["version"])
    level = log.get("level")
    if level.__class__ is str and level.lower() in _LEVELS:
        system["Level"] = _LEVELS[level.lower()]
    if w.get("opcode") in _OPCODES:
        system["Opcode"] = _OPCODES[w["opcode"]]
    task = w.get("task")
    if task.__class__ is int or (task.__class__ is str and task.isdigit()):
        system["Task"] = str(task)
    keywords = w.get("keywords")
    if keywords.__class__ is list and keywords and all(k in _KEYWORDS for k in keywords):
        mask = 0
        for k in keywords:
            mask |= _KEYWORDS[k]
        system["Keywords"] = f"0x{mask:x}"
    if "record_id" in w:
        system["EventRecordID"] = _s(w["record_id"])
    correlation = {}
    if w.get("activity_id"):
        correlation["ActivityID"] = _guid(w["activity_id"])
    if w.get("related_activity_id"):
        correlation["RelatedActivityID"] = _guid(w["related_activity_id"])
    system["Correlation"] = correlation
    proc = w.get("process")
    if proc.__class__ is dict:
        thread = proc.get("thread")
        execution = {"ProcessID": _s(proc.get("pid", 0))}
        if thread.__class__ is dict and "id" in thread:
            execution["ThreadID"] = _s(thread["id"])
        system["Execution"] = execution
    user = w.get("user")
    ident = user.get("identifier") if user.__class__ is dict else None
    system["Security"] = {"UserID": ident} if ident else {}
    out: dict[str, Any] = {"System": system}
    data = w.get("event_data")
    if data.__class__ is dict:
        out["EventData"] = {k: _s(v) for k, v in data.items()}
    user_data = w.get("user_data")
    if user_data.__class__ is dict:
        inner = {k: _s(v) for k, v in user_data.items() if k != "xml_name"}
        out["UserData"] = {str(user_data.get("xml_name", "UserData")): inner}
    return {"Event": out}


# NXLog im_msvistalog fields (and what Logstash adds in OTRF/Mordor datasets): everything
# else on the top level is an EventData field.
_FLAT_META = frozenset(
    (
        "@timestamp",
        "@version",
        "EventTime",
        "EventReceivedTime",
        "Hostname",
        "host",
        "SourceName",
        "ProviderGuid",
        "EventID",
        "Channel",
        "RecordNumber",
        "ExecutionProcessID",
        "ExecutionThreadID",
        "UserID",
        "Keywords",
        "SeverityValue",
        "Severity",
        "Opcode",
        "OpcodeValue",
        "Task",
        "Version",
        "Domain",
        "AccountName",
        "AccountType",
        "Message",
        "Category",
        "SourceModuleName",
        "SourceModuleType",
        "tags",
        "port",
        "ActivityID",
        "RelatedActivityID",
        "ERROR_EVT_UNRESOLVED",
        "Level",
        "Computer",
        "ComputerName",
        "LogName",
        "EventCode",
        "EventId",
        "TimeCreated",
        "_time",
        "SourceType",
        "sourcetype",
        "source",
        "ProviderName",
        "EventRecordID",
    )
)
# NXLog's EventType; Sysmon registry events have an EventData EventType (`SetValue`)
_NXLOG_TYPES = frozenset(
    ("AUDIT_SUCCESS", "AUDIT_FAILURE", "INFO", "WARNING", "ERROR", "CRITICAL", "VERBOSE")
)
_ID_KEYS = ("EventID", "EventId", "EventCode")
_CHANNEL_KEYS = ("Channel", "LogName")
_HOST_KEYS = ("Hostname", "Computer", "ComputerName", "host")
_TIME_KEYS = ("@timestamp", "TimeCreated", "_time", "EventTime")


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = obj.get(key)
        if value is not None and value != "" and value.__class__ is not dict:
            return value
    return None


def is_flat(obj: dict[str, Any]) -> bool:
    return _first(obj, _ID_KEYS) is not None and (
        _first(obj, _CHANNEL_KEYS) is not None or "SourceName" in obj
    )


def from_flat(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Flattened events (NXLog, OTRF/Mordor, Splunk/CSV columns) → `{"Event": ...}`."""
    if not is_flat(obj):
        return None
    system = _system(
        _first(obj, _CHANNEL_KEYS),
        _first(obj, _ID_KEYS),
        _first(obj, _HOST_KEYS),
        _time(_first(obj, _TIME_KEYS)),
        obj.get("SourceName", obj.get("ProviderName")),
        obj.get("ProviderGuid"),
    )
    for src, dst in (
        ("Version", "Version"),
        ("Task", "Task"),
        ("OpcodeValue", "Opcode"),
        ("Level", "Level"),
    ):
        if obj.get(src) is not None and str(obj[src]).isdigit():
            system[dst] = str(obj[src])
    keywords = obj.get("Keywords")
    if keywords.__class__ is str and keywords.lstrip("-").isdigit():
        keywords = int(keywords)
    if keywords.__class__ is int:
        system["Keywords"] = f"0x{keywords & 0xFFFFFFFFFFFFFFFF:x}"
    record = obj.get("RecordNumber", obj.get("EventRecordID"))
    if record is not None:
        system["EventRecordID"] = _s(record)
    correlation = {}
    if obj.get("ActivityID"):
        correlation["ActivityID"] = _guid(obj["ActivityID"])
    system["Correlation"] = correlation
    meta = _FLAT_META
    if "ExecutionProcessID" in obj:
        system["Execution"] = {
            "ProcessID": _s(obj["ExecutionProcessID"]),
            "ThreadID": _s(obj.get("ExecutionThreadID", 0)),
        }
    elif "ProcessID" in obj and "ThreadID" in obj and "SourceModuleType" in obj:
        # NXLog before 4.x: the execution process and thread without the prefix
        system["Execution"] = {"ProcessID": _s(obj["ProcessID"]), "ThreadID": _s(obj["ThreadID"])}
        meta = meta | {"ProcessID", "ThreadID"}
    system["Security"] = {"UserID": _s(obj["UserID"])} if obj.get("UserID") else {}
    data = {k: _s(v) for k, v in obj.items() if k not in meta}
    if data.get("EventType") in _NXLOG_TYPES:
        del data["EventType"]
    return {"Event": {"System": system, "EventData": data}}


def from_journald(obj: dict[str, Any]) -> dict[str, Any] | None:
    """`journalctl -o json` record whose MESSAGE is a Sysmon for Linux event."""
    msg = obj.get("MESSAGE")
    if msg.__class__ is list:  # journald writes non-UTF-8 messages as byte arrays
        try:
            msg = bytes(msg).decode("utf-8")
        except (ValueError, TypeError):
            return None
    if msg.__class__ is not str:
        return None
    start = msg.find("<Event")
    if start < 0:
        return None
    return parse_event(msg[start:])


def _unwrap(obj: dict[str, Any]) -> dict[str, Any] | None:
    """`{"event": {"Event": ...}}` (the gene-oracle corpus and replay wrapper)."""
    inner = obj.get("event")
    if inner.__class__ is dict and inner.get("Event").__class__ is dict:
        return inner
    return None


def is_gene(obj: dict[str, Any]) -> bool:
    """A WHIDS/Gene event the winevt rules can see (`/Event/System/TimeCreated/SystemTime`)."""
    ev = obj.get("Event")
    if ev.__class__ is not dict:
        return False
    system = ev.get("System")
    created = system.get("TimeCreated") if system.__class__ is dict else None
    return created.__class__ is dict and "SystemTime" in created


def classify(obj: Any) -> tuple[str, Any]:
    """(shape, event in Heron's shape) of a decoded JSON value; unknown values pass through."""
    if obj.__class__ is not dict:
        return UNKNOWN, obj
    ev = obj.get("Event")
    if ev.__class__ is dict:
        if is_gene(obj):
            return GENE, obj
        if "#attributes" in ev or "#attributes" in (ev.get("System") or {}).get("TimeCreated", {}):
            from ..evtx import normalize_record  # `evtx_dump -o json`, python-evtx records

            return EVTX_DUMP, normalize_record(obj)
        return UNKNOWN, obj  # {"Event": …} without System/TimeCreated: winevt rules skip it
    source = obj.get("_source")
    if source.__class__ is dict:  # Elasticsearch/Kibana hits
        return classify(source)
    if obj.get("winlog").__class__ is dict:
        ev = from_ecs(obj)
        if ev is not None:
            return ECS, ev
    inner = _unwrap(obj)
    if inner is not None:
        return GENE, inner
    if obj.get("info").__class__ is dict and "data" in obj:
        return KUNAI, obj
    if "MESSAGE" in obj:
        try:
            ev = from_journald(obj)
        except (expat.ExpatError, IndexError, ValueError):  # counted as unrecognised
            ev = None
        if ev is not None:
            return JOURNALD, ev
        if "__REALTIME_TIMESTAMP" in obj or "_HOSTNAME" in obj:
            return SKIPPED, None  # another program's journal record
    if is_flat(obj):
        return FLAT, from_flat(obj)
    return UNKNOWN, obj
