"""Which agent is behind a backend connection: the TLS front records it, the WSGI app reads it.

The front maps the source port of each loopback connection it opens to waitress to the client it
serves (`ConnInfo`) before forwarding a byte; the app resolves `REMOTE_PORT` back to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..security.pki import PeerIdentity

__all__ = ["ConnInfo", "IdentityMap"]


@dataclass(frozen=True, slots=True)
class ConnInfo:
    """What the front knows about one proxied connection."""

    identity: PeerIdentity | None
    peer_ip: str
    peer_port: int


class IdentityMap:
    """Backend source port → ConnInfo, shared between the front and the WSGI app."""

    def __init__(self) -> None:
        self._map: dict[int, ConnInfo] = {}

    def put(self, port: int, info: ConnInfo) -> None:
        self._map[port] = info

    def pop(self, port: int) -> None:
        self._map.pop(port, None)

    def resolve(self, environ: dict[str, object]) -> ConnInfo | None:
        """Look up the connection behind a WSGI request; None unless it came through the front."""
        if environ.get("REMOTE_ADDR") != "127.0.0.1":
            return None
        try:
            port = int(str(environ.get("REMOTE_PORT", "")))
        except ValueError:
            return None
        return self._map.get(port)

    def __len__(self) -> int:
        return len(self._map)
