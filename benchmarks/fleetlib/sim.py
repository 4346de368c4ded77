"""The fleet process (`fleet.py --role fleet`): the agents' ramp, the admin queueing commands,
the measurement window and its figures (one JSON line per phase on stdout)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.fleetlib.agent import Agent
from benchmarks.fleetlib.conn import Conn, Stats, pct
from benchmarks.fleetlib.manager import raise_nofile
from benchmarks.fleetlib.pacer import Pacer


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


def fleet_main(args: argparse.Namespace) -> None:
    raise_nofile()
    out = asyncio.run(Fleet(args).run())
    print("DONE", json.dumps(out), flush=True)
