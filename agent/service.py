"""Composition root of the agent: ``build_agent(config) -> Agent``, its lifecycle and threads.

Threads: sources (one each, ``EventQueue.pump``) → bounded queue (``agent.eventqueue``) → the
pipeline thread, which runs each event through ``EventPipeline.process`` (``agent.pipeline``:
tracking, detection, actions, forwarding) → sinks; a status thread writes ``status.json``.

The seam for the manager link is ``agent.seams.LinkedAgent``, which ``Agent`` implements
explicitly (docs/interfaces.md, agent section).
"""

from __future__ import annotations

import enum
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from agent.actions import OPT_IN, actions
from agent.actions.report import build_report
from agent.actions.runner import ActionRunner
from agent.canary import canary_rules, create_canaries, remove_canaries
from agent.config import AgentConfig
from agent.detect import Detector, load_containers, load_ioc_file
from agent.errors import AgentClosedError
from agent.eventqueue import EventQueue
from agent.host import Host, make_host
from agent.monitor import Counters, ResourceGuard
from agent.pipeline import EventPipeline
from agent.seams import LinkedAgent
from agent.sinks import AlertLog, EventSink
from agent.sources import EventSource, build_sources, sensor_status
from agent.tracking.seed import seed_from_proc
from agent.tracking.tracker import Tracker
from rules.wire import Ioc

__all__ = ["Agent", "AgentState", "build_agent"]

logger = logging.getLogger(__name__)


class AgentState(enum.Enum):
    """Lifecycle of an ``Agent``."""

    CREATED = "created"  # built, nothing running
    RUNNING = "running"  # sources and pipeline threads started
    CLOSED = "closed"  # stopped; every later call raises AgentClosedError


class Agent(LinkedAgent):
    """The running agent: sources → tracking → engine → actions → sinks."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        host: Host,
        tracker: Tracker,
        detector: Detector,
        runner: ActionRunner,
        sources: list[EventSource],
        sinks: list[EventSink],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.host = host
        self.tracker = tracker
        self.detector = detector
        self.runner = runner
        self.sources = list(sources)
        self.sinks: list[EventSink] = list(sinks)
        self.clock = clock
        self.counters = Counters(started=clock())
        self.state = AgentState.CREATED
        self.queue = EventQueue(config.general.queue_size)
        self.pipeline = EventPipeline(
            config,
            host=host,
            tracker=tracker,
            detector=detector,
            runner=runner,
            sinks=self.sinks,
            counters=self.counters,
            clock=clock,
        )
        self._threads: list[threading.Thread] = []
        self._source_threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._canaries: list[Path] = []
        self._flushers: list[Callable[[], None]] = []
        self._last_rates: tuple[float, dict[str, int]] = (time.monotonic(), {})
        self._status_error = ""
        self.guard = ResourceGuard(
            max_cpu_percent=config.limits.max_cpu_percent,
            max_rss_mb=config.limits.max_rss_mb,
            interval=config.limits.check_interval,
            trim=self._trim,
        )

    # --- seam -------------------------------------------------------------------------------

    @property
    def artifacts_dir(self) -> Path:
        return self.runner.root

    def add_sink(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def reload_rules(self, text: str) -> int:
        """Replace the rule set with ``text`` (Gene rules); built-in rules stay. Rule count."""
        return self.detector.reload_rules(text)

    def rules_state(self) -> dict[str, str]:
        """Rule count, rules hash, last update (reported to the manager by the link)."""
        return self.detector.rules_state()

    def set_iocs(self, iocs: Iterable[Ioc | Mapping[str, object]]) -> int:
        """Replace the IoC set (``rules.wire.Ioc`` or ``{type, value}``). Indicator count."""
        return self.detector.set_iocs(iocs)

    def set_suppressions(self, items: Iterable[Mapping[str, object]]) -> int:
        """Replace the per-rule suppressions (``rules.suppress`` dicts). Their count."""
        return self.detector.set_suppressions(items)

    def sensor_mode(self) -> dict[str, str]:
        """Linux sensor mode and the reason of a fallback (``host.sensor``); {} elsewhere."""
        return {k: str(v) for k, v in self.host.sensor.items() if k in ("mode", "reason")}

    def report(self, *, commands: bool = True, guid: str = "") -> dict[str, Any]:
        """IR report of this endpoint now (WHIDS ``report`` command)."""
        return build_report(
            self.tracker,
            host=self.host,
            reporting=self.config.reporting,
            guid=guid,
            commands=commands,
            clock=self.clock,
        )

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self.state is AgentState.CLOSED:
            raise AgentClosedError("agent is closed")
        if self.state is AgentState.RUNNING:
            return
        self.state = AgentState.RUNNING
        allowed = set(self.config.actions.allowed)
        for name in sorted(OPT_IN & allowed):
            logger.warning("opt-in response action ENABLED: %s", name)
        if self.config.canaries.enable:
            self._canaries = create_canaries(self.config.canaries)
        if any(s.live for s in self.sources) and sys.platform.startswith("linux"):
            # Linux only; on Windows Sysmon GUIDs cannot be derived for processes
            # that started before the agent, and synthetic ones would never be terminated.
            seed_from_proc(self.tracker, self.host)
        self._flushers = []
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if callable(flush):
                if hasattr(sink, "batched"):
                    sink.batched = True
                self._flushers.append(flush)
        gc.collect()
        gc.freeze()  # Performance: compiled rules are long-lived; keep them out of GC scans
        self.runner.start()
        self.guard.start()
        t = threading.Thread(target=self._pipeline, name="heron-pipeline", daemon=True)
        t.start()
        self._threads.append(t)
        for source in self.sources:
            st = threading.Thread(
                target=self._pump, args=(source,), daemon=True, name=f"heron-source-{source.name}"
            )
            st.start()
            self._source_threads.append(st)
        s = threading.Thread(target=self._status_loop, name="heron-status", daemon=True)
        s.start()
        self._threads.append(s)
        logger.info(
            "agent started: %d sources, %d rules, %d IoCs",
            len(self.sources),
            self.detector.rule_count,
            len(self.detector.iocs),
        )
        if self.detector.user_rule_count == 0:
            logger.warning(
                "no detection rules loaded: this endpoint detects nothing until rules "
                "arrive (rules.paths or the manager's /rules)"
            )

    def run(self, *, until_sources_done: bool = False) -> None:
        """Start and block until ``stop()`` (or until every source is exhausted)."""
        self.start()
        while not self._stop.wait(0.2):
            if until_sources_done and not any(t.is_alive() for t in self._source_threads):
                self.wait_idle(timeout=3600)
                break
        self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop everything and write a final status; idempotent."""
        if self.state is AgentState.CLOSED:
            return
        was_running = self.state is AgentState.RUNNING
        self.state = AgentState.CLOSED
        self._stop.set()
        for source in self.sources:
            try:
                source.close()
            except Exception:  # noqa: BLE001 - one source failing to close must not keep the others open
                pass
        for t in self._source_threads + self._threads:
            t.join(timeout=5)
        if was_running:
            self.runner.stop()
            self.guard.stop()
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - shutdown goes on whatever a sink raises
                    pass
        if self.config.canaries.delete_on_stop:
            remove_canaries(self._canaries)
        self._write_status()
        logger.info("agent stopped")

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the queue is drained and every action job finished."""
        deadline = time.monotonic() + timeout
        if not self.queue.wait_done(deadline):
            return False
        return self.runner.wait_idle(max(0.0, deadline - time.monotonic()))

    # --- threads ----------------------------------------------------------------------------

    def _pump(self, source: EventSource) -> None:
        self.queue.pump(source, self.counters.source(source.name), self._stop)

    def _pipeline(self) -> None:
        pipeline = self.pipeline
        while (batch := self.queue.next_batch(self._stop)) is not None:
            # Deliberate degradation: under CPU pressure or with a backlog, optional work
            # (enrichment, hashing, evidence actions) is skipped — counted per source — so the
            # pipeline keeps up and events are not lost.
            degraded = self.guard.throttle or self.queue.backlog() >= self.queue.degrade_at
            for event, live, counters in batch:
                if degraded and live and counters is not None:
                    counters.degraded += 1
                try:
                    pipeline.process(event, live=live, degraded=degraded)
                except Exception:
                    self.counters.pipeline_errors += 1
                    logger.error("pipeline error", exc_info=True)
                    pipeline.forward_raw(event)
            for flush in self._flushers:
                try:
                    flush()
                    if pipeline.sink_failing:
                        pipeline.sink_ok(flush)
                except Exception as ex:  # noqa: BLE001 - a failing sink is counted and retried, never fatal
                    pipeline.sink_failed(flush, ex)
            self.queue.done(len(batch))
            if self.guard.throttle and self.queue.backlog() < self.queue.degrade_at // 2:
                time.sleep(0.05)  # over the CPU limit with no backlog: yield to the host

    def process(self, event: dict[str, Any], *, live: bool = False, degraded: bool = False) -> bool:
        """Run one event through the pipeline; True when it was forwarded to the sinks.

        See ``EventPipeline.process`` (``degraded``: skip enrichment, hashing and evidence).
        """
        return self.pipeline.process(event, live=live, degraded=degraded)

    # --- status & limits --------------------------------------------------------------------

    def _trim(self) -> None:
        self.tracker.free_expired()
        self.tracker.trim(max(256, len(self.tracker) // 2))
        self.host.hasher.trim(self.host.hasher.cache_size // 4)

    def apply_config(self, new: AgentConfig) -> list[str]:
        """Apply a configuration live; returns the sections that only apply after a restart.

        Live: ``general`` (but ``data_dir``, ``queue_size``), ``rules``, ``actions`` (but
        ``workers``, ``queue_size``), ``reporting``. The others are kept until the next start.
        """
        old = self.config
        gen = replace(new.general, data_dir=old.general.data_dir, queue_size=old.general.queue_size)
        acts = replace(new.actions, workers=old.actions.workers, queue_size=old.actions.queue_size)
        restart = [
            name
            for name in ("sources", "tracking", "canaries", "alert_log", "limits")
            if getattr(new, name) != getattr(old, name)
        ]
        if gen != new.general or acts != new.actions:
            restart.append("general/actions queue sizes, workers or data_dir")
        applied = replace(
            old, general=gen, actions=acts, rules=new.rules, reporting=new.reporting, link=new.link
        )
        if new.rules != old.rules or acts != old.actions:
            r = new.rules
            self.detector.configure(
                rule_paths=r.paths if r.paths != old.rules.paths else self.detector._paths,
                containers=load_containers(r.containers_dir) if r.containers_dir else {},
                default_actions={
                    "low": acts.low,
                    "medium": acts.medium,
                    "high": acts.high,
                    "critical": acts.critical,
                },
                ioc_criticality=r.ioc_criticality,
            )
            if r.ioc_file and r.ioc_file != old.rules.ioc_file:
                self.detector.set_iocs(load_ioc_file(r.ioc_file))
        self.config = self.pipeline.config = applied
        self.runner.configure(applied)
        if gen.endpoint_uuid != old.general.endpoint_uuid:
            self.runner.endpoint = gen.endpoint_uuid
        for name in sorted(OPT_IN & (set(acts.allowed) - set(old.actions.allowed))):
            logger.warning("opt-in response action ENABLED: %s", name)
        logger.info(
            "configuration applied%s",
            f"; restart needed for: {', '.join(restart)}" if restart else "",
        )
        return restart

    def set_endpoint(self, endpoint_uuid: str) -> None:
        """Endpoint id written into new artifact manifests (set by the link at enrollment)."""
        self.runner.endpoint = endpoint_uuid

    def status(self) -> dict[str, Any]:
        for source in self.sources:
            sc = self.counters.source(source.name)
            sc.lost = int(getattr(source, "lost", 0))
            sc.incomplete = int(getattr(source, "incomplete", 0))
            sc.error = str(getattr(source, "error", "") or sc.error)  # e.g. an ETW consumer
        snap = self.counters.snapshot()
        now = time.monotonic()
        last_t, last = self._last_rates
        span = now - last_t
        for name, src in snap["sources"].items():
            prev = last.get(name, 0)
            src["rate"] = round((src["events"] - prev) / span, 1) if span > 0 and last else None
        if span >= 1.0 or not last:
            self._last_rates = (now, {n: s["events"] for n, s in snap["sources"].items()})
        snap.update(
            {
                "state": self.state.value,
                "time": self.clock(),
                "hostname": self.host.hostname,
                "queue": {"size": self.queue.backlog(), "max": self.queue.items.maxsize},
                "actions": self.runner.status(),
                "tracks": len(self.tracker),
                "rules": self.detector.rule_count,
                "iocs": len(self.detector.iocs),
                "suppressions": len(self.detector.suppressions),
                "suppressed": dict(self.detector.suppressed),
                "cpu_percent": self.guard.cpu_percent,
                "rss": self.guard.current_rss(),
                "throttled": self.guard.throttle,
            }
        )
        if self.host.sensor:
            snap["sensor"] = sensor_status(self.host, self.sources)
        return snap

    def _write_status(self) -> None:
        path = self.config.data_dir / "status.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(self.status(), option=orjson.OPT_INDENT_2))
            tmp.replace(path)
        except OSError as ex:
            if str(ex) != self._status_error:  # once per state change, not every 2 s
                self._status_error = str(ex)
                logger.error("cannot write %s: %s", path, ex)
            return
        if self._status_error:
            self._status_error = ""
            logger.warning("%s written again", path)

    def _status_loop(self) -> None:
        while not self._stop.wait(2.0):
            self.tracker.free_expired()  # also on idle hosts, not only every 4096 events
            self._write_status()


def build_agent(
    config: AgentConfig,
    *,
    sources: list[EventSource] | None = None,
    sinks: list[EventSink] | None = None,
    host: Host | None = None,
    clock: Callable[[], float] = time.time,
) -> Agent:
    """Wire an ``Agent`` from ``config``; ``sources``/``sinks`` override the configured ones."""
    tcfg = config.tracking
    host = host or make_host(
        hostname=config.general.hostname,
        hash_max_size=tcfg.hash_max_size,
        hash_cache_size=tcfg.hash_cache_size,
        clock=clock,
    )
    tracker = Tracker(
        max_tracks=tcfg.max_tracks,
        terminated_ttl=tcfg.terminated_ttl,
        modules_per_process=tcfg.modules_per_process,
        clock=clock,
    )
    rcfg = config.rules
    acfg = config.actions
    containers = load_containers(rcfg.containers_dir) if rcfg.containers_dir else {}
    iocs = load_ioc_file(rcfg.ioc_file) if rcfg.ioc_file else []
    detector = Detector(
        rule_paths=rcfg.paths,
        extra_rules=canary_rules(config.canaries),
        containers=containers,
        default_actions={
            "low": acfg.low,
            "medium": acfg.medium,
            "high": acfg.high,
            "critical": acfg.critical,
        },
        iocs=iocs,
        ioc_criticality=rcfg.ioc_criticality,
    )
    runner = ActionRunner(
        config=config,
        tracker=tracker,
        host=host,
        root=config.artifacts_dir,
        registry=actions(),
        clock=clock,
    )
    if sinks is None:
        sinks = []
        if config.alert_log.enable:
            al = config.alert_log
            sinks.append(
                AlertLog(
                    config.alert_dir,
                    detections_only=al.detections_only,
                    max_bytes=al.max_bytes,
                    rotation_interval=al.rotation_interval,
                    keep=al.keep,
                    clock=clock,
                )
            )
    if sources is None:
        sources = build_sources(config, host)
    return Agent(
        config,
        host=host,
        tracker=tracker,
        detector=detector,
        runner=runner,
        sources=sources,
        sinks=sinks,
        clock=clock,
    )
