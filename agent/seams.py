"""What the manager link needs from the agent: the ``LinkedAgent`` protocol.

``agent.link.attach.attach(agent, config)`` takes a ``LinkedAgent``; ``agent.service.Agent``
subclasses it explicitly, so mypy checks that the agent offers every member with the right
signature (a missing one makes ``Agent`` abstract). It lives in the agent core, not in
``agent.link``, so that the pipeline does not import the link (and its ``cryptography``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.sinks import EventSink
    from agent.tracking.tracker import Tracker
    from rules.wire import Ioc

__all__ = ["LinkedAgent"]


class LinkedAgent(Protocol):
    """The agent as the link sees it: where events go, what the manager may change, and the
    state the link reports back."""

    # commands from the manager read the process tracker (agent.commands)
    tracker: Tracker

    @property
    def artifacts_dir(self) -> Path:
        """Where actions write artifacts; the link uploads the finished ones."""
        ...

    # -- event sink
    def add_sink(self, sink: EventSink) -> None:
        """Also send every forwarded event to ``sink`` (the link's durable spool)."""
        ...

    # -- replacements pushed by the manager (each returns the new item count)
    def reload_rules(self, text: str) -> int: ...

    def set_iocs(self, iocs: Iterable[Ioc | Mapping[str, object]]) -> int: ...

    def set_suppressions(self, items: Iterable[Mapping[str, object]]) -> int: ...

    def apply_config(self, new: AgentConfig) -> list[str]:
        """Apply a validated configuration live; returns the sections that need a restart."""
        ...

    def set_endpoint(self, endpoint_uuid: str) -> None:
        """The endpoint uuid given at enrollment (written into artifact manifests)."""
        ...

    # -- command execution and health
    def report(self, *, commands: bool = True, guid: str = "") -> dict[str, Any]:
        """The IR report of this endpoint (the `report` command)."""
        ...

    def status(self) -> dict[str, Any]:
        """The health snapshot (counters per source, queues, actions) the link reports."""
        ...

    def rules_state(self) -> dict[str, str]:
        """Rule count, rules hash and last update (health event 9011)."""
        ...

    def sensor_mode(self) -> dict[str, str]:
        """Linux sensor ``{"mode", "reason"}`` for the system information; {} elsewhere."""
        ...
