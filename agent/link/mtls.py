"""`MtlsTransport`: the production transport, bound to the enrolled identity on disk.

It loads the identity lazily (an agent started before enrollment keeps queueing; the first send
after `heron-agent enroll` connects) and rebuilds its TLS context whenever the certificate, key
or CA file changes (renewal, re-enrollment), so no restart is needed.
"""

from __future__ import annotations

import logging
import ssl
import threading

from .errors import EnrollmentError
from .identity import Identity, IdentityStore
from .transport import HttpsTransport, Request, Response, TlsShare, create_ssl_context

logger = logging.getLogger(__name__)


class MtlsTransport:
    """Keep-alive mutual-TLS transport to the enrolled manager (one per thread)."""

    def __init__(
        self,
        store: IdentityStore,
        *,
        timeout: float = 30.0,
        hostname: str = "",
        server_name: str = "",
        share: TlsShare | None = None,
    ) -> None:
        """`share`: the TLS context and session of the identity's other transports (one per
        link), so each connection can resume a session another one got."""
        self.share = share
        self.store = store
        self.timeout = timeout
        self.hostname = hostname
        self.server_name = server_name
        self._inner: HttpsTransport | None = None
        self._stamp: tuple[int, ...] = ()
        self.identity: Identity | None = None
        self._lock = threading.Lock()
        self._interrupted = False

    def _files_stamp(self) -> tuple[int, ...]:
        try:
            return tuple(
                p.stat().st_mtime_ns
                for p in (
                    self.store.cert_path,
                    self.store.key_path,
                    self.store.ca_path,
                    self.store.meta_path,
                )
            )
        except FileNotFoundError as ex:
            raise EnrollmentError(
                f"not enrolled yet (no {ex.filename}): run `heron-agent "
                "enroll --manager HOST:PORT --token TOKEN`"
            ) from ex

    def _refresh(self) -> HttpsTransport:
        stamp = self._files_stamp()
        if self._inner is not None and stamp == self._stamp:
            return self._inner
        identity = self.store.load()

        def build() -> ssl.SSLContext:
            return create_ssl_context(identity.ca_path, identity.cert_path, identity.key_path)

        ctx = build() if self.share is None else self.share.context_for(stamp, build)
        if self._inner is not None and (self._inner.host, self._inner.port) == (
            identity.host,
            identity.port,
        ):
            self._inner.set_context(ctx)
            logger.info("client certificate reloaded (valid until %s)", identity.not_after)
        else:
            if self._inner is not None:
                self._inner.close()
            self._inner = HttpsTransport(
                identity.host,
                identity.port,
                ctx,
                timeout=self.timeout,
                server_hostname=self.server_name or None,
                hostname_header=self.hostname,
                share=self.share,
            )
        self._stamp = stamp
        self.identity = identity
        return self._inner

    def send(self, request: Request) -> Response:
        with self._lock:
            inner = self._refresh()
            if self._interrupted:  # set after interrupt() looked for _inner
                inner.interrupt()
            return inner.send(request)

    def interrupt(self) -> None:
        """At shutdown, from another thread: end the request in flight now (no lock: the
        request holds it); see HttpsTransport.interrupt."""
        self._interrupted = True
        inner = self._inner
        if inner is not None:
            inner.interrupt()

    def close_idle(self, max_idle: float) -> bool:
        """Close the connection when unused for `max_idle` seconds (reconnects resume TLS)."""
        if not self._lock.acquire(blocking=False):
            return False  # in use
        try:
            return self._inner is not None and self._inner.close_idle(max_idle)
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._inner is not None:
                self._inner.close()
                self._inner = None
