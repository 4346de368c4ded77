"""Health reports the link queues for the manager when they change: the agent's loss,
degradation and budget counters (EventID 9010) and its rule state (9011).

They go to the priority lane, so the manager sees them before any bulk backlog.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .health import health_event
from .segments import Lane
from .spool import Spool

HEALTH_COUNTERS = 9010  # EventID: the agent's loss/degradation/budget counters (on change)
HEALTH_INTERVAL = 60.0  # seconds between counter reports (sent only when they changed)
HEALTH_RULES_STATE = 9011  # EventID: rule count, rules hash, last rules update (on change)


class HealthReports:
    """Builds the counters and rule-state reports and queues each only when it changed."""

    def __init__(
        self,
        spool: Spool,
        hostname: str,
        *,
        agent_status: Callable[[], dict[str, Any]] | None,
        rules_state: Callable[[], dict[str, str]] | None,
        threads: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self._spool = spool
        self._hostname = hostname
        self._agent_status = agent_status
        self._rules_state = rules_state
        self._threads = threads  # the supervisor's live view of the link threads
        self._last_counters = ""
        self._last_rules_state: dict[str, str] | None = None

    def counters(self) -> dict[str, Any]:
        """Every loss, degradation and budget counter of this agent (what the manager shows)."""
        out: dict[str, Any] = {}
        if self._agent_status is not None:
            st = self._agent_status()
            keep = ("events", "drops", "shed", "lost", "incomplete", "degraded")
            out["sources"] = {
                n: {k: s.get(k, 0) for k in keep} for n, s in st.get("sources", {}).items()
            }
            acts = st.get("actions", {})
            out["actions"] = {
                k: acts.get(k)
                for k in ("dropped_actions", "skipped", "failures", "budget")
                if k in acts
            }
            out["suppressed"] = st.get("suppressed", {})
            out["throttled"] = bool(st.get("throttled", False))
        q = self._spool.stats()
        out["queue"] = {
            "evicted": q.evicted_events,
            "disk_dropped": q.disk_dropped,
            "oversize_dropped": q.oversize_dropped,
            "rejected_batches": q.rejected_batches,
            "disk_state": q.disk_state,
            "lost_segments": q.lost_segments,
        }
        out["threads"] = {
            k: {"restarts": v["restarts"], "last_error": v["last_error"]}
            for k, v in self._threads.items()
        }
        return out

    def report_counters(self) -> bool:
        """Queue the counters as health event 9010 when they changed; True when sent."""
        doc = json.dumps(self.counters(), sort_keys=True, default=str)
        if doc == self._last_counters:
            return False
        self._last_counters = doc
        self._queue(health_event(HEALTH_COUNTERS, "agent counters", self._hostname, Counters=doc))
        return True

    def report_rules_state(self) -> bool:
        """Queue the agent's rule state (health event 9011) when it changed; True when queued.

        The manager keeps the latest per endpoint (GET /endpoints `rules`, console, /metrics),
        so an endpoint running with no or outdated rules is visible there.
        """
        if self._rules_state is None:
            return False
        state = dict(self._rules_state())
        if state == self._last_rules_state:
            return False
        self._queue(health_event(HEALTH_RULES_STATE, "rules state", self._hostname, **state))
        self._last_rules_state = state
        return True

    def _queue(self, event: dict[str, Any]) -> None:
        self._spool.submit_line(orjson.dumps(event) + b"\n", Lane.DETECTIONS)
