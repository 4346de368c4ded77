"""WebSocket streams on the real admin TLS front, driven by the `websockets` client library.

The manager runs in process (TLS front + waitress + both apps, certificates from our PKI, the
in-memory event store); events arrive through the real endpoint listener (`POST /logs`, mTLS).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets
from websockets.asyncio.client import connect

from appliance.config import Config
from appliance.context import AppContext, build_context
from appliance.pki import Pki
from appliance.server import Bound, ManagerServer
from appliance.store import Role, Store
from rules import wire

pytestmark = pytest.mark.e2e
TIMEOUT = 20.0  # generous bound for one awaited message on a busy box (never a margin we sleep)


def event(n: int, *, channel: str = "Microsoft-Windows-Sysmon/Operational", eid: int = 1,
          sig: list[str] | None = None, crit: int = 0) -> dict[str, Any]:
    inner: dict[str, Any] = {
        "System": {
            "Channel": channel,
            "EventID": eid,
            "Computer": "ws-host",
            "TimeCreated": {"SystemTime": "2026-01-01T00:00:00Z"},
        },
        "EventData": {"Image": f"C:\\bin\\{n}.exe", "N": str(n)},
    }
    if sig:
        inner["Detection"] = {"Signature": sig, "Criticality": crit, "Actions": []}
    return {"Event": inner}


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
            data_dir=tmp, config=config, store=Store(tmp / "heron.duckdb"), pki=self.pki
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
    m = Manager(tmp_path_factory.mktemp("ws"), ws_per_key=4, ws_max_clients=6, heartbeat=1.0)
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
            connect(mgr.ws_url + "/stream/events", ssl=mgr.ssl(), additional_headers=headers)
            as events,
            connect(mgr.ws_url + "/stream/detections", ssl=mgr.ssl(), additional_headers=headers)
            as detections,
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
