"""CPU accounting shared by the benchmark scripts."""

from __future__ import annotations

import psutil


def tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default) and its live children.

    The manager's index writer runs in a child process; its CPU belongs to the server.
    """
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total
