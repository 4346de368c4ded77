"""appliance.transport.longpoll / .relay pieces without sockets (the TLS path: tests/e2e)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from appliance.runtime.context import build_context
from appliance.store import CommandRecord, Endpoint, Store
from appliance.transport.longpoll import Advisor, CommandBell, long_poll_for
from appliance.transport.relay import _drop_close, parse_request
from tests.support.memory_store import MemoryEventStore


def test_parse_request_and_close() -> None:
    req = parse_request(
        b"GET /commands?wait=60&x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert req is not None and req.path == "/commands" and req.query == "wait=60&x=1"
    assert req.headers["host"] == "a" and req.close
    assert parse_request(b"GET / HTTP/1.0\r\n\r\n").close  # type: ignore[union-attr]
    assert not parse_request(b"GET / HTTP/1.1\r\n\r\n").close  # type: ignore[union-attr]
    for bad in (
        b"GET /\r\n\r\n",
        b"GET / HTTP/2\r\n\r\n",
        b"GET / HTTP/1.1\r\n : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nnocolon\r\n\r\n",
        # what waitress could frame otherwise (a pooled backend connection serves many agents)
        b"POST / HTTP/1.1\r\nX: a\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"Content-Length: 5\r\n\r\n",
    ):
        assert parse_request(bad) is None
    assert _drop_close(b"HTTP/1.1 204 No Content\r\nConnection: close\r\nServer: w\r\n\r\n") == (
        b"HTTP/1.1 204 No Content\r\nServer: w\r\n\r\n"
    )


def test_advisor_stretches_update_checks_with_the_fleet() -> None:
    n = [10]
    adv = Advisor(lambda: n[0], base=60, per=1000, cap=900)
    assert adv.poll_after() == 60
    n[0] = 5000
    assert adv.poll_after() == 300
    n[0] = 10**6
    assert adv.poll_after() == 900


def test_bell_wakes_waiters_from_another_thread() -> None:
    bell = CommandBell()

    async def main() -> bool:
        event = bell.register("u1")
        other = bell.register("u2")
        threading.Thread(target=bell.ring, args=("u1",)).start()
        await asyncio.wait_for(event.wait(), 10)
        woke_other = other.is_set()
        bell.unregister("u1", event)
        bell.unregister("u2", other)
        return woke_other

    assert asyncio.run(main()) is False
    assert bell.waiting == 0


def test_commands_queued_before_start_and_after_are_found(tmp_path: Path) -> None:
    store = Store(":memory:")
    store.endpoints.create(Endpoint("u1"))
    store.endpoints.create(Endpoint("u2"))
    store.commands.add(CommandRecord(id="c1", endpoint="u1", name="hash", created=time.time()))
    ctx = build_context(data_dir=tmp_path, store=store, events=MemoryEventStore())
    lp = long_poll_for(ctx, lambda: 0)
    body = lp.dequeue("u1", "127.0.0.1")
    assert body is not None and b'"c1"' in body
    assert lp.dequeue("u1", "127.0.0.1") is None and lp.dequeue("u2", "") is None
    store.commands.add(CommandRecord(id="c2", endpoint="u2", name="hash", created=time.time()))
    store.commands.add(CommandRecord(id="c3", endpoint="u2", name="hash", created=time.time()))
    assert b'"c2"' in (lp.dequeue("u2", "") or b"")
    assert b'"c3"' in (lp.dequeue("u2", "") or b"")
    assert lp.dequeue("u2", "") is None
    ctx.close()


def test_idle_long_poll_stays_on_the_loop_until_a_command_or_presence_is_due(
    tmp_path: Path,
) -> None:
    """`quick` (run on the front's loop) sends a long-poll to the executor only when a command
    may be queued or the presence batch is due; presence is recorded either way."""
    from tests.support.clock import Clock

    clock = Clock()
    store = Store(":memory:")
    store.endpoints.create(Endpoint("u1"))
    ctx = build_context(data_dir=tmp_path, store=store, events=MemoryEventStore(), clock=clock)
    lp = long_poll_for(ctx, lambda: 0)
    assert lp.quick("u1", "10.0.0.1")  # the first presence batch is due at once
    lp.dequeue("u1", "10.0.0.1")  # writes it
    clock.advance(1.0)
    assert not lp.quick("u1", "10.0.0.2")  # idle: no store round trip
    store.commands.add(CommandRecord(id="c1", endpoint="u1", name="hash", created=clock()))
    assert lp.quick("u1", "10.0.0.2")  # a command was queued: ask the store
    assert b'"c1"' in (lp.dequeue("u1", "10.0.0.2") or b"")
    assert lp.quick("u1", "10.0.0.2")  # there may be more: asked once more
    assert lp.dequeue("u1", "10.0.0.2") is None
    assert not lp.quick("u1", "10.0.0.2")
    clock.advance(2.0)
    assert lp.quick("u1", "10.0.0.3")  # the presence batch is due again
    ctx.ingest.flush_presence()
    store.db.submit(lambda cur: None).result()  # the writer thread ran the batch
    assert store.endpoints.get("u1").ip == "10.0.0.3"
    ctx.close()


def test_connection_capacity_from_memory_and_descriptors() -> None:
    from appliance.transport.capacity import BYTES_PER_CONNECTION, FD_RESERVE, max_connections

    assert max_connections(500, 1 << 30, 1024) == 500  # configured: as given
    assert max_connections(0, 1 << 30, None) == (1 << 30) // BYTES_PER_CONNECTION
    assert max_connections(0, 1 << 30, 20000) == (20000 - FD_RESERVE) * 3 // 4
    assert max_connections(0, 1 << 20, 10**6) == 64  # never below a floor


def test_long_poll_resolves_a_certificate_once_not_per_poll() -> None:
    from appliance.core.errors import Forbidden
    from appliance.security.pki import PeerIdentity
    from appliance.transport.identities import ConnInfo
    from appliance.transport.longpoll import LongPoll

    asked: list[str] = []
    refuse = {"s2"}

    def resolve(conn: ConnInfo) -> str:
        assert conn.identity is not None
        asked.append(conn.identity.serial)
        if conn.identity.serial in refuse:
            raise Forbidden("endpoint is unknown or revoked")
        return "uuid-" + conn.identity.serial

    lp = LongPoll(
        resolve=resolve,
        dequeue=lambda uuid, ip: uuid.encode(),  # a "command" at once: no hold
        bell=CommandBell(),
        advisor=Advisor(lambda: 0),
    )
    req = parse_request(b"GET /commands?wait=30 HTTP/1.1\r\n\r\n")
    assert req is not None and lp.wants(req)

    def conn(serial: str) -> ConnInfo:
        return ConnInfo(PeerIdentity("cn", serial, "sha", 2e9), "127.0.0.1", 1)

    async def main() -> list[bytes | None]:
        return [await lp.answer(req, conn(s)) for s in ("s1", "s1", "s1", "s2", "s2")]

    out = asyncio.run(main())
    assert [o is not None and o.endswith(b"uuid-s1") for o in out[:3]] == [True] * 3
    assert out[3:] == [None, None]  # waitress answers the error; a refusal is not cached
    assert asked == ["s1", "s2", "s2"]


def test_batch_advice_grows_with_the_senders_of_the_last_minute() -> None:
    from appliance.transport.advice import BatchAdvisor
    from appliance.transport.identities import ConnInfo
    from appliance.transport.longpoll import LongPoll
    from rules import wire

    now = [0.0]
    adv = BatchAdvisor(base=1.0, per=100, cap=10.0, window=60.0, clock=lambda: now[0])
    for i in range(100):
        adv.saw(f"s{i}")
    assert adv.batch_after() == 1.0 and adv.header() == b""  # up to `per` senders: no advice
    for i in range(100, 250):
        adv.saw(f"s{i}")
    assert adv.header() == f"{wire.HEADER_BATCH_AFTER}: 2.5\r\n".encode()
    now[0] = 61.0
    adv.saw("s0")  # a new window: the last one still counts
    assert adv.senders() == 250
    now[0] = 200.0
    adv.saw("s0")  # both windows old: the count starts again
    assert adv.senders() == 1 and adv.header() == b""
    for i in range(5000):
        adv.saw(f"t{i}")
    assert adv.batch_after() == 10.0  # the cap (wire.MAX_BATCH_AFTER)
    # only /logs answers carry it, and each counts its sender
    lp = LongPoll(
        resolve=lambda conn: "u",
        dequeue=lambda uuid, ip: None,
        bell=CommandBell(),
        advisor=Advisor(lambda: 1),
        batching=adv,
    )
    conn = ConnInfo(None, "10.0.0.9", 1)
    logs = parse_request(b"POST /logs HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    key = parse_request(b"GET /key HTTP/1.1\r\n\r\n")
    assert logs is not None and key is not None
    assert wire.HEADER_BATCH_AFTER.encode() in lp.headers(logs, conn)
    assert wire.HEADER_BATCH_AFTER.encode() not in lp.headers(key, conn)
    assert wire.HEADER_POLL_AFTER.encode() in lp.headers(key, conn)
