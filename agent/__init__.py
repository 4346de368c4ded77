"""Heron endpoint agent: sources, tracking, detection, actions, standalone CLI.

Public surface (docs/interfaces.md, agent section). Names are resolved lazily so that light
modules (``agent.errors``, ``agent.config``) can be imported without the whole pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ActionContext",
    "Agent",
    "AgentConfig",
    "AgentError",
    "AgentState",
    "AlertLog",
    "ConfigError",
    "EventSink",
    "EventSource",
    "MemorySink",
    "MemorySource",
    "Tracker",
    "build_agent",
    "dump_toml",
    "load_config",
]

_WHERE = {
    "ActionContext": "agent.actions.base",
    "Agent": "agent.service",
    "AgentConfig": "agent.config",
    "AgentError": "agent.errors",
    "AgentState": "agent.service",
    "AlertLog": "agent.sinks",
    "ConfigError": "agent.errors",
    "EventSink": "agent.sinks",
    "EventSource": "agent.sources",
    "MemorySink": "agent.sinks",
    "MemorySource": "agent.sources",
    "Tracker": "agent.tracking.tracker",
    "build_agent": "agent.service",
    "dump_toml": "agent.config",
    "load_config": "agent.config",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
