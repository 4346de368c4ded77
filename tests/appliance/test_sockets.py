"""Listening sockets: SO_EXCLUSIVEADDRUSE on Windows, SO_REUSEADDR elsewhere (issue 26 point 9)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from appliance.transport.sockets import SO_EXCLUSIVEADDRUSE, bind_listener, listener_options


class RecordingSocket:
    """Records what bind_listener asks of the socket (Windows options cannot be set here)."""

    def __init__(self, family: int, kind: int, proto: int) -> None:
        self.family = family
        self.calls: list[tuple[Any, ...]] = []

    def setsockopt(self, *args: Any) -> None:
        self.calls.append(("setsockopt", *args))

    def bind(self, addr: Any) -> None:
        self.calls.append(("bind", addr))

    def setblocking(self, flag: bool) -> None:
        self.calls.append(("setblocking", flag))

    def close(self) -> None:
        self.calls.append(("close",))


def test_windows_listener_is_exclusive_and_never_reuseaddr() -> None:
    made: list[RecordingSocket] = []

    def factory(*args: Any) -> Any:
        made.append(RecordingSocket(*args))
        return made[-1]

    bind_listener("127.0.0.1", 1519, platform="win32", factory=factory)
    calls = made[0].calls
    assert ("setsockopt", socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1) in calls
    assert not any(c[:3] == ("setsockopt", socket.SOL_SOCKET, socket.SO_REUSEADDR) for c in calls)
    assert calls.index(("setsockopt", socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1)) < calls.index(
        ("bind", ("127.0.0.1", 1519))
    )  # before bind, or it has no effect
    assert SO_EXCLUSIVEADDRUSE == getattr(socket, "SO_EXCLUSIVEADDRUSE", -5)  # ~4, winsock.h


def test_posix_listener_reuses_time_wait_only() -> None:
    assert listener_options("linux") == [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]


def test_a_second_listener_cannot_take_the_port() -> None:
    first = bind_listener("127.0.0.1", 0)
    first.listen(8)
    port = first.getsockname()[1]
    try:
        with pytest.raises(OSError):
            second = bind_listener("127.0.0.1", port)
            second.listen(8)
    finally:
        first.close()
