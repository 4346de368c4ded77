"""Long-poll /commands in the TLS front, keep-alive on every answer, fallback for old agents."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.store import CommandRecord
from rules import wire
from tests.e2e.test_manager_tls import Manager

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = Manager(tmp_path_factory.mktemp("lp"))
    yield m
    m.close()


def _conn(mgr: Manager, cert: tuple[str, str]) -> http.client.HTTPSConnection:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(mgr.pki.ca_path))
    ctx.load_cert_chain(*cert)
    return http.client.HTTPSConnection("127.0.0.1", mgr.bound.endpoint[1], context=ctx, timeout=30)


def _queue(mgr: Manager, uuid: str, name: str = "hash") -> str:
    cmd = CommandRecord(
        id=str(uuidlib.uuid4()),
        endpoint=uuid,
        name=name,
        args=("/etc/hostname",),
        timeout=15.0,
        created=time.time(),
    )
    mgr.ctx.store.commands.add(cmd)
    return cmd.id


def _get(conn: http.client.HTTPSConnection, path: str) -> tuple[int, bytes, dict[str, str]]:
    conn.request("GET", path)
    res = conn.getresponse()
    return res.status, res.read(), {k.lower(): v for k, v in res.getheaders()}


def test_long_poll_is_held_until_a_command_is_queued(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("lp-1")
    conn = _conn(mgr, cert)
    out: list[tuple[int, bytes, dict[str, str]]] = []
    t = threading.Thread(target=lambda: out.append(_get(conn, "/commands?wait=30")))
    t.start()
    lp = mgr.server.long_poll
    assert lp is not None
    deadline = time.monotonic() + 20
    while lp.bell.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # the request reached the front and waits there
    assert lp.bell.waiting == 1 and not out
    cmd_id = _queue(mgr, uuid)
    t.join(timeout=20)
    status, body, headers = out[0]
    assert status == 200 and cmd_id.encode() in body
    assert wire.HEADER_POLL_AFTER.lower() in headers and "connection" not in headers
    sock = conn.sock
    # the same TLS connection serves waitress routes and a 204 without closing
    assert _get(conn, wire.ROUTE_KEY)[:2] == (200, uuid.encode())
    status, _, headers = _get(conn, "/commands")
    assert status == 204 and headers.get("connection") is None
    status, _, _ = _get(conn, "/commands?wait=0.2")
    assert status == 204
    assert _get(conn, wire.ROUTE_KEY)[0] == 200
    assert conn.sock is sock  # http.client reconnects silently when a server closes
    conn.close()


def test_queued_command_is_answered_at_once_and_once(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("lp-2")
    cmd_id = _queue(mgr, uuid)
    conn = _conn(mgr, cert)
    status, body, _ = _get(conn, "/commands?wait=30")
    assert status == 200 and cmd_id.encode() in body
    status, _, _ = _get(conn, "/commands?wait=0.1")
    assert status == 204
    conn.close()


def test_old_agent_without_wait_is_answered_by_waitress(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("lp-3")
    conn = _conn(mgr, cert)
    lp = mgr.server.long_poll
    assert lp is not None
    before = lp.answered
    status, _, headers = _get(conn, "/commands")
    assert status == 204 and wire.HEADER_POLL_AFTER.lower() not in headers
    cmd_id = _queue(mgr, uuid)
    status, body, _ = _get(conn, "/commands")
    assert status == 200 and cmd_id.encode() in body
    assert lp.answered == before  # never went through the long-poll
    conn.close()


def test_long_poll_of_a_deleted_endpoint_gets_waitress_error(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("lp-4")
    mgr.ctx.store.endpoints.delete(uuid)
    mgr.ctx.identity._verified.clear()
    conn = _conn(mgr, cert)
    status, body, _ = _get(conn, "/commands?wait=30")
    assert status == 403 and b"unknown or revoked" in body
    conn.close()


def test_agent_transport_resumes_its_tls_session_and_stays_identified(mgr: Manager) -> None:
    from agent.link.transport import HttpsTransport, Request, create_ssl_context

    uuid, (cert, key) = mgr.enroll("lp-5")
    ctx = create_ssl_context(mgr.pki.ca_path, Path(cert), Path(key), check_hostname=False)
    t = HttpsTransport("127.0.0.1", mgr.bound.endpoint[1], ctx)
    assert t.send(Request("GET", wire.ROUTE_KEY)).body == uuid.encode()
    assert t.resumed == 0
    for _ in range(3):
        t.close()  # the session (a TLS 1.3 ticket) is kept for the next connection
        assert t.send(Request("GET", wire.ROUTE_KEY)).body == uuid.encode()
    assert t.resumed == 3
    assert t.close_idle(0.0) and t.send(Request("GET", wire.ROUTE_KEY)).status == 200
    assert t.resumed == 4
    t.close()


def test_agent_poller_long_polls_and_keeps_the_advice(mgr: Manager, tmp_path: Path) -> None:
    from agent.link.poller import CommandPoller
    from agent.link.transport import HttpsTransport, create_ssl_context

    uuid, (cert, key) = mgr.enroll("lp-6")
    ctx = create_ssl_context(mgr.pki.ca_path, Path(cert), Path(key), check_hostname=False)
    t = HttpsTransport("127.0.0.1", mgr.bound.endpoint[1], ctx)
    ran: list[str] = []

    def runner(cmd: wire.Command, _ctx: object) -> wire.CommandResult:
        ran.append(cmd.id)
        return wire.CommandResult(id=cmd.id, exit_code=0)

    poller = CommandPoller(t, tmp_path, wait=0.3, runner=runner)
    assert poller.poll_once() is None
    assert poller.held and poller.poll_after >= 60 and poller.next_interval() <= 0.5
    cmd_id = _queue(mgr, uuid)
    result = poller.poll_once()
    assert result is not None and ran == [cmd_id]
    assert mgr.ctx.store.commands.get(cmd_id).state.value == "completed"
    poller.wait = 0.0  # as an agent of the previous version
    assert poller.poll_once() is None and not poller.held
    t.close()
