"""The ``Action`` seam and the context every response action receives.

Actions get ``ActionSettings``, the few settings they read, not the whole agent configuration:
an action module never needs ``agent.config`` at run time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.actions.artifacts import ArtifactDir
    from agent.actions.budget import ArtifactStore
    from agent.config import AgentConfig, ReportingConfig
    from agent.host import Host
    from agent.tracking.tracker import Tracker

__all__ = ["Action", "ActionContext", "ActionSettings"]


@dataclass(frozen=True, slots=True)
class ActionSettings:
    """The settings response actions read (``agent.actions.registry`` says which reads what)."""

    max_file_size: int  # actions.max_file_size (filedump)
    max_memdump_size: int  # actions.max_memdump_size (memdump)
    max_report_items: int  # actions.max_report_items (report, brief)
    sysmon_archive_dir: str  # tracking.sysmon_archive_dir (filedump)
    reporting: ReportingConfig  # [reporting] (report, brief)

    @classmethod
    def from_config(cls, config: AgentConfig) -> ActionSettings:
        acts = config.actions
        return cls(
            max_file_size=acts.max_file_size,
            max_memdump_size=acts.max_memdump_size,
            max_report_items=acts.max_report_items,
            sysmon_archive_dir=config.tracking.sysmon_archive_dir,
            reporting=config.reporting,
        )


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
    settings: ActionSettings
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
