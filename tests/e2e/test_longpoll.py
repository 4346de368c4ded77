"""Long-poll /commands in the TLS front, keep-alive on every answer, fallback for old agents."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.store import CommandRecord
from appliance.transport.tlsfront import TlsFront
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
    assert status == 204 and "connection" not in headers
    assert int(headers[wire.HEADER_POLL_AFTER.lower()]) >= 60  # the advice on relayed answers
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


def test_agent_connections_resume_each_others_tls_session(mgr: Manager) -> None:
    """The link's two connections share a context: the second one's first handshake resumes
    the first one's ticket (and is still identified by its certificate); a context built for
    other files (a renewed certificate) starts without a session."""
    from agent.link.transport import HttpsTransport, Request, TlsShare, create_ssl_context

    uuid, (cert, key) = mgr.enroll("lp-6")
    share = TlsShare()

    def build() -> ssl.SSLContext:
        return create_ssl_context(mgr.pki.ca_path, Path(cert), Path(key), check_hostname=False)

    ctx = share.context_for("stamp-1", build)
    assert share.context_for("stamp-1", build) is ctx
    port = mgr.bound.endpoint[1]
    poll, house = (HttpsTransport("127.0.0.1", port, ctx, share=share) for _ in range(2))
    assert poll.send(Request("GET", wire.ROUTE_KEY)).body == uuid.encode()
    assert poll.resumed == 0 and share.session is not None
    assert house.send(Request("GET", wire.ROUTE_KEY)).body == uuid.encode()
    assert house.resumed == 1  # never had a session of its own
    alone = HttpsTransport("127.0.0.1", port, build())  # another context: a full handshake
    assert alone.send(Request("GET", wire.ROUTE_KEY)).status == 200 and alone.resumed == 0
    assert share.context_for("stamp-2", build) is not ctx and share.session is None
    for t in (poll, house, alone):
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


def test_agent_updater_keeps_the_advice_of_the_updates_answer(mgr: Manager, tmp_path: Path) -> None:
    from agent.link.transport import HttpsTransport, create_ssl_context
    from agent.link.updates import Updater

    _, (cert, key) = mgr.enroll("lp-7")
    ctx = create_ssl_context(mgr.pki.ca_path, Path(cert), Path(key), check_hostname=False)
    t = HttpsTransport("127.0.0.1", mgr.bound.endpoint[1], ctx)
    updater = Updater(t, tmp_path, {"rules": lambda _body: None})
    assert updater.poll_after == 0.0
    updater.check()
    assert updater.folded and updater.poll_after >= 60
    t.close()


def _front(mgr: Manager) -> TlsFront:
    front = mgr.server.endpoint.front
    assert front is not None
    return front


def test_revocation_ends_a_held_long_poll_at_once(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("lp-revoke-held")
    conn = _conn(mgr, cert)
    assert _get(conn, wire.ROUTE_KEY)[0] == 200
    out: list[object] = []

    def poll() -> None:
        try:
            out.append(_get(conn, "/commands?wait=60"))
        except (OSError, http.client.HTTPException) as ex:
            out.append(ex)

    lp = mgr.server.long_poll
    assert lp is not None
    waiting = lp.bell.waiting
    t = threading.Thread(target=poll)
    t.start()
    _until(lambda: lp.bell.waiting > waiting, "the long-poll is held")
    closed = _front(mgr).revoked_closed
    mgr.ctx.identity.revoke(uuid)
    t.join(timeout=60)  # the hold is 54-60 s: a 204 would mean it ran out instead
    assert not t.is_alive() and isinstance(out[0], OSError | http.client.HTTPException)
    assert _front(mgr).revoked_closed > closed
    _until(lambda: lp.bell.waiting == waiting, "the long-poll's waiter is gone")
    with pytest.raises((OSError, http.client.HTTPException)):  # a new handshake is refused
        _get(_conn(mgr, cert), wire.ROUTE_KEY)


def test_revocation_refuses_the_next_request_of_a_kept_alive_connection(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("lp-revoke-kept")
    conns = [_conn(mgr, cert), _conn(mgr, cert)]
    for conn in conns:
        assert _get(conn, wire.ROUTE_KEY)[0] == 200
    hook = mgr.server._certs_changed
    mgr.ctx.store.certs.on_change.remove(hook)  # the per-request check alone, no sweep
    try:
        mgr.ctx.identity.revoke(uuid)
        closed = _front(mgr).revoked_closed
        # a route the front answers (long-poll) and one waitress answers, each on its
        # connection kept alive from before the revocation
        for conn, path in zip(conns, ("/commands?wait=30", wire.ROUTE_KEY), strict=True):
            sock = conn.sock
            conn.request("GET", path)
            assert conn.sock is sock  # sent on the kept-alive connection
            res = conn.getresponse()
            body = res.read()
            assert res.status == 403 and b"revoked" in body
            assert res.getheader("connection") == "close"
        assert _front(mgr).revoked_closed == closed
    finally:
        mgr.ctx.store.certs.on_change.append(hook)


def test_revocation_closes_an_idle_kept_alive_connection(mgr: Manager) -> None:
    uuid, cert = mgr.enroll("lp-revoke-idle")
    conn = _conn(mgr, cert)
    assert _get(conn, wire.ROUTE_KEY)[0] == 200
    closed = _front(mgr).revoked_closed
    mgr.ctx.identity.revoke(uuid)
    _until(lambda: _front(mgr).revoked_closed > closed, "the connection is closed")
    assert conn.sock is not None
    conn.sock.settimeout(30)
    try:
        assert conn.sock.recv(1) == b""  # closed by the manager without a request
    except ConnectionResetError:
        pass  # or reset
    conn.close()


def _until(cond: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.01)


def test_stopping_the_poller_ends_its_held_long_poll(mgr: Manager, tmp_path: Path) -> None:
    from agent.link.errors import TransportError
    from agent.link.poller import CommandPoller
    from agent.link.transport import HttpsTransport, Request, create_ssl_context

    _, (cert, key) = mgr.enroll("lp-stop")
    ctx = create_ssl_context(mgr.pki.ca_path, Path(cert), Path(key), check_hostname=False)
    t = HttpsTransport("127.0.0.1", mgr.bound.endpoint[1], ctx)
    poller = CommandPoller(t, tmp_path, wait=60)
    lp = mgr.server.long_poll
    assert lp is not None
    waiting = lp.bell.waiting
    thread = threading.Thread(target=poller.run)
    thread.start()
    _until(lambda: lp.bell.waiting > waiting, "the long-poll is held")
    poller.stop()
    thread.join(timeout=60)  # a hold of 54-60 s would end it too, but not before this
    assert not thread.is_alive() and not poller.held
    with pytest.raises(TransportError, match="stopping"):
        t.send(Request("GET", wire.ROUTE_KEY))
