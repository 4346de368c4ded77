"""Command channel (poll, burst, durable results) and artifact upload (chunks, resume, limits)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from agent.link.poller import CommandPoller
from agent.link.sysinfo import SysInfoReporter, collect
from agent.link.transport import MemoryTransport, Response
from agent.link.upload import Uploader

from .fakemanager import FakeManager


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_command_round_trip_and_burst_polling(tmp_path: Path) -> None:
    mgr, clock = FakeManager(), Clock()
    p = CommandPoller(
        MemoryTransport(mgr), tmp_path, clock=clock, interval=5, burst_interval=0.5, burst_window=30
    )
    assert p.poll_once() is None and p.next_interval() == 5
    target = tmp_path / "f.txt"
    target.write_bytes(b"abc")
    mgr.commands.append({"id": "c-1", "name": "hash", "args": [str(target)]})
    res = p.poll_once()
    assert res is not None and res.error == ""
    assert mgr.results[0]["id"] == "c-1"
    assert mgr.results[0]["json"]["hashes"]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert p.next_interval() == 0.5
    clock.t += 31
    assert p.next_interval() == 5


def test_result_survives_manager_outage_and_restart(tmp_path: Path) -> None:
    mgr = FakeManager()
    mgr.commands.append({"id": "c/2", "name": "stat", "args": ["/"]})
    mgr.result_status = 503
    p = CommandPoller(MemoryTransport(mgr), tmp_path)
    p.poll_once()
    assert mgr.results == [] and len(list((tmp_path / "results").glob("*.json"))) == 1
    mgr.result_status = 200
    p2 = CommandPoller(MemoryTransport(mgr), tmp_path)  # agent restarted
    assert p2.poll_once() is None
    assert mgr.results[0]["id"] == "c/2" and not list((tmp_path / "results").glob("*"))


def test_malformed_command_is_ignored(tmp_path: Path) -> None:
    mgr = FakeManager()
    mgr.commands.append({"nope": 1})
    assert CommandPoller(MemoryTransport(mgr), tmp_path).poll_once() is None


def artifact(root: Path, name: str, data: bytes, manifest: bool = True) -> Path:
    d = root / "{guid-1}" / ("ab" * 20)
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)
    if manifest:
        (d / "manifest.json").write_text(json.dumps({"files": [name]}))
    return d


def test_chunked_upload_verified_and_deleted(tmp_path: Path) -> None:
    mgr = FakeManager()
    data = os.urandom(2500)
    d = artifact(tmp_path, "proc.dmp", data)
    up = Uploader(MemoryTransport(mgr), tmp_path, chunk_size=1000)
    st = up.run_once()
    assert st.files == 2 and st.chunks == 4
    assert mgr.files[("{guid-1}", "ab" * 20, "proc.dmp")] == data
    assert not d.exists()  # deleted only after acceptance, empty dirs pruned


def test_upload_resumes_after_interruption(tmp_path: Path) -> None:
    mgr = FakeManager()
    data = os.urandom(3500)
    artifact(tmp_path, "big.bin", data)
    up = Uploader(MemoryTransport(mgr), tmp_path, chunk_size=1000)
    mgr.fail_upload_at = 3
    st = up.run_once()
    assert st.failed == 1 and mgr.files == {}
    sent: list[int] = []
    orig = mgr._post_upload_dumps

    def spy(req):
        sent.append(json.loads(req.body)["chunk"])
        return orig(req)

    mgr._post_upload_dumps = spy  # type: ignore[method-assign]
    Uploader(MemoryTransport(mgr), tmp_path, chunk_size=1000).run_once()  # after a restart
    assert sent[:2] == [3, 4]  # resumed at the chunk that failed
    assert mgr.files[("{guid-1}", "ab" * 20, "big.bin")] == data


def test_oversize_artifact_reported_not_dropped(tmp_path: Path, caplog) -> None:
    mgr, reports = FakeManager(), []
    d = artifact(tmp_path, "huge.dmp", b"x" * 5000)
    up = Uploader(MemoryTransport(mgr), tmp_path, max_size=4000, report=reports.append)
    st = up.run_once()
    assert st.skipped_too_large == 1 and (d / "huge.dmp").exists()
    assert reports[0]["Size"] == 5000 and "upload limit" in caplog.text
    assert up.run_once().skipped_too_large == 0  # reported once


def test_unsettled_dir_without_manifest_waits(tmp_path: Path) -> None:
    mgr = FakeManager()
    artifact(tmp_path, "a.bin", b"1", manifest=False)
    clock = Clock()
    clock.t = 1e10
    fresh = Uploader(MemoryTransport(mgr), tmp_path, settle=300, clock=lambda: 0.0)
    assert fresh.ready_dirs() == []
    assert len(Uploader(MemoryTransport(mgr), tmp_path, clock=clock).ready_dirs()) == 1


def test_sysinfo_posted_only_when_changed(tmp_path: Path) -> None:
    mgr = FakeManager()
    doc = {"os": {"name": "x"}}
    rep = SysInfoReporter(MemoryTransport(mgr), tmp_path / "s.sha", collector=lambda: dict(doc))
    assert rep.run_once() and not rep.run_once()
    doc["os"] = {"name": "y"}
    assert rep.run_once() and len(mgr.sysinfo) == 2
    mgr.up = False
    doc["os"] = {"name": "z"}
    assert not rep.run_once()
    real = collect("h1")
    assert real["network"]["hostname"] == "h1" and {"edr", "os", "cpu", "error"} <= set(real)


def test_oversized_result_is_slimmed_not_stuck(tmp_path: Path) -> None:
    mgr = FakeManager()
    orig = mgr._post_commands

    def limited(req):
        if len(req.body) > 1000:
            return Response(413, b"too large")
        return orig(req)

    mgr._post_commands = limited  # type: ignore[method-assign]
    mgr.commands.append({"id": "big", "name": "walk", "args": [str(Path(__file__).parents[2])]})
    mgr.commands.append({"id": "small", "name": "stat", "args": ["/"]})
    p = CommandPoller(MemoryTransport(mgr), tmp_path)
    p.poll_once()
    p.poll_once()
    p.flush_results()
    ids = [r["id"] for r in mgr.results]
    assert ids == ["big", "small"]
    assert "result too large" in mgr.results[0]["error"]


def test_tools_synchronised_by_sha256(tmp_path: Path) -> None:
    from agent.link.tools import ToolSync

    mgr = FakeManager()
    mgr.tools["osqueryi"] = b"#!/bin/sh\necho '[]'\n"
    sync = ToolSync(MemoryTransport(mgr), tmp_path / "tools", os_name="linux")
    assert sync.run_once() == {"osqueryi": "updated"}
    tool = tmp_path / "tools" / "osqueryi"
    assert tool.read_bytes() == mgr.tools["osqueryi"] and os.access(tool, os.X_OK)
    assert sync.run_once() == {"osqueryi": "unchanged"}
    mgr.tools["osqueryi"] = b"#!/bin/sh\necho v2\n"
    assert sync.run_once() == {"osqueryi": "updated"}
    orig = mgr._get_tools

    def tampered(req):
        resp = orig(req)
        if "binary=true" in req.path:
            doc = json.loads(resp.body)
            doc["osqueryi"]["binary"] = "dGFtcGVyZWQ="
            return Response(200, json.dumps(doc).encode())
        return resp

    mgr._get_tools = tampered  # type: ignore[method-assign]
    mgr.tools["osqueryi"] = b"v3"
    assert sync.run_once() == {"osqueryi": "error: sha256 mismatch"}
    assert tool.read_bytes() == b"#!/bin/sh\necho v2\n"  # the old copy is kept


def test_containment_never_waits_behind_a_slow_command(tmp_path: Path) -> None:
    import threading

    from rules import wire

    mgr = FakeManager()
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def runner(cmd: wire.Command, ctx: object) -> wire.CommandResult:
        if cmd.name == "report":
            started.set()
            assert release.wait(20)
        ran.append(cmd.name)
        return wire.CommandResult(id=cmd.id)

    p = CommandPoller(MemoryTransport(mgr), tmp_path, runner=runner)
    mgr.commands += [
        {"id": "slow", "name": "report", "args": []},
        {"id": "fast", "name": "contain", "args": []},
    ]
    assert p.poll_once(background=True) is None  # handed to the worker
    assert started.wait(10)
    res = p.poll_once(background=True)  # contain runs now, while the report still runs
    assert res is not None and res.id == "fast" and ran == ["contain"]
    assert [r["id"] for r in mgr.results] == ["fast"]
    release.set()
    assert p.wait_backlog(10)
    p.flush_results()
    assert ran == ["contain", "report"] and {r["id"] for r in mgr.results} == {"fast", "slow"}
