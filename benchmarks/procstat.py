"""CPU accounting shared by the benchmark scripts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


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


def start_standalone_agent(base: Path, *, log: bool = True) -> subprocess.Popen[bytes]:
    """`heron-agent run --standalone -c base/config.toml` from this checkout (stderr to
    base/agent.log, or discarded)."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--standalone", "-c", str(base / "config.toml")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(base / "agent.log", "wb") if log else subprocess.DEVNULL,
    )
