"""What a command may use from the agent: `CommandContext`, and the `CommandError` it raises."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


def run_process(
    argv: Sequence[str],
    timeout: float,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program without a shell, capturing output (the default `Runner`).

    Raises:
        subprocess.TimeoutExpired: the program ran longer than `timeout` (it is killed).
    """
    return subprocess.run(
        list(argv),
        capture_output=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


class CommandError(ValueError):
    """A command was misused or failed; the message goes to `CommandResult.error`."""


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Collaborators and limits for built-in commands (all optional, injected)."""

    manager_host: str = ""
    manager_port: int = 0
    tools_dir: Path | None = None
    allowed_tools: tuple[str, ...] = ()
    own_pid: int = field(default_factory=os.getpid)
    tracker: Any = None  # agent.tracking.Tracker (snapshot/modules/driver_list)
    report: Callable[[], dict[str, Any]] | None = None  # the agent's IR report builder
    runner: Runner = run_process
    max_entries: int = 100_000
    max_fetch_size: int = 64 * 1024 * 1024
    osquery_tables: tuple[str, ...] = (
        "processes",
        "services",
        "scheduled_tasks",
        "drivers",
        "startup_items",
        "process_open_sockets",
    )
    containment_backend: str = ""  # "", "nft", "iptables", "netsh" ("" = pick for the platform)
