"""One simulated agent: its long-poll (this version) or poll (the previous one) loop for commands,
its update checks and, for senders, its gzip /logs batches at a rate."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import ssl
import time
from typing import TYPE_CHECKING

from benchmarks.fleetlib.conn import Conn, client_context, source_address

if TYPE_CHECKING:
    from benchmarks.fleetlib.sim import Fleet

WAIT = 60


class Agent:
    def __init__(self, i: int, uuid: str, fleet: Fleet, old: bool, sender: bool) -> None:
        self.i, self.uuid, self.fleet, self.old, self.sender = i, uuid, fleet, old, sender
        self.ctx: ssl.SSLContext | None = None  # made in start(): 10,000 took minutes up front
        self.poll_conn: Conn | None = None
        self.lock = asyncio.Lock()
        self.poll_after = 60.0
        self.source = source_address(i, fleet.args.one_source)

    def conn(self, polling: bool = False) -> Conn:
        """A new connection of this agent (its own source address, its one TLS context)."""
        assert self.ctx is not None
        return Conn(self.ctx, self.fleet.port, self.fleet.stats, polling, self.source)

    async def timed(
        self,
        conn: Conn,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        t0 = time.monotonic()
        status, hdrs, data = await conn.request(method, path, body, headers)
        if self.fleet.stats.measuring:
            self.fleet.stats.requests.append(time.monotonic() - t0)
        if status >= 400:
            self.fleet.stats.error(f"HTTP {status} {path.split('?')[0]}")
        return status, hdrs, data

    def got(self, data: bytes) -> str:
        cmd = json.loads(data)
        sent = self.fleet.pending.pop(cmd["id"], None)
        if sent is not None:
            self.fleet.arrived(time.time() - sent, self.old)
        else:  # it may arrive before the admin's POST has its answer
            self.fleet.early[cmd["id"]] = (time.time(), self.old)
        return str(cmd["id"])

    async def result(self, conn: Conn, cmd_id: str) -> None:
        body = json.dumps({"id": cmd_id, "exit_code": 0, "stdout": "ok"}).encode()
        await self.timed(conn, "POST", "/commands", body, {"Content-Type": "application/json"})

    async def run_new(self) -> None:
        """Long-poll loop (the update checks run in `updates_new`)."""
        assert self.poll_conn is not None and self.ctx is not None
        while True:
            try:
                t0 = time.monotonic()
                status, hdrs, data = await self.poll_conn.request(
                    "GET", f"/commands?wait={WAIT}", timeout=WAIT + 30
                )
                self.fleet.stats.long_polls += 1
                if status == 204 and time.monotonic() - t0 < WAIT * 0.9:
                    self.fleet.stats.long_poll_early += 1
                self.poll_after = float(hdrs.get("x-heron-poll-after", self.poll_after))
                if status == 200:
                    await self.result(self.poll_conn, self.got(data))
                elif status == 204:
                    self.fleet.stats.long_poll_204 += 1
                else:
                    self.fleet.stats.error(f"HTTP {status} long-poll")
                    await asyncio.sleep(5)
                await asyncio.sleep(random.random() * 0.5)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as ex:
                self.fleet.stats.error(type(ex).__name__)
                await asyncio.sleep(1 + random.random() * 4)

    async def updates_new(self) -> None:
        assert self.poll_conn is not None and self.ctx is not None
        await asyncio.sleep(random.random() * self.poll_after)
        while True:
            if self.ctx.session is None:  # type: ignore[attr-defined]
                self.poll_conn.keep_session()  # the agent's connections share one session
            conn = self.conn()
            try:
                _, hdrs, _ = await self.timed(conn, "GET", "/updates?os=windows")
                self.poll_after = float(hdrs.get("x-heron-poll-after", self.poll_after))
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as ex:
                self.fleet.stats.error(type(ex).__name__)
            conn.close()  # the real agent's shared connection closes when idle (20 s)
            await asyncio.sleep(self.poll_after * random.uniform(0.9, 1.1))

    async def run_old(self) -> None:
        assert self.poll_conn is not None and self.ctx is not None
        while True:
            try:
                async with self.lock:
                    status, _, data = await self.timed(self.poll_conn, "GET", "/commands")
                    self.fleet.stats.polls += 1
                    if status == 200:
                        await self.result(self.poll_conn, self.got(data))
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as ex:
                self.fleet.stats.error(type(ex).__name__)
            await asyncio.sleep(5 * random.uniform(0.8, 1.2))

    async def updates_old(self) -> None:
        assert self.poll_conn is not None and self.ctx is not None
        await asyncio.sleep(random.random() * 60)
        while True:
            try:
                async with self.lock:
                    await self.timed(self.poll_conn, "GET", "/rules/sha256")
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as ex:
                self.fleet.stats.error(type(ex).__name__)
            await asyncio.sleep(60 * random.uniform(0.9, 1.1))

    async def send_events(self, rate: int) -> None:
        assert self.poll_conn is not None and self.ctx is not None
        conn = self.conn()
        event = {
            "Event": {
                "System": {
                    "Channel": "Microsoft-Windows-Sysmon/Operational",
                    "EventID": 1,
                    "Computer": f"sim-{self.i}",
                    "TimeCreated": {"SystemTime": "2026-12-05T00:00:00Z"},
                },
                "EventData": {
                    "Image": "C:\\Windows\\System32\\cmd.exe",
                    "CommandLine": "cmd.exe /c whoami " + "x" * 800,
                },
            }
        }
        line = json.dumps(event).encode() + b"\n"
        seq = 0
        after = 0.0  # the manager's X-Heron-Batch-After, honoured as the agent does
        await asyncio.sleep(random.random())
        while True:
            t0 = time.monotonic()
            seq += 1
            period = max(1.0, min(after, 10.0))
            count = round(rate * period)
            body = gzip.compress(line * count, 3)
            try:
                status, hdrs, _ = await self.timed(
                    conn,
                    "POST",
                    "/logs",
                    body,
                    {
                        "Content-Type": "application/x-ndjson",
                        "Content-Encoding": "gzip",
                        "X-Heron-Batch-Id": f"{self.uuid}-{seq}",
                    },
                )
                after = float(hdrs.get("x-heron-batch-after", 0.0))
                if status == 200 and self.fleet.stats.measuring:
                    self.fleet.stats.events += count
                    self.fleet.stats.logs.append(time.monotonic() - t0)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as ex:
                self.fleet.stats.error(type(ex).__name__ + " /logs")
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))

    def prepare(self) -> None:
        """Load the agent's certificate and key into its TLS context (before the ramp)."""
        if self.ctx is None:
            cache = self.fleet.cache / "fleet"
            ca = self.fleet.cache / "data" / "pki" / "ca.pem"
            i = self.i
            self.ctx = client_context(ca, cache / f"{i}.pem", cache / f"{i}.key", not self.old)
            self.poll_conn = self.conn(polling=True)

    async def start(self, rate: int) -> list[asyncio.Task[None]]:
        self.prepare()
        assert self.poll_conn is not None
        await self.poll_conn.open()
        self.fleet.stats.connected += 1
        self.fleet.live.append(self.uuid)
        run, upd = (
            (self.run_old, self.updates_old) if self.old else (self.run_new, self.updates_new)
        )
        tasks = [asyncio.create_task(run()), asyncio.create_task(upd())]
        if self.sender:
            tasks.append(asyncio.create_task(self.send_events(rate)))
        return tasks
