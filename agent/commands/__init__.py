"""On-demand commands from the manager (docs/reference/whids.md §1.8): the registry and its
runner."""

from __future__ import annotations

from .context import CommandContext, CommandError, run_process
from .runner import COMMANDS, run_command

__all__ = ["COMMANDS", "CommandContext", "CommandError", "run_command", "run_process"]
