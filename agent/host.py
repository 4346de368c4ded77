"""The host the agent runs on: name, boot id and the state its live sources share.

One ``Host`` is built by ``agent.service.build_agent`` and handed to every source factory; it
owns the ``PidDirectory`` (Linux) and the ``FileHasher`` so that sources, the tracker and the
actions agree on process GUIDs and hashes.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.sources.procfs import PidDirectory, read_boot_id
from agent.tracking.hashes import FileHasher

__all__ = ["Host", "make_host"]


@dataclass(slots=True)
class Host:
    """Identity of this endpoint plus shared live-source state."""

    hostname: str
    boot_id: str
    hasher: FileHasher
    pids: PidDirectory
    agent_pid: int = field(default_factory=os.getpid)
    clock: Callable[[], float] = time.time
    # Linux sensor: {"mode": "ebpf" | "proc", "reason": why eBPF is not used} (build_sources)
    sensor: dict[str, Any] = field(default_factory=dict)


def make_host(
    *,
    hostname: str = "",
    hash_max_size: int = 64 * 1024 * 1024,
    hash_cache_size: int = 4096,
    clock: Callable[[], float] = time.time,
) -> Host:
    """Build the ``Host`` for this machine."""
    name = hostname or socket.gethostname()
    boot = read_boot_id() if sys.platform.startswith("linux") else "windows"
    return Host(
        name,
        boot,
        FileHasher(max_size=hash_max_size, cache_size=hash_cache_size),
        PidDirectory(boot),
        clock=clock,
    )
