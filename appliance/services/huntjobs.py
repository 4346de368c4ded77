"""Retro-hunt jobs: `Hunting.retro_hunt` in background workers, bounded in time, CPU and memory.

Security: a hunt over millions of events once ran 59 s on a request thread and held
an agent's `/logs` 31.9 s (issue 18). A job runs on one of `hunt.workers` threads, at most
`hunt.cpu_share` of one core (it sleeps between chunks of events in proportion to the time it
worked, so ingest threads get the interpreter), stops at `hunt.timeout` seconds (results so
far kept, state `timeout`), keeps at most `hunt.match_bytes` of matches, and can be cancelled.
Each user may have `hunt.queue_per_user` jobs waiting; more get 429. Finished jobs are kept
(newest `hunt.keep`, at most `hunt.kept_bytes` of matches in all) so their matches can be
paged by cursor.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..core.errors import NotFound, TooManyRequests, ValidationError
from ..core.timefmt import to_datetime
from .hunting import MAX_PAGE_BYTES, Hunting, HuntResult, HuntStopped

__all__ = ["HuntJob", "HuntJobs", "HuntLimits"]

logger = logging.getLogger(__name__)
CHUNK = 256  # events between two checkpoints (progress, cancel, time limit, CPU share)
FINAL = ("done", "cancelled", "timeout", "failed")


@dataclass(frozen=True, slots=True)
class HuntLimits:
    """The `[hunt]` settings a job runner needs."""

    workers: int = 1
    queue_per_user: int = 1
    timeout: float = 600.0
    cpu_share: float = 0.5
    match_bytes: int = 64 * 1024 * 1024
    max_events: int = 50_000_000
    keep: int = 50
    kept_bytes: int = 256 * 1024 * 1024


@dataclass(slots=True)
class HuntJob:
    """One retro-hunt: its request, live progress and (bounded) matches."""

    id: str
    owner: str
    params: dict[str, Any]
    created: float
    state: str = "queued"  # queued, running, done, cancelled, timeout, failed
    started: float | None = None
    finished: float | None = None
    total: int | None = None  # events the store holds in the hunt's window (an estimate)
    scanned: int = 0
    detections: int = 0
    filtered: int = 0
    stored: int = 0
    error: str = ""
    result: HuntResult | None = None
    matches: list[dict[str, Any]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        res = self.result
        p = self.params
        return {
            "id": self.id,
            "owner": self.owner,
            "state": self.state,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "since": p.get("since"),
            "until": p.get("until"),
            "endpoint": p.get("endpoint"),
            "rule_names": [str(r.get("Name", "")) for r in p.get("rules", [])][:50],
            "total": self.total,
            "scanned": self.scanned,
            "detections": self.detections,
            "filtered": self.filtered,
            "matches": len(self.matches),
            "truncated": bool(res.truncated) if res else False,
            "rules": res.rules if res else 0,
            "containers": res.containers if res else {},
            "iocs": res.iocs if res else 0,
            "stored": self.stored,
            "error": self.error,
        }


class _Control:
    """Checkpoints of one running job: progress, cancel, time limit and CPU share."""

    def __init__(self, job: HuntJob, limits: HuntLimits, clock: Callable[[], float]) -> None:
        self.job, self.limits, self.clock = job, limits, clock
        self.deadline = clock() + limits.timeout
        self.mark = time.thread_time()

    def checkpoint(self, scanned: int, detections: int, filtered: int) -> None:
        job = self.job
        job.scanned, job.detections, job.filtered = scanned, detections, filtered
        if job.cancel.is_set():
            raise HuntStopped("cancelled")
        if self.clock() >= self.deadline:
            raise HuntStopped("timeout")
        share = self.limits.cpu_share
        if share < 1.0:
            # CPU time of this thread since the last checkpoint, then idle so that it is
            # `share` of the wall time (the wait returns at once on cancel).
            worked = time.thread_time() - self.mark
            if job.cancel.wait(worked * (1.0 - share) / share):
                raise HuntStopped("cancelled")
            self.mark = time.thread_time()


class HuntJobs:
    """Queue and workers of retro-hunt jobs (thread-safe)."""

    def __init__(
        self,
        hunting: Hunting,
        limits: HuntLimits,
        *,
        store: Callable[[HuntJob], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hunting, self.limits, self.clock = hunting, limits, clock
        self._store = store
        self._jobs: collections.OrderedDict[str, HuntJob] = collections.OrderedDict()
        self._queue: collections.deque[HuntJob] = collections.deque()
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False

    # -- API -------------------------------------------------------------------------

    def submit(self, owner: str, params: dict[str, Any]) -> HuntJob:
        """Queue a hunt for `owner`; TooManyRequests when they already have enough waiting."""
        with self._cond:
            if self._closed:
                raise TooManyRequests("the manager is stopping", retry_after=30)
            waiting = sum(1 for j in self._queue if j.owner == owner)
            if waiting >= self.limits.queue_per_user:
                raise TooManyRequests(
                    f"{waiting} retro-hunt job(s) of yours are waiting (hunt.queue_per_user)",
                    retry_after=10,
                )
            job = HuntJob(str(uuid.uuid4()), owner, params, self.clock())
            self._jobs[job.id] = job
            self._queue.append(job)
            self._evict()
            self._start_workers()
            self._cond.notify()
        return job

    def get(self, job_id: str, *, owner: str | None = None) -> HuntJob:
        """A job by id (only `owner`'s when given); NotFound otherwise."""
        job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise NotFound(f"no retro-hunt job {job_id}")
        return job

    def list(self, *, owner: str | None = None) -> list[HuntJob]:
        """Jobs newest first (only `owner`'s when given)."""
        with self._cond:
            jobs = list(self._jobs.values())
        return [j for j in reversed(jobs) if owner is None or j.owner == owner]

    def cancel(self, job_id: str, *, owner: str | None = None) -> HuntJob:
        """Stop a queued or running job (its matches so far are kept)."""
        job = self.get(job_id, owner=owner)
        with self._cond:
            if job.state in FINAL:
                raise ValidationError(f"retro-hunt job is {job.state}")
            job.cancel.set()
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, "cancelled")
        return job

    def page(
        self,
        job_id: str,
        *,
        owner: str | None,
        cursor: int,
        limit: int,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> dict[str, Any]:
        """Matches `cursor`..`cursor+limit`; `next_cursor` None once the job ended and all
        were read."""
        job = self.get(job_id, owner=owner)
        ended = job.state in FINAL
        count = len(job.matches)
        if not 0 <= cursor <= count:
            raise ValidationError(f"cursor must be 0–{count}")
        events: list[dict[str, Any]] = []
        size = 0
        for ev in job.matches[cursor : cursor + limit]:
            if events and size > max_bytes:
                break  # Security: a page is about max_bytes of JSON at most
            size += len(orjson.dumps(ev, default=str))
            events.append(ev)
        nxt = cursor + len(events)
        more = nxt < count or not ended
        return {
            "state": job.state,
            "events": events,
            "next_cursor": str(nxt) if more else None,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every job and wait (at most `timeout` s) for the workers to stop."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                job.cancel.set()
            while self._queue:
                self._finish(self._queue.popleft(), "cancelled")
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))

    # -- workers ---------------------------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._workers) < self.limits.workers:
            t = threading.Thread(
                target=self._work, name=f"retro-hunt-{len(self._workers)}", daemon=True
            )
            self._workers.append(t)
            t.start()

    def _evict(self) -> None:
        """Drop the oldest finished jobs past `keep`, or while their matches hold more than
        `kept_bytes` in all."""
        done = [j for j in self._jobs.values() if j.state in FINAL]
        held = sum(j.result.match_bytes for j in done if j.result is not None)
        for i, job in enumerate(done):
            if len(done) - i <= self.limits.keep and held <= self.limits.kept_bytes:
                break
            held -= job.result.match_bytes if job.result is not None else 0
            del self._jobs[job.id]

    def _finish(self, job: HuntJob, state: str) -> None:
        job.state, job.finished = state, self.clock()
        job.ended.set()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._queue))
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state, job.started = "running", self.clock()
            state = self._run(job)
            with self._cond:
                self._finish(job, state)
                self._evict()

    def _run(self, job: HuntJob) -> str:
        p = job.params
        count = getattr(self.hunting.events, "count", None)
        try:
            if callable(count):
                job.total = int(
                    count(
                        since=to_datetime(p.get("since")),
                        until=to_datetime(p.get("until")),
                        endpoint=p.get("endpoint"),
                    )
                )
        except Exception:  # noqa: BLE001 - only an estimate for progress
            job.total = None
        try:
            job.result = self.hunting.retro_hunt(
                p["rules"],
                since=p.get("since"),
                until=p.get("until"),
                endpoint=p.get("endpoint"),
                max_events=self.limits.max_events,
                max_matches=int(p.get("limit", 1000)),
                max_match_bytes=self.limits.match_bytes,
                containers=p.get("containers"),
                iocs=p.get("iocs"),
                ioc_criticality=int(p.get("ioc_criticality", 10)),
                control=_Control(job, self.limits, time.monotonic),
                matches=job.matches,
                chunk=CHUNK,
            )
        except Exception as ex:  # noqa: BLE001 - a job fails alone, with its reason
            job.error = str(ex)[:500]
            logger.warning("retro-hunt job %s failed: %s", job.id, job.error)
            return "failed"
        res = job.result
        job.scanned, job.detections, job.filtered = res.scanned, res.detections, res.filtered
        if p.get("store") and self._store is not None and not job.cancel.is_set():
            try:
                job.stored = self._store(job)
            except Exception as ex:  # noqa: BLE001
                job.error = f"store: {str(ex)[:400]}"
                return "failed"
        return res.stopped or "done"
