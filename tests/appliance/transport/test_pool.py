"""appliance.transport.pool, and the relay over it against a real loopback backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from appliance.transport.pool import BackendPool, Lease
from appliance.transport.relay import Relay, Request

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _backend(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.AbstractServer, Callable[[], Awaitable[Streams]]]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, lambda: asyncio.open_connection("127.0.0.1", port)


async def _idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()
    writer.close()


def test_pool_bounds_connections_queues_and_reuses() -> None:
    async def main() -> None:
        server, connect = await _backend(_idle)
        pool = BackendPool(connect, size=2)
        a, b = await pool.acquire(), await pool.acquire()
        third = asyncio.create_task(pool.acquire())
        cancelled = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        assert not third.done() and pool.opened == 2 and pool.lent == 2
        cancelled.cancel()
        pool.release(a, reusable=True)
        c = await asyncio.wait_for(third, 10)
        assert c.writer is a.writer and c.reused and pool.reused == 1
        pool.release(a, reusable=True)  # a second release of a given-back lease: nothing
        assert pool.lent == 2
        pool.detach(b)  # its slot is free at once; the connection is b's to close
        d = await pool.acquire()
        assert pool.opened == 3 and d.writer is not b.writer
        pool.release(b, reusable=True)
        assert b.writer.is_closing() and pool.lent == 2
        pool.release(c, reusable=False)
        pool.release(d, reusable=True)
        assert c.writer.is_closing() and pool.lent == 0
        pool.idle = 0.0  # aged out: a new connection, the old one closed
        e = await pool.acquire()
        assert e.writer is not d.writer and d.writer.is_closing()
        pool.release(e, reusable=True)
        pool.close()
        assert e.writer.is_closing()
        assert pool.buffer(10) and not pool.buffer(pool.buffered_cap)
        pool.unbuffer(10)
        off = BackendPool(connect, size=0)  # pooling off: one connection per lease
        f = await off.acquire()
        off.release(f, reusable=True)
        assert f.writer.is_closing() and off.opened == 1
        server.close()

    asyncio.run(main())


class _Forward:
    """A responder that answers nothing itself."""

    def wants(self, req: Request) -> bool:
        return False

    def headers(self, req: Request, conn: object) -> bytes:
        return b""

    async def answer(self, req: Request, conn: object) -> bytes | None:
        return None


def test_relay_resends_once_on_a_pooled_connection_the_backend_closed() -> None:
    """A backend that answers one request per connection and then drops the next unanswered
    (as waitress's idle timeout would, racing with a request): the client sees every answer."""
    served: list[bytes] = []

    async def one_per_connection(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        served.append(await reader.readexactly(length))
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request: dropped unanswered
        w.close()

    async def main() -> None:
        server, connect = await _backend(one_per_connection)
        pool = BackendPool(connect, size=1)
        bound: list[int] = []
        client = await asyncio.start_server(
            lambda r, w: Relay(
                responder=_Forward(),
                pool=pool,
                bind=lambda lease: bound.append(lease.port),
                unbind=lambda lease: bound.remove(lease.port),
                pipe=_no_pipe,
                timeout=10,
            ).serve(r, w, None),  # type: ignore[arg-type]
            "127.0.0.1",
            0,
        )
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", client.sockets[0].getsockname()[1]
        )
        for body in (b"one", b"two", b"three"):
            writer.write(b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"ok"
        assert served == [b"one", b"two", b"three"]  # each once
        assert pool.opened == 3 and pool.lent == 0 and not bound
        writer.close()
        client.close()
        server.close()

    asyncio.run(main())


async def _no_pipe(lease: Lease, first: bytes) -> None:
    raise AssertionError("nothing here is piped raw")
