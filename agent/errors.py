"""Errors raised by the agent package.

Tree::

    AgentError(RuntimeError)
    ├── SourceError(AgentError)               an event source cannot start or read
    ├── ActionError(AgentError)               a response action failed
    └── AgentClosedError(AgentError)          the agent was used after ``close()``
    ConfigError(ValueError)                 bad TOML, unknown key, wrong type (says where);
                                            ``rules.settings.ConfigError``, shared by all packages
"""

from __future__ import annotations

from rules.settings import ConfigError

__all__ = ["ActionError", "AgentClosedError", "AgentError", "ConfigError", "SourceError"]


class AgentError(RuntimeError):
    """Base class of every agent error."""


class SourceError(AgentError):
    """An event source could not be started or read."""


class ActionError(AgentError):
    """A response action failed."""


class AgentClosedError(AgentError):
    """The agent was used after it was closed."""
