"""Child processes in tests: what the kernel says about one (Linux /proc), and benchmark runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["exited", "pending_signals", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[2]


def exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie (dead, not yet reaped by its parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def pending_signals(pid: int) -> int:
    """The signals sent to `pid` and not yet delivered (thread- and process-wide), as a mask."""
    mask = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            mask |= int(line.split()[1], 16)
    return mask


def run_benchmark(*args: str, timeout: float) -> str:
    """Run `python ARGS` from the repository in its own session and return its stdout; on a
    timeout kill it with everything it started. A non-zero exit fails with its stderr's tail."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    return out
