"""Request-by-request proxying in the TLS front, for fronts that answer some requests themselves.

The plain front pipes bytes without looking at them. A front given a `Responder` (the endpoint
listener's long-poll, `appliance.transport.longpoll`) reads each request head instead: a request the
responder wants is answered on the loop; any other is forwarded to waitress with its body
(Content-Length framed) and the answer relayed back (Content-Length framed, or bodiless).
Whatever this framing cannot follow (a chunked body, `Expect`, an upgrade, a response read to
EOF) switches the connection to the plain byte pipe for the rest of its life, so nothing is
mis-framed, only no longer looked at.

waitress ends every 204 and 304 with `Connection: close` (it sends neither a
length nor chunks for them and so cannot keep the connection). The relay strips that header
when the client did not ask to close: the agent keeps its TLS connection, which is what costs.
Forwarded requests borrow one of the front's persistent loopback connections to waitress
(`appliance.transport.pool`) for one request each, so waitress's socket map holds the pool, never
the agents.

Security: a kept-alive connection outlives its handshake, so `allowed()` (the
certificate's revocation and expiry, from an in-memory set) is asked again before every request;
a refused one gets 403 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .identities import ConnInfo
from .pool import BackendPool, Lease

__all__ = ["Relay", "Request", "Responder", "parse_request"]

HEAD_FIELDS_LIMIT = 100  # header lines parsed (waitress refuses far fewer bytes anyway)
HEAD_LIMIT = 64 * 1024  # bytes of one request or response head
CHUNK = 256 * 1024
BODY_BUFFER = 256 * 1024  # request and answer bodies up to this are held whole (pooled path)
_REFUSED_BODY = b'{"data":null,"message":"NOK","error":"client certificate is revoked or expired"}'
REFUSED = (
    b"HTTP/1.1 403 Forbidden\r\nServer: heron\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of a request head the front looks at."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]  # lower-case names; the last of repeated fields wins

    @property
    def close(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        return conn == "close" or (self.version == "HTTP/1.0" and conn != "keep-alive")


def parse_request(head: bytes) -> Request | None:
    """The request line and headers of `head` (ending with CRLF CRLF); None if malformed.

    Security: None (the connection is then piped raw on a connection of its own) for
    whatever waitress might frame otherwise: a bare CR or LF, more header lines than parsed, a
    repeated Content-Length.
    A pooled backend connection serves many agents, so the two must agree on every length.
    """
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        return None
    method, target, version = parts
    path, _, query = target.partition("?")
    headers = _fields(lines[1:])
    if headers is None:
        return None
    return Request(method, path, query, version, headers)


def _fields(lines: list[str]) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    if len(lines) > HEAD_FIELDS_LIMIT + 2:  # + the empty lines of the final CRLF CRLF
        return None
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        key = name.lower()
        if key == "content-length" and key in headers:
            return None  # waitress joins repeated fields ("5, 5"): no agreed length
        headers[key] = value.strip(" \t")  # as waitress does (str.strip() takes more)
    return headers


class Responder(Protocol):
    """Answers some requests in the front instead of waitress."""

    def wants(self, req: Request) -> bool: ...

    def headers(self, req: Request, conn: ConnInfo) -> bytes:
        """Header lines (each ending CRLF) added to `req`'s answer relayed from waitress."""
        ...

    async def answer(self, req: Request, conn: ConnInfo) -> bytes | None:
        """The whole response; None to forward the request to waitress after all."""
        ...


async def read_head(reader: asyncio.StreamReader, timeout: float) -> bytes | None:
    """One head up to CRLF CRLF; None on EOF, idle timeout, error or an oversized head."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (
        TimeoutError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        OSError,
        ssl.SSLError,
    ):
        return None
    return head if len(head) <= HEAD_LIMIT else None


async def copy_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int, timeout: float
) -> None:
    """Copy `length` bytes (raises IncompleteReadError / TimeoutError when they do not come)."""
    while length > 0:
        data = await asyncio.wait_for(reader.read(min(CHUNK, length)), timeout)
        if not data:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(data)
        writer.write(data)
        await writer.drain()


def _length(headers: dict[str, str]) -> int | None:
    """The Content-Length (0 when absent); None when the body is otherwise framed."""
    if "transfer-encoding" in headers:
        return None
    value = headers.get("content-length", "0")
    return int(value) if value.isascii() and value.isdigit() else None


class Relay:
    """Serves one client connection request by request (see the module docstring)."""

    def __init__(
        self,
        *,
        responder: Responder,
        pool: BackendPool,
        bind: Callable[[Lease], None],
        unbind: Callable[[Lease], None],
        pipe: Callable[[Lease, bytes], Awaitable[None]],
        timeout: float,
        allowed: Callable[[], bool] = lambda: True,
        advice: Callable[[Request], bytes] = lambda req: b"",
    ) -> None:
        """`pool` lends the backend connections, `bind(lease)` maps its source port to this
        client (before a byte is written) and `unbind` undoes it; `pipe(lease, first_bytes)`
        pipes the rest of the connection raw; `allowed()` says whether the peer's certificate
        is still accepted (asked before each request); `advice(req)`: header lines added to the
        answer of `req` relayed from waitress."""
        self.allowed = allowed
        self.advice = advice
        self.responder = responder
        self.pool = pool
        self.bind = bind
        self.unbind = unbind
        self.pipe = pipe
        self.timeout = timeout

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: ConnInfo
    ) -> None:
        while True:
            head = await read_head(reader, self.timeout)
            if head is None:
                return
            if not self.allowed():
                writer.write(REFUSED)
                await writer.drain()
                return
            req = parse_request(head)
            if req is not None and self.responder.wants(req):
                answer = await self.responder.answer(req, conn)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                    if req.close:
                        return
                    continue
            if not await self._forward(head, req, reader, writer):
                return

    async def _take(self, dedicated: bool) -> Lease:
        if dedicated:
            lease = await self.pool.dedicated()
        else:
            lease = await self.pool.acquire()  # no timeout: 3.11's wait_for could lose it
        self.bind(lease)
        return lease

    def _give(self, lease: Lease, reusable: bool) -> None:
        """Unbind and release `lease` once (later calls do nothing: its port may be rebound)."""
        if lease.lent:
            self.unbind(lease)
            self.pool.release(lease, reusable)

    async def _forward(
        self,
        head: bytes,
        req: Request | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """One request through waitress; False when the client connection ends."""
        length = None if req is None or "expect" in req.headers else _length(req.headers)
        if req is None or length is None or "upgrade" in req.headers:
            lease = await self._take(dedicated=True)
            try:
                await self.pipe(lease, head)  # waitress answers what we do not follow
            finally:
                self._give(lease, False)
            return False
        # a small body is read before a pooled connection is taken (a slow client
        # holds no slot); a large one streams over a connection of its own, as before.
        buffered = length <= BODY_BUFFER and self.pool.buffer(length)
        try:
            body = None
            if buffered:
                body = await asyncio.wait_for(reader.readexactly(length), self.timeout)
            lease = await self._take(dedicated=body is None)
            return await self._exchange(head, body, length, req, reader, writer, lease)
        finally:
            if buffered:
                self.pool.unbuffer(length)

    async def _exchange(
        self,
        head: bytes,
        body: bytes | None,
        length: int,
        req: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        lease: Lease,
    ) -> bool:
        """Send one request on `lease` (given back here) and relay its answer; False: close."""
        try:
            resp = await self._send(lease, head, body, length, reader)
            if resp is None and lease.reused and body is not None and _ended(lease.reader):
                # a pooled connection waitress closed while it was free: nothing
                # reached the app, so the request goes again on a new connection.
                self._give(lease, False)
                lease = await self._take(dedicated=False)
                resp = await self._send(lease, head, body, length, reader)
            if resp is None:
                return False
            lines = resp.decode("latin-1").split("\r\n")
            status = lines[0].split(" ", 2)[1] if lines[0].count(" ") >= 1 else ""
            headers = _fields(lines[1:]) or {}
            bodiless = status in ("204", "304") or req.method == "HEAD"
            size = 0 if bodiless else _length(headers)
            if size is None or status.startswith("1"):
                self.pool.detach(lease)
                writer.write(resp)
                await self.pipe(lease, b"")
                return False
            closing = headers.get("connection", "").lower() == "close"
            if closing and bodiless and not req.close:
                resp = _drop_close(resp)
            extra = self.advice(req)
            if extra:
                resp = resp[:-2] + extra + b"\r\n"
            keep = not req.close and (bodiless or not closing)
            if size <= BODY_BUFFER:
                # read whole and given back before the client is written to: a
                # client that does not read holds no pooled connection.
                answer = await asyncio.wait_for(lease.reader.readexactly(size), self.timeout)
                self._give(lease, not closing and not req.close and req.version == "HTTP/1.1")
                writer.write(resp + answer)
            else:
                self.pool.detach(lease)  # a large answer streams on a connection of its own
                writer.write(resp)
                await copy_exactly(lease.reader, writer, size, self.timeout)
            await writer.drain()
            return keep
        finally:
            self._give(lease, False)

    async def _send(
        self,
        lease: Lease,
        head: bytes,
        body: bytes | None,
        length: int,
        reader: asyncio.StreamReader,
    ) -> bytes | None:
        """Write the request (its body from `body` or streamed from `reader`); the answer head."""
        try:
            lease.writer.write(head)
            if body is None:
                await copy_exactly(reader, lease.writer, length, self.timeout)
            else:
                lease.writer.write(body)
            await lease.writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            return None
        return await read_head(lease.reader, self.timeout)


def _ended(reader: asyncio.StreamReader) -> bool:
    """The peer closed or reset the connection (not: an answer is slow)."""
    return reader.at_eof() or reader.exception() is not None


def _drop_close(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [ln for ln in lines if ln.lower().replace(b" ", b"") != b"connection:close"]
    return b"\r\n".join(kept)
