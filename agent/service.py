"""Composition root of the agent: ``build_agent(config) -> Agent`` and the event pipeline.

Pipeline (one thread): sources (one thread each) → bounded queue → own-event filter → tracking
hooks (+ enrichment for live events) → blacklist terminator → ``Detector`` (Gene engine, IoCs,
canary rules) → forwarding decision → sinks, and planned actions → ``ActionRunner``.

Forwarding decision (docs/reference/whids.md §1.1 step 5): an event goes to the sinks when its
detection score is
≥ ``general.criticality_threshold``, or when only Filter rules matched and
``general.enable_filters`` is on, or always with ``general.log_all``.

The seam for the manager link is ``agent.seams.LinkedAgent``, which ``Agent`` implements
explicitly (docs/interfaces.md, agent section).
"""

from __future__ import annotations

import enum
import errno
import gc
import logging
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

import rules
from agent.actions import OPT_IN, RESPONSE_ACTIONS, actions, plan_actions
from agent.actions.report import build_report
from agent.actions.runner import ActionRunner, Job
from agent.canary import canary_rules, create_canaries, remove_canaries
from agent.config import AgentConfig
from agent.detect import Detector, load_containers, load_ioc_file
from agent.errors import AgentClosedError, SourceError
from agent.host import Host, make_host
from agent.monitor import Counters, ResourceGuard, SourceCounters
from agent.render import SYSMON_CHANNEL
from agent.seams import LinkedAgent
from agent.sinks import AlertLog, EventSink
from agent.sources import EventSource, build_sources, sensor_status
from agent.tracking.hooks import HookContext, run_hooks, service_lookup
from agent.tracking.seed import seed_from_proc
from agent.tracking.tracker import Tracker
from rules.wire import Ioc

__all__ = ["Agent", "AgentState", "build_agent"]

logger = logging.getLogger(__name__)

_Item = tuple[dict[str, Any], bool, SourceCounters | None]
# Deliberate degradation: process creation/termination are never shed at the source.
_ESSENTIAL_EIDS = frozenset({1, 5})
SHED_RATIO = 0.8  # queue fill above which optional live events are shed (counted) at the source
DEGRADE_RATIO = 0.5  # queue fill above which enrichment, hashing and evidence are skipped


class AgentState(enum.Enum):
    """Lifecycle of an ``Agent``."""

    CREATED = "created"  # built, nothing running
    RUNNING = "running"  # sources and pipeline threads started
    CLOSED = "closed"  # stopped; every later call raises AgentClosedError


def event_pid(data: dict[str, Any]) -> int:
    """The event's ProcessId; Security events write it in hex ("0x10cc"). 0 when unusable."""
    raw = str(data.get("ProcessId", "")).strip()
    try:
        return int(raw, 16) if raw.lower().startswith("0x") else int(raw)
    except ValueError:
        return 0


def _system(ev: dict[str, Any]) -> dict[str, Any]:
    system = ev.get("System")
    return system if isinstance(system, dict) else {}


def _event_id(ev: dict[str, Any]) -> int:
    raw: Any = _system(ev).get("EventID")
    if isinstance(raw, dict):
        raw = raw.get("Value")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


class Agent(LinkedAgent):
    """The running agent: sources → tracking → engine → actions → sinks."""

    COALESCE = 0.05  # seconds the pipeline waits to batch events when the queue is short

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
        self._queue: queue.Queue[_Item] = queue.Queue(config.general.queue_size)
        self._shed_at = max(1, int(config.general.queue_size * SHED_RATIO))
        self._degrade_at = max(1, int(config.general.queue_size * DEGRADE_RATIO))
        self._threads: list[threading.Thread] = []
        self._source_threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._inflight = 0
        self._inflight_lock = threading.Condition()
        self._own: OrderedDict[str, None] = OrderedDict()
        self._services = service_lookup()
        self._canaries: list[Path] = []
        self._flushers: list[Callable[[], None]] = []
        self._last_rates: tuple[float, dict[str, int]] = (time.monotonic(), {})
        self._seen_terminate = False
        self._sink_errors: dict[int, str] = {}  # failing sink -> last error (logged once)
        self._status_error = ""
        self._sysmon_seen = 0
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
        with self._inflight_lock:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._inflight_lock.wait(left)
        return self.runner.wait_idle(max(0.0, deadline - time.monotonic()))

    # --- threads ----------------------------------------------------------------------------

    def _pump(self, source: EventSource) -> None:
        counters = self.counters.source(source.name)
        counters.running = True
        live = source.live
        try:
            for event in source.events():
                if self._stop.is_set():
                    break
                with self._inflight_lock:
                    self._inflight += 1
                try:
                    if source.lossless:
                        while True:
                            try:
                                self._queue.put((event, live, counters), timeout=0.2)
                                break
                            except queue.Full:
                                if self._stop.is_set():
                                    raise
                    else:
                        if self._queue.qsize() >= self._shed_at and self._optional(event):
                            # keep the last places for process creations: shed, counted
                            counters.shed += 1
                            self._done(1)
                            if counters.shed in (1, 1000) or counters.shed % 100_000 == 0:
                                logger.warning(
                                    "pipeline behind: %d optional events shed from "
                                    "%s (process creations kept)",
                                    counters.shed,
                                    source.name,
                                )
                            continue
                        self._queue.put_nowait((event, live, counters))
                    counters.events += 1
                except queue.Full:
                    counters.drops += 1
                    self._done(1)
                    if counters.drops in (1, 100, 10_000) or counters.drops % 100_000 == 0:
                        logger.warning(
                            "queue full: %d events dropped from %s", counters.drops, source.name
                        )
        except SourceError as ex:
            counters.errors += 1
            counters.error = str(ex)
            logger.error("source %s failed: %s", source.name, ex)
        except Exception as ex:
            counters.errors += 1
            counters.error = str(ex)
            logger.error("source %s crashed", source.name, exc_info=True)
        finally:
            counters.running = False

    @staticmethod
    def _optional(event: dict[str, Any]) -> bool:
        ev = event.get("Event")
        return not isinstance(ev, dict) or _event_id(ev) not in _ESSENTIAL_EIDS

    def _done(self, n: int) -> None:
        with self._inflight_lock:
            self._inflight -= n
            if self._inflight <= 0:
                self._inflight_lock.notify_all()

    def _pipeline(self) -> None:
        get = self._queue.get
        while not self._stop.is_set() or not self._queue.empty():
            try:
                item = get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if self._queue.qsize() < 64:
                # Performance: coalesce a few ms of events into one batch; thread wake-ups cost
                # more than the events themselves at low rates.
                time.sleep(self.COALESCE)
            batch = [item]
            while len(batch) < 256:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # Deliberate degradation: under CPU pressure or with a backlog, optional work
            # (enrichment, hashing, evidence actions) is skipped — counted per source — so the
            # pipeline keeps up and events are not lost.
            degraded = self.guard.throttle or self._queue.qsize() >= self._degrade_at
            for event, live, counters in batch:
                if degraded and live and counters is not None:
                    counters.degraded += 1
                try:
                    self.process(event, live=live, degraded=degraded)
                except Exception:
                    self.counters.pipeline_errors += 1
                    logger.error("pipeline error", exc_info=True)
                    self._forward_raw(event)
            for flush in self._flushers:
                try:
                    flush()
                    if self._sink_errors:
                        self._sink_ok(flush)
                except Exception as ex:  # noqa: BLE001 - a failing sink is counted and retried, never fatal
                    self._sink_failed(flush, ex)
            self._done(len(batch))
            if self.guard.throttle and self._queue.qsize() < self._degrade_at // 2:
                time.sleep(0.05)  # over the CPU limit with no backlog: yield to the host

    # --- one event --------------------------------------------------------------------------

    def _is_own(self, ev: dict[str, Any], eid: int) -> bool:
        data = ev.get("EventData")
        if not isinstance(data, dict):
            return False
        me = str(self.host.agent_pid)
        guid = str(data.get("ProcessGuid", ""))
        if eid == 1 and str(data.get("ParentProcessId", "")) == me:
            self._own[guid] = None
            while len(self._own) > 4096:
                self._own.popitem(last=False)
            return True
        if eid == 1 and str(data.get("ParentProcessGuid", "")) in self._own:
            self._own[guid] = None
            return True
        return str(data.get("ProcessId", "")) == me or guid in self._own

    def _forward_raw(self, event: Any) -> None:
        """Keep an event the pipeline failed on: forwarded as received, counted.

        Only ``{"Event": {...}}`` objects can be stored by the manager (one other value would
        refuse the whole batch): anything else is counted and logged as dropped.
        """
        self.counters.unprocessable += 1
        if not isinstance(event, dict) or not isinstance(event.get("Event"), dict):
            logger.warning('dropped an event that is not an {"Event": {...}} object')
            return
        self.counters.forwarded += 1
        for sink in self.sinks:
            try:
                sink.submit(event)
            except Exception:
                self.counters.sink_errors += 1
                logger.error("sink %r failed", sink, exc_info=True)

    def process(self, event: dict[str, Any], *, live: bool = False, degraded: bool = False) -> bool:
        """Run one event through the pipeline; True when it was forwarded to the sinks.

        ``degraded``: skip enrichment, hashing and evidence actions (CPU pressure, backlog);
        tracking, detection, response actions and forwarding still run. Raises only for an
        event the pipeline cannot handle (the caller forwards it raw).
        """
        ev = event.get("Event") if isinstance(event, dict) else None
        if not isinstance(ev, dict):
            self.counters.unprocessable += 1
            logger.warning('dropped an event that is not an {"Event": {...}} object')
            return False
        self.counters.processed += 1
        eid = _event_id(ev)
        if live and self.config.general.ignore_self and self._is_own(ev, eid) and eid != 5:
            self.counters.own_events += 1
            return False
        ctx = HookContext(
            self.tracker,
            self.host.hasher if live and not degraded else None,
            self._services,
            self.clock(),
            archive_dir=self.config.tracking.sysmon_archive_dir,
        )
        with self.tracker.lock:  # readers (reports, commands) iterate tracks on other threads
            run_hooks(ctx, event, enrich=live and self.config.tracking.enrich and not degraded)
        if live and not self._seen_terminate:
            self._check_terminations(ev, eid)
        raw_data = ev.get("EventData")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        if (
            live
            and eid == 1
            and self.tracker.blacklist
            and data.get("CommandLine") in self.tracker.blacklist
        ):
            self._blacklisted(event, data)
        verdict = self.detector.match(event)
        gen = self.config.general
        det = verdict.detection
        forward = gen.log_all
        if det is not None:
            self.counters.detections += 1
            if verdict.criticality >= gen.criticality_threshold:
                forward = True
                guid = str(data.get("ProcessGuid", ""))
                self.tracker.add_score(guid, list(det.get("Signature", [])), verdict.criticality)
        elif verdict.filtered:
            self.counters.filtered += 1
            forward = forward or gen.enable_filters
        if det is not None and det.get("Actions") and live:
            self._act(event, data, det, list(det["Actions"]), degraded=degraded)
        if forward:
            self.counters.forwarded += 1
            for sink in self.sinks:
                try:
                    sink.submit(event)
                    if self._sink_errors:
                        self._sink_ok(sink)
                except Exception as ex:  # noqa: BLE001 - a failing sink is counted and retried, never fatal
                    self._sink_failed(sink, ex)
        return forward

    def _sink_failed(self, sink: object, ex: Exception) -> None:
        """Count a sink failure; log it once per distinct error, never once per event."""
        self.counters.sink_errors += 1
        # the same errno is the same state (a short write differs only in its byte counts)
        msg = (
            f"errno {ex.errno}"
            if isinstance(ex, OSError) and ex.errno
            else f"{type(ex).__name__}: {ex}"
        )
        key = id(getattr(sink, "__self__", sink))  # a flush method and its sink are one
        if self._sink_errors.get(key) == msg:
            return
        self._sink_errors[key] = msg
        if isinstance(ex, OSError):  # disk full, I/O error: one line, no traceback
            what = "data disk full" if ex.errno in (errno.ENOSPC, errno.EDQUOT) else "I/O error"
            logger.error(
                "sink %r failed: %s (%s); counted in sink_errors, logged again only "
                "when the error changes",
                sink,
                what,
                ex,
            )
        else:
            logger.error("sink %r failed", sink, exc_info=True)

    def _sink_ok(self, sink: object) -> None:
        key = id(getattr(sink, "__self__", sink))
        if self._sink_errors.pop(key, None) is not None:
            logger.warning(
                "sink %r works again (%d sink errors so far)", sink, self.counters.sink_errors
            )

    def _check_terminations(self, ev: dict[str, Any], eid: int) -> None:
        """WHIDS hookProcTerm: warn while Sysmon never reported a process termination.

        Without EventID 5 tracks are never freed early (only the ``tracking.max_tracks`` cap
        bounds them) and parent fields go stale: usually a Sysmon configuration problem.
        """
        if _system(ev).get("Channel") != SYSMON_CHANNEL:
            return
        if eid == 5:
            self._seen_terminate = True
            return
        self._sysmon_seen += 1
        if self._sysmon_seen % 1000 == 0:
            logger.warning(
                "%d Sysmon events and no process termination (EventID 5) yet: check "
                "the Sysmon configuration",
                self._sysmon_seen,
            )

    def _act(
        self,
        event: dict[str, Any],
        data: dict[str, Any],
        det: dict[str, Any],
        requested: list[str],
        *,
        degraded: bool = False,
    ) -> None:
        guid = str(data.get("ProcessGuid", ""))
        if degraded:
            shed = [a for a in requested if a and a not in RESPONSE_ACTIONS]
            if shed:
                self.runner.stats.count(self.runner.stats.skipped, ["cpu pressure"] * len(shed))
                requested = [a for a in requested if a in RESPONSE_ACTIONS]
            if not requested:
                return
        track = self.tracker.get(guid)
        acfg = self.config.actions
        plan = plan_actions(
            requested,
            allowed=acfg.allowed,
            tracked=track is not None,
            act_on_untracked=acfg.act_on_untracked,
            done_for_process=track.action_count if track else 0,
            max_per_process=acfg.max_per_process,
            memory_dumped=bool(track and track.memory_dumped),
        )
        for name, reason in plan.skipped:
            logger.info("action %s skipped for %s: %s", name, guid, reason)
        if not plan:
            return
        pid = event_pid(data) or (track.pid if track else 0)
        submitted = self.runner.submit(
            Job(
                event=event,
                detection=det,
                plan=plan,
                event_hash=rules.event_hash(event),
                process_guid=guid,
                pid=pid,
                image=str(data.get("Image", track.image if track else "")),
                command_line=str(data.get("CommandLine", track.command_line if track else "")),
            )
        )
        if submitted and track is not None:
            track.action_count += 1  # counted when planned, so bursts respect the limit

    def _blacklisted(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        det = {"Signature": ["Builtin:Blacklisted"], "Criticality": 10, "Actions": ["kill"]}
        logger.warning("blacklisted command line started: %s", data.get("CommandLine"))
        self._act(event, data, det, ["kill"])

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
        self.config = applied
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
                "queue": {"size": self._queue.qsize(), "max": self._queue.maxsize},
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
