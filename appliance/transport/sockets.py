"""Listening sockets that no other process can share (the TLS fronts and waitress backends).

On Windows `SO_REUSEADDR` lets *another* socket bind the same address and port (and take over
the connections); `SO_EXCLUSIVEADDRUSE` forbids it. Elsewhere `SO_REUSEADDR` only allows a
restart while old connections linger in TIME_WAIT, and is what we want.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

__all__ = ["SO_EXCLUSIVEADDRUSE", "bind_listener", "listener_options"]

# winsock.h: ((int)(~SO_REUSEADDR)) with SO_REUSEADDR = 4 there
SO_EXCLUSIVEADDRUSE: int = getattr(socket, "SO_EXCLUSIVEADDRUSE", -5)


def listener_options(platform: str | None = None) -> list[tuple[int, int, int]]:
    """setsockopt() calls for a listening socket on ``platform`` (default: this one)."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        # winsock's SO_REUSEADDR is port stealing, not TIME_WAIT reuse
        return [(socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1)]
    return [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]


def bind_listener(
    host: str,
    port: int,
    *,
    platform: str | None = None,
    factory: Callable[..., socket.socket] = socket.socket,
) -> socket.socket:
    """A bound, non-blocking TCP socket for ``host:port`` (not listening yet)."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = factory(family, kind, proto)
    try:
        for level, option, value in listener_options(platform):
            sock.setsockopt(level, option, value)
        if family == socket.AF_INET6:  # like asyncio: an IPv6 listener is IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
