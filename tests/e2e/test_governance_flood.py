"""Connection governance on a real manager: floods, slow heads and unauthenticated bodies."""

from __future__ import annotations

import resource
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_manager_tls import Manager

pytestmark = pytest.mark.e2e

FLOOD = 2_100


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD * 2 + 1024
    if hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    m = Manager(tmp_path_factory.mktemp("gov"))
    yield m
    m.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _request(port: int, head: bytes, *, src: str, cert: tuple[str, str] | None, ca: Path) -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def _flood(port: int, count: int) -> list[socket.socket]:
    """`count` bare TCP connections from 127.0.0.1 that never start TLS."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def _open(sock: socket.socket) -> bool:
    """Whether the manager still holds this connection (no EOF or reset yet)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(10)


def _wait(cond: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_2100_connection_flood_leaves_agents_and_admins_served(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("gov-1")
    ep, adm = mgr.bound.endpoint[1], mgr.bound.admin[1]
    front = mgr.server.endpoint.front
    assert front is not None and front.governor is not None
    socks = _flood(ep, FLOOD) + _flood(adm, FLOOD)
    try:
        gov = front.governor
        assert _wait(lambda: gov.rejected["per_source"] > 0)
        assert gov.active <= mgr.ctx.config.tls.per_source_connections + 2
        for _ in range(5):  # enrolled agent, another address: served during the flood
            line = _request(
                ep,
                b"GET /key HTTP/1.1\r\nHost: x\r\n\r\n",
                src="127.0.0.2",
                cert=cert,
                ca=mgr.pki.ca_path,
            )
            assert line == b"HTTP/1.1 200 OK"
            line = _request(
                adm,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Api-Key: "
                + mgr.admin_key.encode()
                + b"\r\n\r\n",
                src="127.0.0.3",
                cert=None,
                ca=mgr.pki.ca_path,
            )
            assert line == b"HTTP/1.1 200 OK"
        # the flood still holds its slots (they end after tls.handshake_timeout): served during
        # it, not after it (a condition on the flood rather than a time margin)
        assert any(_open(s) for s in socks)
        metrics = mgr.ctx.metrics.render()
        assert "heron_tls_rejected_per_source_total" in metrics
        assert mgr.ctx.metrics.value("heron_tls_rejected_per_source_total") >= 2 * (
            FLOOD - mgr.ctx.config.tls.per_source_connections
        )
        # connections that never handshake end after handshake_timeout (10 s by default)
        assert _wait(lambda: gov.active == 0, 30)
    finally:
        for s in socks:
            s.close()


def test_a_head_not_sent_in_time_is_closed(mgr: Manager) -> None:
    from dataclasses import replace

    front = mgr.server.admin.front
    assert front is not None and front.governor is not None
    old = front.governor.limits
    front.governor.limits = replace(old, header_timeout=0.5)
    try:
        ctx = ssl.create_default_context(cafile=str(mgr.pki.ca_path))
        before = front.governor.rejected["header_timeout"]
        raw = socket.create_connection(("127.0.0.1", mgr.bound.admin[1]), timeout=120)
        with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # slowloris: never ends the head
            assert conn.recv(100) == b""
        # closed for its late head (the counter), not by a time margin of the test
        assert front.governor.rejected["header_timeout"] == before + 1
    finally:
        front.governor.limits = old


def test_unauthenticated_enroll_body_is_cut_before_it_is_spooled(mgr: Manager) -> None:
    ctx = ssl.create_default_context(cafile=str(mgr.pki.ca_path))
    port = mgr.bound.endpoint[1]
    # a declared length over the endpoint listener's body limit: 413 before any body byte
    line = _request(
        port,
        b"POST /enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        b"\r\nContent-Length: 209715200\r\n\r\n",
        src="127.0.0.4",
        cert=None,
        ca=mgr.pki.ca_path,
    )
    assert line.startswith(b"HTTP/1.1 413")
    # a chunked body: the connection is closed once it sent anonymous_bytes (1 MiB)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
    with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(
            b"POST /enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        with pytest.raises(OSError):
            for _ in range(200):  # 200 MiB offered
                conn.sendall(chunk)
                sent += len(chunk)
    assert sent < 40 * 1024 * 1024, sent  # 1 MiB forwarded, the rest socket buffers
    assert mgr.server.endpoint.front is not None
    gov = mgr.server.endpoint.front.governor
    assert gov is not None and gov.rejected["anonymous_bytes"] >= 1
