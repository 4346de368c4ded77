"""Pure parsers of the Linux sources, fed with recorded kernel bytes and /proc text."""
# ruff: noqa: E501  (recorded /proc/net tables keep their kernel line layout)

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from agent.sources.fanotify import (
    FAN_CLOSE_WRITE,
    FAN_CREATE,
    FAN_EVENT_INFO_TYPE_DFID_NAME,
    parse_fd_events,
    parse_fid_events,
)
from agent.sources.netconn import inode_owners, parse_proc_net
from agent.sources.procconn import (
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    parse_proc_event,
)
from agent.sources.procfs import PidDirectory, read_proc


def _nl(what: int, body: bytes) -> bytes:
    payload = struct.pack("=IIQ", what, 1, 123456789) + body
    cn = struct.pack("=IIIIHH", 1, 1, 7, 0, len(payload), 0) + payload
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_proc_connector_messages() -> None:
    data = (
        _nl(PROC_EVENT_FORK, struct.pack("=IIII", 100, 100, 101, 101))
        + _nl(PROC_EVENT_EXEC, struct.pack("=II", 101, 101))
        + _nl(PROC_EVENT_EXIT, struct.pack("=IIIIII", 102, 101, 9, 17, 100, 100))
        + _nl(0x4, struct.pack("=IIII", 1, 1, 0, 0))
    )  # UID change: ignored
    events = parse_proc_event(data)
    assert [(e.what, e.pid, e.tgid) for e in events] == [
        (PROC_EVENT_FORK, 101, 101),
        (PROC_EVENT_EXEC, 101, 101),
        (PROC_EVENT_EXIT, 102, 101),
    ]
    assert events[0].parent_pid == 100 and events[2].exit_code == 9
    assert parse_proc_event(data[:20]) == []


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0F02000A:C5E8 07710CCB:01BB 01 00000000:00000000 02:000A2D26 00000000  1000        0 424242 2 0000000000000000 20 4 30 10 -1
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000F02000A:D431 0000000000000000FFFF000007710CCB:0050 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0
   1: B80D01200000000000000000010000000:0016 B80D01200000000000000000020000000:E0F1 01 00000000:00000000 00:00000000 00000000     0        0 6666 1 0
"""


def test_proc_net_rows() -> None:
    rows = parse_proc_net(TCP, "tcp", False)
    assert (rows[0].local_ip, rows[0].local_port, rows[0].state) == ("127.0.0.1", 3306, "0A")
    r = rows[1]
    assert (r.local_ip, r.local_port, r.remote_ip, r.remote_port) == (
        "10.0.2.15",
        50664,
        "203.12.113.7",
        443,
    )
    assert (r.uid, r.inode) == (1000, 424242)
    v6 = parse_proc_net(
        TCP6.replace(
            "B80D01200000000000000000010000000", "B80D0120000000000000000001000000"
        ).replace("B80D01200000000000000000020000000", "B80D0120000000000000000002000000"),
        "tcp",
        True,
    )
    assert (v6[0].local_ip, v6[0].remote_ip, v6[0].remote_port) == ("10.0.2.15", "203.12.113.7", 80)
    assert v6[1].local_ip == "2001:db8::1" and v6[1].remote_ip == "2001:db8::2"


def test_inode_owners_on_a_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "42" / "fd").mkdir(parents=True)
    os.symlink("socket:[424242]", tmp_path / "42" / "fd" / "3")
    os.symlink("/dev/null", tmp_path / "42" / "fd" / "0")
    (tmp_path / "self").mkdir()
    assert inode_owners(str(tmp_path)) == {424242: 42}


def _fd_meta(mask: int, fd: int, pid: int) -> bytes:
    return struct.pack("=IBBHQii", 24, 3, 0, 24, mask, fd, pid)


def test_fanotify_fd_records() -> None:
    buf = _fd_meta(FAN_CLOSE_WRITE, 7, 1234) + _fd_meta(0x20, 8, 99)
    assert parse_fd_events(buf) == [(FAN_CLOSE_WRITE, 7, 1234), (0x20, 8, 99)]


def test_fanotify_dfid_name_records() -> None:
    handle = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    name = b"new.txt\0"
    info_len = 4 + 8 + 8 + len(handle) + len(name)
    pad = (-info_len) % 4
    info = (
        struct.pack("=BBH", FAN_EVENT_INFO_TYPE_DFID_NAME, 0, info_len + pad)
        + b"\0" * 8
        + struct.pack("=Ii", len(handle), 1)
        + handle
        + name
        + b"\0" * pad
    )
    meta = struct.pack("=IBBHQii", 24 + len(info), 3, 0, 24, FAN_CREATE, -1, 777)
    (rec,) = parse_fid_events(meta + info)
    assert rec == (FAN_CREATE, 777, struct.pack("=i", 1) + handle, "new.txt")


def _fake_proc(root: Path, pid: int, ppid: int, start: int, exe: str) -> None:
    d = root / str(pid)
    d.mkdir()
    fields = ["S", str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 10
    (d / "stat").write_text(f"{pid} (my proc) " + " ".join(fields))
    (d / "cmdline").write_bytes(exe.encode() + b"\0--flag\0")
    (d / "status").write_text("Name:\tx\nUid:\t0\t0\t0\t0\n")
    os.symlink(exe, d / "exe")
    os.symlink("/tmp", d / "cwd")


def test_read_proc_and_pid_directory(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 50, 1, 777, "/usr/bin/python3")
    info = read_proc(50, str(tmp_path))
    assert info is not None
    assert (
        info.ppid,
        info.image,
        info.command_line,
        info.cwd,
        info.uid,
        info.user,
        info.start_ticks,
        info.comm,
    ) == (1, "/usr/bin/python3", "/usr/bin/python3 --flag", "/tmp", 0, "root", 777, "my proc")
    assert read_proc(51, str(tmp_path)) is None
    now = [0.0]
    pids = PidDirectory(
        "boot", linger=5, clock=lambda: now[0], reader=lambda pid: read_proc(pid, str(tmp_path))
    )
    first = pids.on_exec(50)
    again = pids.on_exec(50)  # re-exec of the same process: new GUID
    assert first is not None and again is not None
    assert first.guid != again.guid and again.exec_seq == 1
    assert pids.get(50) == again
    assert pids.on_exit(50) == again
    assert pids.get(50) == again  # lingers after exit for late events
    now[0] = 10.0
    pids.on_exit(999)  # expiry happens on the next exit
    assert 50 not in [p for p in pids._exited]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_kernel_message_parsers_never_raise_on_garbage(data: bytes) -> None:
    for parser in (parse_proc_event, parse_fd_events, parse_fid_events):
        out = parser(data)
        assert isinstance(out, list)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([FAN_CREATE, 0x200]),
            st.integers(1, 2**31 - 1),
            st.binary(min_size=1, max_size=24),
            st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=40),
        ),
        max_size=5,
    )
)
def test_fid_records_round_trip(records: list[tuple[int, int, bytes, str]]) -> None:
    buf = b""
    for mask, pid, handle, name in records:
        raw_name = name.encode() + b"\0"
        info_len = 4 + 8 + 8 + len(handle) + len(raw_name)
        pad = (-info_len) % 4
        info = (
            struct.pack("=BBH", FAN_EVENT_INFO_TYPE_DFID_NAME, 0, info_len + pad)
            + b"\0" * 8
            + struct.pack("=Ii", len(handle), 7)
            + handle
            + raw_name
            + b"\0" * pad
        )
        buf += struct.pack("=IBBHQii", 24 + len(info), 3, 0, 24, mask, -1, pid) + info
    assert parse_fid_events(buf) == [(m, p, struct.pack("=i", 7) + h, n) for m, p, h, n in records]


def test_wait_budget_caps_waiting_per_second() -> None:
    from agent.sources.procfs import WaitBudget

    now = [0.0]
    b = WaitBudget(per_second=0.05, clock=lambda: now[0])
    assert [b.take(0.02) for _ in range(4)] == [0.02, 0.02, pytest.approx(0.01), 0.0]
    now[0] = 1.0
    assert b.take(0.02) == 0.02
