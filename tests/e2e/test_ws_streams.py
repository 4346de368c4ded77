"""WebSocket streams on the real admin TLS front, driven by the `websockets` client library.

The manager runs in process (TLS front + waitress + both apps, certificates from our PKI, the
in-memory event store); events arrive through the real endpoint listener (`POST /logs`, mTLS).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets
from websockets.asyncio.client import connect

from appliance.core.config import Config
from appliance.runtime.context import AppContext, build_context
from appliance.security.pki import Pki
from appliance.store import Role, Store
from appliance.transport.server import Bound, ManagerServer
from rules import wire
from tests.support.events import detection, gene_event
from tests.support.memory_store import MemoryEventStore
from tests.support.procs import run_benchmark

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0  # generous bound for one awaited message on a busy box (never a margin we sleep)


def event(
    n: int,
    *,
    channel: str = "Microsoft-Windows-Sysmon/Operational",
    eid: int = 1,
    sig: list[str] | None = None,
    crit: int = 0,
) -> dict[str, Any]:
    return gene_event(
        eid,
        {"Image": f"C:\\bin\\{n}.exe", "N": str(n)},
        channel=channel,
        computer="ws-host",
        time="2026-01-01T00:00:00Z",
        detect=detection(sig, crit) if sig else None,
    )


class Manager:
    def __init__(self, tmp: Path, **streams: Any) -> None:
        self.tmp = tmp
        self.pki = Pki.create(tmp / "pki", server_names=["localhost", "127.0.0.1"])
        config = Config().with_listen(admin="127.0.0.1:0", endpoint="127.0.0.1:0")
        config = replace(
            config,
            server=replace(config.server, threads=16),
            streams=replace(config.streams, **streams),
        )
        self.ctx: AppContext = build_context(
            data_dir=tmp,
            config=config,
            store=Store(tmp / "heron.duckdb"),
            pki=self.pki,
            events=MemoryEventStore(),
        )
        self.server = ManagerServer(self.ctx)
        self.bound: Bound = self.server.start()
        _, self.admin_key = self.ctx.identity.add_user("root", Role.ADMIN)
        _, self.analyst_key = self.ctx.identity.add_user("ana", Role.ANALYST)
        self.agent_uuid, self.agent = self._enroll("ws-host")
        self.batches = 0

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.bound.admin[1]}"

    def ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_path))
        ctx.check_hostname = False  # the server certificate names 127.0.0.1 and localhost
        return ctx

    def _enroll(self, name: str) -> tuple[str, requests.Session]:
        from tests.appliance.conftest import make_csr

        token, _ = self.ctx.identity.create_token()
        csr, key_pem = make_csr()
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.pki.ca_path)
        res = s.post(
            f"https://127.0.0.1:{self.bound.endpoint[1]}/enroll",
            json={"token": token, "csr_pem": csr, "hostname": name},
            timeout=30,
        )
        assert res.status_code == 200, res.text
        body = res.json()
        cert, key = self.tmp / f"{name}.pem", self.tmp / f"{name}.key"
        cert.write_text(body["certificate_pem"])
        key.write_text(key_pem)
        s.cert = (str(cert), str(key))
        return str(body["uuid"]), s

    def post(self, events: list[dict[str, Any]]) -> None:
        self.batches += 1
        body = gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in events))
        res = self.agent.post(
            f"https://127.0.0.1:{self.bound.endpoint[1]}/logs",
            data=body,
            timeout=60,
            headers={"Content-Encoding": "gzip", wire.HEADER_BATCH_ID: f"b{self.batches}"},
        )
        assert res.status_code == 200 and res.json()["accepted"] == len(events), res.text

    def close(self) -> None:
        self.server.close()
        self.ctx.close()


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = Manager(tmp_path_factory.mktemp("ws"), ws_per_key=8, ws_max_clients=10, heartbeat=1.0)
    yield m
    m.close()


async def _wait_clients(mgr: Manager, n: int) -> None:
    """Until the hub has `n` WebSocket subscribers (the server side of connect() is done)."""
    for _ in range(int(TIMEOUT / 0.01)):
        if mgr.ctx.hub.ws_clients == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {n} WebSocket streams, hub has {mgr.ctx.hub.ws_clients}")


async def _post(mgr: Manager, events: list[dict[str, Any]]) -> None:
    await asyncio.to_thread(mgr.post, events)


async def _recv_json(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))


def test_auth_refused_without_or_with_a_bad_key(mgr: Manager) -> None:
    async def go() -> None:
        with pytest.raises(websockets.InvalidStatus) as no_key:
            async with connect(mgr.ws_url + "/stream/events", ssl=mgr.ssl()):
                pass
        assert no_key.value.response.status_code == 401
        assert b"API key" in no_key.value.response.body
        with pytest.raises(websockets.InvalidStatus) as bad:
            async with connect(
                mgr.ws_url + "/stream/events",
                ssl=mgr.ssl(),
                additional_headers={"Api-Key": "nope"},
            ):
                pass
        assert bad.value.response.status_code == 401
        with pytest.raises(websockets.InvalidStatus) as param:
            async with connect(
                mgr.ws_url + "/stream/events?event_id=x",
                ssl=mgr.ssl(),
                additional_headers={"Api-Key": mgr.admin_key},
            ):
                pass
        assert param.value.response.status_code == 400

    asyncio.run(go())
    assert mgr.ctx.hub.ws_clients == 0


def test_events_and_detections_in_order(mgr: Manager) -> None:
    batch = [event(i, sig=["Sig"] if i % 3 == 0 else None, crit=5) for i in range(60)]

    async def go() -> None:
        headers = {"X-Api-Key": mgr.analyst_key}
        async with (
            connect(
                mgr.ws_url + "/stream/events", ssl=mgr.ssl(), additional_headers=headers
            ) as events,
            connect(
                mgr.ws_url + "/stream/detections", ssl=mgr.ssl(), additional_headers=headers
            ) as detections,
        ):
            await _wait_clients(mgr, 2)
            await _post(mgr, batch[:30])
            await _post(mgr, batch[30:])
            got = [await _recv_json(events) for _ in range(60)]
            dets = [await _recv_json(detections) for _ in range(20)]
        assert [g["Event"]["EventData"]["N"] for g in got] == [str(i) for i in range(60)]
        assert [d["Event"]["EventData"]["N"] for d in dets] == [str(i) for i in range(0, 60, 3)]
        assert got[0]["Event"]["EdrData"]["Endpoint"]["UUID"] == mgr.agent_uuid

    asyncio.run(go())


def test_filters_match_the_sse_parameters(mgr: Manager) -> None:
    batch = [
        event(0, channel="Security", eid=4688),
        event(1, sig=["A"], crit=3),
        event(2, sig=["B"], crit=8),
        event(3, eid=3),
        event(4, sig=["A", "B"], crit=9),
    ]
    queries = {
        "channel=Security": ["0"],
        "event_id=3": ["3"],
        "min_criticality=8": ["2", "4"],
        "signature=A": ["1", "4"],
        f"endpoint={mgr.agent_uuid}&event_id=1&min_criticality=9": ["4"],
    }

    async def go() -> None:
        headers = {"Api-Key": mgr.analyst_key}
        conns = [
            await connect(
                f"{mgr.ws_url}/stream/events?{q}", ssl=mgr.ssl(), additional_headers=headers
            )
            for q in queries
        ]
        other = await connect(
            f"{mgr.ws_url}/stream/events?endpoint=00000000-0000-0000-0000-000000000000",
            ssl=mgr.ssl(),
            additional_headers=headers,
        )
        try:
            await _wait_clients(mgr, len(conns) + 1)
            await _post(mgr, batch)
            for ws, want in zip(conns, queries.values(), strict=True):
                got = [(await _recv_json(ws))["Event"]["EventData"]["N"] for _ in want]
                assert got == want
            with pytest.raises(TimeoutError):  # nothing for an endpoint that sent nothing
                await asyncio.wait_for(other.recv(), 0.3)
        finally:
            for ws in [*conns, other]:
                await ws.close()

    asyncio.run(go())


def test_limit_closes_normally_after_n_events(mgr: Manager) -> None:
    async def go() -> None:
        async with connect(
            mgr.ws_url + "/stream/events?limit=3",
            ssl=mgr.ssl(),
            additional_headers={"Api-Key": mgr.analyst_key},
        ) as ws:
            await _wait_clients(mgr, 1)
            await _post(mgr, [event(i) for i in range(5)])
            got = [(await _recv_json(ws))["Event"]["EventData"]["N"] for _ in range(3)]
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert got == ["0", "1", "2"]
        assert ws.close_code == 1000 and ws.close_reason == "limit reached"

    asyncio.run(go())


def test_ping_pong_both_ways(mgr: Manager) -> None:
    """Client pings are answered; the server pings an idle client (heartbeat = 1 s here) and
    keeps it past 3 heartbeats because the client library answers."""

    async def go() -> None:
        async with connect(
            mgr.ws_url + "/stream/events",
            ssl=mgr.ssl(),
            additional_headers={"Api-Key": mgr.analyst_key},
            ping_interval=None,  # the client never pings by itself
        ) as ws:
            latency = await asyncio.wait_for(await ws.ping(b"pywhids"), TIMEOUT)
            assert latency >= 0
            await asyncio.sleep(4.0)  # > 3 heartbeats of silence from the client's side
            await _post(mgr, [event(7)])
            assert (await _recv_json(ws))["Event"]["EventData"]["N"] == "7"

    asyncio.run(go())


def test_a_client_that_stops_reading_is_closed_1011(mgr: Manager) -> None:
    """Its transport paused, the client answers no ping: closed after 3 heartbeats (1 s here)."""

    async def go() -> Any:
        ws = await connect(
            mgr.ws_url + "/stream/events",
            ssl=mgr.ssl(),
            additional_headers={"Api-Key": mgr.analyst_key},
            ping_interval=None,
        )
        await _wait_clients(mgr, 1)
        ws.transport.pause_reading()  # a frozen peer: reads nothing, so answers nothing
        await _wait_clients(mgr, 0)
        ws.transport.resume_reading()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        return ws

    ws = asyncio.run(go())
    assert (ws.close_code, ws.close_reason) == (1011, "no answer to pings")


def test_stream_caps_close_with_a_reason(mgr: Manager) -> None:
    """ws_per_key = 8 and ws_max_clients = 10 in this fixture."""

    async def go() -> None:
        async def open_(key: str) -> Any:
            return await connect(
                mgr.ws_url + "/stream/events", ssl=mgr.ssl(), additional_headers={"Api-Key": key}
            )

        admin = [await open_(mgr.admin_key) for _ in range(8)]
        await _wait_clients(mgr, 8)
        extra = await open_(mgr.admin_key)
        with pytest.raises(websockets.ConnectionClosedError):
            await asyncio.wait_for(extra.recv(), TIMEOUT)
        assert extra.close_code == 1008
        assert extra.close_reason == "too many streams for this API key (max 8)"
        analyst = [await open_(mgr.analyst_key) for _ in range(2)]
        await _wait_clients(mgr, 10)
        over = await open_(mgr.analyst_key)
        with pytest.raises(websockets.ConnectionClosedError):
            await asyncio.wait_for(over.recv(), TIMEOUT)
        assert (over.close_code, over.close_reason) == (1013, "too many streams (max 10)")
        for ws in [*admin, *analyst]:
            await ws.close()
        await _wait_clients(mgr, 0)
        assert "heron_ws_refused_total" in mgr.ctx.metrics.render()

    asyncio.run(go())


def _whids_get(data: dict[str, Any], path: str) -> Any:
    """pywhids `Event.get`: walk '/'-separated keys, None when a step is missing."""
    node: Any = data
    for step in path.lstrip("/").split("/"):
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pywhids_code_path(mgr: Manager) -> None:
    """What pywhids' EventStream/DetectionStream do: the legacy `websockets.connect` with
    `extra_headers={"Api-Key": key}`, `ping_interval=1, ping_timeout=None`, the https URL with
    its scheme turned to ws, then `Event(json.loads(message))` per text message."""
    from websockets.legacy.client import connect as legacy_connect

    api = f"https://127.0.0.1:{mgr.bound.admin[1]}"

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {"ssl": mgr.ssl()}
        async with (
            legacy_connect(
                (api + "/stream/events").replace("http", "ws", 1),
                extra_headers={"Api-Key": mgr.analyst_key},
                ping_interval=1,
                ping_timeout=None,
                **kwargs,
            ) as events,
            legacy_connect(
                (api + "/stream/detections").replace("http", "ws", 1),
                extra_headers={"Api-Key": mgr.analyst_key},
                ping_interval=1,
                ping_timeout=None,
                **kwargs,
            ) as detections,
        ):
            await _wait_clients(mgr, 2)
            await _post(mgr, [event(1), event(2, sig=["Mimikatz"], crit=10), event(3)])
            evs = [json.loads(await asyncio.wait_for(events.recv(), TIMEOUT)) for _ in range(3)]
            dets = [json.loads(await asyncio.wait_for(detections.recv(), TIMEOUT))]
            await asyncio.sleep(2.5)  # pywhids pings every second: the stream stays up
            await _post(mgr, [event(4)])
            evs.append(json.loads(await asyncio.wait_for(events.recv(), TIMEOUT)))
        return evs, dets

    evs, dets = asyncio.run(go())
    assert [_whids_get(e, "/Event/EventData/N") for e in evs] == ["1", "2", "3", "4"]
    assert _whids_get(evs[0], "/Event/System/Channel") == "Microsoft-Windows-Sysmon/Operational"
    assert _whids_get(evs[0], "/Event/System/EventID") == 1
    assert _whids_get(evs[0], "/Event/EdrData/Endpoint/UUID") == mgr.agent_uuid
    assert len(_whids_get(evs[0], "/Event/EdrData/Event/Hash")) == 40
    assert _whids_get(dets[0], "/Event/Detection/Signature") == ["Mimikatz"]
    assert _whids_get(dets[0], "/Event/EdrData/Event/Detection") is True


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Manager]:
    """A manager with a 64 KiB WebSocket buffer and no ping pressure."""
    m = Manager(tmp_path, ws_buffer=64 * 1024, heartbeat=60.0)
    yield m
    m.close()


def test_slow_consumer_stays_within_its_byte_budget(small: Manager) -> None:
    """A client that stops reading loses its oldest events, never more than the budget is held;
    once it reads again, a notice says how many were lost and the counts add up exactly."""
    payload = "x" * 2000
    total = 6000  # ~12 MB: far more than the socket buffers and the 64 KiB budget hold

    async def go() -> tuple[list[int], list[dict[str, Any]], int]:
        async with connect(
            small.ws_url + "/stream/events",
            ssl=small.ssl(),
            additional_headers={"Api-Key": small.analyst_key},
            max_queue=4,
        ) as ws:
            await _wait_clients(small, 1)
            (sub,) = [s for s in small.ctx.hub._subs]
            peak = 0
            for i in range(0, total, 100):
                batch = [event(n) for n in range(i, i + 100)]
                for e in batch:
                    e["Event"]["EventData"]["Pad"] = payload
                await asyncio.to_thread(small.ctx.hub.publish, batch)
                peak = max(peak, sub.size)  # type: ignore[union-attr]
            assert sub.dropped > 0 and peak <= 64 * 1024
            seen: list[int] = []
            notices: list[dict[str, Any]] = []
            while len(seen) + sum(n["Dropped"] for n in notices) < total:
                msg = await _recv_json(ws)
                if "Heron" in msg:
                    notices.append(msg["Heron"])
                else:
                    seen.append(int(msg["Event"]["EventData"]["N"]))
            return seen, notices, sub.dropped

    seen, notices, dropped = asyncio.run(go())
    assert seen == sorted(seen) and seen[-1] == total - 1  # order kept, newest delivered
    assert notices and all(n["Notice"] == "dropped" for n in notices)
    assert sum(n["Dropped"] for n in notices) == dropped == total - len(seen)
    assert notices[-1]["DroppedTotal"] == dropped


def test_shutdown_closes_streams_with_going_away(tmp_path: Path) -> None:
    m = Manager(tmp_path)

    async def go() -> Any:
        ws = await connect(
            m.ws_url + "/stream/detections",
            ssl=m.ssl(),
            additional_headers={"Api-Key": m.analyst_key},
        )
        await _wait_clients(m, 1)
        closer = threading.Thread(target=m.close)
        closer.start()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        await asyncio.to_thread(closer.join)
        return ws

    ws = asyncio.run(go())
    assert (ws.close_code, ws.close_reason) == (1001, "manager shutting down")


@pytest.mark.timeout(900)
def test_200_clients_fan_out_1000_events_per_s_in_bounded_memory_without_threads() -> None:
    """benchmarks/streams.py against a real `heron-manager run` subprocess: 200 `websockets`
    clients, an agent posting 1,000 events/s for 5 s. Every client gets events (the ones it
    cannot keep up with are dropped oldest-first and reported), the manager's RSS grows by at
    most 200 MB, and its thread count does not follow the clients (asyncio, not a thread each:
    the few extra are the loop's bounded executor running the upgrade requests)."""
    cmd = [sys.executable, "benchmarks/streams.py", "--clients", "200", "--rate", "1000",
           "--seconds", "5", "--drain", "20", "--json"]  # fmt: skip
    out = run_benchmark(*cmd[1:], timeout=800)
    r = json.loads(out.strip().splitlines()[-1])
    assert r["published"] == 5000 and r["clients_reporting"] == 200
    assert r["min_received"] > 0, r  # each of the 200 streams delivered
    assert r["received"] + r["dropped"] <= 200 * 5000, r  # nothing delivered twice
    assert r["rss_growth_mb"] <= 200, r
    assert r["threads_connected"] - r["threads_base"] <= 8, r
    assert r["threads_peak"] - r["threads_base"] <= 16, r


def test_sse_keeps_the_same_routes_and_other_upgrades_reach_the_app(mgr: Manager) -> None:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(mgr.pki.ca_path)
    base = f"https://127.0.0.1:{mgr.bound.admin[1]}"
    with s.get(
        base + "/stream/detections?limit=1",
        headers={"X-Api-Key": mgr.analyst_key},
        stream=True,
        timeout=TIMEOUT,
    ) as sse:
        assert sse.headers["Content-Type"].startswith("text/event-stream")
        for _ in range(int(TIMEOUT / 0.01)):  # until the SSE stream is subscribed
            if mgr.ctx.hub.clients:
                break
            threading.Event().wait(0.01)
        mgr.post([event(1), event(2, sig=["S"], crit=3)])
        body = b"".join(sse.iter_content(None))
    assert b'"N":"2"' in body and b'"N":"1"' not in body
    # an upgrade of a route without WebSocket gets the app's plain answer, as before
    res = s.get(
        base + "/stats",
        headers={
            "X-Api-Key": mgr.analyst_key,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
        timeout=TIMEOUT,
    )
    assert res.status_code == 200 and "endpoint-count" in res.json()["data"]
    # a WebSocket upgrade wsproto cannot accept (no Sec-WebSocket-*) is a 400, not a hang
    bad = requests.get(
        base + "/stream/events",
        headers={"X-Api-Key": mgr.analyst_key, "Connection": "Upgrade", "Upgrade": "websocket"},
        verify=str(mgr.pki.ca_path),
        timeout=TIMEOUT,
    )
    assert bad.status_code == 400 and "Missing header" in bad.json()["error"]
    # keep-alive requests on one connection still reach waitress after the first head
    assert [s.get(base + "/healthz", timeout=TIMEOUT).status_code for _ in range(3)] == [200] * 3
