"""CPU accounting shared by the benchmark scripts."""

from __future__ import annotations

import os
import signal
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


class ThreadCpu:
    """CPU seconds of a process tree's threads whose name starts with ``prefix`` (Linux
    ``/proc``; 0 elsewhere), summed over every thread seen, so a thread pool that is
    replaced (a reopened Tantivy writer) keeps what its old threads used.

    ``ThreadCpu(pid, "merge_thread")`` measures the Tantivy segment merges of the manager's
    index writer child: they run on tantivy's merge thread pool, not on its indexing threads.
    """

    def __init__(self, pid: int, prefix: str) -> None:
        self.pid, self.prefix = pid, prefix
        self._seen: dict[int, float] = {}
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def seconds(self) -> float:
        """CPU seconds used so far by the matching threads."""
        try:
            procs = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            procs = []
        for proc in procs:
            task = Path(f"/proc/{proc.pid}/task")
            try:
                tids = [int(t.name) for t in task.iterdir()]
            except OSError:
                continue
            for tid in tids:
                try:
                    if not (task / str(tid) / "comm").read_text().startswith(self.prefix):
                        continue
                    fields = (task / str(tid) / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # the thread ended
                used = (int(fields[11]) + int(fields[12])) / self._tick
                self._seen[tid] = max(self._seen.get(tid, 0.0), used)
        return sum(self._seen.values())


def start_standalone_agent(base: Path, *, log: bool = True) -> subprocess.Popen[bytes]:
    """`heron-agent run --standalone -c base/config.toml` from this checkout (stderr to
    base/agent.log, or discarded)."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--standalone", "-c", str(base / "config.toml")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(base / "agent.log", "wb") if log else subprocess.DEVNULL,
    )


def stop_agent(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
