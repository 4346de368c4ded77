"""Action runner: a bounded job queue served by worker threads.

A job is one detection with its ``Plan``. The worker creates the artifact directory
``<process-guid>/<event-hash>/`` (``event.json`` first), suspends the process when ``kill`` is
planned, runs the actions in order and finally terminates. A full queue drops the job (counted,
WARNING). Failures are logged with the traceback and counted per action.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.actions.artifacts import ArtifactDir
from agent.actions.base import Action, ActionContext
from agent.actions.planner import Plan
from agent.actions.process import suspend
from agent.errors import ActionError

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.host import Host
    from agent.tracking.tracker import Tracker

__all__ = ["ActionRunner", "Job"]

logger = logging.getLogger(__name__)


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


class ActionRunner:
    """Runs planned actions off the pipeline thread."""

    def __init__(self, *, config: AgentConfig, tracker: Tracker, host: Host, root: Path,
                 registry: dict[str, Action], clock: Callable[[], float] = time.time,
                 on_done: Callable[[Job, ArtifactDir], None] | None = None) -> None:
        self.config = config
        self.tracker = tracker
        self.host = host
        self.root = Path(root)
        self.registry = registry
        self.clock = clock
        self.on_done = on_done
        self.stats = RunnerStats()
        self.endpoint = config.general.endpoint_uuid
        self._queue: queue.Queue[Job | None] = queue.Queue(config.actions.queue_size)
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition()
        self._pending = 0

    def start(self) -> None:
        for i in range(self.config.actions.workers):
            t = threading.Thread(target=self._work, name=f"heron-action-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, job: Job) -> bool:
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self.stats.dropped += 1
            logger.warning("action queue full: job for %s dropped", job.process_guid)
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
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()

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
        """Run one job synchronously (workers call this; tests may too)."""
        art = ArtifactDir(self.root, process_guid=job.process_guid, event_hash=job.event_hash,
                          endpoint=self.endpoint, hostname=self.host.hostname,
                          rule=list(job.detection.get("Signature", [])), ts=self.clock())
        art.add_json("event.json", job.event, "event")
        ctx = ActionContext(event=job.event, detection=job.detection,
                            process_guid=job.process_guid, pid=job.pid, image=job.image,
                            command_line=job.command_line, artifacts=art, tracker=self.tracker,
                            host=self.host, config=self.config, clock=self.clock)
        if "kill" in job.plan.run:
            suspend(ctx)
        for name in job.plan.run:
            self.stats.runs[name] = self.stats.runs.get(name, 0) + 1
            try:
                self.registry[name](ctx)
            except ActionError as ex:
                self.stats.failures[name] = self.stats.failures.get(name, 0) + 1
                logger.warning("action %s on pid %d failed: %s", name, job.pid, ex)
            except Exception:
                self.stats.failures[name] = self.stats.failures.get(name, 0) + 1
                logger.error("action %s on pid %d crashed", name, job.pid, exc_info=True)
        self.stats.done += 1
        if self.on_done is not None:
            self.on_done(job, art)
        return art
