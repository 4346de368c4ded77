"""The in-process asyncio TLS front that sits before each waitress backend (docs/reference/deps.md
§2).

For every accepted TLS connection the front opens a plain connection to waitress on loopback,
records `IdentityMap[backend source port] = ConnInfo(identity, peer address)` *before* forwarding a
single byte, then pipes bytes both ways without parsing HTTP (keep-alive, chunked bodies and SSE
work unchanged). The WSGI side resolves the identity from `REMOTE_PORT`; nothing comes from headers,
and a process that connects straight to the backend finds no entry and gets 401.

A front given an `Upgrader` reads the head of each connection's first request before choosing:
when the upgrader `wants()` it (a WebSocket upgrade, `appliance.transport.websocket`), the
connection is served on this loop and never reaches waitress; otherwise the head is forwarded as
read.

A front given a `Governor` (`appliance.transport.governance`) admits connections through it:
per-source and reserve caps at accept, the first request head within its header timeout, an
`authorize` check of that head (admin credentials), and tighter idle and byte limits for
connections that never authenticated.

A front given a `Responder` (the endpoint listener: `appliance.transport.longpoll`) follows
every request of an authenticated (client-certificate) connection instead
(`appliance.transport.relay`), answers the ones the responder wants without waitress and
forwards the others over a few persistent backend connections (`appliance.transport.pool`).

Security: `accept` (revocation, expiry) is asked at the handshake and, on relayed
connections, before every request; `recheck()` (called when a certificate is revoked) ends at once
every open connection whose certificate is no longer accepted, a held long-poll included.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..security.pki import PeerIdentity, peer_identity
from .frontio import BUFFER, PausedProtocol, close_writers, pipe_bytes, read_head
from .governance import Governor, RateLimitedLog, Slot
from .identities import ConnInfo, IdentityMap
from .pool import BackendPool, Lease
from .relay import Relay, Responder
from .sockets import bind_listener
from .upgrader import Upgrader

__all__ = ["ConnInfo", "IdentityMap", "TlsFront", "Upgrader"]

logger = logging.getLogger(__name__)
# asyncio's SSLProtocol allocates a `max_size` receive buffer per connection
# (256 KiB on Python 3.11, filled at allocation): 10,000 idle agents held 2.5 GB for it alone.
# 16 KiB holds a full TLS record; bulk bodies just take more, smaller reads. Process-wide.
TLS_READ_BUFFER = 16 * 1024
asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
SHUTDOWN_TIMEOUT = 3.0  # seconds close() waits for the connections' tasks to end


class TlsFront:
    """One TLS listener forwarding to one loopback backend, on its own event-loop thread."""

    def __init__(
        self,
        *,
        name: str,
        context: ssl.SSLContext,
        backend: tuple[str, int],
        identities: IdentityMap,
        accept: Callable[[PeerIdentity], bool] | None = None,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        max_connections: int = 2048,
        clock: Callable[[], float] = time.monotonic,
        upgrader: Upgrader | None = None,
        governor: Governor | None = None,
        authorize: Callable[[bytes], bool] | None = None,
        responder: Responder | None = None,
        pool_size: int = 0,
    ) -> None:
        self.name = name
        self.context = context
        self.backend = backend
        self.identities = identities
        self.accept = accept
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.clock = clock
        self.upgrader = upgrader
        self.governor = governor
        self.authorize = authorize  # run on an executor thread: may query the store
        self.log = RateLimitedLog(logger)
        self.responder = responder  # then served request by request (relay.py)
        self.pool = BackendPool(self._connect, size=pool_size)  # the relay's backend connections
        self.active = 0
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False  # set on the loop thread by close()
        self._handlers: set[asyncio.Task[Any]] = set()  # running connection handlers
        # connections with a client certificate: handler task → (identity, client writer)
        self._certified: dict[asyncio.Task[Any], tuple[PeerIdentity, asyncio.StreamWriter]] = {}
        self.revoked_closed = 0  # connections ended by recheck()

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and start serving on a daemon thread; returns the bound address."""
        ready: Future[tuple[str, int]] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(host, port, ready), name=f"tls-{self.name}", daemon=True
        )
        self._thread.start()
        return ready.result(timeout=30)

    def _run(self, host: str, port: int, ready: Future[tuple[str, int]]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                loop.create_server(
                    lambda: PausedProtocol(asyncio.StreamReader(BUFFER, loop), self._handle),
                    sock=bind_listener(host, port),  # SO_EXCLUSIVEADDRUSE on Windows
                    backlog=1024,
                )
            )
        except BaseException as ex:  # noqa: BLE001 - handed to the starting thread
            ready.set_exception(ex)
            loop.close()
            return
        sockname = self._server.sockets[0].getsockname()
        ready.set_result((sockname[0], sockname[1]))
        logger.info("TLS front %s listening on %s:%s", self.name, sockname[0], sockname[1])
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(self._end_tasks(SHUTDOWN_TIMEOUT))  # done by close()
                left = asyncio.all_tasks(loop)
                for task in left:  # only if a handler would not end: asyncio.run()'s way
                    task.cancel()
                if left:
                    loop.run_until_complete(asyncio.wait(left, timeout=1.0))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def close(self) -> None:
        """Stop accepting, end every connection and close the loop (idempotent)."""
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return

        async def _stop() -> None:
            self._closing = True
            server.close()
            if self.upgrader is not None:
                await self.upgrader.shutdown(SHUTDOWN_TIMEOUT / 2)
            await self._end_tasks(SHUTDOWN_TIMEOUT)
            self.pool.close()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), loop).result(timeout=SHUTDOWN_TIMEOUT + 2)
        except Exception:  # noqa: BLE001 - close path; _run cancels what is left
            logger.warning("TLS front %s: connections did not end in time", self.name)
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # the loop closed meanwhile
            pass
        if self._thread is not None:
            self._thread.join(timeout=SHUTDOWN_TIMEOUT + 5)

    def recheck(self) -> None:
        """End the open connections whose certificate `accept` now refuses (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._sweep)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _sweep(self) -> None:
        if self.accept is None:
            return
        for task, (identity, writer) in list(self._certified.items()):
            if self.accept(identity):
                continue
            self.revoked_closed += 1
            logger.info(
                "TLS front %s: closing a connection of revoked cn=%s serial=%s",
                self.name,
                identity.cn,
                identity.serial,
            )
            # the reset reaches the agent now; the cancel ends a held long-poll
            # (should 3.11's wait_for swallow it, the poll ends at its deadline on a dead socket)
            writer.transport.abort()
            task.cancel()

    async def _end_tasks(self, timeout: float) -> None:
        """Cancel the connection handlers until every other task of the loop has ended.

        only our handlers are cancelled (their pipes and handshakes with them);
        asyncio's own accept tasks finish by themselves, and a handler they start finds
        `_closing` set. Cancelling repeats in short rounds because Python 3.11's `wait_for`
        swallows a cancel that races with its result (a pipe would then read on).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        current = asyncio.current_task()
        while True:
            tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
            if not tasks:
                return
            if loop.time() >= deadline:
                logger.warning("TLS front %s: %d task(s) still running", self.name, len(tasks))
                return
            for task in list(self._handlers):
                task.cancel()
            await asyncio.wait(tasks, timeout=min(0.05, deadline - loop.time()))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted just before close() stopped the server
            writer.transport.abort()
            return
        peer = writer.get_extra_info("peername") or ("", 0)
        admitted, slot = self._admit(writer, str(peer[0]))
        if not admitted:
            return
        self.active += 1  # counted from accept, so handshakes count to the cap
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        cancelled = False
        try:
            identity = await self._handshake(writer, str(peer[0]))
            if identity is False:
                self.refused += 1
                return
            peer_id = identity if isinstance(identity, PeerIdentity) else None
            if slot is not None and peer_id is not None and self.governor is not None:
                self.governor.authenticate(slot)
            info = ConnInfo(peer_id, str(peer[0]), int(peer[1]))
            if peer_id is not None and task is not None:
                self._certified[task] = (peer_id, writer)
            if self.responder is not None and peer_id is not None:
                await self._relay(reader, writer, info)  # enrolled agents: long-poll, keep-alive
            else:
                await self._proxy(reader, writer, info, slot)
        except OSError as ex:
            logger.warning("TLS front %s: backend unavailable: %s", self.name, ex)
        except asyncio.CancelledError:
            # close() and recheck() cancel handlers. Ending normally matters: on
            # Python 3.11 the StreamReaderProtocol done-callback logs a cancelled handler.
            cancelled = True
        finally:
            self.active -= 1
            if slot is not None and self.governor is not None:
                self.governor.release(slot)
            if task is not None:
                self._handlers.discard(task)
                self._certified.pop(task, None)
            close_writers(writer, abort=cancelled)

    async def _proxy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: ConnInfo,
        slot: Slot | None,
    ) -> None:
        """Upgrade the connection or pipe its bytes to a fresh backend connection."""
        head = await self._upgrade(reader, writer, info, slot)
        if head is None:
            return
        b_reader, b_writer = await self._connect()
        port = 0
        try:
            port = int(b_writer.get_extra_info("sockname")[1])
            self.identities.put(port, info)
            if head:
                b_writer.write(head)
            activity = [self.clock()]
            idle, budget = self._pipe_limits(slot)
            idle = idle or self.idle_timeout
            await asyncio.gather(
                pipe_bytes(
                    reader,
                    b_writer,
                    activity,
                    idle,
                    self.clock,
                    budget - len(head) if budget else 0,
                    writer,
                    self._over_budget,
                ),
                pipe_bytes(b_reader, writer, activity, idle, self.clock),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            b_writer.transport.abort()
            raise
        finally:
            if port:
                self.identities.pop(port)
            b_writer.close()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: ConnInfo
    ) -> None:
        """Serve an authenticated connection request by request (`appliance.transport.relay`)."""
        responder = self.responder
        assert responder is not None

        async def pipe(lease: Lease, first: bytes) -> None:
            if first:
                lease.writer.write(first)
            activity = [self.clock()]
            await asyncio.gather(
                pipe_bytes(reader, lease.writer, activity, self.idle_timeout, self.clock),
                pipe_bytes(lease.reader, writer, activity, self.idle_timeout, self.clock),
                return_exceptions=True,
            )

        accept, identity = self.accept, info.identity
        relay = Relay(
            responder=responder,
            pool=self.pool,
            bind=lambda lease: self.identities.put(lease.port, info),
            unbind=lambda lease: self.identities.pop(lease.port),
            pipe=pipe,
            timeout=self.idle_timeout,
            allowed=lambda: accept is None or identity is None or accept(identity),
            advice=lambda req: responder.headers(req, info),
        )
        try:
            await relay.serve(reader, writer, info)
        except (
            asyncio.IncompleteReadError,
            TimeoutError,
            ssl.SSLError,
            ConnectionResetError,
            BrokenPipeError,
        ):
            pass  # a peer went away mid-request: the connection ends

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A backend connection for the relay's pool (TCP_NODELAY: small requests)."""
        b_reader, b_writer = await asyncio.open_connection(*self.backend, limit=BUFFER)
        sock = b_writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return b_reader, b_writer

    def _admit(self, writer: asyncio.StreamWriter, ip: str) -> tuple[bool, Slot | None]:
        """(admitted, governor slot); a refused connection is aborted and counted."""
        if self.governor is not None:
            slot = self.governor.admit(ip, writer.transport.abort)
            if slot is None:
                self.refused += 1
                self.log.warning(
                    f"cap-{ip}", "TLS front %s: connection limit, closing %s", self.name, ip
                )
                writer.transport.abort()
                return False, None
            return True, slot
        if self.active >= self.max_connections:
            self.refused += 1
            self.log.warning(
                "cap", "TLS front %s: connection cap reached, closing %s", self.name, ip
            )
            writer.close()
            return False, None
        return True, None

    def _over_budget(self) -> None:
        if self.governor is not None:
            self.governor.count("anonymous_bytes")

    def _pipe_limits(self, slot: Slot | None) -> tuple[float, int]:
        """(idle timeout, bytes the client may send; 0 = no cap) of a proxied connection."""
        if slot is None or slot.authenticated or self.governor is None:
            return self.idle_timeout, 0
        limits = self.governor.limits
        return min(self.idle_timeout, limits.anonymous_idle), limits.anonymous_bytes

    async def _upgrade(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: ConnInfo,
        slot: Slot | None = None,
    ) -> bytes | None:
        """None once the connection is served or refused, else the bytes to forward first."""
        if self.governor is not None and slot is not None:
            head = await read_head(reader, self.idle_timeout, self.governor.limits.header_timeout)
            if b"\r\n\r\n" not in head:  # slowloris; EOF before a request
                if head:
                    self.governor.count("header_timeout")
                return None
            if not slot.authenticated and self.authorize is not None:
                ok = await asyncio.get_running_loop().run_in_executor(None, self.authorize, head)
                if ok:
                    self.governor.authenticate(slot)
        elif self.upgrader is None:
            return b""
        else:
            head = await read_head(reader, self.idle_timeout)
        if self.upgrader is None:
            return head
        if head and self.upgrader.wants(head):
            await self.upgrader.serve(reader, writer, head, info)
            return None
        return head

    async def _handshake(
        self, writer: asyncio.StreamWriter, peer: str
    ) -> PeerIdentity | None | bool:
        """TLS handshake, then the verified identity (None: no cert, False: refused).

        the handshake runs here, not in start_server(ssl=...), so a failed one
        is logged (asyncio reports those only in debug mode) and counted.
        """
        try:
            await asyncio.wait_for(writer.start_tls(self.context), self.handshake_timeout)
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as ex:
            if self.governor is not None:
                self.governor.count("handshake")
            self.log.warning(
                f"handshake-{peer}",
                "TLS front %s: handshake with %s failed: %s",
                self.name,
                peer,
                getattr(ex, "reason", None) or type(ex).__name__,
            )
            return False
        try:
            return self._identity(writer)
        except ValueError as ex:  # an unparsable certificate that OpenSSL still accepted
            logger.warning(
                "TLS front %s: unusable client certificate from %s: %s", self.name, peer, ex
            )
            return False

    def _identity(self, writer: asyncio.StreamWriter) -> PeerIdentity | None | bool:
        """The peer's verified identity, None without a certificate, False to refuse."""
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return None
        identity = peer_identity(der)
        if self.accept is not None and not self.accept(identity):
            logger.warning(
                "TLS front %s: refused certificate cn=%s serial=%s",
                self.name,
                identity.cn,
                identity.serial,
            )
            return False
        return identity
