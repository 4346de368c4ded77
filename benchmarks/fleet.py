"""Fleet scale (issue 24): N simulated endpoints, each with its own certificate, on one manager.

    python benchmarks/fleet.py --n 1000,10000 [--senders 1000] [--code /work/main] [--json]

For each N: a copy of an enrolled data directory (kept in --cache, enrolled once for the largest
N), a real `heron-manager run` subprocess from --code (default: this tree; pass another
checkout to compare), and the fleet in a second process (asyncio, one task per endpoint, its own
CPU reported apart). Each simulated agent follows the real agent's cadence:

* `longpoll` agents (this version): one connection held by `GET /commands?wait=60`, update
  checks `GET /updates` every `X-Heron-Poll-After` (±10 %) on a short connection that resumes
  the TLS session of the agent's connections (the first check resumes the long-poll's ticket);
* `poll` agents (the previous version, `--old-share`): one keep-alive connection, `GET /commands`
  every 5 s ±20 %, `GET /rules/sha256` every 60 s ±10 %, reconnecting when the manager closes.

`--senders K` of them also POST a gzip /logs batch of `--rate` events every second on their own
keep-alive connection (the combined mode, e.g. `--n 10000 --senders 1000 --rate 10`: also printed
are the /logs latency and the events/s offered by the senders vs stored by the manager, from its
`heron_events_received_total`). An admin queues `--commands` commands per second to random
agents over the admin API; the command latency runs from that POST to the agent reading the
command. Printed per N: manager CPU (% of one core over the measurement window) and RSS,
bytes per idle connection ((RSS with the fleet connected − RSS before) / connections), request
and command latency p50/p95/p99, errors, and the fleet's own CPU.

The ramp: every agent's TLS context is loaded first (`prepare_s`), then agents connect, each
from its own 127.x.y.z on Linux (`--one-source`: all from 127.0.0.1), paced by handshake latency
(`Pacer`), until all are connected or `--ramp-limit`. Printed apart: the ramp's time, full and
resumed handshakes, the manager's CPU per connected agent and the ramp's errors (the errors of
the measurement window are counted after `--settle`). The last lines are the issue's table.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.sslproto
import gzip
import json
import os
import random
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WAIT = 60
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


# The simulator's own TLS connections: 10,000 × asyncio's 256 KiB receive buffer is 2.5 GB.
asyncio.sslproto.SSLProtocol.max_size = 16 * 1024  # type: ignore[attr-defined]


NOFILE = 1 << 16  # descriptors wanted by the manager and by the fleet (10,000 agents: ~25,000)


def raise_nofile() -> None:
    """Soft limit to the hard one, and the hard one to NOFILE where allowed (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
            return
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ----------------------------------------------------------------------------- enrollment
def enroll(cache: Path, n: int) -> Path:
    """A data dir with ≥ n enrolled endpoints (certs in <cache>/fleet/), made once."""
    meta = cache / "fleet.json"
    if meta.exists() and json.loads(meta.read_text())["n"] >= n:
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    data = cache / "data"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "init",
            "--data-dir",
            str(data),
            "--json",
            "--admin-listen",
            "127.0.0.1:0",
            "--endpoint-listen",
            "127.0.0.1:0",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    api_key = json.loads(out.stdout)["api_key"]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from appliance.runtime.datadir import open_context
    from rules import wire

    def make_csr() -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sim")]))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem

    ctx = open_context(data, with_events=False)
    (cache / "fleet").mkdir()
    uuids = []
    t0 = time.monotonic()
    try:
        for i in range(n):
            token, _ = ctx.identity.create_token()
            csr, key_pem = make_csr()
            ans = ctx.identity.enroll(wire.EnrollRequest(token, csr, f"sim-{i}"), "127.0.0.1")
            (cache / "fleet" / f"{i}.pem").write_text(ans.certificate_pem)
            (cache / "fleet" / f"{i}.key").write_text(key_pem)
            uuids.append(ans.uuid)
            if i % 1000 == 999:
                print(
                    f"  enrolled {i + 1:,} endpoints ({time.monotonic() - t0:.0f} s)",
                    file=sys.stderr,
                )
    finally:
        ctx.close()
    meta.write_text(json.dumps({"n": n, "uuids": uuids, "api_key": api_key}))
    return cache


def configure(code: Path, data: Path, max_connections: int) -> None:
    """A minimal config.toml every version reads: loopback listeners and the connection cap.

    A manager that sizes the cap from memory (appliance/transport/capacity.py) gets 0: sized."""
    if any(code.glob("appliance/**/capacity.py")):
        max_connections = 0
    (data / "config.toml").write_text(
        '[admin]\nlisten = "127.0.0.1:0"\n[endpoint]\nlisten = "127.0.0.1:0"\n'
        f"[tls]\nmax_connections = {max_connections}\n"
    )


def python_of(code: Path) -> Path:
    venv = code / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


# ----------------------------------------------------------------------------- the manager
class Manager:
    def __init__(self, code: Path, data: Path) -> None:
        self.log = open(data / "manager.log", "wb")
        self.proc = subprocess.Popen(
            [str(python_of(code)), "-m", "appliance", "run", "--data-dir", str(data)],
            cwd=code,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=raise_nofile,
        )
        self.data = data
        self.endpoint, self.admin = self._ports()

    def _ports(self) -> tuple[int, int]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data / "manager.log").read_text()[-3000:])
            text = (self.data / "manager.log").read_text(errors="replace")
            for line in text.splitlines():
                if "endpoint API on https://" in line:
                    import re

                    m = re.search(
                        r"endpoint API on https://[^:]+:(\d+).*admin API on "
                        r"https://[^:]+:(\d+)",
                        line,
                    )
                    if m:
                        return int(m.group(1)), int(m.group(2))
            time.sleep(0.2)
        raise RuntimeError("the manager did not start")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss(self) -> int:
        return int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1]) * PAGE

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


# ----------------------------------------------------------------------------- the fleet
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


class Pacer:
    """Handshakes in flight during the ramp: +1 per fast one, halved after a slow one.

    A fixed 16 in flight on a busy box queued handshakes past the manager's 10 s
    `tls.handshake_timeout`; refused ones were redone and the ramp stalled near 8,500.
    Waiters queue in order and a freed slot wakes one of them: an `asyncio.Condition` with
    `notify_all` woke all 10,000 waiting agents per handshake (quadratic: the 10,000 ramp spent
    its time in the simulator's own wake-ups, not in TLS).
    """

    FAST, SLOW = 0.5, 2.0  # seconds for connect + handshake (+ the first request: none)

    def __init__(self, start: int = 8, low: int = 1, high: int = 64) -> None:
        self.limit, self.low, self.high = float(start), low, high
        self.inflight = 0
        self.cut = 0.0  # time of the last decrease (one per second at most)
        self._waiters: deque[asyncio.Future[None]] = deque()

    def slot(self) -> _Slot:
        return _Slot(self)

    def took(self, seconds: float) -> None:
        now = time.monotonic()
        if seconds > self.SLOW and now - self.cut > 1.0:
            self.limit, self.cut = max(self.low, self.limit / 2), now
        elif seconds < self.FAST:
            self.limit = min(self.high, self.limit + 1 / max(1.0, self.limit / 4))
            self._wake()

    async def acquire(self) -> None:
        if not self._waiters and self.inflight < int(self.limit):
            self.inflight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake()  # only cancelled waiters ahead of it: a free slot is taken now
        try:
            await fut  # the slot was counted by _wake
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # woken and cancelled at once: hand the slot on
            raise  # a cancelled waiter left in the queue is skipped by _wake

    def release(self) -> None:
        self.inflight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.inflight < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self.inflight += 1


class _Slot:
    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    async def __aenter__(self) -> None:
        await self.pacer.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.pacer.release()


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.cache = Path(args.cache)
        meta = json.loads((self.cache / "fleet.json").read_text())
        self.uuids: list[str] = meta["uuids"][: args.agents]
        self.api_key = meta["api_key"]
        self.port, self.admin = args.port, args.admin
        self.args = args
        self.stats = Stats()
        self.pending: dict[str, float] = {}
        self.live: list[str] = []  # uuids of the agents connected (a ramp may stop short)
        self.early: dict[str, tuple[float, bool]] = {}  # command id → (arrival, old agent)
        self.prepare_s = self.prepare_cpu = 0.0

    async def admin_loop(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(self.cache / "data" / "pki" / "ca.pem"))
        conn = Conn(ctx, self.admin, Stats())
        rng = random.Random(2)
        while True:
            await asyncio.sleep(1 / self.args.commands)
            if not self.live:
                continue
            uuid = rng.choice(self.live)  # a command to an agent never connected waits
            body = json.dumps({"name": "hash", "args": ["C:\\x"]}).encode()
            sent = time.time()
            try:
                status, _, data = await conn.request(
                    "POST",
                    f"/endpoints/{uuid}/command",
                    body,
                    {"X-Api-Key": self.api_key, "Content-Type": "application/json"},
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as ex:
                self.stats.error("admin " + type(ex).__name__)
                continue
            if status != 200:
                self.stats.error(f"admin HTTP {status}")
                continue
            cmd_id = json.loads(data)["data"]["command"]["id"]
            early = self.early.pop(cmd_id, None)
            if self.stats.measuring:
                self.stats.queued += 1
                if early is not None:
                    self.arrived(early[0] - sent, early[1])
                else:
                    self.pending[cmd_id] = sent

    def arrived(self, latency: float, old: bool) -> None:
        (self.stats.old_commands if old else self.stats.commands).append(latency)
        self.stats.delivered += 1

    async def progress(self, t0: float, pacer: Pacer) -> None:
        """Ramp progress on stderr every 10 s (connections, handshake times, errors)."""
        s, seen = self.stats, 0
        while True:
            await asyncio.sleep(10)
            recent, seen = s.handshake_s[seen:], len(s.handshake_s)
            print(
                f"  ramp {time.monotonic() - t0:5.0f} s: {s.connected:,} connected, "
                f"{len(recent)} handshakes {pct(recent)} ms ({pacer.limit:.0f} in flight "
                f"allowed), errors {s.errors}",
                file=sys.stderr,
                flush=True,
            )

    def prepare(self, agents: list[Agent]) -> None:
        """Every agent's TLS context, loaded before the ramp: parsing 10,000 keys and
        certificates is the simulator's cost, not the manager's (a fifth of the fleet's CPU
        during the ramp when done there)."""
        t0 = time.monotonic()
        for ag in agents:
            ag.prepare()
        self.prepare_s = time.monotonic() - t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.prepare_cpu = ru.ru_utime + ru.ru_stime

    def ramp_figures(self, ramp: float) -> dict[str, Any]:
        """What the ramp took: connections, handshakes (full and resumed) and errors so far."""
        s = self.stats
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "connected": s.connected,
            "ramp_s": round(ramp, 1),
            "ramp_handshakes": s.handshakes,
            "ramp_resumed": s.resumed,
            "ramp_handshake_ms": pct(s.handshake_s),
            "ramp_errors": dict(s.errors),
            "ramp_fleet_cpu_s": round(ru.ru_utime + ru.ru_stime - self.prepare_cpu, 1),
            "prepare_s": round(self.prepare_s, 1),
        }

    async def run(self) -> dict[str, Any]:
        a = self.args
        rng = random.Random(1)
        n_old = round(len(self.uuids) * a.old_share)
        olds = set(rng.sample(range(len(self.uuids)), n_old))
        senders = set(rng.sample(range(len(self.uuids)), min(a.senders, len(self.uuids))))
        agents = [Agent(i, u, self, i in olds, i in senders) for i, u in enumerate(self.uuids)]
        self.prepare(agents)
        tasks: list[asyncio.Task[Any]] = []
        pacer = Pacer()

        async def start(ag: Agent) -> None:
            attempt = 0
            while True:  # until connected or --ramp-limit (a busy box refuses some)
                attempt += 1
                async with pacer.slot():
                    t = time.monotonic()
                    try:
                        tasks.extend(await ag.start(a.rate))
                        pacer.took(time.monotonic() - t)
                        return
                    except (OSError, TimeoutError, ssl.SSLError) as ex:
                        pacer.took(float("inf"))
                        self.stats.error("connect " + type(ex).__name__)
                await asyncio.sleep(min(10.0, attempt) * random.uniform(0.5, 1.0))

        print("RAMP", flush=True)  # the manager's ramp CPU is counted from here
        t0 = time.monotonic()
        progress = asyncio.create_task(self.progress(t0, pacer))
        starting = [asyncio.create_task(start(ag)) for ag in agents]
        _, late = await asyncio.wait(starting, timeout=a.ramp_limit)
        for task in late:  # a manager that cannot take N in time is measured as it is
            task.cancel()
        ramp = time.monotonic() - t0
        progress.cancel()
        print("RAMPED", json.dumps(self.ramp_figures(ramp)), flush=True)
        tasks.append(asyncio.create_task(self.admin_loop()))
        await asyncio.sleep(a.settle)
        self.stats.errors.clear()
        self.stats.measuring = True
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        print("READY", json.dumps({"connected": self.stats.connected, "ramp": ramp}), flush=True)
        await asyncio.sleep(a.seconds)
        self.stats.measuring = False
        print("MEASURED", flush=True)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / a.seconds
        # the commands queued last still arrive (old agents poll every ≤ 6 s); a deadline only
        deadline = time.monotonic() + a.deliver_limit
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        s = self.stats
        lost = len(self.pending)
        if lost:
            s.errors["commands not delivered"] = lost
        out = {
            "connected": s.connected,
            "ramp_s": round(ramp, 1),
            "fleet_cpu": round(cpu * 100),
            "requests": len(s.requests),
            "request_ms": pct(s.requests),
            "commands": s.queued,
            "delivered": s.delivered,
            "command_ms": pct(s.commands),
            "old_command_ms": pct(s.old_commands),
            "poll_handshakes": s.poll_handshakes,
            "errors": s.errors,
            "handshakes": s.handshakes,
            "handshake_ms": pct(s.handshake_s),
            "resumed": s.resumed,
            "polls": s.polls,
            "long_polls": s.long_polls,
            "long_poll_204": s.long_poll_204,
            "long_poll_early": s.long_poll_early,
            "events": s.events,
            "logs_ms": pct(s.logs),
        }
        for t in tasks:
            t.cancel()
        return out


def pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    return {
        f"p{p}": round(v[min(len(v) - 1, int(len(v) * p / 100))] * 1000, 1) for p in (50, 95, 99)
    }


def fleet_main(args: argparse.Namespace) -> None:
    raise_nofile()
    out = asyncio.run(Fleet(args).run())
    print("DONE", json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- orchestration
METRICS = ("heron_events_received_total", "heron_batches_received_total", "heron_journal_syncs")


def metrics(port: int, cache: Path) -> dict[str, float]:
    """The counters of METRICS from the admin API's /metrics (absent ones are left out)."""
    import requests

    api_key = json.loads((cache / "fleet.json").read_text())["api_key"]
    text = requests.get(
        f"https://127.0.0.1:{port}/metrics",
        headers={"X-Api-Key": api_key},
        verify=str(cache / "data" / "pki" / "ca.pem"),
        timeout=60,
    ).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in METRICS:
            out[name] = float(value)
    return out


def ramp_result(line: str, manager_cpu_s: float) -> dict[str, Any]:
    """The RAMPED line of the fleet plus the manager's CPU over the ramp (per connected agent)."""
    ramp: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    connected = max(1, ramp.pop("connected"))
    ramp["ramp_manager_cpu_s"] = round(manager_cpu_s, 1)
    ramp["ramp_manager_ms_per_agent"] = round(manager_cpu_s * 1000 / connected, 2)
    return ramp


def one_run(args: argparse.Namespace, code: Path, n: int) -> dict[str, Any]:
    run_dir = Path(args.cache).parent / f"run-{code.name}-{n}"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(Path(args.cache) / "data", run_dir)
    configure(code, run_dir, max(2048, n * 2 + 100))
    mgr = Manager(code, run_dir)
    try:
        time.sleep(2)
        rss0, cpu_start = mgr.rss(), mgr.cpu()
        fleet = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "fleet",
                "--cache",
                args.cache,
                "--agents",
                str(n),
                "--port",
                str(mgr.endpoint),
                "--admin",
                str(mgr.admin),
                "--senders",
                str(min(args.senders, n)),
                "--rate",
                str(args.rate),
                "--old-share",
                str(args.old_share),
                "--commands",
                str(args.commands),
                "--seconds",
                str(args.seconds),
                "--settle",
                str(args.settle),
                "--ramp-limit",
                str(args.ramp_limit),
                "--deliver-limit",
                str(args.deliver_limit),
                *(["--one-source"] if args.one_source else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        assert fleet.stdout is not None
        result: dict[str, Any] = {}
        ramped: dict[str, Any] = {}
        cpu0 = t0 = 0.0
        rss_ready = 0
        measured: dict[str, Any] = {}
        ready: dict[str, Any] = {}
        m0: dict[str, float] = {}
        senders = min(args.senders, n)
        for line in fleet.stdout:
            if line.startswith("RAMP\n"):
                cpu_start = mgr.cpu()
            elif line.startswith("RAMPED"):
                ramped = ramp_result(line, mgr.cpu() - cpu_start)
            elif line.startswith("READY"):
                cpu0, t0, rss_ready = mgr.cpu(), time.monotonic(), mgr.rss()
                ready = json.loads(line.split(" ", 1)[1])
                m0 = metrics(mgr.admin, Path(args.cache)) if senders else {}
                print(f"  measuring (manager pid {mgr.proc.pid})", file=sys.stderr, flush=True)
            elif line.startswith("MEASURED"):
                window = time.monotonic() - t0
                if senders:  # the combined mode: events offered by the senders vs stored
                    m1 = metrics(mgr.admin, Path(args.cache))
                    stored = m1.get("heron_events_received_total", 0.0) - m0.get(
                        "heron_events_received_total", 0.0
                    )
                    measured["offered_events_s"] = round(senders * args.rate)
                    measured["stored_events_s"] = round(stored / window)
                measured |= {
                    "manager_cpu": round((mgr.cpu() - cpu0) / window * 100),
                    "manager_rss_mb": round(mgr.rss() / 2**20),
                    "bytes_per_conn": round(
                        (rss_ready - rss0) / max(1, ready["connected"] + min(args.senders, n))
                    ),
                }
            elif line.startswith("DONE"):
                result = json.loads(line.split(" ", 1)[1]) | measured | ramped
        fleet.wait(60)
        return result
    finally:
        mgr.stop()
        shutil.copy(run_dir / "manager.log", run_dir.parent / f"manager-{code.name}-{n}.log")
        shutil.rmtree(run_dir, ignore_errors=True)


def print_ramp(res: dict[str, Any]) -> None:
    print(
        f"  ramp: {res.get('connected', 0):,} connected in {res.get('ramp_s')} s, "
        f"handshakes {res.get('ramp_handshakes', 0):,} (resumed {res.get('ramp_resumed', 0):,}) "
        f"{res.get('ramp_handshake_ms')} ms, manager {res.get('ramp_manager_cpu_s')} CPU-s "
        f"({res.get('ramp_manager_ms_per_agent')} ms per agent), fleet "
        f"{res.get('ramp_fleet_cpu_s')} CPU-s, errors {res.get('ramp_errors')}",
        flush=True,
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    """The issue's figures, one row per run (idle CPU: the measurement window after settle)."""
    print(
        "\n| code | endpoints | connected (ramp) | manager CPU | RSS | bytes per idle connection "
        "| command p50 / p95 / p99 | /logs p95 | events/s offered / stored | errors (ramp) "
        "| fleet CPU | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cmd = r.get("command_ms") or r.get("old_command_ms") or {}
        lat = " / ".join(f"{cmd.get(k, 0):,.0f}" for k in ("p50", "p95", "p99")) + " ms"
        errors = sum((r.get("errors") or {}).values())
        logs = (r.get("logs_ms") or {}).get("p95")
        logs_p95 = "–" if logs is None else f"{logs:,.0f} ms"
        events = (
            f"{r.get('offered_events_s', 0):,} / {r.get('stored_events_s', 0):,}"
            if r.get("senders")
            else "–"
        )
        print(
            f"| {Path(r['code']).name} | {r['n']:,} | {r.get('connected', 0):,} "
            f"({r.get('ramp_s')} s) | {r.get('manager_cpu')} % | {r.get('manager_rss_mb')} MB "
            f"| {r.get('bytes_per_conn', 0) / 1024:,.0f} KiB | {lat} | {logs_p95} | {events} "
            f"| {errors} "
            f"({sum((r.get('ramp_errors') or {}).values())}) | {r.get('fleet_cpu')} % "
            f"| {r['load']:.1f} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", default="main", choices=["main", "fleet"])
    p.add_argument("--n", default="1000", help="comma-separated fleet sizes")
    p.add_argument("--agents", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--admin", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--code",
        action="append",
        default=[],
        help="checkout whose manager runs (repeat to compare; default: this tree)",
    )
    p.add_argument("--senders", type=int, default=0, help="agents sending events")
    p.add_argument("--rate", type=int, default=10, help="events/s per sender")
    p.add_argument(
        "--old-share",
        type=float,
        default=-1.0,
        help="share of previous-version (polling) agents (default: 1 against a "
        "manager without long-poll, else 0)",
    )
    p.add_argument("--commands", type=float, default=2.0, help="commands queued per second")
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    p.add_argument(
        "--settle",
        type=float,
        default=70.0,
        help="wait after the ramp (default: the agents' first update checks, spread over "
        "their first 60 s, are done before the idle fleet is measured)",
    )
    p.add_argument(
        "--ramp-limit", type=float, default=900.0, help="seconds to connect N, then measure"
    )
    p.add_argument(
        "--deliver-limit",
        type=float,
        default=60.0,
        help="seconds the commands queued last may take to arrive after the window",
    )
    p.add_argument(
        "--one-source",
        action="store_true",
        help="every agent connects from 127.0.0.1 (default: each from its own 127.x.y.z)",
    )
    p.add_argument("--cache", default="/tmp/heron-fleet-bench/cache")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.role == "fleet":
        fleet_main(args)
        return
    sizes = [int(x) for x in args.n.split(",")]
    enroll(Path(args.cache), max(sizes))
    codes = [Path(c).resolve() for c in args.code] or [ROOT]
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for code in codes:
            share = args.old_share
            if share < 0:
                share = 0.0 if any(code.glob("appliance/**/longpoll.py")) else 1.0
            res = one_run(argparse.Namespace(**{**vars(args), "old_share": share}), code, n)
            res.update(n=n, code=str(code), old_share=share, senders=min(args.senders, n))
            res["load"] = os.getloadavg()[0]
            rows.append(res)
            if args.json:
                print(json.dumps(res), flush=True)
            else:
                print(
                    f"N={n:,} code={code} old-share={share:g} senders={res['senders']}: "
                    f"connected {res.get('connected', 0):,}, manager CPU "
                    f"{res.get('manager_cpu')} % RSS {res.get('manager_rss_mb')} MB, "
                    f"{res.get('bytes_per_conn', 0):,} B/idle conn, requests "
                    f"{res.get('requests', 0):,} {res.get('request_ms')}, commands "
                    f"{res.get('delivered', 0)}/{res.get('commands', 0)} "
                    f"{res.get('command_ms')} old agents {res.get('old_command_ms')}, "
                    f"events acked {res.get('events', 0):,} (offered "
                    f"{res.get('offered_events_s', 0):,}/s, stored "
                    f"{res.get('stored_events_s', 0):,}/s), /logs {res.get('logs_ms')}, handshakes "
                    f"{res.get('handshakes', 0):,} (resumed {res.get('resumed', 0):,}, on "
                    f"polling connections {res.get('poll_handshakes', 0):,}), "
                    f"errors {res.get('errors')}, fleet CPU {res.get('fleet_cpu')} %",
                    flush=True,
                )
                print_ramp(res)
    if not args.json:
        print_table(rows)


if __name__ == "__main__":
    main()
