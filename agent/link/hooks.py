"""`LinkHooks`: what the link may call in the agent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.tracking.tracker import Tracker
from rules import wire

__all__ = ["LinkHooks"]


@dataclass(frozen=True, slots=True)
class LinkHooks:
    """What the link may call in the agent (every hook optional)."""

    reload_rules: Callable[[str], object] | None = None
    set_iocs: Callable[[list[wire.Ioc]], object] | None = None
    set_suppressions: Callable[[list[dict[str, Any]]], object] | None = None
    apply_config: Callable[[dict[str, Any]], object] | None = None
    apply_sysmon: Callable[[bytes], object] | None = None
    report: Callable[[], dict[str, Any]] | None = None
    tracker: Tracker | None = None
    artifacts_dir: Path | None = None
    hostname: str = ""
    set_endpoint: Callable[[str], object] | None = None  # told the uuid once enrolled
    current_config: Callable[[], dict[str, Any]] | None = None  # offered if the manager has none
    sensor: Callable[[], dict[str, Any]] | None = None  # Linux sensor mode + fallback reason
    agent_status: Callable[[], dict[str, Any]] | None = None  # counters reported to the manager
    rules_state: Callable[[], dict[str, str]] | None = None  # reported as health event 9011
