"""The link under disk trouble and crashes: full tmpfs, read-only `link status`, supervision."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import orjson

from agent.link.config import LinkConfig
from agent.link.health import HEALTH_DISK
from agent.link.link import Link
from agent.link.segments import Lane
from agent.link.spool import Spool
from agent.link.supervisor import HEALTH_THREAD_CRASH
from agent.link.transport import MemoryTransport
from tests.agent.tmpfs import fill, small_tmpfs

from .fakemanager import FakeManager
from .test_link import sysmon_event


def lines_of(root: Path) -> list[bytes]:
    out: list[bytes] = []
    for lane in ("detections", "events"):
        for p in sorted((root / lane).iterdir()):
            out += p.read_bytes().splitlines(keepends=True)
    return out


def test_full_disk_drops_whole_records_counts_and_logs_once(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="agent.link.spool")
    with small_tmpfs(tmp_path / "mnt", "512k") as mnt:
        spool = Spool(mnt / "queue", fsync_interval=0.0)
        for i in range(5):
            spool.submit(sysmon_event("/bin/a", i))
        filler = fill(mnt)
        big = sysmon_event("/bin/" + "x" * 3000, 0)
        for i in range(200):  # never raises, whatever the disk says
            spool.submit(sysmon_event("/bin/a", 100 + i) if i % 2 else big)
        st = spool.stats()
        assert st.disk_state == "full" and st.disk_dropped > 0
        assert st.queued_events == 5 + 200 - st.disk_dropped
        for line in lines_of(mnt / "queue"):  # every record on disk is whole
            assert line.endswith(b"\n")
            orjson.loads(line)
        full_logs = [r for r in caplog.records if "data disk full" in r.getMessage()]
        assert len(full_logs) == 1 and not any(r.exc_info for r in caplog.records)
        filler.unlink()
        spool.submit(sysmon_event("/bin/a", 999))
        st2 = spool.stats()
        assert st2.disk_state == "ok" and st2.disk_dropped == st.disk_dropped
        recovered = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
        assert recovered == [
            f"data disk recovered: {st.disk_dropped} events dropped since "
            + recovered[0].rsplit("since ", 1)[1]
        ]
        batch = spool.next_batch(force=True)
        assert batch is not None and batch.lane is Lane.DETECTIONS
        health = orjson.loads(batch.data.splitlines()[-1])["Event"]
        assert health["System"]["EventID"] == HEALTH_DISK
        assert health["EventData"]["DroppedEvents"] == st.disk_dropped
        spool.close()
        reopened = Spool(mnt / "queue")  # the queue is intact after a restart
        assert reopened.stats().queued_events == st2.queued_events
        reopened.close()


def test_full_disk_evicts_oldest_bulk_to_keep_new_events(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt", "256k") as mnt:
        spool = Spool(mnt / "queue", segment_bytes=16 << 10, fsync_interval=0.0)
        n = 0
        while spool.stats().evicted_events == 0 and n < 5000:  # the queue cap never applies
            spool.submit(sysmon_event("/bin/" + "y" * 200, n))
            n += 1
        for i in range(20):
            spool.submit(
                {
                    **sysmon_event("/bin/d", i),
                    "Event": {
                        **sysmon_event("/bin/d", i)["Event"],
                        "Detection": {"Signature": ["S"]},
                    },
                }
            )
        st = spool.stats()
        assert st.evicted_events > 0 and st.disk_dropped == 0
        got = []
        while (b := spool.next_batch(force=True)) is not None:
            got += [orjson.loads(x) for x in b.data.splitlines()]
            spool.ack(b)
        dets = [e for e in got if e["Event"].get("Detection")]
        assert len(dets) == 20
        nums = [
            e["Event"]["EventData"]["ProcessId"]
            for e in got
            if not e["Event"].get("Detection") and e["Event"]["System"]["Channel"] != "Heron-Agent"
        ]
        assert nums[-1] == str(1000 + n - 1)  # the newest bulk event survived
        spool.close()


def test_min_free_bytes_evicts_before_the_disk_fills(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt", "1m") as mnt:
        spool = Spool(mnt / "queue", segment_bytes=16 << 10, min_free_bytes=600 << 10)
        for i in range(3000):
            spool.submit(sysmon_event("/bin/" + "z" * 200, i))
        st = spool.stats()
        assert st.evicted_events > 0 and st.disk_dropped == 0 and st.disk_state == "ok"
        assert os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize > 400 << 10
        reported = 0
        while (b := spool.next_batch(force=True)) is not None:
            if b.lane is Lane.DETECTIONS:
                reported += sum(
                    orjson.loads(x)["Event"]["EventData"]["DroppedEvents"]
                    for x in b.data.splitlines()
                )
            spool.ack(b)
        assert reported == st.evicted_events  # every eviction reported to the manager
        spool.close()


def test_link_status_is_read_only_during_forwarding(tmp_path: Path, capsys) -> None:
    from agent.cli import main

    mgr = FakeManager()
    cfg = LinkConfig(batch_delay=0.05, drain_on_stop=5.0, segment_events=50)
    link = Link(cfg, tmp_path / "s", transport_factory=lambda: MemoryTransport(mgr))
    link.start()
    stop = threading.Event()
    sent = [0]

    def produce() -> None:
        while not stop.is_set():
            link.submit(sysmon_event("/bin/p", sent[0]))
            sent[0] += 1
            time.sleep(0.0005)  # pacing (the behaviour): a steady producer, not a wait

    t = threading.Thread(target=produce)
    t.start()
    try:
        for _ in range(15):
            assert main(["link", "status", "--state-dir", str(tmp_path / "s")]) == 0
            out = json.loads(capsys.readouterr().out)
            assert out["queue"]["events"] >= 0
            assert not list((tmp_path / "s" / "queue").glob("*/*.tmp"))
    finally:
        stop.set()
        t.join()
    link.stop()
    st = link.status()
    assert st["queue"]["lost_segments"] == 0
    assert st["threads"]["forwarder"]["restarts"] == 0
    got = sorted(int(e["Event"]["EventData"]["ProcessId"]) - 1000 for e in mgr.events())
    assert got == list(range(sent[0]))  # every event delivered exactly once


def test_crashing_forwarder_is_restarted_visible_and_reported(tmp_path: Path, caplog) -> None:
    mgr = FakeManager()
    cfg = LinkConfig(batch_delay=0.0, drain_on_stop=1.0)
    link = Link(cfg, tmp_path / "s", transport_factory=lambda: MemoryTransport(mgr))
    real_run = link.forwarder.run
    crashes = [0]

    def crashing_run() -> None:
        if crashes[0] == 0:
            crashes[0] += 1
            raise RuntimeError("boom in the forwarder")
        real_run()

    link.forwarder.run = crashing_run  # type: ignore[method-assign]
    link.submit(sysmon_event("/bin/a", 1))
    link.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        e["Event"]["System"]["EventID"] == HEALTH_THREAD_CRASH for e in mgr.events()
    ):
        time.sleep(0.05)
    st = link.status()
    link.stop()
    assert st["threads"]["forwarder"]["restarts"] == 1
    assert st["threads"]["forwarder"]["last_error"] == "RuntimeError: boom in the forwarder"
    crash = [e for e in mgr.events() if e["Event"]["System"]["EventID"] == HEALTH_THREAD_CRASH]
    assert crash and crash[0]["Event"]["EventData"]["Thread"] == "forwarder"
    assert any(e["Event"]["EventData"].get("Image") == "/bin/a" for e in mgr.events())


def test_forwarder_survives_unexpected_errors_in_its_loop(tmp_path: Path, caplog) -> None:
    mgr = FakeManager()
    link = Link(
        LinkConfig(batch_delay=0.0, backoff_base=0.01, backoff_cap=0.05, drain_on_stop=1.0),
        tmp_path / "s",
        transport_factory=lambda: MemoryTransport(mgr),
    )
    real_step = link.forwarder.step
    fails = [0]

    def flaky_step() -> float:
        if fails[0] < 30:
            fails[0] += 1
            raise FileNotFoundError(2, "No such file or directory", "x.open")
        return real_step()

    link.forwarder.step = flaky_step  # type: ignore[method-assign]
    link.submit(sysmon_event("/bin/a", 7))
    link.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not mgr.events():
        time.sleep(0.02)
    link.stop()
    assert [e["Event"]["EventData"]["ProcessId"] for e in mgr.events()] == ["1007"]
    errors = [r for r in caplog.records if "forwarder error" in r.getMessage()]
    assert len(errors) == 1  # one line per distinct error, not one per retry
    assert link.status()["threads"]["forwarder"]["restarts"] == 0


def test_vanished_segment_is_counted_and_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "q", segment_events=2)
    for i in range(6):
        spool.submit(sysmon_event("/bin/a", i))
    first = sorted((tmp_path / "q" / "events").glob("*.seg"))[0]
    first.unlink()
    b = spool.next_batch(force=True)
    assert b is not None and b.count == 2
    assert orjson.loads(b.data.splitlines()[0])["Event"]["EventData"]["ProcessId"] == "1002"
    assert spool.stats().lost_segments == 1
    spool.close()
