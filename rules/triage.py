"""`heron scan` outputs for triage tools: CSV, a timeline, SARIF 2.1.0 and an ATT&CK layer.

Owns the per-event renderers added to `rules.scan.RENDERERS` and the finishing step of the
formats that need every hit first (`timeline` is sorted by time; `sarif` and `navigator` are one
JSON document): their renderer writes one compact JSON hit per line to a spool file, `finish`
turns the spool into the document. Only events with a signature are hits; `csv` follows the
printing rule of the other formats (filtered-only events have an empty `signatures`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import IO, Any

import orjson

from .engine import Detection
from .event import Event, go_string

__all__ = ["RENDERERS", "HEADERS", "SPOOLED", "finish", "key_fields"]

KEY_FIELDS = (
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "TargetImage",
    "SourceImage",
    "GrantedAccess",
    "ImageLoaded",
    "TargetFilename",
    "TargetObject",
    "Details",
    "QueryName",
    "DestinationIp",
    "DestinationPort",
    "DestinationHostname",
    "ServiceName",
    "ImagePath",
    "TargetUserName",
    "SubjectUserName",
    "IpAddress",
    "LogonType",
    "ScriptBlockText",
    "User",
    "exe",
    "comm",
    "proctitle",
    "key",
    "name",
    "Data",
)
MAX_FIELDS = 6
MAX_VALUE = 200
CSV_COLUMNS = (
    "time",
    "computer",
    "channel",
    "event_id",
    "record_id",
    "criticality",
    "signatures",
    "attack",
    "key_fields",
)


def key_fields(event: Any) -> list[tuple[str, str]]:
    """Up to `MAX_FIELDS` telling (name, value) pairs of the event, values shortened."""
    data = Event(event).get("/Event/EventData") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict):
            return []
    out = []
    for name in KEY_FIELDS:
        value = data.get(name)
        if value is None or value == "":
            continue
        text = go_string(value).replace("\r", " ").replace("\n", " ")
        out.append((name, text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"))
        if len(out) == MAX_FIELDS:
            break
    return out


def _common(event: Any, det: Detection | None) -> dict[str, Any]:
    ev = Event(event if isinstance(event, dict) else {})
    ts = ev.timestamp
    record = ev.get("/Event/System/EventRecordID")
    return {
        "time": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if ts else "",
        "computer": ev.computer,
        "channel": ev.channel,
        "event_id": ev.event_id,
        "record_id": go_string(record) if record is not None else "",
        "criticality": det.criticality if det is not None else 0,
        "signatures": list(det.signatures) if det is not None else [],
        "attack": sorted({a.get("ID", "") for a in det.attack if a.get("ID")})
        if det is not None
        else [],
        "tactics": sorted({a.get("Tactic", "") for a in det.attack if a.get("Tactic")})
        if det is not None
        else [],
    }


def render_csv(event: Any, det: Detection | None) -> bytes:
    row = _common(event, det)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [
            row["time"],
            row["computer"],
            row["channel"],
            row["event_id"],
            row["record_id"],
            row["criticality"],
            ";".join(row["signatures"]),
            ";".join(row["attack"]),
            "; ".join(f"{k}={v}" for k, v in key_fields(event)),
        ]
    )
    return buf.getvalue().encode("utf-8")


def render_hit(event: Any, det: Detection | None) -> bytes:
    """One spooled hit (timeline, sarif, navigator); events without a signature are dropped."""
    if det is None or not det.signatures:
        return b""
    row = _common(event, det)
    row["fields"] = key_fields(event)
    return orjson.dumps(row) + b"\n"


RENDERERS: dict[str, Callable[[Any, Detection | None], bytes]] = {
    "csv": render_csv,
    "timeline": render_hit,
    "sarif": render_hit,
    "navigator": render_hit,
}
HEADERS = {"csv": (",".join(CSV_COLUMNS) + "\n").encode()}
SPOOLED = frozenset(("timeline", "sarif", "navigator"))


def _hits(spool: IO[bytes]) -> list[dict[str, Any]]:
    spool.seek(0)
    return [orjson.loads(line) for line in spool if line.strip()]


def _timeline(hits: list[dict[str, Any]], out: IO[bytes]) -> None:
    out.write(b"time\tcomputer\tcriticality\trules\tattack\tchannel\tevent_id\tkey_fields\n")
    for h in sorted(hits, key=lambda h: h["time"]):
        fields = "; ".join(f"{k}={v}" for k, v in h["fields"]).replace("\t", " ")
        out.write(
            f"{h['time'] or '-'}\t{h['computer']}\t{h['criticality']}\t"
            f"{','.join(h['signatures'])}\t{','.join(h['attack']) or '-'}\t"
            f"{h['channel']}\t{h['event_id']}\t{fields}\n".encode()
        )


def _level(criticality: int) -> str:
    return "error" if criticality >= 8 else "warning" if criticality >= 5 else "note"


def _sarif(hits: list[dict[str, Any]], out: IO[bytes]) -> None:
    from .wire import HERON_VERSION

    rules: dict[str, dict[str, Any]] = {}
    results = []
    for h in hits:
        for name in h["signatures"]:
            rule = rules.setdefault(
                name,
                {
                    "id": name,
                    "name": name,
                    "shortDescription": {"text": name},
                    "properties": {"tags": []},
                },
            )
            tags = rule["properties"]["tags"]
            tags.extend(t for t in h["attack"] if t not in tags)
            fields = "; ".join(f"{k}={v}" for k, v in h["fields"])
            results.append(
                {
                    "ruleId": name,
                    "level": _level(h["criticality"]),
                    "message": {
                        "text": f"{name} on {h['computer'] or '?'} "
                        f"({h['channel']} {h['event_id']}): {fields}"
                    },
                    "locations": [
                        {"logicalLocations": [{"name": h["computer"] or "?", "kind": "host"}]}
                    ],
                    "properties": {
                        k: h[k]
                        for k in (
                            "time",
                            "channel",
                            "event_id",
                            "record_id",
                            "criticality",
                            "attack",
                        )
                    },
                }
            )
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "heron",
                        "version": HERON_VERSION,
                        "informationUri": "https://github.com/0xrawsec/gene",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
            }
        ],
    }
    out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def _navigator(hits: list[dict[str, Any]], out: IO[bytes]) -> None:
    scores: dict[str, int] = {}
    names: dict[str, set[str]] = {}
    for h in hits:
        for tid in h["attack"]:
            scores[tid] = scores.get(tid, 0) + 1
            names.setdefault(tid, set()).update(h["signatures"])
    top = max(scores.values(), default=1)
    doc = {
        "name": "Heron scan",
        "domain": "enterprise-attack",
        "versions": {"layer": "4.5", "navigator": "4.9.1", "attack": "14"},
        "description": f"{len(hits)} detections, {len(scores)} techniques",
        "sorting": 3,
        "hideDisabled": False,
        "gradient": {"colors": ["#fff7b3", "#ff6666"], "minValue": 0, "maxValue": top},
        "techniques": [
            {
                "techniqueID": tid,
                "score": n,
                "enabled": True,
                "comment": "rules: " + ", ".join(sorted(names[tid])),
            }
            for tid, n in sorted(scores.items())
        ],
    }
    out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def finish(fmt: str, spool: IO[bytes], out: IO[bytes]) -> None:
    """Write the document of a spooled format from its spooled hits."""
    {"timeline": _timeline, "sarif": _sarif, "navigator": _navigator}[fmt](_hits(spool), out)
