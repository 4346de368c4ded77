"""linux-ebpf without the kernel: record and DNS decoding, and the fallback decision."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from agent.host import make_host
from agent.service import build_agent
from agent.sources import FALLBACK, build_sources
from agent.sources.ebpf import sensor as sensor_mod
from agent.sources.ebpf.dns import parse_message, sysmon_results
from agent.sources.ebpf.records import EV, HEADER, decode, ip_text
from tests.agent.conftest import ROOT, make_config


def _record(etype: int, fields: list[bytes], fixed: bytes = b"\0" * 40, flags: int = 0) -> bytes:
    lens = [len(f) for f in fields] + [0] * (4 - len(fields))
    head = HEADER.pack(
        etype,
        42,
        43,
        1,
        10**9,
        5 * 10**9,
        10**8,
        1,
        0,
        1000,
        1000,
        0,
        1000,
        b"true\0" + b"\0" * 11,
        fixed,
        flags,
        *lens,
    )
    return head + b"".join(fields)


def test_decode_exec_record() -> None:
    rec = decode(_record(EV.EXEC, [b"/usr/bin/true\0", b"/tmp\0", b"/bin/true\0a b\0"], flags=2))
    assert (rec.type, rec.pid, rec.ppid, rec.start, rec.seq, rec.uid, rec.euid) == (
        EV.EXEC,
        42,
        1,
        5 * 10**9,
        1,
        1000,
        0,
    )
    assert rec.comm == "true" and rec.flags == 2
    assert rec.text(0) == "/usr/bin/true" and rec.text(1) == "/tmp"
    assert rec.fields[2].split(b"\0") == [b"/bin/true", b"a b", b""]


def test_decode_rejects_truncated_records() -> None:
    raw = _record(EV.EXEC, [b"/usr/bin/true\0"])
    with pytest.raises(ValueError, match="overruns"):
        decode(raw[:-3])
    with pytest.raises(ValueError, match="header"):
        decode(raw[:20])


def test_network_fixed_part() -> None:
    mapped = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])
    fixed = struct.pack("<4H16s16s", 10, 6, 5555, 443, mapped, bytes(15) + b"\x01")
    rec = decode(_record(EV.CONNECT, [], fixed=fixed))
    family, proto, lport, rport, laddr, raddr = rec.net
    assert (family, proto, lport, rport) == (10, 6, 5555, 443)
    assert ip_text(family, laddr) == "10.0.0.1"  # v4-mapped shown as IPv4
    assert ip_text(family, raddr) == "::1"
    assert ip_text(2, bytes([192, 168, 1, 2]) + bytes(12)) == "192.168.1.2"


def _answer() -> bytes:
    # id 0x1234, response, 2 answers: CNAME www.evil.com -> cdn.evil.com (compressed), A 1.2.3.4
    q = b"\x03www\x04evil\x03com\x00" + struct.pack(">HH", 1, 1)
    cname = b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 60, 6) + b"\x03cdn\xc0\x10"
    a = b"\xc0\x2a" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([1, 2, 3, 4])
    return struct.pack(">6H", 0x1234, 0x8180, 1, 2, 0, 0) + q + cname + a


def test_dns_answer_with_compression() -> None:
    msg = parse_message(_answer())
    assert msg is not None
    assert (msg.id, msg.response, msg.rcode, msg.qname, msg.qtype) == (
        0x1234,
        True,
        0,
        "www.evil.com",
        1,
    )
    assert msg.answers == [(5, "cdn.evil.com"), (1, "1.2.3.4")]
    assert sysmon_results(msg.answers) == "type:  5 cdn.evil.com;::ffff:1.2.3.4;"
    framed = struct.pack(">H", len(_answer())) + _answer()  # TCP framing
    assert parse_message(framed, tcp=True) == msg
    # a UDP message whose id happens to equal its length - 2 is not mistaken for TCP framing
    raw = bytearray(_answer())
    raw[0:2] = struct.pack(">H", len(raw) - 2)
    udp = parse_message(bytes(raw))
    assert udp is not None and udp.qname == "www.evil.com"


@pytest.mark.parametrize(
    "raw", [b"", b"\x00" * 11, _answer()[:20], struct.pack(">6H", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c"]
)
def test_dns_malformed_is_none(raw: bytes) -> None:
    assert parse_message(raw) is None


def test_missing_object_falls_back_with_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensor_mod, "OBJECT_PATH", tmp_path / "none.bpf.o")
    monkeypatch.setattr(sensor_mod, "_why_not", lambda: "heron.bpf.o was not built (test)")
    config = make_config(tmp_path, sources={"enabled": ["linux-ebpf"]})
    host = make_host()
    sources = build_sources(config, host)
    assert [s.name for s in sources] == FALLBACK
    assert host.sensor == {"mode": "proc", "reason": "heron.bpf.o was not built (test)"}
    agent = build_agent(config, sources=sources, host=host)
    assert agent.status()["sensor"] == {
        "mode": "proc",
        "reason": "heron.bpf.o was not built (test)",
    }


@pytest.mark.live
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="needs root on Linux"
)
def test_fallback_without_bpf_capabilities(tmp_path: Path) -> None:
    """Root without CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN: the /proc sources run, the reason is told."""
    if not sensor_mod.OBJECT_PATH.is_file():
        pytest.skip("heron.bpf.o not built")
    code = textwrap.dedent(f"""
        import json
        from agent.config import parse_config
        from agent.service import build_agent
        cfg = parse_config({{"general": {{"data_dir": {str(tmp_path)!r}}}}})
        agent = build_agent(cfg)
        print(json.dumps({{"sources": [s.name for s in agent.sources],
                           "sensor": agent.status()["sensor"]}}))
    """)
    drop = "-bpf,-perfmon,-sys_admin"
    out = subprocess.run(
        ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    import json

    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["sources"] == FALLBACK
    assert doc["sensor"]["mode"] == "proc"
    assert "Operation not permitted" in doc["sensor"]["reason"]
    assert "eBPF sensor unavailable" in out.stderr


@pytest.mark.live
def test_ebpf_mode_in_status(tmp_path: Path) -> None:
    """With eBPF loaded (root, BTF), the status says so and lists the programs."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        pytest.skip("needs root on Linux")
    config = make_config(tmp_path, sources={"enabled": ["linux-ebpf"]})
    host = replace(make_host(), agent_pid=os.getpid())
    sources = build_sources(config, host)
    if host.sensor.get("mode") != "ebpf":
        pytest.skip(f"eBPF unavailable here: {host.sensor.get('reason')}")
    try:
        assert [s.name for s in sources] == ["linux-ebpf"]
        status = build_agent(config, sources=sources, host=host).status()
        assert status["sensor"]["mode"] == "ebpf"
        assert status["sensor"]["losses"] == {}
    finally:
        for s in sources:
            s.sensor.close()  # type: ignore[attr-defined]


def test_cli_status_shows_the_sensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    monkeypatch.setattr(sensor_mod, "_why_not", lambda: "the kernel has no BTF (test)")
    config = make_config(tmp_path, sources={"enabled": ["linux-ebpf"]})
    host = make_host()
    agent = build_agent(config, sources=build_sources(config, host), host=host)
    agent._write_status()
    (tmp_path / "config.toml").write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n')
    assert main(["status", "-c", str(tmp_path / "config.toml")]) == 0
    out = capsys.readouterr().out
    assert "sensor: proc  (fallback: the kernel has no BTF (test))" in out
    assert "linux-proc" in out
