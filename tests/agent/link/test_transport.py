"""HttpsTransport's TLS session handling against a real local TLS 1.3 server."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from agent.link.enroll import enroll_online
from agent.link.identity import IdentityStore
from agent.link.transport import HttpsTransport, Request, TlsShare, create_ssl_context

from .tlsserver import MiniCA, TlsManager, enroll_handler


def _counting_socket_class() -> type[ssl.SSLSocket]:
    """An SSLSocket that counts reads of `.session` (each one copies the session in CPython)."""

    class Counting(ssl.SSLSocket):
        reads = 0

        @property
        def session(self) -> Any:
            type(self).reads += 1
            return ssl.SSLSocket.session.__get__(self)

        @session.setter
        def session(self, value: Any) -> None:
            ssl.SSLSocket.session.__set__(self, value)

    return Counting


def test_session_is_read_once_per_connection_and_still_resumes(tmp_path: Path) -> None:
    ca = MiniCA()
    srv = TlsManager(ca, tmp_path / "srv", enroll_handler(ca))
    try:
        store = IdentityStore(tmp_path / "id")
        enroll_online(f"127.0.0.1:{srv.port}", "tok", store)
        counting = _counting_socket_class()
        share = TlsShare()

        def build() -> ssl.SSLContext:
            ctx = create_ssl_context(store.ca_path, store.cert_path, store.key_path)
            ctx.sslsocket_class = counting
            return ctx

        ctx = share.context_for("stamp", build)
        house = HttpsTransport("127.0.0.1", srv.port, ctx, timeout=5, share=share)
        for _ in range(5):  # one keep-alive connection
            assert house.send(Request("GET", "/key")).body == b"ok"
        assert counting.reads == 1  # at the first answer, which the ticket preceded
        assert share.session is not None and share.session.has_ticket
        house.close()
        assert counting.reads == 1  # already kept: closing reads nothing more
        for _ in range(5):  # a new connection resumes the kept ticket
            assert house.send(Request("GET", "/key")).status == 200
        assert house.resumed == 1 and counting.reads == 2
        poll = HttpsTransport("127.0.0.1", srv.port, ctx, timeout=5, share=share)
        assert poll.send(Request("GET", "/key")).status == 200
        assert poll.resumed == 1  # the other connection's newest ticket
        for t in (house, poll):
            t.close()
        assert [r[2] for r in srv.requests if r[1] == "/key"] == ["uuid-1234"] * 11
    finally:
        srv.close()
