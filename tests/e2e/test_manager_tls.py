"""Real TLS on 127.0.0.1: the TLS front + waitress + both apps, certificates from our PKI."""

from __future__ import annotations

import gc
import gzip
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from appliance.runtime.context import AppContext, build_context
from appliance.security.pki import Pki
from appliance.store import Role, Store
from appliance.transport.identities import IdentityMap
from appliance.transport.server import Bound, ManagerServer
from appliance.transport.tlsfront import TlsFront
from rules import wire
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _session(ca: Path, cert: tuple[str, str] | None = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # docs/reference/deps.md §2: REQUESTS_CA_BUNDLE would override verify
    s.verify = str(ca)
    if cert:
        s.cert = cert
    return s


def _csr() -> tuple[str, str]:
    from tests.appliance.conftest import make_csr

    return make_csr()


class Manager:
    def __init__(self, tmp: Path) -> None:
        from dataclasses import replace

        from appliance.core.config import Config
        from index import EventStore

        self.tmp = tmp
        self.pki = Pki.create(tmp / "pki", server_names=["localhost", "127.0.0.1"])
        config = Config().with_listen(admin="127.0.0.1:0", endpoint="127.0.0.1:0")
        config = replace(config, server=replace(config.server, threads=16))
        self.ctx: AppContext = build_context(
            data_dir=tmp,
            config=config,
            store=Store(tmp / "heron.duckdb"),
            events=EventStore(tmp / "events", commit_interval=0.2),
            pki=self.pki,
        )
        self.server = ManagerServer(self.ctx)
        self.bound: Bound = self.server.start()
        _, self.admin_key = self.ctx.identity.add_user("root", Role.ADMIN)
        _, self.analyst_key = self.ctx.identity.add_user("ana", Role.ANALYST)

    @property
    def ep_url(self) -> str:
        return f"https://127.0.0.1:{self.bound.endpoint[1]}"

    @property
    def admin_url(self) -> str:
        return f"https://127.0.0.1:{self.bound.admin[1]}"

    def enroll(self, name: str) -> tuple[str, tuple[str, str]]:
        token, _ = self.ctx.identity.create_token()
        csr, key_pem = _csr()
        res = _session(self.pki.ca_path).post(
            self.ep_url + "/enroll",
            json={"token": token, "csr_pem": csr, "hostname": name},
            timeout=10,
        )
        assert res.status_code == 200, res.text
        body = res.json()
        cert, key = self.tmp / f"{name}.pem", self.tmp / f"{name}.key"
        cert.write_text(body["certificate_pem"])
        key.write_text(key_pem)
        return body["uuid"], (str(cert), str(key))

    def close(self) -> None:
        self.server.close()
        self.ctx.close()


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = Manager(tmp_path_factory.mktemp("mgr"))
    yield m
    m.close()


def test_valid_client_cert_is_served_and_identity_from_cert(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("e2e-1")
    s = _session(mgr.pki.ca_path, cert)
    res = s.get(mgr.ep_url + "/key", headers={"X-Endpoint-Uuid": "spoofed"}, timeout=10)
    assert res.status_code == 200 and res.text == uuid
    events = [
        {
            "Event": {
                "System": {
                    "Channel": "x",
                    "EventID": 1,
                    "Computer": "c",
                    "TimeCreated": {"SystemTime": "2026-01-01T00:00:00Z"},
                },
                "EventData": {"Image": "a.exe"},
            }
        }
    ] * 3
    body = gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    res = s.post(
        mgr.ep_url + "/logs",
        data=body,
        timeout=10,
        headers={"Content-Encoding": "gzip", wire.HEADER_BATCH_ID: "x1"},
    )
    assert res.status_code == 200 and res.json()["accepted"] == 3


def test_no_certificate_refused(mgr: Manager) -> None:
    res = _session(mgr.pki.ca_path).get(mgr.ep_url + "/key", timeout=10)
    assert res.status_code == 401


def test_other_ca_refused(mgr: Manager, tmp_path: Path) -> None:
    rogue = Pki.create(tmp_path / "rogue", server_names=["localhost"])
    cert, key_pem = rogue.issue_client("rogue", days=30)
    (tmp_path / "r.pem").write_text(cert.pem)
    (tmp_path / "r.key").write_text(key_pem)
    s = _session(mgr.pki.ca_path, (str(tmp_path / "r.pem"), str(tmp_path / "r.key")))
    with pytest.raises(requests.exceptions.RequestException):
        s.get(mgr.ep_url + "/key", timeout=10)


def test_revoked_refused(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("e2e-revoked")
    assert _session(mgr.pki.ca_path, cert).get(mgr.ep_url + "/key", timeout=10).ok
    res = _session(mgr.pki.ca_path).post(
        mgr.admin_url + f"/endpoints/{uuid}/revoke",
        timeout=10,
        headers={"X-Api-Key": mgr.admin_key},
    )
    assert res.status_code == 200
    with pytest.raises(requests.exceptions.RequestException):
        _session(mgr.pki.ca_path, cert).get(mgr.ep_url + "/key", timeout=10)


def test_expired_refused(mgr: Manager, tmp_path: Path) -> None:
    past = Pki(mgr.pki.root, clock=lambda: time.time() - 3 * 86400)
    issued, key_pem = past.issue_client("00000000-0000-4000-8000-000000000001", days=1)
    (tmp_path / "x.pem").write_text(issued.pem)
    (tmp_path / "x.key").write_text(key_pem)
    s = _session(mgr.pki.ca_path, (str(tmp_path / "x.pem"), str(tmp_path / "x.key")))
    with pytest.raises(requests.exceptions.RequestException):
        s.get(mgr.ep_url + "/key", timeout=10)


def test_backend_port_direct_has_no_identity(mgr: Manager) -> None:
    backend = mgr.server.endpoint.front.backend  # type: ignore[union-attr]
    with socket.create_connection(backend, timeout=5) as sock:
        sock.sendall(b"GET /key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 401")


def test_admin_https_keys_and_roles(mgr: Manager) -> None:
    s = _session(mgr.pki.ca_path)
    assert s.get(mgr.admin_url + "/endpoints", timeout=10).status_code == 401
    assert (
        s.get(mgr.admin_url + "/endpoints", timeout=10, headers={"X-Api-Key": "wrong"}).status_code
        == 401
    )
    ok = s.get(mgr.admin_url + "/endpoints", timeout=10, headers={"Api-Key": mgr.admin_key})
    assert ok.status_code == 200 and ok.json()["message"] == "OK"
    res = s.post(
        mgr.admin_url + "/iocs",
        timeout=10,
        headers={"X-Api-Key": mgr.analyst_key},
        json=[{"value": "evil.example", "type": "domain"}],
    )
    assert res.status_code == 403 and res.json()["error"]
    assert s.get(mgr.admin_url + "/openapi.json", timeout=10).json()["openapi"] == "3.1.0"


def test_admin_listener_is_tls_only(mgr: Manager) -> None:
    with socket.create_connection(("127.0.0.1", mgr.bound.admin[1]), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        try:
            data = sock.recv(100)
        except (ConnectionError, TimeoutError):
            data = b""
    assert not data.startswith(b"HTTP/1.1 200")


def test_sse_stream_over_tls(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("e2e-sse")
    s = _session(mgr.pki.ca_path)
    with s.get(
        mgr.admin_url + "/stream/detections?limit=1",
        stream=True,
        timeout=10,
        headers={"X-Api-Key": mgr.admin_key},
    ) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        ev = {
            "Event": {
                "System": {"Channel": "x", "EventID": 1},
                "Detection": {"Signature": ["T"], "Criticality": 7},
            }
        }
        body = gzip.compress(json.dumps(ev).encode() + b"\n")
        agent = _session(mgr.pki.ca_path, cert)
        assert agent.post(
            mgr.ep_url + "/logs", data=body, timeout=10, headers={"Content-Encoding": "gzip"}
        ).ok
        lines = [ln for ln in stream.iter_lines() if ln.startswith(b"data: ")]
    got = json.loads(lines[0][6:])
    assert got["Event"]["EdrData"]["Endpoint"]["UUID"] == uuid


def test_idle_tcp_connection_does_not_stall_others(mgr: Manager) -> None:
    idle = [
        socket.create_connection(("127.0.0.1", mgr.bound.endpoint[1]), timeout=5) for _ in range(3)
    ]
    try:
        res = _session(mgr.pki.ca_path).get(mgr.ep_url + "/healthz", timeout=60)
        assert res.status_code == 200
        # served while the idle ones still waited for their handshake (the front closes them
        # after tls.handshake_timeout): not served after them (a condition, not a time margin)
        for sock in idle:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in idle:
            sock.close()


def test_failed_handshakes_are_counted(mgr: Manager) -> None:
    front = mgr.server.endpoint.front
    assert front is not None
    before = front.refused
    with socket.create_connection(("127.0.0.1", mgr.bound.endpoint[1]), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP on a TLS port
        sock.settimeout(5)
        try:
            sock.recv(100)
        except (ConnectionError, TimeoutError):
            pass
    # earlier tests' idle sockets may also land here
    wait_for(lambda: front.refused >= before + 1, 60, "the refused handshake to be counted")
    metrics = (
        _session(mgr.pki.ca_path)
        .get(mgr.admin_url + "/metrics", headers={"X-Api-Key": mgr.admin_key}, timeout=10)
        .text
    )
    assert "heron_tls_refused_total" in metrics


def test_closing_the_front_ends_its_connections_cleanly(
    mgr: Manager, caplog: pytest.LogCaptureFixture
) -> None:
    backend = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(backend.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    front = TlsFront(
        name="closing",
        context=mgr.pki.server_context(client_certs=False),
        backend=backend.getsockname(),
        identities=IdentityMap(),
    )
    host, port = front.start("127.0.0.1", 0)
    client = ssl.create_default_context(cafile=str(mgr.pki.ca_path))
    socks = [socket.create_connection((host, port), timeout=5) for _ in range(3)]  # handshaking
    socks += [  # proxied to the backend, idle
        client.wrap_socket(
            socket.create_connection((host, port), timeout=5), server_hostname="127.0.0.1"
        )
        for _ in range(3)
    ]
    wait_for(lambda: front.active >= 6 and len(held) >= 3, 60, "6 connections at the front")
    assert front.active == 6
    stop = threading.Event()

    def connect_during_close() -> None:
        while not stop.is_set():
            try:
                socks.append(socket.create_connection((host, port), timeout=1))
            except OSError:
                time.sleep(0.01)

    late = threading.Thread(target=connect_during_close, daemon=True)
    late.start()
    caplog.set_level(logging.WARNING, logger="asyncio")
    caplog.set_level(logging.WARNING, logger="appliance.transport.tlsfront")
    try:
        n = len(socks)
        wait_for(lambda: len(socks) > n, 30, "a connection from the late thread")
        front.close()
        # every connection ended: close() did not give up at its SHUTDOWN_TIMEOUT ("did not
        # end in time", "still running"), a condition rather than a time margin
        assert [r.getMessage() for r in caplog.records if r.name.startswith("appliance")] == []
        assert front.active == 0
        assert not [t for t in threading.enumerate() if t.name == "tls-closing"]
        socks[4].settimeout(5)
        try:  # the proxied connection was closed
            assert socks[4].recv(10) == b""
        except (ConnectionError, ssl.SSLError):
            pass
    finally:
        stop.set()
        late.join(5)
        backend.close()
        for sock in socks + held:
            sock.close()
    gc.collect()  # "Task was destroyed but it is pending!" is logged when a task is collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
