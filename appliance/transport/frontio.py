"""The TLS front's byte plumbing: the paused accept protocol, the first request head, and the
two-way pipe with its idle timeout and byte budget."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

__all__ = ["BUFFER", "HEAD_LIMIT", "PausedProtocol", "close_writers", "pipe_bytes", "read_head"]

BUFFER = 256 * 1024
HEAD_LIMIT = 64 * 1024  # bytes of a first request head read before choosing (upgrader only)


class PausedProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that reads nothing until `start_tls` takes the transport over.

    with `asyncio.start_server` the reader would already buffer the ClientHello
    before the handler calls `start_tls`, and the handshake would hang.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        super().connection_made(transport)


async def read_head(
    reader: asyncio.StreamReader, idle_timeout: float, timeout: float = 0.0
) -> bytes:
    """Bytes up to the end of the first request head (or HEAD_LIMIT, or EOF).

    `timeout` bounds the whole head (default: `idle_timeout` between reads).
    """
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout else None
    try:
        while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
            wait = idle_timeout if deadline is None else deadline - loop.time()
            if wait <= 0:
                break
            chunk = await asyncio.wait_for(reader.read(HEAD_LIMIT), wait)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, OSError, ssl.SSLError):
        if deadline is not None and not data:
            data = b"\0"  # a timeout, not an EOF: counted by the caller
    return data


async def pipe_bytes(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    activity: list[float],
    idle: float,
    clock: Callable[[], float],
    budget: int = 0,
    peer: asyncio.StreamWriter | None = None,
    over_budget: Callable[[], None] | None = None,
) -> None:
    """Copy bytes until EOF or until *both* directions were idle for `idle` seconds.

    `budget` (> 0): the bytes this direction may carry before the connection (`peer`: the
    writer of the reading side) is reset, and `over_budget` called.
    """
    left = budget
    try:
        while True:
            try:
                data = await asyncio.wait_for(reader.read(BUFFER), idle)
            except TimeoutError:
                if clock() - activity[0] < idle:
                    continue  # the other direction is busy (an SSE stream)
                break
            if not data:
                break
            if budget:
                left -= len(data)
                if left < 0:
                    if over_budget is not None:
                        over_budget()
                    # resets both ways, so waitress drops the partial body now
                    # and the client is not left waiting for a TLS close_notify (30 s)
                    writer.transport.abort()
                    if peer is not None:
                        peer.transport.abort()
                    return
            activity[0] = clock()
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (OSError, RuntimeError, ssl.SSLError):
            writer.close()


def close_writers(*writers: asyncio.StreamWriter | None, abort: bool) -> None:
    """Close both sides of a connection (abort: the loop stops next, no close_notify)."""
    for w in writers:
        if w is None:
            continue
        if abort:
            w.transport.abort()
        else:
            w.close()
