"""The rule state each agent reports: rule count, rules hash, last update (docs/manager.md).

The agent's link queues a ``Heron-Agent`` health event 9011 whenever its rules change (and once
at start); ingest hands every stored batch to :meth:`RuleStates.observe`, which keeps the latest
per endpoint in the fleet store (``documents`` kind ``agent-rules``) and in memory for
``GET /endpoints``, the console and ``/metrics``. An endpoint with 0 rules, or with a hash
that is not the one the manager serves, is then visible instead of silently blind.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from ..core.timefmt import rfc3339
from ..store import Store

__all__ = ["AGENT_CHANNEL", "KIND", "RULES_STATE", "RuleStates", "state_of"]

AGENT_CHANNEL = "Heron-Agent"
RULES_STATE = 9011
KIND = "agent-rules"
_SHA = re.compile(r"[0-9a-f]{64}")
_TIME_MAX = 40


def _event_id(system: dict[str, Any]) -> int:
    value = system.get("EventID")
    if isinstance(value, dict):
        value = value.get("Value")
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -1


def state_of(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last well-formed rule state among ``events`` (``None``: there is none)."""
    for event in reversed(events):
        inner = event.get("Event")
        system = inner.get("System") if isinstance(inner, dict) else None
        if (
            not isinstance(system, dict)
            or system.get("Channel") != AGENT_CHANNEL
            or _event_id(system) != RULES_STATE
        ):
            continue
        data = inner.get("EventData")
        if not isinstance(data, dict):
            continue
        try:
            count = int(str(data.get("RuleCount", "")))
        except ValueError:
            continue
        sha = str(data.get("RulesSha256", "")).lower()
        return {
            "count": max(0, count),
            "sha256": sha if _SHA.fullmatch(sha) else "",
            "updated": str(data.get("RulesUpdated", ""))[:_TIME_MAX],
            "source": "manager" if data.get("RulesSource") == "manager" else "local",
        }
    return None


class RuleStates:
    """Latest reported rule state per endpoint uuid (persisted, cached in memory)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, Any]] = {}
        for key in store.documents.keys(KIND):
            found = store.documents.get(KIND, key)
            if found is not None:
                self._states[key] = json.loads(found[0])

    def observe(self, uuid: str, events: list[dict[str, Any]], now: float) -> bool:
        """Keep the batch's latest rule state of endpoint ``uuid``; True when there was one."""
        state = state_of(events)
        if state is None:
            return False
        state["reported"] = rfc3339(now)
        self.store.documents.put(KIND, uuid, json.dumps(state), state["sha256"], now)
        with self._lock:
            self._states[uuid] = state
        return True

    def get(self, uuid: str, served_sha256: str) -> dict[str, Any] | None:
        """The endpoint's state with ``status``: ``ok``, ``no-rules`` or ``outdated`` (a hash
        other than the served one); ``None`` when the agent never reported."""
        with self._lock:
            state = self._states.get(uuid)
        if state is None:
            return None
        return dict(state, status=_status(state, served_sha256))

    def counts(self, uuids: list[str], served_sha256: str) -> dict[str, int]:
        """How many of ``uuids`` are in each status (``unknown``: never reported)."""
        out = {"ok": 0, "no-rules": 0, "outdated": 0, "unknown": 0}
        with self._lock:
            states = [self._states.get(u) for u in uuids]
        for state in states:
            out["unknown" if state is None else _status(state, served_sha256)] += 1
        return out

    def forget(self, uuid: str) -> None:
        with self._lock:
            self._states.pop(uuid, None)
        self.store.documents.delete(KIND, uuid)


def _status(state: dict[str, Any], served_sha256: str) -> str:
    if not state.get("count"):
        return "no-rules"
    if served_sha256 and state.get("sha256") != served_sha256:
        return "outdated"  # an older set, or local rules while the manager serves some
    return "ok"
