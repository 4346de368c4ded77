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

__all__ = ["seed_from_proc", "seed_from_psutil"]

logger = logging.getLogger(__name__)


def seed_from_psutil(tracker: Tracker) -> int:
    """Tracks for running processes through psutil (Windows / other OSes, no Sysmon GUIDs).

    GUIDs are synthetic (pid + creation time) and only meant for standalone reports.
    """
    import psutil

    from agent.render import process_guid

    procs = []
    for p in psutil.process_iter(
        ["pid", "ppid", "exe", "cmdline", "cwd", "username", "create_time", "name"]
    ):
        info = p.info
        guid = process_guid("psutil", info["pid"], int((info["create_time"] or 0) * 1000))
        procs.append((info["create_time"] or 0.0, guid, info))
    procs.sort(key=lambda t: t[0])
    by_pid = {info["pid"]: (guid, info) for _, guid, info in procs}
    created = 0
    for _, guid, info in procs:
        parent = by_pid.get(info["ppid"] or -1)
        tracker.create(
            guid,
            info["pid"],
            image=info["exe"] or info["name"] or "?",
            command_line=" ".join(info["cmdline"] or []) or "?",
            cwd=info["cwd"] or "?",
            user=info["username"] or "?",
            parent_guid=parent[0] if parent else "?",
            parent_image=(parent[1]["exe"] or "?") if parent else "?",
        )
        created += 1
    return created


def seed_from_proc(tracker: Tracker, host: Host, root: str = "/proc") -> int:
    """Create a track per running process (parents first); returns the number created.

    Off Linux this falls back to ``seed_from_psutil``.
    """
    if not sys.platform.startswith("linux"):
        return seed_from_psutil(tracker)
    if not os.path.isdir(root):
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
        tracker.create(
            info.guid,
            info.pid,
            image=info.image,
            command_line=info.command_line,
            cwd=info.cwd,
            user=info.user,
            integrity="High" if info.uid == 0 else "Medium",
            parent_guid=parent.guid if parent else "?",
            parent_image=parent.image if parent else "?",
            parent_command_line=parent.command_line if parent else "?",
        )
        created += 1
    logger.info("tracker seeded with %d running processes", created)
    return created
