"""WsStreams in process: which heads it takes over, and the environ of an upgrade request."""

from __future__ import annotations

from pathlib import Path

import pytest
from wsproto.events import Request

from appliance.api.app import Api, create_app
from appliance.runtime.context import build_context
from appliance.transport.identities import ConnInfo
from appliance.transport.websocket import WsStreams
from tests.support.memory_store import MemoryEventStore

UPGRADE = (
    "GET {target} HTTP/1.1\r\nHost: m:1520\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture
def streams(tmp_path: Path) -> WsStreams:
    ctx = build_context(data_dir=tmp_path, events=MemoryEventStore())
    return WsStreams(app=create_app(ctx, Api.ADMIN), hub=ctx.hub, config=ctx.config.streams)


@pytest.mark.parametrize(
    ("head", "wanted"),
    [
        (UPGRADE.format(target="/stream/events", upgrade="websocket"), True),
        (UPGRADE.format(target="/stream/detections?signature=x", upgrade="WebSocket"), True),
        (UPGRADE.format(target="//stream/events/", upgrade="websocket"), True),
        (UPGRADE.format(target="/stream/events", upgrade="h2c"), False),
        (UPGRADE.format(target="/stats", upgrade="websocket"), False),
        ("GET /stream/events HTTP/1.1\r\nHost: m\r\n\r\n", False),  # SSE
        ("POST /stream/events HTTP/1.1\r\nHost: m\r\nUpgrade: websocket\r\n\r\n", False),
        ("GET /stream/events HTTP/1.1\r\nHost: m\r\nUpgrade: websocket\r\n", False),  # partial
        ("\x16\x03\x01garbage\r\n\r\n", False),
    ],
)
def test_wants_only_websocket_upgrades_of_stream_routes(
    streams: WsStreams, head: str, wanted: bool
) -> None:
    assert streams.wants(head.encode("latin-1")) is wanted


def test_environ_carries_headers_but_never_cookies(streams: WsStreams) -> None:
    request = Request(
        host="m:1520",
        target="/stream/events?channel=Security&limit=3",
        extra_headers=[
            (b"api-key", b"hk_x"),
            (b"cookie", b"heron_session=abc"),
            (b"x-forwarded-for", b"a"),
            (b"x-forwarded-for", b"b"),
        ],
    )
    env = streams._environ(request, ConnInfo(None, "10.0.0.9", 50000))
    assert env["PATH_INFO"] == "/stream/events"
    assert env["QUERY_STRING"] == "channel=Security&limit=3"
    assert env["HTTP_API_KEY"] == "hk_x" and env["HTTP_X_FORWARDED_FOR"] == "a,b"
    assert "HTTP_COOKIE" not in env  # a browser's console session cannot open a stream
    assert env["REMOTE_ADDR"] == "10.0.0.9" and env["REMOTE_PORT"] == "0"
