"""Runs the two listeners: waitress on loopback behind one TLS front each.

`ManagerServer(ctx).start()` binds the endpoint listener (mutual TLS, `/enroll` without a cert)
and the admin listener (HTTPS; its front also serves the WebSocket streams,
`appliance.transport.websocket`), returns the bound addresses, and `close()` stops both.

Where `select.poll` is missing (Windows) waitress waits with `select()`, whose sets hold at most
512 sockets there (CPython's FD_SETSIZE); one more and its loop thread dies with ValueError. The
TLS front opens one backend connection per client connection, so there the backend socket is
shared by several waitress servers ("shards"), each with its own socket map capped below that
limit: the kernel hands each accept to a shard that still listens, and one that is full stops
listening until a channel closes (waitress's `connection_limit`).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import waitress

from ..api.app import Api, create_app
from ..api.openapi import FalconApp
from ..core.config import parse_listen
from ..core.errors import ConfigError, Unauthorized
from ..runtime.context import AppContext
from .capacity import max_connections, raise_fd_limit
from .governance import REASONS, GovernanceLimits, Governor
from .longpoll import long_poll_for
from .relay import Responder
from .sockets import bind_listener
from .tlsfront import TlsFront, Upgrader
from .websocket import WsStreams

__all__ = ["SELECT_MAP_LIMIT", "Bound", "Listener", "ManagerServer", "backend_shards"]

logger = logging.getLogger(__name__)
# Sockets in one waitress map where select() is the poller: Windows' FD_SETSIZE (512) less room.
SELECT_MAP_LIMIT = 500


def backend_shards(connection_limit: int) -> tuple[int, int]:
    """(waitress servers, connection_limit of each) for `connection_limit` backend sockets."""
    if hasattr(select, "poll"):
        return 1, connection_limit
    return -(-connection_limit // SELECT_MAP_LIMIT), min(connection_limit, SELECT_MAP_LIMIT)


@dataclass(frozen=True, slots=True)
class Bound:
    admin: tuple[str, int]
    endpoint: tuple[str, int]


class Listener:
    """One waitress backend on 127.0.0.1:<ephemeral> plus its TLS front."""

    def __init__(
        self,
        ctx: AppContext,
        app: FalconApp,
        *,
        name: str,
        client_certs: bool,
        upgrader: Upgrader | None = None,
        authorize: Callable[[bytes], bool] | None = None,
        max_body: int = 0,
        responder: Responder | None = None,
    ) -> None:
        self.ctx = ctx
        self.authorize = authorize
        self.max_body = max_body
        self.responder = responder
        self.fd_limit: int | None = None  # set by ManagerServer.start (raise_fd_limit)
        self.app = app
        self.name = name
        self.client_certs = client_certs
        self.upgrader = upgrader
        self._servers: list[Any] = []
        # each server's socket map, passed to waitress.create_server(map=...): ours to read
        self.socket_maps: list[dict[int, Any]] = []
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self.front: TlsFront | None = None

    def start(self, listen: str) -> tuple[str, int]:
        if self.ctx.pki is None:
            raise ConfigError("a PKI is required to serve TLS (run heron-manager init)")
        cfg = self.ctx.config
        sock = self._sock = bind_listener("127.0.0.1", 0)  # SO_EXCLUSIVEADDRUSE on Windows
        sock.setblocking(True)
        sock.listen(1024)
        cap = max_connections(cfg.tls.max_connections, cfg.tls.connection_memory, self.fd_limit)
        shards, limit = backend_shards(cap + 16)
        for i in range(shards):
            socket_map: dict[int, Any] = {}
            server = waitress.create_server(
                self.app,
                map=socket_map,
                sockets=[sock],
                threads=cfg.server.threads,
                url_scheme="https",
                channel_timeout=cfg.server.channel_timeout,
                connection_limit=limit,
                ident="heron",
                asyncore_use_poll=True,
                # Security: waitress refuses a larger Content-Length, and a larger
                # chunked body as it reads, before spooling it (was 512 MiB on every route).
                max_request_body_size=self.max_body + 1,
            )
            thread = threading.Thread(
                target=server.run, name=f"waitress-{self.name}-{i}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self.socket_maps.append(socket_map)
            self._threads.append(thread)
        if shards > 1:
            logger.info(
                "%s: %d waitress servers of %d sockets each (select() limit)",
                self.name,
                shards,
                limit,
            )
        self.front = TlsFront(
            name=self.name,
            context=self.ctx.pki.server_context(client_certs=self.client_certs),
            backend=sock.getsockname()[:2],
            identities=self.ctx.identities,
            accept=self.ctx.identity.accept_certificate if self.client_certs else None,
            handshake_timeout=cfg.tls.handshake_timeout,
            idle_timeout=cfg.tls.idle_timeout,
            max_connections=cap,
            upgrader=self.upgrader,
            governor=Governor(
                GovernanceLimits(
                    max_connections=cap,
                    per_source=cfg.tls.per_source_connections,
                    reserve=cfg.tls.reserved_connections,
                    header_timeout=cfg.tls.header_timeout,
                    anonymous_idle=cfg.tls.anonymous_idle_timeout,
                    anonymous_bytes=cfg.tls.anonymous_bytes,
                )
            ),
            authorize=self.authorize,
            responder=self.responder,
            # the relay's persistent backend connections: as many as waitress runs at once
            pool_size=cfg.server.threads,
        )
        host, port = parse_listen(listen)
        return self.front.start(host, port)

    def close(self) -> None:
        if self.front is not None:
            self.front.close()
            self.front = None
        servers, self._servers = self._servers, []
        maps, self.socket_maps = self.socket_maps, []
        if servers:
            logging.getLogger("waitress").setLevel(logging.ERROR)  # "unhandled close event"
        for server in servers:
            # the shared listening socket leaves every map before it is closed
            # (below, once): a select() given a closed socket raises on Windows.
            server.del_channel()
        for server, socket_map in zip(servers, maps, strict=True):
            for dispatcher in list(socket_map.values()):
                try:
                    dispatcher.handle_close()
                except Exception:  # noqa: BLE001 - close path
                    pass
            server.task_dispatcher.shutdown(timeout=5)
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=5)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _header(head: bytes, name: bytes) -> str | None:
    """The first value of header `name` (lower case) in a raw request head."""
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


def admin_authorizer(ctx: AppContext) -> Callable[[bytes], bool]:
    """True when a first request head carries a valid API key or console session cookie.

    Only admission uses it (the reserve, idle and byte limits); the app authenticates every
    request itself.
    """

    def authorize(head: bytes) -> bool:
        try:
            return check(head)
        except Exception:
            logger.warning("admission check of an admin request failed", exc_info=True)
            return False

    def check(head: bytes) -> bool:
        key = _header(head, b"x-api-key") or _header(head, b"api-key")
        if key:
            try:
                ctx.identity.authenticate(key)
                return True
            except Unauthorized:
                return False
        cookies = _header(head, b"cookie")
        sessions = ctx.extensions.sessions
        if not cookies or sessions is None:
            return False
        return sessions.admits_cookies(cookies)

    return authorize


class ManagerServer:
    """Both listeners over one AppContext."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        limits = ctx.config.limits
        self.long_poll = (
            long_poll_for(ctx, self._endpoint_connections)
            if ctx.config.commands.long_poll > 0
            else None
        )
        self.endpoint = Listener(
            ctx,
            create_app(ctx, Api.ENDPOINT),
            name="endpoint",
            client_certs=True,
            max_body=max(limits.logs_body_compressed, limits.json_body),
            responder=self.long_poll,
        )
        admin_app = create_app(ctx, Api.ADMIN)
        self.streams = WsStreams(
            app=admin_app, hub=ctx.hub, config=ctx.config.streams, metrics=ctx.metrics
        )
        self.admin = Listener(
            ctx,
            admin_app,
            name="admin",
            client_certs=False,
            upgrader=self.streams,
            authorize=admin_authorizer(ctx),
            max_body=max(limits.upload_size, limits.json_body),
        )
        self._stop = threading.Event()

    def _endpoint_connections(self) -> int:
        front = self.endpoint.front
        return front.active if front is not None else 0

    def _certs_changed(self) -> None:
        """A certificate was revoked: end the endpoint connections that used it."""
        try:
            self.ctx.store.certs.revoked()  # re-read here, not on the front's loop
        except Exception:  # the front's own check reads it again
            logger.warning("could not re-read the revoked certificates", exc_info=True)
        front = self.endpoint.front
        if front is not None:
            front.recheck()

    def start(self) -> Bound:
        self.endpoint.fd_limit = self.admin.fd_limit = raise_fd_limit()
        self.ctx.store.certs.on_change.append(self._certs_changed)
        endpoint = self.endpoint.start(self.ctx.config.endpoint.listen)
        admin = self.admin.start(self.ctx.config.admin.listen)
        fronts = [f for f in (self.endpoint.front, self.admin.front) if f is not None]
        self.ctx.metrics.gauge(
            "heron_tls_connections",
            "open TLS connections (both listeners)",
            lambda: float(sum(f.active for f in fronts)),
        )
        for reason in REASONS:
            self.ctx.metrics.gauge(
                f"heron_tls_rejected_{reason}_total",
                f"connections closed by governance: {reason} (both listeners)",
                lambda r=reason: float(  # type: ignore[misc]
                    sum(f.governor.rejected[r] for f in fronts if f.governor is not None)
                ),
            )
        pools = [f.pool for f in fronts]
        self.ctx.metrics.gauge(
            "heron_backend_connections_opened_total",
            "loopback connections the TLS fronts opened to waitress (pooled ones are reused)",
            lambda: float(sum(p.opened for p in pools)),
        )
        self.ctx.metrics.gauge(
            "heron_tls_refused_total",
            "TLS connections refused (handshake, revoked cert, cap)",
            lambda: float(sum(f.refused for f in fronts)),
        )
        fronts_cap = [f.max_connections for f in fronts]
        logger.info(
            "TLS connections per listener: %s (open files: %s)", fronts_cap, self.endpoint.fd_limit
        )
        logger.info(
            "endpoint API on https://%s:%d (mutual TLS), admin API on https://%s:%d",
            endpoint[0],
            endpoint[1],
            admin[0],
            admin[1],
        )
        return Bound(admin=admin, endpoint=endpoint)

    def wait(self) -> None:
        """Block until `stop()` (signal handlers call it)."""
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._certs_changed in self.ctx.store.certs.on_change:
            self.ctx.store.certs.on_change.remove(self._certs_changed)
        self.endpoint.close()
        self.admin.close()
