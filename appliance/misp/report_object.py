"""The `edr-report` object of one artifact directory (docs/reference/misp.md §4.1).

An artifact directory (`manifest.json`, `event.json`, `report.json`, dumped files;
docs/interfaces.md) becomes a `MISPObject("edr-report", strict=True)` whose uuid, and every
attribute uuid, is a uuid5 of the report id. Memory dumps are never sent; other dumps are zipped
with the password "infected" (zipcrypto.py) unless disabled; files over the size budgets are
replaced by a note with their size and sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymisp import MISPObject
from pymisp.exceptions import PyMISPError

from rules.wire import ARTIFACT_EVENT, ARTIFACT_MANIFEST, ARTIFACT_REPORT

from .errors import MispRejected
from .settings import MispSettings
from .zipcrypto import encrypted_zip

__all__ = ["Report", "build_report_object", "read_json", "report_time"]

logger = logging.getLogger(__name__)

PRODUCT = "Heron"
EXECUTABLE_SUFFIXES = (".exe", ".dll", ".sys", ".scr", ".com", ".cpl", ".ocx", ".drv", ".efi")
DUMP_KINDS = ("filedump", "regdump")  # never "memdump": memory holds credentials and user data


def _object_uuid(namespace: str, report_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.UUID(namespace), f"edr-report/{report_id}")


@dataclass(frozen=True, slots=True)
class Report:
    report_id: str
    time: dt.datetime
    obj: MISPObject


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def report_time(manifest: dict[str, Any], event: dict[str, Any], now: float) -> dt.datetime:
    root = event.get("Event") if isinstance(event, dict) else None
    system = root.get("System") if isinstance(root, dict) else None
    created = system.get("TimeCreated") if isinstance(system, dict) else None
    system_time = created.get("SystemTime") if isinstance(created, dict) else None
    for text in (manifest.get("time"), system_time):
        if isinstance(text, str) and text:
            try:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(now, dt.UTC)


def _signatures(manifest: dict[str, Any], event: dict[str, Any]) -> list[str]:
    rule = manifest.get("rule")
    if isinstance(rule, list) and rule:
        return [str(r) for r in rule]
    detection = (event.get("Event", {}) if isinstance(event, dict) else {}).get("Detection") or {}
    return [str(s) for s in detection.get("Signature", [])]


class _Attachments:
    """Adds attachment attributes within the per-file and per-object budgets."""

    def __init__(self, obj: MISPObject, settings: MispSettings, ns: uuid.UUID) -> None:
        self.obj, self.settings, self.ns = obj, settings, ns
        self.total = 0
        self.skipped: list[str] = []
        self.count: dict[str, int] = {}

    def attr_uuid(self, relation: str) -> str:
        n = self.count.get(relation, 0)
        self.count[relation] = n + 1
        return str(uuid.uuid5(self.ns, f"{relation}/{n}"))

    def add(
        self, relation: str, name: str, raw: bytes, *, comment: str = "", zipped: bool = False
    ) -> None:
        s = self.settings
        digest = hashlib.sha256(raw).hexdigest()
        if len(raw) > s.report_max_file_size or self.total + len(raw) > s.report_max_object_size:
            self.skipped.append(f"{name} skipped ({len(raw)} bytes, sha256 {digest})")
            logger.warning("MISP report: %s too large (%d bytes), skipped", name, len(raw))
            return
        self.total += len(raw)
        value = name
        if zipped:
            raw, value = encrypted_zip([(name, raw)]), f"{name}.zip"
            comment = (
                comment + " " if comment else ""
            ) + f"zip password: infected; sha256 {digest}"
        self.obj.add_attribute(
            relation,
            value,
            data=io.BytesIO(raw),
            comment=comment,
            uuid=self.attr_uuid(relation),
            to_ids=False,
        )


def build_report_object(
    artifact_dir: Path,
    *,
    endpoint_uuid: str,
    hostname: str,
    ip: str,
    settings: MispSettings,
    now: float,
) -> Report:
    """The edr-report object of one artifact directory.

    Raises MispRejected when it cannot be built (template not met).
    """
    artifact_dir = Path(artifact_dir)
    try:
        manifest = (
            read_json(artifact_dir / ARTIFACT_MANIFEST)
            if (artifact_dir / ARTIFACT_MANIFEST).exists()
            else {}
        )
        event_path = artifact_dir / ARTIFACT_EVENT
        event_raw = event_path.read_bytes() if event_path.exists() else b""
        event = json.loads(event_raw) if event_raw else {}
        report_path = artifact_dir / ARTIFACT_REPORT
        report = read_json(report_path) if report_path.exists() else {}
    except (OSError, ValueError) as ex:
        raise MispRejected(
            f"unreadable artifact directory: {ex}", operation=f"report {artifact_dir}"
        ) from ex
    report_id = str(manifest.get("event_hash") or "")
    endpoint_uuid = endpoint_uuid or str(manifest.get("endpoint", ""))
    hostname = hostname or str(manifest.get("hostname", ""))
    when = report_time(manifest, event, now)
    ns = _object_uuid(settings.namespace, report_id or str(artifact_dir))
    try:
        obj = MISPObject("edr-report", standalone=False, strict=True)
        obj.uuid = str(ns)
        obj.first_seen = when
        att = _Attachments(obj, settings, ns)
        for relation, value in (
            ("id", report_id),
            ("endpoint-id", endpoint_uuid),
            ("hostname", hostname),
            ("ip", ip),
            ("product", PRODUCT),
        ):
            if value:
                obj.add_attribute(relation, value, uuid=att.attr_uuid(relation), to_ids=False)
        if event_raw:
            att.add("event", ARTIFACT_EVENT, event_raw)
        _add_report_parts(att, report if isinstance(report, dict) else {})
        _add_dumps(att, artifact_dir, manifest)
        sigs = _signatures(manifest, event)
        comment = f"Event triggering {', '.join(sigs) or 'a detection'} caught on endpoint"
        if att.skipped:
            comment += "; " + "; ".join(att.skipped)
        obj.add_attribute("comment", comment, uuid=att.attr_uuid("comment"), to_ids=False)
        obj.to_json()  # strict: raises InvalidMISPObject when the template is not met
    except PyMISPError as ex:
        raise MispRejected(
            f"invalid edr-report object: {ex}", operation=f"report {artifact_dir}"
        ) from ex
    if not report_id:
        report_id = str(ns)
    return Report(report_id=report_id, time=when, obj=obj)


def _add_report_parts(att: _Attachments, report: dict[str, Any]) -> None:
    for relation in ("processes", "modules", "drivers"):
        if relation in report:
            att.add(
                relation,
                f"{relation}.json",
                json.dumps(report[relation], indent=2, sort_keys=True).encode("utf-8"),
            )
    for i, command in enumerate(report.get("commands") or []):
        if not isinstance(command, dict):
            continue
        name = str(command.get("name") or f"command-{i}")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)
        args = command.get("args") or []
        description = " ".join([name, *(str(a) for a in args)]) if isinstance(args, list) else name
        att.add(
            "command",
            f"{i:02d}-{safe}.json",
            json.dumps(command, indent=2, sort_keys=True).encode("utf-8"),
            comment=description,
        )


def _add_dumps(att: _Attachments, artifact_dir: Path, manifest: dict[str, Any]) -> None:
    for entry in manifest.get("files") or []:
        if not isinstance(entry, dict) or entry.get("kind") not in DUMP_KINDS:
            continue
        name = Path(str(entry.get("name", ""))).name
        path = artifact_dir / name
        if not name or not path.is_file():
            continue
        raw = path.read_bytes()
        executable = name.lower().endswith(EXECUTABLE_SUFFIXES) or raw[:2] == b"MZ"
        att.add(
            "executable" if executable else "additional-file",
            name,
            raw,
            zipped=att.settings.report_zip_files,
        )
