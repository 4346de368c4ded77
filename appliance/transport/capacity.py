"""How many TLS connections a listener accepts: sized from memory and file descriptors.

`tls.max_connections = 0` (the default) means "size it": `tls.connection_memory` bytes divided
by BYTES_PER_CONNECTION, the manager's RSS per idle mutual-TLS agent connection measured by
`benchmarks/fleet.py` (TLS state, the asyncio transport and stream buffers, the handler task),
capped by the open-file limit (raised to its hard limit at start): an idle connection holds one
descriptor, a forwarded request one more towards waitress, so a quarter is left for those and
FD_RESERVE for the stores, the index and the logs. A positive `tls.max_connections` is used as
given.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["BYTES_PER_CONNECTION", "FD_RESERVE", "max_connections", "raise_fd_limit"]

logger = logging.getLogger(__name__)
# benchmarks/fleet.py, 10,000 idle long-polling agents (docs/manager.md "Fleet scale"), rounded up
BYTES_PER_CONNECTION = 64 * 1024
FD_RESERVE = 256  # descriptors kept for the stores, the index, logs and the backend sockets


def raise_fd_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard one; the new soft limit (None: no such limit)."""
    if sys.platform == "win32":
        return None  # sockets are handles there, not bounded by a per-process table
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as ex:
        logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, ex)
        return soft
    return hard


def max_connections(configured: int, memory: int, fd_limit: int | None) -> int:
    """Connections per listener: `configured` if > 0, else from `memory` and descriptors."""
    if configured > 0:
        return configured
    by_memory = max(64, memory // BYTES_PER_CONNECTION)
    if fd_limit is None:
        return by_memory
    by_fds = max(64, (fd_limit - FD_RESERVE) * 3 // 4)
    return min(by_memory, by_fds)
