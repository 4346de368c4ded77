"""IR reports to MISP: one `edr-report` object per report in the day's event (misp.md §4).

An artifact directory (`manifest.json`, `event.json`, `report.json`, dumped files;
docs/interfaces.md) becomes a `MISPObject("edr-report", strict=True)` whose uuid, and every
attribute uuid, is a uuid5 of the report id, in the event of the report's UTC day whose uuid is
`uuid5(namespace, "edr-reports/<day>")`. The day event is probed with HEAD (once per push pass) and
created with `events/add`; objects go one per request with `objects/add/<day uuid>` (never
`events/edit`). A duplicate-uuid 403 means "already pushed", so retries and restarts are idempotent;
a ledger of pushed report ids avoids even the request. Memory dumps are never sent; other dumps are
zipped with the password "infected" (zipcrypto.py) unless disabled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymisp import MISPEvent, MISPObject
from pymisp.exceptions import PyMISPError

from rules.wire import ARTIFACT_EVENT, ARTIFACT_MANIFEST, ARTIFACT_REPORT

from .client import MispClient
from .errors import MispRejected, MispUnavailable
from .settings import MispSettings
from .state import ItemQueue, StateStore
from .zipcrypto import encrypted_zip

__all__ = ["PushResult", "ReportPusher", "build_report_object", "day_event_uuid"]

logger = logging.getLogger(__name__)

LEDGER_STATE = "reports-pushed"
PRODUCT = "Heron"
EXECUTABLE_SUFFIXES = (".exe", ".dll", ".sys", ".scr", ".com", ".cpl", ".ocx", ".drv", ".efi")
DUMP_KINDS = ("filedump", "regdump")  # never "memdump": memory holds credentials and user data
NOT_UNIQUE = "not unique"
ALREADY_EXISTS = "already exists"


def day_event_uuid(namespace: str, day: dt.date) -> str:
    """Deterministic uuid of the day's report event."""
    return str(uuid.uuid5(uuid.UUID(namespace), f"edr-reports/{day.isoformat()}"))


def _object_uuid(namespace: str, report_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.UUID(namespace), f"edr-report/{report_id}")


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one push pass did."""

    pushed: int = 0
    already: int = 0
    rejected: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class _Report:
    report_id: str
    time: dt.datetime
    obj: MISPObject


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _report_time(manifest: dict[str, Any], event: dict[str, Any], now: float) -> dt.datetime:
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
) -> _Report:
    """The edr-report object of one artifact directory.

    Raises MispRejected when it cannot be built (template not met).
    """
    artifact_dir = Path(artifact_dir)
    try:
        manifest = (
            _read_json(artifact_dir / ARTIFACT_MANIFEST)
            if (artifact_dir / ARTIFACT_MANIFEST).exists()
            else {}
        )
        event_path = artifact_dir / ARTIFACT_EVENT
        event_raw = event_path.read_bytes() if event_path.exists() else b""
        event = json.loads(event_raw) if event_raw else {}
        report_path = artifact_dir / ARTIFACT_REPORT
        report = _read_json(report_path) if report_path.exists() else {}
    except (OSError, ValueError) as ex:
        raise MispRejected(
            f"unreadable artifact directory: {ex}", operation=f"report {artifact_dir}"
        ) from ex
    report_id = str(manifest.get("event_hash") or "")
    endpoint_uuid = endpoint_uuid or str(manifest.get("endpoint", ""))
    hostname = hostname or str(manifest.get("hostname", ""))
    when = _report_time(manifest, event, now)
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
    return _Report(report_id=report_id, time=when, obj=obj)


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


class ReportPusher:
    """Queues artifact directories and pushes them as edr-report objects."""

    def __init__(
        self, client: MispClient, state: StateStore, queue: ItemQueue, clock: Callable[[], float]
    ) -> None:
        self.client = client
        self.state = state
        self.queue = queue
        self.clock = clock
        self._ledger: dict[str, dict[str, Any]] = state.load(LEDGER_STATE) or {}
        self._days: set[str] = set()  # day events known to exist, for one push pass only
        self.pushed_total = 0
        self.rejected_total = 0

    def pushed(self, report_id: str) -> bool:
        """Whether the report with this id is known to be in MISP."""
        return report_id in self._ledger

    def enqueue(self, endpoint_uuid: str, hostname: str, ip: str, artifact_dir: Path) -> bool:
        """Queue one report unless it was already pushed.

        Returns whether it was queued.
        """
        manifest_path = Path(artifact_dir) / ARTIFACT_MANIFEST
        try:
            report_id = str(_read_json(manifest_path).get("event_hash") or "")
        except (OSError, ValueError):
            report_id = ""
        if report_id and report_id in self._ledger:
            return False
        self.queue.put(
            {
                "endpoint": endpoint_uuid,
                "hostname": hostname,
                "ip": ip,
                "dir": str(artifact_dir),
                "queued": self.clock(),
            }
        )
        return True

    def push(self) -> PushResult:
        """Push every queued report.

        Raises MispUnavailable when MISP is down; the rest stays queued.
        """
        if not self.client.ready():
            # PERF(misp): building an object zips its files; don't do it just to fail fast.
            raise MispUnavailable(
                f"backing off (last error: {self.client.last_error})", operation="objects/add"
            )
        pushed = already = rejected = 0
        self._days.clear()
        for item_id, item in self.queue.items():
            try:
                report = build_report_object(
                    Path(item["dir"]),
                    endpoint_uuid=item["endpoint"],
                    hostname=item["hostname"],
                    ip=item.get("ip", ""),
                    settings=self.client.settings,
                    now=self.clock(),
                )
            except MispRejected as ex:
                logger.warning("MISP report %s rejected: %s", item["dir"], ex)
                self.queue.remove(item_id)
                rejected += 1
                continue
            if report.report_id in self._ledger:
                self.queue.remove(item_id)
                already += 1
                continue
            try:
                existed = self._push_one(report)
            except MispRejected as ex:
                logger.warning("MISP refused report %s: %s", report.report_id, ex)
                self.queue.remove(item_id)
                rejected += 1
                continue
            self._ledger[report.report_id] = {
                "object": str(report.obj.uuid),
                "day": report.time.date().isoformat(),
                "pushed": self.clock(),
            }
            self.state.save(LEDGER_STATE, self._ledger)
            self.queue.remove(item_id)
            if existed:
                already += 1
            else:
                pushed += 1
        self.pushed_total += pushed
        self.rejected_total += rejected
        return PushResult(
            pushed=pushed, already=already, rejected=rejected, pending=len(self.queue)
        )

    def _push_one(self, report: _Report) -> bool:
        """Send one object; True when MISP already had it (duplicate uuid)."""
        s = self.client.settings
        day = report.time.astimezone(dt.UTC).date()
        event_uuid = day_event_uuid(s.namespace, day)
        self._ensure_day(day, event_uuid)
        try:
            self.client.call("objects/add", lambda api: api.add_object(event_uuid, report.obj))
            existed = False
        except MispRejected as ex:
            if ex.status == 403 and NOT_UNIQUE in str(ex.body):
                existed = True
            elif ex.status == 404:
                self._forget_day(day)  # the day event vanished (deleted in MISP): recreate it
                raise MispUnavailable(
                    f"day event {event_uuid} missing: {ex}", operation="objects/add"
                ) from ex
            else:
                raise
        if s.report_publish and not existed:
            self.client.call("events/publish", lambda api: api.publish(event_uuid))
        return existed

    def _ensure_day(self, day: dt.date, event_uuid: str) -> None:
        if day.isoformat() in self._days:
            return
        if not self.client.call("events/view (HEAD)", lambda api: api.event_exists(event_uuid)):
            s = self.client.settings
            ev = MISPEvent()
            ev.uuid = event_uuid
            ev.info = f"EDR detection reports collected on {day.isoformat()}"
            ev.date = day
            ev.distribution = s.report_distribution
            ev.threat_level_id = 4
            ev.analysis = 0
            for tag in s.report_tags:
                ev.add_tag(tag)
            try:
                self.client.call("events/add", lambda api: api.add_event(ev))
            except MispRejected as ex:
                if not (ex.status == 404 and ALREADY_EXISTS in str(ex.body)):
                    raise
        self._days.add(day.isoformat())

    def _forget_day(self, day: dt.date) -> None:
        self._days.discard(day.isoformat())
