"""One event through the agent: tracking, detection, response actions and forwarding.

``EventPipeline.process(event)`` runs on the agent's pipeline thread (``agent.service``):
own-event filter → tracking hooks (+ enrichment for live events) → blacklist terminator →
``Detector`` (Gene engine, IoCs, canary rules) → forwarding decision → sinks, and planned
actions → ``ActionRunner``.

Forwarding decision (docs/reference/whids.md §1.1 step 5): an event goes to the sinks when its
detection score is ≥ ``general.criticality_threshold``, or when only Filter rules matched and
``general.enable_filters`` is on, or always with ``general.log_all``.
"""

from __future__ import annotations

import errno
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import rules
from agent.actions import RESPONSE_ACTIONS, plan_actions
from agent.actions.runner import ActionRunner, Job
from agent.config import AgentConfig
from agent.detect import Detector
from agent.host import Host
from agent.monitor import Counters
from agent.render import SYSMON_CHANNEL
from agent.sinks import EventSink
from agent.tracking.hooks import HookContext, run_hooks, service_lookup
from agent.tracking.tracker import Tracker

__all__ = ["EventPipeline", "event_id", "event_pid", "event_system"]

logger = logging.getLogger(__name__)


def event_pid(data: dict[str, Any]) -> int:
    """The event's ProcessId; Security events write it in hex ("0x10cc"). 0 when unusable."""
    raw = str(data.get("ProcessId", "")).strip()
    try:
        return int(raw, 16) if raw.lower().startswith("0x") else int(raw)
    except ValueError:
        return 0


def event_system(ev: dict[str, Any]) -> dict[str, Any]:
    system = ev.get("System")
    return system if isinstance(system, dict) else {}


def event_id(ev: dict[str, Any]) -> int:
    raw: Any = event_system(ev).get("EventID")
    if isinstance(raw, dict):
        raw = raw.get("Value")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


class EventPipeline:
    """Processes one event at a time; the sinks list is shared with (and extended by) the agent.

    ``config`` is replaced by ``Agent.apply_config``; every other collaborator is the agent's own.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        host: Host,
        tracker: Tracker,
        detector: Detector,
        runner: ActionRunner,
        sinks: list[EventSink],
        counters: Counters,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.host = host
        self.tracker = tracker
        self.detector = detector
        self.runner = runner
        self.sinks = sinks
        self.counters = counters
        self.clock = clock
        self._own: OrderedDict[str, None] = OrderedDict()
        self._services = service_lookup()
        self._seen_terminate = False
        self._sink_errors: dict[int, str] = {}  # failing sink -> last error (logged once)
        self._sysmon_seen = 0

    @property
    def sink_failing(self) -> bool:
        """Some sink failed last time (a success must be reported once)."""
        return bool(self._sink_errors)

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

    def forward_raw(self, event: Any) -> None:
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
        eid = event_id(ev)
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
                        self.sink_ok(sink)
                except Exception as ex:  # noqa: BLE001 - a failing sink is counted and retried, never fatal
                    self.sink_failed(sink, ex)
        return forward

    def sink_failed(self, sink: object, ex: Exception) -> None:
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

    def sink_ok(self, sink: object) -> None:
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
        if event_system(ev).get("Channel") != SYSMON_CHANNEL:
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
