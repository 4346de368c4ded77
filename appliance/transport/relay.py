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
Each forwarded request gets its own loopback connection to waitress (closed after the answer), so
waitress holds the requests in flight, never the idle agents.

Security: a kept-alive connection outlives its handshake, so `allowed()` (the
certificate's revocation and expiry, from an in-memory set) is asked again before every request;
a refused one gets 403 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .tlsfront import ConnInfo

__all__ = ["Relay", "Request", "Responder", "parse_request"]

HEAD_FIELDS_LIMIT = 100  # header lines parsed (waitress refuses far fewer bytes anyway)
HEAD_LIMIT = 64 * 1024  # bytes of one request or response head
CHUNK = 256 * 1024
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
    """The request line and headers of `head` (ending with CRLF CRLF); None if malformed."""
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
    for line in lines[:HEAD_FIELDS_LIMIT]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return headers


class Responder(Protocol):
    """Answers some requests in the front instead of waitress."""

    def wants(self, req: Request) -> bool: ...

    def headers(self) -> bytes:
        """Header lines (each ending CRLF) added to the answers relayed from waitress."""
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
    return int(value) if value.isdigit() else None


Backend = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Relay:
    """Serves one client connection request by request (see the module docstring)."""

    def __init__(
        self,
        *,
        responder: Responder,
        open_backend: Callable[[], Awaitable[Backend]],
        close_backend: Callable[[Backend], None],
        pipe: Callable[[Backend, bytes], Awaitable[None]],
        timeout: float,
        allowed: Callable[[], bool] = lambda: True,
        advice: Callable[[], bytes] = lambda: b"",
    ) -> None:
        """`open_backend` connects (and binds the identity), `close_backend` undoes it,
        `pipe(backend, first_bytes)` pipes the rest of the connection raw and `allowed()` says
        whether the peer's certificate is still accepted (asked before each request);
        `advice()`: header lines added to every answer relayed from waitress."""
        self.allowed = allowed
        self.advice = advice
        self.responder = responder
        self.open_backend = open_backend
        self.close_backend = close_backend
        self.pipe = pipe
        self.timeout = timeout

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: ConnInfo
    ) -> None:
        backend: Backend | None = None
        try:
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
                if backend is None:
                    backend = await self.open_backend()
                keep, backend = await self._forward(head, req, reader, writer, backend)
                if not keep:
                    return
        finally:
            if backend is not None:
                self.close_backend(backend)

    async def _forward(
        self,
        head: bytes,
        req: Request | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        backend: Backend,
    ) -> tuple[bool, Backend | None]:
        """One request through waitress: (keep serving, the backend to reuse or None)."""
        length = None if req is None or "expect" in req.headers else _length(req.headers)
        if req is None or length is None or "upgrade" in req.headers:
            await self.pipe(backend, head)  # waitress answers what we do not follow
            return False, backend
        b_reader, b_writer = backend
        b_writer.write(head)
        await copy_exactly(reader, b_writer, length, self.timeout)
        await b_writer.drain()
        resp = await read_head(b_reader, self.timeout)
        if resp is None:
            return False, backend
        lines = resp.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)[1] if lines[0].count(" ") >= 1 else ""
        headers = _fields(lines[1:]) or {}
        bodiless = status in ("204", "304") or req.method == "HEAD"
        body = 0 if bodiless else _length(headers)
        if body is None or status.startswith("1"):
            writer.write(resp)
            await self.pipe(backend, b"")
            return False, backend
        closing = headers.get("connection", "").lower() == "close"
        if closing and bodiless and not req.close:
            resp = _drop_close(resp)
        extra = self.advice()
        if extra:
            resp = resp[:-2] + extra + b"\r\n"
        writer.write(resp)
        await copy_exactly(b_reader, writer, body, self.timeout)
        await writer.drain()
        # the backend connection is released after each answer: waitress's
        # socket map (scanned on every loop turn) then holds requests in flight, not idle agents.
        self.close_backend(backend)
        return not req.close and (bodiless or not closing), None


def _drop_close(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [ln for ln in lines if ln.lower().replace(b" ", b"") != b"connection:close"]
    return b"\r\n".join(kept)
