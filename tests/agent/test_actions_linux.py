"""Evidence actions on this host: Linux memdump format, filedump, report commands, hashing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pefile
import pytest

from agent.actions.artifacts import ArtifactDir, verify
from agent.actions.base import ActionContext, ActionSettings
from agent.actions.dumps import MEMDUMP_MAGIC, filedump, memdump
from agent.actions.report import build_report, linux_modules, run_commands
from agent.config import ReportCommand, ReportingConfig
from agent.host import make_host
from agent.tracking.hashes import FileHasher
from agent.tracking.tracker import Tracker

linux_root = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="needs root on Linux"
)
PE = Path(pefile.__file__).parent / "pip" / "_vendor" / "distlib" / "t64.exe"


def _ctx(
    tmp_path: Path,
    config: Any,
    pid: int,
    image: str,
    event_data: dict[str, str],
    tracker: Tracker | None = None,
) -> ActionContext:
    host = make_host()
    info = host.pids.get(pid)
    guid = info.guid if info else "{G}"
    art = ArtifactDir(
        tmp_path / "art",
        process_guid=guid,
        event_hash="f" * 40,
        endpoint="e",
        hostname="h",
        rule=["R"],
        ts=0.0,
    )
    return ActionContext(
        event={"Event": {"EventData": event_data}},
        detection={},
        process_guid=guid,
        pid=pid,
        image=image,
        command_line="",
        artifacts=art,
        tracker=tracker if tracker is not None else Tracker(),
        host=host,
        settings=ActionSettings.from_config(config),
        clock=lambda: 1.0,
    )


@linux_root
def test_linux_memdump_format(tmp_path: Path, config_factory: Any) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        config = config_factory(actions={"max_memdump_size": 64 * 1024 * 1024})
        tracker = Tracker()
        ctx = _ctx(tmp_path, config, child.pid, "/usr/bin/sleep", {}, tracker)
        tracker.create(ctx.process_guid, child.pid)
        memdump(ctx)
        memdump(ctx)  # once per GUID
        (entry,) = [f for f in ctx.artifacts.files() if f.kind == "memdump"]
        raw = (ctx.artifacts.path / entry.name).read_bytes()
        assert raw.startswith(MEMDUMP_MAGIC)
        header_end = raw.index(b"\n", len(MEMDUMP_MAGIC))
        header = json.loads(raw[len(MEMDUMP_MAGIC) : header_end])
        body = raw[header_end + 1 :]
        assert header["pid"] == child.pid and not header["truncated"]
        assert len(body) == sum(r["size"] for r in header["regions"])
        first = next(
            r
            for r in header["regions"]
            if r["path"].endswith("sleep") and int(r["offset"], 16) == 0
        )
        assert body[first["data_offset"] : first["data_offset"] + 4] == b"\x7fELF"
        assert all("r" == r["perms"][0] for r in header["regions"])
        assert verify(ctx.artifacts.path) == []
    finally:
        child.kill()
        child.wait()


@linux_root
def test_linux_memdump_respects_the_size_cap(tmp_path: Path, config_factory: Any) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        ctx = _ctx(
            tmp_path,
            config_factory(actions={"max_memdump_size": 10000}),
            child.pid,
            "/usr/bin/sleep",
            {},
        )
        memdump(ctx)
        (entry,) = ctx.artifacts.files()
        raw = (ctx.artifacts.path / entry.name).read_bytes()
        header = json.loads(raw[len(MEMDUMP_MAGIC) : raw.index(b"\n", len(MEMDUMP_MAGIC))])
        assert header["truncated"] and sum(r["size"] for r in header["regions"]) <= 10000
    finally:
        child.kill()
        child.wait()


def test_filedump_copies_referenced_files_once(tmp_path: Path, config_factory: Any) -> None:
    payload = tmp_path / "drop" / "evil.sh"
    payload.parent.mkdir()
    payload.write_bytes(b"#!/bin/sh\necho pwned\n")
    twin = tmp_path / "drop" / "copy.sh"
    twin.write_bytes(payload.read_bytes())
    big = tmp_path / "drop" / "big.bin"
    big.write_bytes(b"x" * 2048)
    config = config_factory(actions={"max_file_size": 1024})
    ctx = _ctx(
        tmp_path,
        config,
        os.getpid(),
        "/bin/sh",
        {
            "Image": "/nonexistent/sh",
            "TargetFilename": str(payload),
            "CommandLine": f"sh {twin} {big}",
            "CurrentDirectory": str(tmp_path),
        },
    )
    filedump(ctx)
    dumps = [f for f in ctx.artifacts.files() if f.kind == "filedump"]
    assert len(dumps) == 1  # same sha256 once; big file skipped
    assert dumps[0].sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert dumps[0].name == "1000000000_evil.sh.bin"


def test_report_commands_with_timeouts_and_osquery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "osqueryi"
    fake.write_text("#!/bin/sh\necho '[{\"table\": \"'$3'\"}]'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    cfg = ReportingConfig(
        timeout=5,
        osquery_tables=["processes", "services"],
        commands=[
            ReportCommand(name="sh", args=["-c", "sleep 5"], timeout=0.3, description="slow"),
            ReportCommand(name="no-such-tool-heron"),
            ReportCommand(name="sh", args=["-c", "echo not-json"], expect_json=True),
            ReportCommand(name="sh", args=["-c", "echo out; echo err >&2; exit 3"]),
        ],
    )
    results = run_commands(cfg)
    assert [r["stdout"] for r in results[:2]] == [[{"table": "processes"}], [{"table": "services"}]]
    assert results[2]["error"] == "timeout after 0.3s"
    assert results[3]["error"] == "no-such-tool-heron: not found"
    assert results[4]["error"].startswith("invalid JSON")
    assert (results[5]["stdout"], results[5]["stderr"], results[5]["error"]) == (
        "out\n",
        "err\n",
        "exit status 3",
    )


def test_brief_report_and_linux_modules() -> None:
    tracker = Tracker()
    tracker.create("{ME}", os.getpid(), image=sys.executable)
    report = build_report(tracker, commands=False, guid="{ME}")
    assert [p["pid"] for p in report["tree"]] == [os.getpid()]
    assert report["commands"] == [] and report["start-timestamp"] <= report["stop-timestamp"]
    if sys.platform.startswith("linux"):
        images = {m["image"] for m in report["modules"]}
        assert os.path.realpath(sys.executable) in images
        assert any(".so" in i for i in images)
        assert linux_modules([999_999_999]) == []


def test_hashes_and_imphash_with_pefile(tmp_path: Path) -> None:
    hasher = FileHasher(max_size=10 * 1024 * 1024, cache_size=2)
    got = hasher.hash_file(str(PE))
    assert got is not None
    data = PE.read_bytes()
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.md5 == hashlib.md5(data).hexdigest()
    pe = pefile.PE(str(PE))
    assert got.imphash == pe.get_imphash() and len(got.imphash) == 32
    assert got.sysmon().startswith(f"SHA1={got.sha1.upper()},MD5=")
    assert f"IMPHASH={got.imphash.upper()}" in got.sysmon()
    assert hasher.hash_file(str(PE)) is got and hasher.hits == 1
    text = tmp_path / "t.txt"
    text.write_text("hello")
    assert hasher.hash_file(str(text)).imphash == ""  # type: ignore[union-attr]
    assert FileHasher(max_size=3).hash_file(str(text)) is None
    assert hasher.hash_file(str(tmp_path / "missing")) is None
    hasher.hash_file(str(tmp_path))  # a directory is not hashed
    assert len(hasher._cache) == 2


HASHES = "SHA1=AB12,MD5=CD34,SHA256=EF56,IMPHASH=0000"


def test_sysmon_archive_filedump_and_clipboard(tmp_path: Path, config_factory: Any) -> None:
    from agent.service import build_agent
    from agent.sinks import MemorySink

    archive = tmp_path / "Sysmon"
    archive.mkdir()
    (archive / "AB12CD34EF560000.exe").write_bytes(b"MZ archived copy")
    (archive / "CLIP-AB12CD34EF560000").write_bytes("secret p4ss".encode("utf-16-le"))
    config = config_factory(
        tracking={"sysmon_archive_dir": str(archive)}, general={"log_all": True}
    )
    deleted = {
        "Event": {
            "System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 23},
            "EventData": {
                "TargetFilename": r"C:\Users\bob\evil.exe",
                "Hashes": HASHES,
                "Archived": "true",
            },
        }
    }
    ctx = _ctx(tmp_path, config, os.getpid(), "x", deleted["Event"]["EventData"])
    ctx = ActionContext(**{**{f: getattr(ctx, f) for f in ctx.__slots__}, "event": deleted})
    filedump(ctx)
    (dump,) = ctx.artifacts.files()
    assert (ctx.artifacts.path / dump.name).read_bytes() == b"MZ archived copy"
    sink = MemorySink()
    agent = build_agent(config, sources=[], sinks=[sink])
    clip = {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 24,
                "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
            },
            "EventData": {"Hashes": HASHES, "ProcessGuid": "{X}"},
        }
    }
    agent.process(clip, live=True)
    assert sink.events[-1]["Event"]["EventData"]["ClipboardData"] == "secret p4ss"
    agent.close()
