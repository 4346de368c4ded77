"""Errors raised by the agent package.

Tree::

    AgentError(RuntimeError)
    ├── ConfigError(AgentError, ValueError)   bad TOML, unknown key, wrong type (says where)
    ├── SourceError(AgentError)               an event source cannot start or read
    ├── ActionError(AgentError)               a response action failed
    └── AgentClosedError(AgentError)          the agent was used after ``close()``
"""

from __future__ import annotations


class AgentError(RuntimeError):
    """Base class of every agent error."""


class ConfigError(AgentError, ValueError):
    """Invalid configuration; the message names the offending key."""

    def __init__(self, message: str, *, key: str = "", source: str = "") -> None:
        self.key = key
        self.source = source
        where = f" at {key}" if key else ""
        if source:
            where += f" in {source}"
        super().__init__(f"{message}{where}")


class SourceError(AgentError):
    """An event source could not be started or read."""


class ActionError(AgentError):
    """A response action failed."""


class AgentClosedError(AgentError):
    """The agent was used after it was closed."""
