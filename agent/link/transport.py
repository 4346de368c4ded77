"""The HTTP seam between the link and the manager: `Transport.send(request) -> Response`.

`HttpsTransport` speaks HTTP/1.1 with keep-alive over mutual TLS using only the standard library
(`http.client` + `ssl`). Its `SSLContext` trusts only the pinned appliance CA: no system store, and
no environment variables (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` are never read).
`MemoryTransport` wraps a plain function for tests and in-process contract tests.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rules import wire

from .errors import CertificateRejected, TransportError

logger = logging.getLogger(__name__)

REJECTED_HINT = "connection closed after handshake: certificate probably rejected/revoked"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to the manager's endpoint API."""

    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # socket timeout for this request (a long-poll waits longer)


@dataclass(frozen=True, slots=True)
class Response:
    """The manager's answer: status, body and (lower-cased) headers."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Transport(Protocol):
    """Sends one request and returns the response, or raises `TransportError`."""

    def send(self, request: Request) -> Response: ...


class MemoryTransport:
    """A transport that hands each request to a function (tests, in-process contract)."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def send(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
        return self.handler(request)


def create_ssl_context(
    ca_file: Path,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """Build the client context: TLS ≥ 1.2, the pinned CA only, optional client certificate.

    Security: `ssl.create_default_context()` and `load_default_certs()` consult the system
    store and `SSL_CERT_FILE`/`SSL_CERT_DIR`; we call neither, so only `ca_file` is trusted.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca_file))
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


class TlsShare:
    """One TLS context and its last session, shared by the connections of one identity.

    The link holds two connections (the long-poll, and the forwarder's and housekeeping's);
    with one context they can resume each other's session: after a manager restart the second
    one to reconnect resumes the first one's new ticket instead of making a second full
    handshake. A session only resumes on the context that made it, so it is kept with it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: object = None
        self.context: ssl.SSLContext | None = None
        self.session: ssl.SSLSession | None = None

    def context_for(self, key: object, build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        """The shared context for `key` (the identity files' stamp), built once per key."""
        with self._lock:
            if self.context is None or key != self._key:
                self.context, self._key, self.session = build(), key, None
            return self.context

    def session_for(self, context: ssl.SSLContext) -> ssl.SSLSession | None:
        return self.session if context is self.context else None

    def keep(self, context: ssl.SSLContext, session: ssl.SSLSession) -> None:
        if context is self.context and session.has_ticket:
            self.session = session

    def forget(self, context: ssl.SSLContext) -> None:
        if context is self.context:
            self.session = None


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS connection that checks the certificate against `sni` instead of the dialled host."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext,
        timeout: float,
        sni: str,
        session: ssl.SSLSession | None = None,
    ) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._sni = sni
        self._context = context
        self._session = session

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # resuming the last TLS session (a ticket) skips the certificate exchange
        # and signatures: a reconnect costs the manager a fraction of a full handshake.
        self.sock = self._context.wrap_socket(
            sock, server_hostname=self._sni, session=self._session
        )


_REJECT_MARKERS = ("certificate", "unknown ca", "revoked", "handshake failure", "access denied")


class HttpsTransport:
    """Keep-alive HTTPS client over one `http.client.HTTPSConnection` (one per thread).

    A request on a reused connection that fails is retried once on a fresh one (the manager may
    have closed an idle keep-alive). A fresh connection closed right after the TLS handshake means
    the manager rejected our certificate (TLS 1.3 reports that as EOF, not as an alert).
    """

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        timeout: float = 30.0,
        server_hostname: str | None = None,
        hostname_header: str = "",
        share: TlsShare | None = None,
    ) -> None:
        self.share = share  # the session of the identity's other connection, to resume
        self.host = host
        self.port = port
        self.context = context
        self.timeout = timeout
        self.server_hostname = server_hostname
        self.hostname_header = hostname_header
        self._conn: http.client.HTTPSConnection | None = None
        self._used = False
        self._last_peer: bytes | None = None
        self._session: ssl.SSLSession | None = None
        # read the connection's session once, at its first answer (TLS 1.3 tickets arrive
        # after the handshake, before it): each read copies the whole session in CPython
        self._session_due = False
        self.last_used = 0.0  # time.monotonic() of the last answer
        self.resumed = 0  # connections that resumed a TLS session
        self._interrupted = False  # set once by interrupt(): the link is stopping

    def _connect(self) -> http.client.HTTPSConnection:
        conn = _PinnedHTTPSConnection(
            self.host,
            self.port,
            context=self.context,
            timeout=self.timeout,
            sni=self.server_hostname or self.host,
            session=self._shared_session() or self._session,  # the newest ticket
        )
        try:
            conn.connect()
        except ssl.SSLError:
            if conn._session is None:
                raise
            self._session = None  # a stale ticket: one full handshake instead
            if self.share is not None:
                self.share.forget(self.context)
            conn = _PinnedHTTPSConnection(
                self.host,
                self.port,
                context=self.context,
                timeout=self.timeout,
                sni=self.server_hostname or self.host,
            )
            conn.connect()
        if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.session_reused:
            self.resumed += 1
        self._used = False
        self._session_due = True
        return conn

    def _shared_session(self) -> ssl.SSLSession | None:
        return self.share.session_for(self.context) if self.share is not None else None

    def _keep_session(self, sock: object) -> None:
        """Keep the connection's session for the next connect; done once it holds a ticket
        (a server that issues none is asked again at the next answer)."""
        session = sock.session if isinstance(sock, ssl.SSLSocket) else None
        if session is None:
            return
        self._session = session
        self._session_due = not session.has_ticket
        if self.share is not None:
            self.share.keep(self.context, session)

    def close_idle(self, max_idle: float) -> bool:
        """Close the connection when unused for `max_idle` seconds (its session is kept)."""
        if self._conn is not None and time.monotonic() - self.last_used >= max_idle:
            self.close()
            return True
        return False

    def peer_certificate(self) -> bytes | None:
        """DER certificate of the server on the current connection (None if not connected)."""
        sock = getattr(self._conn, "sock", None)
        if sock is None:
            return self._last_peer
        try:
            der = sock.getpeercert(binary_form=True)
        except (OSError, ValueError, AttributeError):  # AttributeError: TLS shut down
            return self._last_peer
        return bytes(der) if der else None

    def set_context(self, context: ssl.SSLContext) -> None:
        """Swap the TLS context (after certificate renewal); the next request reconnects."""
        self.close()
        self.context = context
        self._session = None  # issued to the old certificate

    def interrupt(self) -> None:
        """From another thread, at shutdown: end the request in flight (a held long-poll) now;
        it and every later request raise TransportError."""
        self._interrupted = True
        sock = getattr(self._conn, "sock", None)
        if sock is not None:
            try:
                # the plain socket's shutdown (SSLSocket's drops its TLS state
                # under the reading thread); the blocked read wakes with EOF
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _check_interrupted(self, path: str) -> None:
        if self._interrupted:
            self.close()
            raise TransportError("link stopping", path=path)

    def close(self) -> None:
        if self._conn is not None:
            self._last_peer = self.peer_certificate()
            if self._session_due:
                self._keep_session(getattr(self._conn, "sock", None))
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - close path
                pass
            self._conn = None

    def __enter__(self) -> HttpsTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, request: Request) -> Response:
        reused = self._conn is not None and self._used
        try:
            return self._send_once(request)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as ex:
            self._check_interrupted(request.path)
            self.close()
            if not reused:
                raise CertificateRejected(REJECTED_HINT, path=request.path) from ex
            logger.debug("keep-alive connection dropped, retrying %s", request.path)
        try:
            return self._send_once(request)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as ex:
            self._check_interrupted(request.path)
            self.close()
            raise CertificateRejected(REJECTED_HINT, path=request.path) from ex

    def _send_once(self, request: Request) -> Response:
        headers = {"User-Agent": wire.USER_AGENT, "Connection": "keep-alive"}
        if self.hostname_header:
            headers[wire.HEADER_HOSTNAME] = self.hostname_header
        headers.update(request.headers)
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._check_interrupted(request.path)  # after _conn is set: interrupt() sees it
            if self._conn.sock is not None:
                self._conn.sock.settimeout(request.timeout or self.timeout)
            self._conn.request(
                request.method, request.path, body=request.body or None, headers=headers
            )
            resp = self._conn.getresponse()
            body = resp.read()
            if self._session_due:
                self._keep_session(self._conn.sock)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as ex:
            self.close()
            raise ConnectionResetError(str(ex)) from ex  # handled by send(): fresh => rejected
        except ssl.SSLError as ex:
            self.close()
            text = str(ex).lower()
            if any(m in text for m in _REJECT_MARKERS) and "verify failed" not in text:
                raise CertificateRejected(
                    f"manager rejected our certificate (TLS alert: {ex})", path=request.path
                ) from ex
            raise TransportError(f"TLS error: {ex}", path=request.path) from ex
        except (
            http.client.RemoteDisconnected,
            ConnectionResetError,
            BrokenPipeError,
            TransportError,
        ):
            raise
        except (OSError, http.client.HTTPException) as ex:
            self.close()
            raise TransportError(f"{type(ex).__name__}: {ex}", path=request.path) from ex
        self._used = True
        self.last_used = time.monotonic()
        if resp.will_close:
            self.close()
        return Response(resp.status, body, {k.lower(): v for k, v in resp.getheaders()})


TransportFactory = Callable[[], Transport]
