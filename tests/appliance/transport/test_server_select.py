"""Waitress under Windows' select(): the backend stays up past 512 sockets (issue 26, point 5).

Windows has no `select.poll`, so waitress polls with `select()`, and CPython's Windows
`select()` takes at most FD_SETSIZE = 512 sockets per set (ValueError "too many file descriptors
in select()", selectmodule.c `seq2set`). The test removes `select.poll` and puts in a `select()`
with that limit (waiting through the real poll, so fd numbers above 1024 work as on Windows),
then holds more keep-alive TLS connections than one map can take.
"""

from __future__ import annotations

import select
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from appliance.core.config import Config
from appliance.runtime.context import build_context
from appliance.security.pki import Pki
from appliance.store import Store
from appliance.transport.server import SELECT_MAP_LIMIT, ManagerServer, backend_shards
from index import EventStore

WINDOWS_FD_SETSIZE = 512
CONNECTIONS = 600  # > 512 backend sockets, ~200 agents with three connections each


def _windows_select(real_poll: Callable[[], Any]) -> Callable[..., tuple[list[Any], ...]]:
    def select_(
        r: list[Any], w: list[Any], x: list[Any], timeout: float | None = None
    ) -> tuple[list[Any], ...]:
        for fds in (r, w, x):
            if len(fds) > WINDOWS_FD_SETSIZE:
                raise ValueError("too many file descriptors in select()")
        poller = real_poll()
        for fd in set(r) | set(w) | set(x):
            poller.register(
                fd,
                (select.POLLIN if fd in r else 0)
                | (select.POLLOUT if fd in w else 0)
                | select.POLLPRI,
            )
        ready = poller.poll(None if timeout is None else timeout * 1000)
        rs = [
            fd
            for fd, ev in ready
            if fd in r and ev & (select.POLLIN | select.POLLHUP | select.POLLERR)
        ]
        ws = [fd for fd, ev in ready if fd in w and ev & (select.POLLOUT | select.POLLERR)]
        xs = [fd for fd, ev in ready if fd in x and ev & select.POLLPRI]
        return rs, ws, xs

    return select_


@pytest.fixture
def windows_select(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Windows' select() on POSIX; on Windows itself the real one (the Windows CI job)."""
    if sys.platform == "win32":
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = CONNECTIONS * 4 + 512  # client, front (2) and waitress sockets per connection
    if hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    monkeypatch.setattr(select, "select", _windows_select(select.poll))
    monkeypatch.delattr(select, "poll")
    yield
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def manager(tmp_path: Path, windows_select: None) -> Iterator[tuple[ManagerServer, int, Pki]]:
    pki = Pki.create(tmp_path / "pki", server_names=["localhost", "127.0.0.1"])
    config = Config().with_listen(admin="127.0.0.1:0", endpoint="127.0.0.1:0")
    config = replace(
        config,
        server=replace(config.server, threads=8),
        tls=replace(config.tls, max_connections=1024, per_source_connections=1024),
    )  # all from 127.0.0.1
    ctx = build_context(
        data_dir=tmp_path,
        config=config,
        store=Store(tmp_path / "h.duckdb"),
        events=EventStore(tmp_path / "events"),
        pki=pki,
    )
    server = ManagerServer(ctx)
    bound = server.start()
    yield server, bound.admin[1], pki
    server.close()
    ctx.close()


def _get(conn: ssl.SSLSocket) -> bytes:
    """GET /healthz on a keep-alive connection; the status line (the body is read too)."""
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n", 1)[0]


def test_shards_only_without_poll() -> None:
    shards, limit = backend_shards(2064)
    if hasattr(select, "poll"):
        assert (shards, limit) == (1, 2064)
    else:  # pragma: no cover - Windows
        assert shards * limit >= 2064 and limit <= SELECT_MAP_LIMIT


def test_more_backend_sockets_than_select_takes(manager: tuple[ManagerServer, int, Pki]) -> None:
    server, port, pki = manager
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    conns: list[ssl.SSLSocket] = []
    try:
        for _ in range(CONNECTIONS):
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            conn = ctx.wrap_socket(raw, server_hostname="localhost")
            conns.append(conn)
            assert _get(conn) == b"HTTP/1.1 200 OK"
        # every connection is still served (keep-alive): no waitress loop has died
        second = [_get(c) for c in conns]
        assert second == [b"HTTP/1.1 200 OK"] * CONNECTIONS, sorted(set(second))
        maps = [len(m) for m in server.admin.socket_maps]
        assert len(maps) == 3 and max(maps) <= SELECT_MAP_LIMIT < WINDOWS_FD_SETSIZE
        # waitress keeps every channel in the map we gave it (create_server(map=...))
        assert sum(maps) >= CONNECTIONS
        assert all(t.is_alive() for t in server.admin._threads)
    finally:
        for c in conns:
            c.close()
