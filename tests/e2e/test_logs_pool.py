"""/logs through the endpoint front's pooled backend connections (issue 24, transport/pool.py).

The same requests get the same answers with pooling on and off; a fleet of keep-alive agents is
served by at most `pool.size` loopback connections to waitress, and every batch is stored once.
"""

from __future__ import annotations

import functools
import gzip
import http.client
import json
import os
import ssl
import threading
from collections.abc import Iterator

import pytest

from appliance.transport.tlsfront import TlsFront
from rules import wire
from tests.e2e.test_manager_tls import Manager
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

Answer = tuple[int, list[tuple[str, str]], bytes]
NDJSON = {"Content-Type": wire.CONTENT_NDJSON, "Content-Encoding": "gzip"}


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = Manager(tmp_path_factory.mktemp("logs-pool"))
    yield m
    m.close()


def _front(mgr: Manager) -> TlsFront:
    front = mgr.server.endpoint.front
    assert front is not None
    return front


def _conn(mgr: Manager, cert: tuple[str, str]) -> http.client.HTTPSConnection:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(mgr.pki.ca_path))
    ctx.load_cert_chain(*cert)
    return http.client.HTTPSConnection("127.0.0.1", mgr.bound.endpoint[1], context=ctx, timeout=60)


def _post(conn: http.client.HTTPSConnection, body: bytes, headers: dict[str, str]) -> Answer:
    conn.request("POST", wire.ROUTE_LOGS, body=body, headers=headers)
    res = conn.getresponse()
    kept = [(k, v) for k, v in res.getheaders() if k.lower() != "date"]
    return res.status, kept, res.read()


def _events(n: int, tag: str, pad: int = 0) -> bytes:
    return b"".join(
        json.dumps(
            {
                "Event": {
                    "System": {"Channel": "x", "EventID": 1, "Computer": tag},
                    "EventData": {"N": i, "Pad": os.urandom(pad).hex()},
                }
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


@functools.cache
def _cases() -> list[tuple[str, bytes, dict[str, str]]]:
    """(name, body, headers): accepted, refused and large (streamed) batches, in order."""
    cap = wire.MAX_LOGS_EVENTS
    deep = b'{"Event":{"EventData":{"X":' + b"[" * 5000 + b"]" * 5000 + b"}}}\n"
    large = gzip.compress(_events(400, "large", pad=1000))  # random hex: ~400 KB gzipped
    assert len(large) > 256 * 1024  # over relay.BODY_BUFFER: a connection of its own
    return [
        ("ok", gzip.compress(_events(3, "ok")), NDJSON | {wire.HEADER_BATCH_ID: "b1"}),
        ("duplicate", gzip.compress(_events(3, "ok")), NDJSON | {wire.HEADER_BATCH_ID: "b1"}),
        ("large", large, NDJSON | {wire.HEADER_BATCH_ID: "b2"}),
        ("large-bad-gzip", os.urandom(300_000), NDJSON | {wire.HEADER_BATCH_ID: "b3"}),
        ("bad-gzip", b"not gzip", NDJSON | {wire.HEADER_BATCH_ID: "b4"}),
        ("wrong-encoding", gzip.compress(_events(1, "t")), NDJSON | {"Content-Encoding": "br"}),
        ("events-cap", gzip.compress(b'{"Event":{}}\n' * (cap + 1)), NDJSON),
        ("deep", gzip.compress(deep), NDJSON | {wire.HEADER_BATCH_ID: "b5"}),
        (
            "bad-batch-id",
            gzip.compress(_events(1, "i")),
            NDJSON | {wire.HEADER_BATCH_ID: "x" * 200},
        ),
    ]


def _run_cases(mgr: Manager, name: str) -> list[Answer]:
    _, cert = mgr.enroll(name)
    conn = _conn(mgr, cert)
    answers = []
    for _, body, headers in _cases():
        answers.append(_post(conn, body, headers))
    conn.close()
    return answers


def test_logs_answers_are_the_same_with_and_without_the_pool(mgr: Manager) -> None:
    pool = _front(mgr).pool
    size = pool.size
    try:
        pool.size = 0  # one backend connection per request, as before the pool
        before = _run_cases(mgr, "unpooled")
    finally:
        pool.size = size
    reused = pool.reused
    after = _run_cases(mgr, "pooled")
    assert pool.reused > reused  # the second run did go through the pool
    names = [name for name, _, _ in _cases()]
    assert [a[0] for a in after] == [200, 200, 200, 400, 400, 415, 413, 400, 422], names
    for name, old, new in zip(names, before, after, strict=True):
        assert old == new, name
    assert json.loads(after[1][2])["duplicate"] is True


def test_fleet_is_served_by_the_pool_and_every_batch_stored_once(mgr: Manager) -> None:
    front = _front(mgr)
    pool = front.pool
    pool.idle = 600.0  # a slow box must not age the pooled connections out mid-test
    agents, batches, per = 48, 4, 5
    enrolled = [mgr.enroll(f"fleet-{i}") for i in range(agents)]
    opened, reused = pool.opened, pool.reused
    failures: list[str] = []
    start = threading.Barrier(agents)

    def agent(i: int) -> None:
        uuid, cert = enrolled[i]
        conn = _conn(mgr, cert)
        try:
            conn.connect()
            sock = conn.sock
            start.wait(timeout=120)
            for b in range(batches):
                body = gzip.compress(_events(per, uuid))
                status, _, raw = _post(conn, body, NDJSON | {wire.HEADER_BATCH_ID: f"{i}-{b}"})
                if status != 200 or json.loads(raw)["accepted"] != per:
                    failures.append(f"{i}-{b}: {status} {raw[:200]!r}")
            # an agent retrying a batch it sent (an answer lost): acknowledged, not stored again
            status, _, raw = _post(conn, body, NDJSON | {wire.HEADER_BATCH_ID: f"{i}-{b}"})
            if status != 200 or not json.loads(raw)["duplicate"]:
                failures.append(f"{i} retry: {status} {raw[:200]!r}")
            if conn.sock is not sock:
                failures.append(f"{i}: the TLS connection was not kept alive")
        finally:
            conn.close()

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(agents)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures[:5]
    requests = agents * (batches + 1)
    assert pool.opened - opened <= pool.size < agents
    assert pool.reused - reused >= requests - pool.size
    wait_for(lambda: pool.lent == 0 and pool.buffered == 0, what="leases given back")
    maps = mgr.server.endpoint.socket_maps  # + waitress's listener and trigger
    wait_for(lambda: sum(len(m) for m in maps) <= pool.size + 2, what="waitress map ≤ pool")
    mgr.ctx.events.flush()  # type: ignore[attr-defined]
    for uuid, _ in enrolled:
        stored = list(mgr.ctx.events.iter_events(endpoint=uuid))
        assert len(stored) == batches * per, uuid
