"""What the kernel says about a process (Linux /proc): for waits on a child's death or signals."""

from __future__ import annotations

from pathlib import Path

__all__ = ["exited", "pending_signals"]


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
