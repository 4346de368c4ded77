"""WebSocket event streams on the admin listener: WHIDS `/stream/events`, `/stream/detections`.

The admin TLS front hands over a connection whose first request is a WebSocket upgrade of a stream
route (`WsStreams.wants`). The upgrade request then runs through the admin Falcon app as a GET
marked with `STREAM_ENV` in its environ, so the API key (`Api-Key` / `X-Api-Key`), the roles and
the filter parameters are those of the SSE route, and a refusal (401, 403, 400) is the app's own
JSON answer to the handshake. An accepted stream is a `ByteSubscription` on the hub drained by a
coroutine on the front's event loop (no thread per client): one JSON event per text message, as
WHIDS sends them. RFC 6455 framing and the handshake are wsproto's.

Close codes: 1000 after `limit` events, 1001 when the manager stops, 1008 over the per-key cap,
1011 when pings go unanswered, 1013 over the total cap; a client's close is answered in kind.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import io
import logging
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import h11
import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..core.config import StreamsConfig
from ..core.metrics import Metrics
from ..services.streams import STREAM_ENV, ByteSubscription, StreamHub, StreamRequest
from .frontio import HEAD_LIMIT
from .identities import ConnInfo

__all__ = ["STREAM_PATHS", "CloseCode", "WsStreams"]

logger = logging.getLogger(__name__)
STREAM_PATHS = frozenset({"/stream/events", "/stream/detections"})
SEND_CHUNK = 32 * 1024  # bytes framed per write; with the transport's buffer, a stream's memory
WRITE_HIGH = 32 * 1024  # TLS transport write buffer of a stream before `drain()` waits
READ_SIZE = 64 * 1024
CLOSE_WAIT = 2.0  # seconds to wait for the client's closing handshake
FRAME_CACHE = 8 * 1024 * 1024  # bytes of encoded frames shared by all streams
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CloseCode(enum.IntEnum):
    """RFC 6455 §7.4.1 close codes this server sends."""

    NORMAL = 1000  # `limit` events sent
    GOING_AWAY = 1001  # the manager stops
    PROTOCOL_ERROR = 1002  # a frame wsproto could not parse (or 1007/1009 as wsproto says)
    POLICY = 1008  # too many streams for this API key
    INTERNAL = 1011  # the client stopped answering pings
    TRY_AGAIN_LATER = 1013  # too many streams in total


class _FrameCache:
    """Text frames by event sequence number, encoded once for every stream.

    Performance: server frames are unmasked and no extension is negotiated, so an event's frame is
    the same bytes for every client; hundreds of streams of one event cost one encoding.
    """

    def __init__(self, max_bytes: int = FRAME_CACHE) -> None:
        self._encoder = FrameProtocol(client=False, extensions=[])
        self._frames: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._size = 0
        self.max_bytes = max_bytes

    def frame(self, seq: int, data: bytes) -> bytes:
        frame = self._frames.get(seq)
        if frame is None:
            frame = bytes(self._encoder.send_data(data.decode("utf-8"), fin=True))
            self._frames[seq] = frame
            self._size += len(frame)
            while self._size > self.max_bytes and self._frames:
                _, old = self._frames.popitem(last=False)
                self._size -= len(old)
        return frame


def _call_app(app: WsgiApp, env: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run one WSGI request; returns status code, headers and body."""
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = status, headers
        return lambda _data: None

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(str(started["status"]).split()[0]), list(started["headers"]), body


class _Stream:
    """One accepted WebSocket stream: a receive task and a send task on the front's loop."""

    def __init__(
        self,
        owner: WsStreams,
        ws: WSConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: StreamRequest,
    ) -> None:
        self.owner = owner
        self.ws = ws
        self.reader = reader
        self.writer = writer
        self.request = request
        self.wake = asyncio.Event()
        self.finished = asyncio.Event()
        self.going_away = False
        self.sent = 0
        loop = asyncio.get_running_loop()

        def notify() -> None:
            try:
                loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:  # the loop is closed: the stream is ending anyway
                pass

        self.sub = ByteSubscription(request.filter, owner.config.ws_buffer, notify)
        self.seen = owner.clock()

    def _write(self, data: bytes) -> None:
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (no-op once closing)."""
        if self.ws.state is ConnectionState.OPEN:
            self._write(self.ws.send(CloseConnection(code=int(code), reason=reason)))

    async def run(self) -> None:
        receiving = asyncio.create_task(self._receive())
        sending = asyncio.create_task(self._send())
        try:
            await asyncio.wait({receiving, sending}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():  # we closed: give the client time to answer
                await asyncio.wait({receiving}, timeout=CLOSE_WAIT)
        finally:
            for task in (receiving, sending):
                task.cancel()
            await asyncio.gather(receiving, sending, return_exceptions=True)
            self.finished.set()

    async def _receive(self) -> None:
        """Answer pings and closes, discard messages (as WHIDS), ping an idle client.

        A client is dead after 3 heartbeats without a byte from it *and* without reading what
        we send: a slow reader whose pong waits behind megabytes of events stays connected.
        """
        heartbeat = self.owner.config.heartbeat
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), heartbeat)
            except TimeoutError:
                if self.owner.clock() - self.seen > 3 * heartbeat:
                    self.close(CloseCode.INTERNAL, "no answer to pings")
                    return
                if self.ws.state is ConnectionState.OPEN:
                    self._write(self.ws.send(Ping(payload=b"heron")))
                continue
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            self.seen = self.owner.clock()
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, Ping):
                    self._write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:
                        self._write(self.ws.send(event.response()))
                    elif self.ws.state is ConnectionState.OPEN:  # wsproto's parse failure
                        self.close(event.code, event.reason or "protocol error")
                    return

    async def _send(self) -> None:
        limit = self.request.limit
        frames = self.owner.frames
        while True:
            await self.wake.wait()
            self.wake.clear()
            while True:
                if self.going_away or self.sub.closed:
                    self.close(CloseCode.GOING_AWAY, "manager shutting down")
                    return
                items, lost = self.sub.take(SEND_CHUNK)
                out: list[bytes] = []
                if lost:
                    out.append(self._notice(lost))
                if limit:
                    items = items[: limit - self.sent]
                for seq, data in items:
                    out.append(frames.frame(seq, data))
                self.sent += len(items)
                if out:
                    self._write(b"".join(out))
                    await self.writer.drain()
                    self.seen = self.owner.clock()  # the client reads: alive, however slow
                if limit and self.sent >= limit:
                    self.close(CloseCode.NORMAL, "limit reached")
                    return
                if not items and not lost:
                    break

    def _notice(self, lost: int) -> bytes:
        """The message telling a slow client how many events it lost (never an `Event`)."""
        notice = {
            "Heron": {
                "Notice": "dropped",
                "Dropped": lost,
                "DroppedTotal": self.sub.dropped,
                "BufferBytes": self.sub.max_bytes,
            }
        }
        return self.ws.send(TextMessage(data=orjson.dumps(notice).decode()))


class WsStreams:
    """The admin front's `Upgrader`: WebSocket streams with per-key and total caps."""

    def __init__(
        self,
        *,
        app: WsgiApp,
        hub: StreamHub,
        config: StreamsConfig,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.hub = hub
        self.config = config
        self.clock = clock
        self.frames = _FrameCache()
        self.streams: set[_Stream] = set()
        self.per_key: collections.Counter[str] = collections.Counter()
        self.refused = 0
        if metrics is not None:
            metrics.gauge(
                "heron_ws_streams", "open WebSocket streams", lambda: float(len(self.streams))
            )
            metrics.gauge(
                "heron_ws_refused_total",
                "WebSocket streams closed at once (caps) or refused (auth, parameters)",
                lambda: float(self.refused),
            )

    def wants(self, head: bytes) -> bool:
        """A GET of a stream route with `Upgrade: websocket`."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        try:
            conn.receive_data(head)
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return False
        if not isinstance(event, h11.Request) or event.method != b"GET":
            return False
        path = event.target.split(b"?", 1)[0].decode("latin-1")
        path = "/" + "/".join(p for p in unquote(path).split("/") if p)
        if path not in STREAM_PATHS:
            return False
        return any(
            name == b"upgrade" and b"websocket" in value.lower() for name, value in event.headers
        )

    async def serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: bytes,
        conn: ConnInfo,
    ) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
        except RemoteProtocolError as ex:
            self.refused += 1
            writer.write(_bad_request(str(ex)))
            return
        if request is None:  # wants() saw a complete head, so this is a malformed one
            self.refused += 1
            writer.write(_bad_request("incomplete WebSocket handshake"))
            return
        env = self._environ(request, conn)
        loop = asyncio.get_running_loop()
        status, headers, body = await loop.run_in_executor(None, _call_app, self.app, env)
        spec = env.get(STREAM_ENV)
        if not isinstance(spec, StreamRequest):
            self.refused += 1
            writer.write(_reject(ws, status, headers, body))
            return
        # Performance: asyncio's TLS transport buffers 512 KiB before pausing a writer; at hundreds
        # of slow clients that alone is hundreds of MB, so a stream's buffer is the budget's.
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH)
        writer.write(ws.send(AcceptConnection()))
        stream = _Stream(self, ws, reader, writer, spec)
        refusal = self._over_cap(spec.key)
        if refusal is not None:
            self.refused += 1
            logger.warning("WebSocket stream refused: %s", refusal[1])
            stream.close(*refusal)
            await _drain(writer)
            return
        self.streams.add(stream)
        self.per_key[spec.key] += 1
        self.hub.attach(stream.sub)
        try:
            await stream.run()
        finally:
            self.hub.unsubscribe(stream.sub)
            self.streams.discard(stream)
            self.per_key[spec.key] -= 1
            if self.per_key[spec.key] <= 0:
                del self.per_key[spec.key]
            await _drain(writer)
            if writer.transport.get_write_buffer_size():  # a peer that stopped reading
                writer.transport.abort()

    def _over_cap(self, key: str) -> tuple[CloseCode, str] | None:
        cfg = self.config
        if len(self.streams) >= cfg.ws_max_clients:
            return CloseCode.TRY_AGAIN_LATER, f"too many streams (max {cfg.ws_max_clients})"
        if self.per_key[key] >= cfg.ws_per_key:
            return CloseCode.POLICY, f"too many streams for this API key (max {cfg.ws_per_key})"
        return None

    async def shutdown(self, timeout: float) -> None:
        """Close every stream with 1001 and wait (bounded) for the closing handshakes."""
        streams = list(self.streams)
        for stream in streams:
            stream.going_away = True
            stream.wake.set()
        if streams:
            await asyncio.wait(
                [asyncio.create_task(s.finished.wait()) for s in streams], timeout=timeout
            )

    def _environ(self, request: Request, conn: ConnInfo) -> dict[str, Any]:
        """The WSGI environ of the upgrade request, marked for the stream resource."""
        path, _, query = request.target.partition("?")
        env: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": "heron",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": conn.peer_ip,
            "REMOTE_PORT": "0",  # never a backend port of the IdentityMap
            "HTTP_HOST": request.host,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            STREAM_ENV: True,
        }
        for name, value in request.extra_headers:
            if name.lower() == b"cookie":
                # Security: API keys only. Browsers attach cookies to any site's WebSocket
                # (no CORS), so a console session must not open streams (cross-site hijacking).
                continue
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            env[key] = f"{env[key]},{text}" if key in env else text
        return env


def _reject(ws: WSConnection, status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    keep = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in headers
        if k.lower() in ("content-type", "www-authenticate", "retry-after")
    ]
    keep.append((b"content-length", str(len(body)).encode()))
    try:
        return ws.send(RejectConnection(status_code=status, headers=keep, has_body=True)) + (
            ws.send(RejectData(data=body))
        )
    except LocalProtocolError:
        return _bad_request("refused")


def _bad_request(message: str) -> bytes:
    """A plain 400 for a handshake wsproto cannot parse (h11 writes it)."""
    body = orjson.dumps({"data": None, "message": "NOK", "error": message})
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    head = conn.send(
        h11.Response(
            status_code=400,
            headers=[
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
                ("connection", "close"),
            ],
        )
    )
    return (head or b"") + (conn.send(h11.Data(data=body)) or b"")


async def _drain(writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.wait_for(writer.drain(), CLOSE_WAIT)
    except (OSError, TimeoutError, ConnectionError):
        pass
