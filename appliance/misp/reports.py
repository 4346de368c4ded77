"""IR reports to MISP: one `edr-report` object per report in the day's event
(docs/reference/misp.md §4).

The object is built by report_object.py. It goes into the event of the report's UTC day, whose uuid
is `uuid5(namespace, "edr-reports/<day>")` (`.../<day>/<n>` once MISP blocklisted a deleted day
event). The day event is probed with HEAD (once per push pass) and created with `events/add`;
objects go one per request with `objects/add/<day uuid>` (never `events/edit`). A duplicate-uuid 403
means "already pushed", so retries and restarts are idempotent; a ledger of pushed report ids avoids
even the request. A pass pushes one bounded slice within the hourly budget; item errors count
against the item and end in the dead-letter list, never stopping the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymisp import MISPEvent, MISPObject

from rules.wire import ARTIFACT_EVENT, ARTIFACT_MANIFEST

from .client import MispClient
from .deadletters import DeadLetters
from .errors import MispRejected, MispServerError, MispUnavailable
from .report_object import Report, build_report_object, read_json, report_time
from .state import ItemQueue, StateStore

__all__ = ["PushResult", "ReportPusher", "build_report_object", "day_event_uuid"]

logger = logging.getLogger(__name__)

LEDGER_STATE = "reports-pushed"
DAYS_STATE = "report-days"  # {day: generation of its event uuid}
META_STATE = "reports-meta"  # {"enabled_at": …, "recent": [push times within the last hour]}
ATTEMPTS_STATE = "reports-attempts"
REPORT_SLICE = 10  # reports per push pass: a pass is short, whatever the queue holds
MAX_GENERATIONS_PER_PUSH = 3
BLOCKLISTED = "blocklist"
NOT_UNIQUE = "not unique"
ALREADY_EXISTS = "already exists"


def day_event_uuid(namespace: str, day: dt.date, generation: int = 0) -> str:
    """Deterministic uuid of the day's report event.

    `generation` > 0 names a replacement event, used once MISP blocklisted the uuid of a deleted
    day event (generation 0 keeps the uuids of earlier versions).
    """
    name = f"edr-reports/{day.isoformat()}" + (f"/{generation}" if generation else "")
    return str(uuid.uuid5(uuid.UUID(namespace), name))


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one push pass did."""

    pushed: int = 0
    already: int = 0
    rejected: int = 0
    pending: int = 0
    dead: int = 0
    retried: int = 0
    throttled: bool = False


class _DayBlocked(Exception):
    """MISP refuses the day event's uuid: its event was deleted and the uuid blocklisted."""


class ReportPusher:
    """Queues artifact directories and pushes them, in slices, as edr-report objects."""

    def __init__(
        self,
        client: MispClient,
        state: StateStore,
        queue: ItemQueue,
        clock: Callable[[], float],
        dead: DeadLetters,
    ) -> None:
        self.client = client
        self.state = state
        self.queue = queue
        self.clock = clock
        self.dead = dead
        self._lock = threading.Lock()  # queue membership and ledger; never held over the network
        self.reload()
        self._before_since: set[str] = set()
        self._days: set[str] = set()  # day events known to exist, for one push pass only
        self.pushed_total = 0
        self.rejected_total = 0
        self.notes: dict[str, str] = {}  # what was skipped and why (publish, tags, blocklist)

    def reload(self) -> None:
        """Read the ledger, day generations, pacing, attempts and queue membership again.

        Cluster mode: another front-end led the push until now (or queued reports).
        """
        with self._lock:
            self._ledger: dict[str, dict[str, Any]] = self.state.load(LEDGER_STATE) or {}
            self._generations: dict[str, int] = self.state.load(DAYS_STATE) or {}
            self._meta: dict[str, Any] = self.state.load(META_STATE) or {}
            self._attempts: dict[str, int] = self.state.load(ATTEMPTS_STATE) or {}
            self._queued = {str(item.get("dir")) for _, item in self.queue.items()}

    # --- backfill ---------------------------------------------------------------------------------

    def mark_enabled(self) -> None:
        """Remember when reports were first enabled: the default start of the backfill."""
        with self._lock:
            if "enabled_at" not in self._meta:
                self._meta["enabled_at"] = self.clock()
                self.state.save(META_STATE, self._meta)

    def since(self) -> float:
        """Reports detected before this time are not pushed (`report_since` or enable time)."""
        s = self.client.settings
        if s.report_since:
            day = dt.date.fromisoformat(s.report_since)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
        return float(self._meta.get("enabled_at", 0.0))

    def _recent(self) -> list[float]:
        hour_ago = self.clock() - 3600
        return [t for t in self._meta.get("recent", []) if t > hour_ago]

    def budget(self) -> int:
        """Reports that may still be pushed this hour (`report_max_per_hour`)."""
        return max(self.client.settings.report_max_per_hour - len(self._recent()), 0)

    def backfill(self) -> dict[str, Any]:
        return {
            "since": self.since() or None,
            "skipped_before_since": len(self._before_since),
            "pushed_last_hour": len(self._recent()),
            "max_per_hour": self.client.settings.report_max_per_hour,
            "remaining": len(self.queue),
        }

    # --- queue ------------------------------------------------------------------------------------

    def pushed(self, report_id: str) -> bool:
        """Whether the report with this id is known to be in MISP."""
        return report_id in self._ledger

    def skipped(self, directory: Path) -> bool:
        """Whether the directory was found older than the backfill start (not read again)."""
        return str(directory) in self._before_since

    def reconsider(self) -> None:
        """The backfill start may have moved: look at skipped directories again."""
        with self._lock:
            self._before_since.clear()

    def enqueue(self, endpoint_uuid: str, hostname: str, ip: str, artifact_dir: Path) -> bool:
        """Queue one report unless it was pushed, is queued, or predates the backfill start.

        Returns whether it was queued. Atomic with the push's ledger update, so two scans racing
        a push cannot queue one report twice.
        """
        directory = str(artifact_dir)
        manifest_path = Path(artifact_dir) / ARTIFACT_MANIFEST
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError):
            manifest = {}
        if not isinstance(manifest, dict):
            manifest = {}
        report_id = str(manifest.get("event_hash") or "")
        event: dict[str, Any] = {}
        if not manifest.get("time"):
            try:
                event = read_json(Path(artifact_dir) / ARTIFACT_EVENT)
            except (OSError, ValueError):
                event = {}
        when = report_time(manifest, event, self.clock()).timestamp()
        with self._lock:
            if (report_id and report_id in self._ledger) or directory in self._queued:
                return False
            if when < self.since():
                self._before_since.add(directory)
                return False
            self._queued.add(directory)
            self.queue.put(
                {
                    "endpoint": endpoint_uuid,
                    "hostname": hostname,
                    "ip": ip,
                    "dir": directory,
                    "queued": self.clock(),
                }
            )
        return True

    def _settle(self, item_id: str, item: dict[str, Any]) -> None:
        with self._lock:
            self.queue.remove(item_id)
            self._queued.discard(str(item.get("dir")))
            if self._attempts.pop(item_id, None) is not None:
                self.state.save(ATTEMPTS_STATE, self._attempts)

    def _bury(self, item_id: str, item: dict[str, Any], error: str) -> None:
        attempts = self._attempts.get(item_id, 0) + 1
        self.dead.add("reports", item, error, attempts)
        self._settle(item_id, item)

    def requeue(self, item: dict[str, Any]) -> bool:
        """Put a dead-lettered report back in the queue (an operator fixed the cause)."""
        with self._lock:
            directory = str(item.get("dir"))
            if directory in self._queued:
                return False
            self._queued.add(directory)
            self.queue.put({**item, "queued": self.clock()})
        return True

    # --- push -------------------------------------------------------------------------------------

    def push(self, max_items: int = REPORT_SLICE) -> PushResult:
        """Push at most `max_items` queued reports (and no more than the hourly budget).

        Item errors go to the item (attempts, then the dead-letter list), never to the stream.
        Raises MispUnavailable when MISP is down or backing off; the rest stays queued.
        """
        if not self.client.ready():
            # Performance: building an object zips its files; don't do it just to fail fast.
            raise MispUnavailable(
                f"backing off (last error: {self.client.last_error})", operation="objects/add"
            )
        limit = min(max_items, self.budget())
        if limit <= 0:
            return PushResult(pending=len(self.queue), throttled=bool(len(self.queue)))
        pushed = already = rejected = dead = retried = 0
        self._days.clear()
        for n, (item_id, item) in enumerate(self.queue.items()):
            if n >= limit:
                break
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
                self._bury(item_id, item, str(ex))
                rejected += 1
                dead += 1
                continue
            if report.report_id in self._ledger:
                self._settle(item_id, item)
                already += 1
                continue
            try:
                existed = self._push_one(report)
            except MispRejected as ex:
                self._bury(item_id, item, str(ex))
                rejected += 1
                dead += 1
                continue
            except MispServerError as ex:
                attempts = self._bump(item_id)
                if attempts >= self.client.settings.report_max_attempts:
                    self._bury(item_id, item, f"{ex} ({attempts} attempts)")
                    dead += 1
                else:
                    retried += 1
                if not self.client.ready():
                    break  # several 5xx in a row: MISP itself is failing, the client backs off
                continue
            self._record(report)
            self._settle(item_id, item)
            if existed:
                already += 1
            else:
                pushed += 1
        self.pushed_total += pushed
        self.rejected_total += rejected
        return PushResult(
            pushed=pushed,
            already=already,
            rejected=rejected,
            pending=len(self.queue),
            dead=dead,
            retried=retried,
        )

    def _bump(self, item_id: str) -> int:
        with self._lock:
            self._attempts[item_id] = self._attempts.get(item_id, 0) + 1
            self.state.save(ATTEMPTS_STATE, self._attempts)
            return self._attempts[item_id]

    def _record(self, report: Report) -> None:
        now = self.clock()
        with self._lock:
            self._ledger[report.report_id] = {
                "object": str(report.obj.uuid),
                "day": report.time.date().isoformat(),
                "pushed": now,
            }
            self.state.save(LEDGER_STATE, self._ledger)
            self._meta["recent"] = [*self._recent(), now]
            self.state.save(META_STATE, self._meta)

    def day_uuid(self, day: dt.date) -> str:
        """The uuid of the day's event, at its current generation."""
        gen = self._generations.get(day.isoformat(), 0)
        return day_event_uuid(self.client.settings.namespace, day, gen)

    def generations(self) -> dict[str, int]:
        """Days whose event uuid moved on after a blocklisted deletion."""
        return dict(self._generations)

    def _push_one(self, report: Report) -> bool:
        """Send one object; True when MISP already had it (duplicate uuid)."""
        day = report.time.astimezone(dt.UTC).date()
        for _ in range(MAX_GENERATIONS_PER_PUSH):
            event_uuid = self.day_uuid(day)
            try:
                self._ensure_day(day, event_uuid)
            except _DayBlocked:
                self._next_generation(day, event_uuid)
                continue
            try:
                self.client.call("objects/add", _add_object(event_uuid, report.obj))
                existed = False
            except MispRejected as ex:
                if ex.status == 403 and NOT_UNIQUE in str(ex.body):
                    existed = True
                elif ex.status == 404:
                    self._days.discard(day.isoformat())  # the day event was deleted: again
                    continue
                else:
                    raise
            if not existed:
                self._publish(event_uuid)
            return existed
        raise MispServerError(f"the day event of {day} keeps disappearing", operation="objects/add")

    def _next_generation(self, day: dt.date, blocked_uuid: str) -> None:
        key = day.isoformat()
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            self.state.save(DAYS_STATE, self._generations)
        self.notes["blocklist"] = (
            f"day event {blocked_uuid} of {key} is blocklisted in MISP (deleted there): "
            f"reports of that day go to a new event, generation {self._generations[key]}"
        )
        logger.warning("MISP: %s", self.notes["blocklist"])

    def _publish(self, event_uuid: str) -> None:
        """Publish after a new object when asked; a refusal is noted, never a report failure."""
        s = self.client.settings
        if not s.report_publish:
            return
        if not self.client.allowed("perm_publish"):
            self.notes["publish"] = (
                f"publishing skipped: MISP role {self.client.role!r} lacks perm_publish"
            )
            return
        try:
            self.client.call("events/publish", lambda api: api.publish(event_uuid))
        except MispRejected as ex:
            self.notes["publish"] = f"publishing refused by MISP: {ex}"
            logger.warning("MISP: %s", self.notes["publish"])
            return
        self.notes.pop("publish", None)

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
            tags = list(s.report_tags)
            if tags and not self.client.allowed("perm_tagger"):
                self.notes["tags"] = (
                    f"tags {', '.join(tags)} not set: MISP role {self.client.role!r} lacks "
                    "perm_tagger"
                )
                tags = []
            for tag in tags:
                ev.add_tag(tag)
            try:
                reply = self.client.call("events/add", lambda api: api.add_event(ev))
            except MispRejected as ex:
                if ex.status == 403 and BLOCKLISTED in str(ex.body).lower():
                    raise _DayBlocked(str(ex)) from ex
                if not (ex.status == 404 and ALREADY_EXISTS in str(ex.body)):
                    raise
            else:
                self._check_tags(tags, reply)
        self._days.add(day.isoformat())

    def _check_tags(self, wanted: list[str], reply: Any) -> None:
        """MISP drops, without an error, a tag it does not have when the role cannot create it."""
        got = reply.get("Event", reply) if isinstance(reply, dict) else reply
        tags = got.get("Tag", []) if isinstance(got, dict) else getattr(got, "tags", [])
        names = {
            str(t.get("name") if isinstance(t, dict) else getattr(t, "name", "")) for t in tags
        }
        missing = [t for t in wanted if t not in names]
        if missing:
            why = (
                "the role cannot create tags (perm_tag_editor) and MISP does not have them"
                if not self.client.allowed("perm_tag_editor")
                else "MISP did not apply them"
            )
            self.notes["tags"] = f"tags {', '.join(missing)} missing on the day event: {why}"
            logger.warning("MISP: %s", self.notes["tags"])
        elif wanted:
            self.notes.pop("tags", None)


def _add_object(event_uuid: str, obj: MISPObject) -> Callable[[Any], Any]:
    def call(api: Any) -> Any:
        return api.add_object(event_uuid, obj)

    return call
