"""A simulated agent's HTTP/1.1 keep-alive connection over mTLS (asyncio streams), the TLS
context that resumes the agent's session, its loopback source address and the fleet's counters."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The simulator's own TLS connections: 10,000 × asyncio's 256 KiB receive buffer is 2.5 GB.
asyncio.sslproto.SSLProtocol.max_size = 16 * 1024  # type: ignore[attr-defined]


class ResumingContext(ssl.SSLContext):
    """A client context that resumes its last TLS session (asyncio has no `session=`)."""

    session: ssl.SSLSession | None = None

    def wrap_bio(
        self,
        incoming: Any,
        outgoing: Any,
        server_side: bool = False,
        server_hostname: Any = None,
        session: Any = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(
            incoming, outgoing, server_side, server_hostname, session or self.session
        )


@dataclass
class Stats:
    requests: list[float] = field(default_factory=list)
    commands: list[float] = field(default_factory=list)
    old_commands: list[float] = field(default_factory=list)
    poll_handshakes: int = 0  # on the connections that poll /commands (keep-alive: 1 each)
    errors: dict[str, int] = field(default_factory=dict)
    handshakes: int = 0
    handshake_s: list[float] = field(default_factory=list)  # connect + handshake, seconds
    resumed: int = 0
    connected: int = 0
    polls: int = 0
    long_polls: int = 0
    long_poll_204: int = 0  # long-polls that ended without a command (held WAIT s first)
    long_poll_early: int = 0  # of those, answered before 0.9 × WAIT (the manager's jitter)
    queued: int = 0
    delivered: int = 0
    events: int = 0  # acknowledged by /logs in the measurement window
    logs: list[float] = field(default_factory=list)  # /logs latencies, seconds
    measuring: bool = False

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Conn:
    """One HTTP/1.1 keep-alive connection over TLS (asyncio streams)."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        port: int,
        stats: Stats,
        polling: bool = False,
        source: str = "127.0.0.1",
    ) -> None:
        self.ctx, self.port, self.stats, self.polling = ctx, port, stats, polling
        self.source = source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        t0 = time.monotonic()
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                self.port,
                ssl=self.ctx,
                server_hostname="127.0.0.1",
                local_addr=(self.source, 0),
            ),
            60,
        )
        self.stats.handshakes += 1
        self.stats.handshake_s.append(time.monotonic() - t0)
        self.stats.poll_handshakes += self.polling
        obj = self.writer.get_extra_info("ssl_object")
        if obj is not None and obj.session_reused:
            self.stats.resumed += 1

    def keep_session(self) -> None:
        """The connection's TLS session (its ticket) becomes the one the next connection resumes."""
        obj = self.writer.get_extra_info("ssl_object") if self.writer is not None else None
        session = obj.session if obj is not None else None
        if isinstance(self.ctx, ResumingContext) and session is not None and session.has_ticket:
            self.ctx.session = session

    def close(self) -> None:
        if self.writer is not None:
            self.keep_session()
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", "Host: heron", "User-Agent: fleet-sim"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        try:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            hdrs = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            length = int(hdrs.get("content-length", "0"))
            data = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        except BaseException:
            self.close()
            raise
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data


def source_address(i: int, one: bool) -> str:
    """Agent i's own loopback source address (127.1.0.1, …): a fleet is many hosts, and the
    manager's per-source caps and logs key on the address. `one`: all from 127.0.0.1."""
    if one or not sys.platform.startswith("linux"):  # only Linux routes all of 127/8 to lo
        return "127.0.0.1"
    return f"127.{1 + i // 62_500}.{i // 250 % 250}.{i % 250 + 1}"


def client_context(ca: Path, cert: Path, key: Path, resuming: bool) -> ssl.SSLContext:
    ctx: ssl.SSLContext = (ResumingContext if resuming else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    return {
        f"p{p}": round(v[min(len(v) - 1, int(len(v) * p / 100))] * 1000, 1) for p in (50, 95, 99)
    }
