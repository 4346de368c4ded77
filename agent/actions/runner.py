"""Action runner: response first, evidence on a bounded low-priority queue.

A job is one detection with its ``Plan``. ``submit`` splits it:

* **response** (``kill``, ``blacklist``) goes to the priority queue, served by its own thread that
  never touches the disk, so a kill never waits behind a dump or a report;
* **evidence** (dumps, reports) goes to the bounded evidence queue (``actions.queue_size``,
  ``actions.workers`` threads), after the per-rule rate limit; the worker checks the artifact
  quota, creates ``<process-guid>/<event-hash>/`` (``event.json`` first) and runs the actions in
  order. ``memdump`` of a process that the same job kills is skipped (it is gone).

A full queue drops the job, counted per action (``dropped_actions``) and logged at WARNING once
per burst. Failures are logged and counted per action.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.actions.artifacts import ArtifactDir
from agent.actions.base import Action, ActionContext, ActionSettings
from agent.actions.budget import ArtifactStore, RuleLimiter, parse_rule_limits
from agent.actions.planner import Plan
from agent.actions.registry import RESPONSE_ACTIONS
from agent.errors import ActionError

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.host import Host
    from agent.tracking.tracker import Tracker

__all__ = ["ActionRunner", "Job"]

logger = logging.getLogger(__name__)

URGENT_QUEUE = 4096  # pending response jobs (kill/blacklist cost microseconds each)


@dataclass(frozen=True, slots=True)
class Job:
    """One detection to act on."""

    event: dict[str, Any]
    detection: dict[str, Any]
    plan: Plan
    event_hash: str
    process_guid: str
    pid: int
    image: str
    command_line: str


@dataclass(slots=True)
class RunnerStats:
    queued: int = 0
    dropped: int = 0
    done: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    dropped_actions: dict[str, int] = field(default_factory=dict)  # queue full, per action
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    response_latency: float = 0.0  # seconds from submit to the last response action done

    def count(self, table: dict[str, int], names: tuple[str, ...] | list[str]) -> None:
        for name in names:
            table[name] = table.get(name, 0) + 1


class ActionRunner:
    """Runs planned actions off the pipeline thread."""

    def __init__(
        self,
        *,
        config: AgentConfig,
        tracker: Tracker,
        host: Host,
        root: Path,
        registry: dict[str, Action],
        clock: Callable[[], float] = time.time,
        on_done: Callable[[Job, ArtifactDir], None] | None = None,
    ) -> None:
        self.config = config
        self._settings = ActionSettings.from_config(config)
        self.tracker = tracker
        self.host = host
        self.root = Path(root)
        self.registry = registry
        self.clock = clock
        self.on_done = on_done
        self.stats = RunnerStats()
        self.endpoint = config.general.endpoint_uuid
        self._queue: queue.Queue[Job | None] = queue.Queue(config.actions.queue_size)
        self._urgent: queue.Queue[tuple[Job, float] | None] = queue.Queue(URGENT_QUEUE)
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition()
        self._pending = 0
        self._last_drop_log = 0.0
        acfg = config.actions
        self.store = ArtifactStore(
            self.root,
            quota_bytes=acfg.artifact_quota_bytes,
            quota_per_hour=acfg.artifact_quota_per_hour,
        )
        self.limiter = RuleLimiter(acfg.max_per_rule_hour, parse_rule_limits(acfg.rule_limits))

    def configure(self, config: AgentConfig) -> None:
        """Apply live settings (quota, rate limits) from a new configuration."""
        self.config = config
        self._settings = ActionSettings.from_config(config)
        acfg = config.actions
        self.store.quota_bytes = acfg.artifact_quota_bytes
        self.store.quota_per_hour = acfg.artifact_quota_per_hour
        self.limiter.default = acfg.max_per_rule_hour
        self.limiter.per_rule = parse_rule_limits(acfg.rule_limits)

    def start(self) -> None:
        t = threading.Thread(target=self._respond, name="heron-action-urgent", daemon=True)
        t.start()
        self._threads.append(t)
        for i in range(self.config.actions.workers):
            t = threading.Thread(target=self._work, name=f"heron-action-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, job: Job) -> bool:
        """Queue the response part and the evidence part of ``job``; False if nothing queued."""
        response = tuple(n for n in job.plan.run if n in RESPONSE_ACTIONS)
        evidence = tuple(n for n in job.plan.run if n not in RESPONSE_ACTIONS)
        if "kill" in response and "memdump" in evidence:
            evidence = tuple(n for n in evidence if n != "memdump")
            self.stats.count(self.stats.skipped, ["memdump: process killed first"])
        if evidence:
            rules = [str(r) for r in job.detection.get("Signature", [])]
            if not self.limiter.allow(rules):
                self.store.rate_limited(rules)
                self.stats.count(self.stats.skipped, ["rule rate limit"])
                evidence = ()
        queued = False
        if response:
            queued = self._put(
                self._urgent, (replace(job, plan=Plan(response)), time.monotonic()), response
            )
        if evidence:
            queued = self._put(self._queue, replace(job, plan=Plan(evidence)), evidence) or queued
        return queued

    def _put(self, q: queue.Queue[Any], item: Any, names: tuple[str, ...]) -> bool:
        with self._idle:
            self._pending += 1
        try:
            q.put_nowait(item)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self.stats.dropped += 1
            self.stats.count(self.stats.dropped_actions, names)
            now = time.monotonic()
            if now - self._last_drop_log >= 10.0:  # once per burst, not once per job
                self._last_drop_log = now
                logger.warning(
                    "action queue full: %s dropped (%s dropped so far)",
                    "+".join(names),
                    self.stats.dropped_actions,
                )
            return False
        self.stats.queued += 1
        return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted job finished (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self) -> None:
        """Stop the workers; evidence jobs still queued are abandoned (counted), not run."""
        abandoned = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                abandoned += 1
        if abandoned:
            with self._idle:
                self._pending -= abandoned
                self._idle.notify_all()
            self.stats.count(self.stats.skipped, ["shutdown"] * abandoned)
            logger.info("%d queued evidence jobs abandoned at shutdown", abandoned)
        if self._threads:
            self._urgent.put(None)
            for _ in self._threads[1:]:
                self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()

    def _respond(self) -> None:
        while True:
            item = self._urgent.get()
            if item is None:
                return
            job, queued_at = item
            try:
                self.run_response(job)
                self.stats.response_latency = time.monotonic() - queued_at
            except Exception:
                logger.error("response job for %s failed", job.process_guid, exc_info=True)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _context(self, job: Job, art: ArtifactDir) -> ActionContext:
        return ActionContext(
            event=job.event,
            detection=job.detection,
            process_guid=job.process_guid,
            pid=job.pid,
            image=job.image,
            command_line=job.command_line,
            artifacts=art,
            tracker=self.tracker,
            host=self.host,
            settings=self._settings,
            clock=self.clock,
            store=self.store,
        )

    def _artifact_dir(self, job: Job) -> ArtifactDir:
        return ArtifactDir(
            self.root,
            process_guid=job.process_guid,
            event_hash=job.event_hash,
            endpoint=self.endpoint,
            hostname=self.host.hostname,
            rule=list(job.detection.get("Signature", [])),
            ts=self.clock(),
            on_write=self.store.added,
        )

    def _run_actions(self, job: Job, ctx: ActionContext, names: tuple[str, ...]) -> None:
        for name in names:
            self.stats.runs[name] = self.stats.runs.get(name, 0) + 1
            try:
                self.registry[name](ctx)
            except ActionError as ex:
                self.stats.failures[name] = self.stats.failures.get(name, 0) + 1
                logger.warning("action %s on pid %d failed: %s", name, job.pid, ex)
            except OSError as ex:  # disk full, permissions: one line, no traceback
                self.stats.failures[name] = self.stats.failures.get(name, 0) + 1
                logger.warning("action %s on pid %d failed: %s", name, job.pid, ex)
            except Exception:
                self.stats.failures[name] = self.stats.failures.get(name, 0) + 1
                logger.error("action %s on pid %d crashed", name, job.pid, exc_info=True)

    def run_response(self, job: Job) -> None:
        """Run the response actions of ``job`` now (no disk access)."""
        names = tuple(n for n in job.plan.run if n in RESPONSE_ACTIONS)
        self._run_actions(job, self._context(job, self._artifact_dir(job)), names)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self.run_job(job)
            except Exception:
                logger.error("action job for %s failed", job.process_guid, exc_info=True)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def run_job(self, job: Job) -> ArtifactDir:
        """Run one job synchronously: response actions first, then evidence (workers, tests)."""
        art = self._artifact_dir(job)
        response = tuple(n for n in job.plan.run if n in RESPONSE_ACTIONS)
        evidence = tuple(n for n in job.plan.run if n not in RESPONSE_ACTIONS)
        if response:
            self._run_actions(job, self._context(job, art), response)
        if evidence:
            if not self.store.admit(evidence):
                self.stats.count(self.stats.skipped, ["artifact quota"])
            else:
                try:
                    art.add_json("event.json", job.event, "event")
                except OSError as ex:
                    self.stats.count(self.stats.failures, evidence)
                    logger.warning("evidence for %s not collected: %s", job.process_guid, ex)
                else:
                    self._run_actions(job, self._context(job, art), evidence)
        self.stats.done += 1
        if self.on_done is not None:
            self.on_done(job, art)
        return art

    def status(self) -> dict[str, Any]:
        """The counters shown under ``actions`` in the agent status."""
        st = self.stats
        return {
            "queue": self._queue.qsize(),
            "urgent_queue": self._urgent.qsize(),
            "queued": st.queued,
            "dropped": st.dropped,
            "done": st.done,
            "runs": dict(st.runs),
            "failures": dict(st.failures),
            "dropped_actions": dict(st.dropped_actions),
            "skipped": dict(st.skipped),
            "response_latency": round(st.response_latency, 4),
            "budget": self.store.stats.snapshot(),
        }
