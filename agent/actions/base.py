"""The ``Action`` seam and the context every response action receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.actions.artifacts import ArtifactDir
    from agent.actions.budget import ArtifactStore
    from agent.config import AgentConfig
    from agent.host import Host
    from agent.tracking.tracker import Tracker

__all__ = ["Action", "ActionContext"]


@dataclass(frozen=True, slots=True)
class ActionContext:
    """One detection as seen by the actions planned for it."""

    event: dict[str, Any]
    detection: dict[str, Any]
    process_guid: str
    pid: int
    image: str
    command_line: str
    artifacts: ArtifactDir
    tracker: Tracker
    host: Host
    config: AgentConfig
    clock: Callable[[], float]
    run_commands: Callable[..., list[dict[str, Any]]] | None = None
    store: ArtifactStore | None = None  # quota accounting and the sha256 de-duplication index

    @property
    def event_data(self) -> dict[str, Any]:
        ev = self.event.get("Event", {})
        data = ev.get("EventData") if isinstance(ev, dict) else None
        return data if isinstance(data, dict) else {}


class Action(Protocol):
    """A response action: ``run`` performs it or raises ``ActionError``."""

    def __call__(self, ctx: ActionContext) -> None: ...
