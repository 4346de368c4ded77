"""Seed the tracker with the processes already running when the agent starts (Linux).

Without it, processes older than the agent have no track, so their children get no ancestors
and actions on them are skipped as untracked. GUIDs come from the shared ``PidDirectory``, so
they equal the ones live sources emit.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.host import Host
    from agent.tracking.tracker import Tracker

__all__ = ["seed_from_proc"]

logger = logging.getLogger(__name__)


def seed_from_proc(tracker: Tracker, host: Host, root: str = "/proc") -> int:
    """Create a track per running process (parents first); returns the number created."""
    if not sys.platform.startswith("linux") or not os.path.isdir(root):
        return 0
    infos = []
    for name in os.listdir(root):
        if name.isdigit():
            info = host.pids.get(int(name))
            if info is not None:
                infos.append(info)
    infos.sort(key=lambda i: (i.start_ticks, i.pid))
    by_pid = {i.pid: i for i in infos}
    created = 0
    for info in infos:
        parent = by_pid.get(info.ppid)
        if info.guid in tracker:
            continue
        tracker.create(info.guid, info.pid, image=info.image, command_line=info.command_line,
                       cwd=info.cwd, user=info.user,
                       integrity="High" if info.uid == 0 else "Medium",
                       parent_guid=parent.guid if parent else "?",
                       parent_image=parent.image if parent else "?",
                       parent_command_line=parent.command_line if parent else "?")
        created += 1
    logger.info("tracker seeded with %d running processes", created)
    return created
