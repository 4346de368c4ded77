"""Long-poll `GET /commands?wait=N`, answered by the endpoint listener's TLS front (issue 24).

An agent that sends `wait` (`rules.wire.QUERY_WAIT`) is held on the front's event loop until a
command is queued for it or the wait ends: no waitress thread is held, so 10,000 waiting agents
cost 10,000 idle sockets and one asyncio.Event each. `CommandBell.ring(uuid)` (called by the
command store when a command is added, from any thread) wakes the endpoint's waiters. The
store calls (identity check, dequeue, presence) run on the loop's executor, briefly.

A request without `wait` (agents of the previous version) is not taken: the front forwards it to
waitress, which answers as before. Every answer (waitress's too: the relay adds it) carries
`X-Heron-Poll-After` (`Advisor`): the seconds the manager wants the agent to wait before its next
update check, longer under load.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import orjson

from rules import wire

from ..api.endpoint_api import command_message
from ..core.errors import ApplianceError
from .advice import BatchAdvisor
from .bell import CommandBell
from .identities import ConnInfo
from .relay import Request

if TYPE_CHECKING:
    from ..runtime.context import AppContext

__all__ = [
    "Advisor",
    "CommandBell",
    "LongPoll",
    "long_poll_for",
]

logger = logging.getLogger(__name__)
MAX_WAIT = 60.0  # longest hold the front grants, seconds
RESOLVED_TTL = 300.0  # seconds a certificate serial → endpoint uuid is reused by long-polls
RESOLVED_MAX = 200_000  # entries before the map is cleared (bounded memory)


class Advisor:
    """Seconds between an agent's update checks: `base` up to `per` agents, then in proportion.

    update checks are the agents' only periodic requests besides the long-poll,
    so stretching them keeps the request rate of a fleet of any size near `per / base` per second.
    """

    def __init__(
        self,
        connected: Callable[[], int],
        *,
        base: float = 60.0,
        per: int = 1000,
        cap: float = 900.0,
    ) -> None:
        self.connected = connected
        self.base = base
        self.per = per
        self.cap = cap

    def poll_after(self) -> float:
        return min(self.cap, max(self.base, self.base * self.connected() / self.per))


class LongPoll:
    """The front's responder for `GET /commands?wait=N` (see the module docstring)."""

    def __init__(
        self,
        *,
        resolve: Callable[[ConnInfo], str],
        dequeue: Callable[[str, str], bytes | None],
        bell: CommandBell,
        advisor: Advisor,
        max_wait: float = MAX_WAIT,
        quick: Callable[[str, str], bool] = lambda uuid, peer_ip: True,
        batching: BatchAdvisor | None = None,
    ) -> None:
        """`resolve(conn)` → endpoint uuid (raises ApplianceError: waitress answers the error);
        `dequeue(uuid, peer_ip)` → the next command's JSON body or None (records presence);
        `quick(uuid, peer_ip)`, on the loop: False when `dequeue` would surely find nothing and
        has nothing to write (it records presence in memory), so no executor round trip."""
        self.resolve = resolve
        self.dequeue = dequeue
        self.quick = quick
        self.store_asked = 0  # dequeue calls (on the executor)
        self.bell = bell
        self.advisor = advisor
        self.batching = batching
        self.max_wait = max_wait
        self.answered = 0
        # serial → (time, uuid). Identity.endpoint_for reuses its answer 5 s and
        # then asks the store twice: at 10,000 agents that was ~350 DuckDB queries a second for
        # long-polls alone. Revocation is still checked on every request (the relay's
        # `allowed`, an in-memory set); a deleted endpoint's long-poll just finds no command.
        self._resolved: dict[str, tuple[float, str]] = {}

    def headers(self, req: Request, conn: ConnInfo) -> bytes:
        """The advice on waitress's answers too: an agent learns it at its first update check;
        /logs answers also carry the batching advice (`appliance.transport.advice`)."""
        poll = f"{wire.HEADER_POLL_AFTER}: {self.advisor.poll_after():.0f}\r\n".encode("latin-1")
        if self.batching is None or req.method != "POST" or req.path != wire.ROUTE_LOGS:
            return poll
        self.batching.saw(conn.identity.serial if conn.identity is not None else conn.peer_ip)
        return poll + self.batching.header()

    def wants(self, req: Request) -> bool:
        return (
            req.method == "GET"
            and req.path == wire.ROUTE_COMMANDS
            and self._wait(req) > 0
            and "content-length" not in req.headers
            and "transfer-encoding" not in req.headers
        )

    def _wait(self, req: Request) -> float:
        values = parse_qs(req.query).get(wire.QUERY_WAIT)
        try:
            wait = float(values[-1]) if values else 0.0
        except ValueError:
            return 0.0
        if wait != wait:  # NaN
            return 0.0
        return min(max(wait, 0.0), self.max_wait)

    async def answer(self, req: Request, conn: ConnInfo) -> bytes | None:
        """The whole HTTP response, or None to let waitress answer (not an endpoint)."""
        loop = asyncio.get_running_loop()
        serial = conn.identity.serial if conn.identity is not None else ""
        cached = self._resolved.get(serial) if serial else None
        if cached is not None and loop.time() - cached[0] < RESOLVED_TTL:
            uuid = cached[1]
        else:
            try:
                uuid = await loop.run_in_executor(None, self.resolve, conn)
            except ApplianceError:
                self._resolved.pop(serial, None)
                return None
            if serial:
                if len(self._resolved) >= RESOLVED_MAX:
                    self._resolved.clear()
                self._resolved[serial] = (loop.time(), uuid)
        wait = self._wait(req)
        # ±10 % so a fleet started together does not come back together.
        deadline = loop.time() + wait * random.uniform(0.9, 1.0)
        event = self.bell.register(uuid)  # before the first look: no ring is missed
        try:
            while True:
                event.clear()
                body = None
                if self.quick(uuid, conn.peer_ip):
                    self.store_asked += 1
                    body = await loop.run_in_executor(None, self.dequeue, uuid, conn.peer_ip)
                if body is not None:
                    return self._response(200, body, req.close)
                left = deadline - loop.time()
                if left <= 0:
                    return self._response(204, b"", req.close)
                try:
                    await asyncio.wait_for(event.wait(), left)
                except TimeoutError:
                    pass
        finally:
            self.bell.unregister(uuid, event)
            self.answered += 1

    def _response(self, status: int, body: bytes, close: bool) -> bytes:
        lines = [
            "HTTP/1.1 200 OK" if status == 200 else "HTTP/1.1 204 No Content",
            "Server: heron",
            f"{wire.HEADER_POLL_AFTER}: {self.advisor.poll_after():.0f}",
        ]
        if status == 200:
            lines += [f"Content-Type: {wire.CONTENT_JSON}", f"Content-Length: {len(body)}"]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def long_poll_for(ctx: AppContext, connected: Callable[[], int]) -> LongPoll:
    """The endpoint listener's responder over the manager's services."""
    # endpoints that may have a queued command. A long-poll of any other one
    # costs no store round trip (10,000 agents start ~170 long-polls a second). Marked before
    # the bell rings (on_add order); unmarked before the store is asked, so an add racing
    # with that look marks it again and rings.
    maybe: set[str] = ctx.store.commands.queued_endpoints()
    ctx.store.commands.on_add.insert(0, maybe.add)

    def resolve(conn: ConnInfo) -> str:
        return ctx.identity.endpoint_for(conn.identity).uuid

    def quick(uuid: str, peer_ip: str) -> bool:
        return ctx.ingest.note(uuid, peer_ip) or uuid in maybe

    def dequeue(uuid: str, peer_ip: str) -> bytes | None:
        ctx.ingest.touch(uuid, peer_ip)
        if uuid not in maybe:
            return None
        maybe.discard(uuid)
        cmd = ctx.store.commands.next_for(uuid, ctx.clock())
        if cmd is None:
            return None
        maybe.add(uuid)  # there may be more
        return orjson.dumps(command_message(cmd), default=str)

    return LongPoll(
        resolve=resolve,
        dequeue=dequeue,
        bell=ctx.bell,
        advisor=Advisor(connected, base=ctx.config.commands.update_after),
        max_wait=ctx.config.commands.long_poll,
        quick=quick,
        batching=BatchAdvisor(),
    )
