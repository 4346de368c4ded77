"""MispSync: the MISP service of the manager (IoC pull, sightings, reports, status), and its worker.

`MispSync` owns one lazily connected `MispClient` and the three features, each with durable state
under `MispStorage` (normally `<data>/misp/`). The manager feeds it through `on_events(endpoint,
events)` (an ingest listener: never blocks, never raises) and `on_report(endpoint, artifact_dir)` or
the artifact scan; `run_pending()` does whatever is due, catching and recording MISP failures so
that the manager works while MISP is down; `MispWorker` calls it on a thread. Time comes from the
injected clock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from rules.wire import ARTIFACT_EVENT, ARTIFACT_MANIFEST, ARTIFACT_REPORT

from .client import ClientFactory, MispClient, pymisp_factory
from .deadletters import DeadLetters
from .errors import MispError, MispRateLimited, MispSettingsError
from .iocs import IocPuller, IocSink, MemoryIocSink, PullResult
from .probe import connection_test
from .reports import PushResult, ReportPusher
from .settings import MispSettings
from .shared import JOB_PULL, JOB_REPORTS, leads_stream, on_notify
from .sightings import FlushResult, SightingPusher, sighting_source
from .status import FeatureStatus, sync_status
from .storage import MispStorage

__all__ = ["MispStorage", "MispSync"]

logger = logging.getLogger(__name__)

SCAN_INTERVAL = 60.0
STREAMS = ("pull", "sightings", "reports")
BUSY_WAIT = 30.0  # an operator's sync waits this long for a running pass (a pass is one slice)
R = TypeVar("R")


def _endpoint_fields(endpoint: Any) -> tuple[str, str, str]:
    if isinstance(endpoint, Mapping):
        get = endpoint.get
        return str(get("uuid", "")), str(get("hostname", "")), str(get("ip", ""))
    return (
        str(getattr(endpoint, "uuid", "") or ""),
        str(getattr(endpoint, "hostname", "") or ""),
        str(getattr(endpoint, "ip", "") or ""),
    )


# shared queues (cluster mode): the artifact scan's leader also drains them
_STREAM_JOBS = {"pull": JOB_PULL, "sightings": JOB_REPORTS, "reports": JOB_REPORTS}


class MispSync:
    """The MISP integration service; see the module docstring."""

    def __init__(
        self,
        settings: MispSettings,
        storage: MispStorage,
        clock: Callable[[], float] = time.time,
        *,
        sink: IocSink | None = None,
        factory: ClientFactory = pymisp_factory,
        artifacts_root: Path | None = None,
        endpoint_lookup: Callable[[str], Any] | None = None,
        leads: Callable[[str], bool] = lambda job: True,
    ) -> None:
        self.storage = storage
        self.leads = leads  # cluster mode: only the leading front-end pulls and scans artifacts
        self.clock = clock
        self.sink: IocSink = sink if sink is not None else MemoryIocSink()
        self.factory = factory
        self.artifacts_root = artifacts_root
        self.endpoint_lookup = endpoint_lookup
        # `_lock` guards only the swap of settings and client, never a network call;
        # each stream has its own lock, so a long push never blocks settings or sightings.
        self._lock = threading.RLock()
        self._stream_locks = {name: threading.Lock() for name in STREAMS}
        self._features = {name: FeatureStatus() for name in STREAMS}
        self._pull_next = 0.0
        self._scan_next = 0.0
        self._led: set[str] = set()  # shared storage: jobs led since the last reload
        self.dead = DeadLetters(storage.state, clock)
        self._build(settings.with_namespace())

    @classmethod
    def open(cls, root: Path, default: MispSettings | None = None, **kwargs: Any) -> MispSync:
        """A MispSync over files under `root`.

        With the stored settings, else `default`.
        """
        storage = MispStorage.open(root)
        assert storage.settings is not None
        return cls(storage.settings.load(default), storage, **kwargs)

    def _build(self, settings: MispSettings) -> None:
        """A new client; the streams are built once and keep their state across settings."""
        self.client = MispClient(settings, factory=self.factory, clock=self.clock)
        st = self.storage
        if not hasattr(self, "iocs"):
            self.iocs = IocPuller(self.client, st.state, self.sink, self.clock)
            self.sightings = SightingPusher(
                self.client, st.state, st.sightings, self.clock, self.dead, st.lookups
            )
            self.reports = ReportPusher(self.client, st.state, st.reports, self.clock, self.dead)
        for stream in (self.iocs, self.sightings, self.reports, self.sightings.lookup):
            stream.client = self.client
        self.reports.reconsider()
        if settings.configured and settings.reports_enabled:
            self.reports.mark_enabled()

    @property
    def settings(self) -> MispSettings:
        return self.client.settings

    # --- settings ---------------------------------------------------------------------------------

    def update_settings(self, patch: Mapping[str, Any]) -> MispSettings:
        """Merge, persist and apply a settings patch.

        The client reconnects with the new settings.
        """
        with self._lock:
            if "namespace" in patch and patch["namespace"] != self.settings.namespace:
                raise MispSettingsError(
                    "namespace cannot change (it names pushed reports)", operation="settings"
                )
            settings = self.settings.merged(patch)
            if self.storage.settings is not None:
                self.storage.settings.save(settings)
            old = self.client
            self._build(settings)
            self._pull_next = 0.0
        old.close()  # never waits on a call in flight
        return settings

    def test_connection(self, patch: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Connect afresh and report what MISP says (probe.py); never raises."""
        return connection_test(self, patch)

    # --- features ---------------------------------------------------------------------------------

    def pull_iocs(self, *, full: bool | None = None) -> PullResult | None:
        """Pull IoCs now (full or incremental as due); raises MispError; None if one runs."""
        return self._run("pull", lambda: self._pull(full))

    def _pull(self, full: bool | None) -> PullResult:
        now = self.clock()
        try:
            result = self.iocs.pull(full=full)
        except MispRateLimited as ex:
            # Honour X-Rate-Limit-Reset; the pull resumes at the page it reached (iocs.py).
            self._pull_next = now + (ex.retry_after or self.settings.retry_backoff)
            raise
        except MispError:
            self._pull_next = max(self.client.next_attempt, now + self.settings.retry_backoff)
            raise
        self._pull_next = now + self.settings.pull_interval
        return result

    def wants_events(self) -> bool:
        """Whether `on_events` would use a batch: MISP configured and sightings enabled.

        The manager's ingest asks before queueing a batch for its listeners (docs/interfaces.md),
        so an idle MISP sync costs ingest nothing. Follows `update_settings` at once.
        """
        s = self.settings
        return s.configured and s.sightings_enabled

    def on_events(self, endpoint: Any, events: list[dict[str, Any]]) -> None:
        """Ingest listener: queue sightings; never raises.

        Queues sightings of the IoC values the events carry.
        """
        if not self.wants_events():
            return
        ep_uuid, hostname, _ = _endpoint_fields(endpoint)
        try:
            self.sightings.observe(ep_uuid, hostname, events, self.iocs.index)
        except Exception:
            logger.error("MISP sighting extraction failed", exc_info=True)

    def false_positive(self, endpoint: Any, event: Mapping[str, Any]) -> list[str]:
        """An analyst closed a detection as a false positive: sight its MISP IoCs with type 1.

        Returns the MISP values queued (none when the event carries no pulled IoC).
        """
        s = self.settings
        if not (s.configured and s.sightings_enabled):
            raise MispSettingsError(
                "MISP sightings are not configured (enabled, url, api_key, sightings_enabled)",
                operation="false-positive",
            )
        ep_uuid, hostname, _ = _endpoint_fields(endpoint)
        return self.sightings.false_positive(
            sighting_source(ep_uuid, hostname), self.iocs.index.match(event)
        )

    def flush_sightings(self, *, wait: bool = True) -> FlushResult | None:
        """Send queued sightings now; raises MispError (None when a flush is running)."""
        return self._run("sightings", lambda: self.sightings.flush(), wait=wait)

    def on_report(self, endpoint: Any, artifact_dir: Path) -> bool:
        """Queue one IR report (artifact directory).

        Returns whether it was queued.
        """
        if not (self.settings.configured and self.settings.reports_enabled):
            return False
        ep_uuid, hostname, ip = _endpoint_fields(endpoint)
        return self.reports.enqueue(ep_uuid, hostname, ip, Path(artifact_dir))

    def push_reports(self, *, wait: bool = True) -> PushResult | None:
        """Push one slice of queued reports now; raises MispError.

        None when another thread is pushing (and `wait` is False or it took too long).
        """
        return self._run("reports", lambda: self.reports.push(), wait=wait)

    def _run(self, name: str, fn: Callable[[], R], *, wait: bool = True) -> R | None:
        """Run one stream's job under that stream's lock only; None when it is busy.

        Shared storage: only the job's leader runs it (None elsewhere), so two front-ends
        never send one queue item each.
        """
        if self.storage.shared and not self.leads_shared(name):
            return None
        lock = self._stream_locks[name]
        if not lock.acquire(timeout=BUSY_WAIT if wait else 0):
            return None
        try:
            feature, now = self._features[name], self.clock()
            try:
                result = fn()
            except MispError as ex:
                feature.failed(now, ex)
                raise
            feature.ok(now, result)
            return result
        finally:
            lock.release()

    def scan_artifacts(self) -> int:
        """Queue complete report directories found on disk.

        Only directories not pushed or queued yet.
        """
        if self.artifacts_root is None or not self.artifacts_root.is_dir():
            return 0
        if self.storage.shared and not self.leads_shared("reports"):
            return 0
        queued = {str(item.get("dir")) for _, item in self.storage.reports.items()}
        count = 0
        for manifest in sorted(self.artifacts_root.glob(f"*/*/*/{ARTIFACT_MANIFEST}")):
            directory = manifest.parent
            if (
                self.reports.pushed(directory.name)
                or str(directory) in queued
                or self.reports.skipped(directory)
            ):
                continue  # Performance: the directory name is the event hash, i.e. the report id
            if not _complete(directory):
                continue
            endpoint: Any = {"uuid": directory.parent.parent.name}
            if self.endpoint_lookup is not None:
                endpoint = self.endpoint_lookup(directory.parent.parent.name) or endpoint
            if self.on_report(endpoint, directory):
                count += 1
        return count

    def run_pending(self) -> None:
        """Do whatever is due; failures go to the status.

        MISP failures are recorded in the status, never raised.
        """
        s = self.settings
        if not s.configured:
            return
        now = self.clock()
        jobs: list[Callable[[], Any]] = []
        # Cluster mode: IoCs land in the shared store and artifacts on the shared path, so one
        # front-end pulls and scans; the leader of misp.reports drains the shared queues (a
        # front-end over files flushes what it queued itself).
        if s.pull_enabled and now >= self._pull_next and self.leads(JOB_PULL):
            jobs.append(lambda: self._run("pull", lambda: self._pull(None), wait=False))
        if s.reports_enabled and now >= self._scan_next and self.leads(JOB_REPORTS):
            self._scan_next = now + SCAN_INTERVAL
            self.scan_artifacts()
        drains = not self.storage.shared or self.leads_shared("sightings")
        if drains and self.client.ready():  # inside a back-off window, queued work waits
            if s.sightings_enabled and (
                (len(self.storage.sightings) and self.sightings.due())
                or self.sightings.lookup_pending()
            ):
                jobs.append(lambda: self.flush_sightings(wait=False))
            if s.reports_enabled and len(self.storage.reports):
                jobs.append(lambda: self.push_reports(wait=False))  # one slice per tick
        elif not drains and s.sightings_enabled and s.sighting_lookup:
            jobs.append(self.sightings.hand_over)  # the leader asks MISP
        for job in jobs:
            try:
                job()
            except MispError as ex:
                logger.info("MISP job failed: %s", ex)

    def sync_now(self, *, full: bool = False) -> dict[str, Any]:
        """Pull, flush sightings and push reports now.

        The admin 'sync now': pull (full if asked), flush, push; the status.
        """
        s = self.settings
        if not s.configured:
            raise MispSettingsError(
                "MISP sync is not configured (enabled, url, api_key)", operation="sync"
            )
        self.client.next_attempt = 0.0  # an operator asked: skip the back-off window
        jobs: list[Callable[[], Any]] = []
        if s.pull_enabled:
            jobs.append(lambda: self.pull_iocs(full=True if full else None))
        if s.sightings_enabled:
            jobs.append(self.flush_sightings)
        if s.reports_enabled:
            self.scan_artifacts()
            jobs.append(self.push_reports)
        for job in jobs:
            try:
                job()
            except MispError as ex:
                logger.info("MISP sync failed: %s", ex)
        return self.status()

    def status(self) -> dict[str, Any]:
        """Per-stream state, dead letters, permissions and backfill (the admin status API)."""
        return sync_status(self)

    # --- dead letters -----------------------------------------------------------------------------

    def dead_letters(self, stream: str | None = None) -> list[dict[str, Any]]:
        return self.dead.entries(stream)

    def retry_dead_letters(self, ids: list[str] | None = None) -> int:
        """Re-queue dead letters (all when `ids` is None); returns how many."""
        count = 0
        for entry in self.dead.take(ids):
            item = entry["item"]
            if entry["stream"] == "reports" and isinstance(item, dict):
                count += int(self.reports.requeue(item))
            elif entry["stream"] == "sightings" and isinstance(item, dict):
                self.storage.sightings.put({**item, "queued": self.clock()})
                count += 1
        return count

    def discard_dead_letters(self, ids: list[str] | None = None) -> int:
        return len(self.dead.take(ids))

    def leads_shared(self, stream: str) -> bool:
        """Whether this front-end runs `stream` on shared storage (it re-reads the shared
        state when it becomes the leader)."""
        return leads_stream(self, _STREAM_JOBS[stream])

    def reload(self) -> None:
        """Read the settings and state another front-end changed (NOTIFY; shared.py)."""
        on_notify(self)

    def close(self) -> None:
        self.client.close()


def _complete(directory: Path) -> bool:
    """Whether a report directory is completely uploaded.

    Event, report and every listed file (memory dumps aside) are there.
    """
    if not (directory / ARTIFACT_EVENT).is_file() or not (directory / ARTIFACT_REPORT).is_file():
        return False
    try:
        manifest = json.loads((directory / ARTIFACT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files: Iterable[Any] = manifest.get("files") or [] if isinstance(manifest, dict) else []
    return all(
        (directory / str(f.get("name", ""))).is_file()
        for f in files
        if isinstance(f, dict) and f.get("kind") != "memdump"
    )
