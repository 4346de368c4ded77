"""Process tracker: tree, ancestors, statistics, bounded memory, report views."""

from __future__ import annotations

from typing import Any

from agent.tracking.hooks import HookContext, run_hooks
from agent.tracking.tracker import ModuleInfo, Tracker

CH = "Linux-Sysmon/Operational"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(eid: int, **data: str) -> dict[str, Any]:
    return {"Event": {"System": {"Channel": CH, "EventID": eid}, "EventData": dict(data)}}


def ctx(tracker: Tracker, ts: float = 0.0) -> HookContext:
    return HookContext(tracker, None, lambda pid: "N/A", ts)


def spawn(tracker: Tracker, guid: str, pid: int, parent: str, image: str) -> None:
    run_hooks(
        ctx(tracker),
        event(
            1,
            ProcessGuid=guid,
            ProcessId=str(pid),
            ParentProcessGuid=parent,
            Image=image,
            CommandLine=image,
            User="root",
            IntegrityLevel="High",
        ),
        enrich=False,
    )


def test_tree_ancestors_and_enrichment() -> None:
    t = Tracker()
    spawn(t, "{A}", 1, "?", "/sbin/init")
    spawn(t, "{B}", 2, "{A}", "/bin/bash")
    spawn(t, "{C}", 3, "{B}", "/usr/bin/curl")
    assert t.get("C").ancestors == ["/sbin/init", "/bin/bash"]  # type: ignore[union-attr]
    assert t.by_pid(3).guid == "{C}"  # type: ignore[union-attr]
    e = event(1, ProcessGuid="{D}", ProcessId="4", ParentProcessGuid="{C}", Image="/bin/sh")
    run_hooks(ctx(t), e, enrich=True)
    data = e["Event"]["EventData"]
    assert data["Ancestors"] == "/sbin/init|/bin/bash|/usr/bin/curl"
    assert data["ParentUser"] == "root" and data["ParentIntegrityLevel"] == "High"
    assert [p["pid"] for p in t.tree("{B}")] == [1, 2, 3, 4]
    assert t.get("{A}").create_count == 1  # type: ignore[union-attr]


def test_stats_connections_dns_files_and_enrich_any() -> None:
    t = Tracker()
    spawn(t, "{P}", 10, "?", "/usr/bin/python3")
    c = ctx(t, ts=5.0)
    run_hooks(
        c,
        event(
            22, ProcessGuid="{P}", QueryName="x.test", QueryResults="::ffff:192.0.2.1;192.0.2.2;"
        ),
        enrich=False,
    )
    for port in ("443", "443", "80"):
        run_hooks(
            c,
            event(
                3,
                ProcessGuid="{P}",
                DestinationIp="192.0.2.1",
                DestinationPort=port,
                DestinationHostname="x.test",
            ),
            enrich=False,
        )
    for name in ("/tmp/a.txt", "/tmp/b.sh", "/tmp/c.txt"):
        run_hooks(c, event(11, ProcessGuid="{P}", TargetFilename=name), enrich=False)
    run_hooks(c, event(23, ProcessGuid="{P}", TargetFilename="/tmp/a.txt"), enrich=False)
    e = event(11, ProcessGuid="{P}", TargetFilename="/tmp/d.txt")
    run_hooks(c, e, enrich=True)
    track = t.get("{P}")
    assert track is not None
    assert track.dns == {"192.0.2.1": {"x.test": 1}, "192.0.2.2": {"x.test": 1}}
    conn = track.connections["192.0.2.1"]
    assert conn["ports"] == {"443": 2, "80": 1} and conn["resolved"] == {"x.test": 3}
    assert track.file_create_count == 4 and track.file_create_by_ext == {".txt": 3, ".sh": 1}
    assert track.file_delete_count == 1
    data = e["Event"]["EventData"]
    assert data["Count"] == "4" and data["CountByExt"] == "3" and data["Extension"] == ".txt"
    assert data["CommandLine"] == "/usr/bin/python3" and data["ProcessThreatScore"] == "0"
    d = track.to_dict()
    assert d["statistics"]["files"]["last-accessed"][:2] == ["/tmp/a.txt", "/tmp/b.sh"]
    assert len(d["statistics"]["files"]["last-accessed"]) == 50


def test_terminated_tracks_are_freed_after_ttl_once_children_exit() -> None:
    clock = Clock()
    t = Tracker(terminated_ttl=10, clock=clock)
    spawn(t, "{A}", 1, "?", "/a")
    spawn(t, "{B}", 2, "{A}", "/b")
    run_hooks(ctx(t), event(5, ProcessGuid="{A}"), enrich=False)
    clock.now += 11
    assert t.free_expired() == 0  # live child keeps the parent
    run_hooks(ctx(t), event(5, ProcessGuid="{B}"), enrich=False)
    assert t.free_expired() == 1  # A: no live child any more; B: terminated < ttl ago
    assert "{B}" in t and "{A}" not in t
    clock.now += 11
    assert t.free_expired() == 1
    assert len(t) == 0 and t.by_pid(1) is None


def test_track_count_is_capped_oldest_terminated_first() -> None:
    t = Tracker(max_tracks=100)
    for i in range(50):
        spawn(t, f"{{T{i}}}", i, "?", "/x")
    for i in range(10):
        t.terminate(f"{{T{i}}}")
    for i in range(50, 150):
        spawn(t, f"{{T{i}}}", i, "?", "/x")
    assert len(t) == 100
    assert all(f"{{T{i}}}" not in t for i in range(10))  # terminated ones went first
    t.trim(10)
    assert len(t) == 10


def test_modules_drivers_and_scores() -> None:
    t = Tracker(modules_per_process=3)
    spawn(t, "{M}", 7, "?", r"C:\w\app.exe")
    for i in range(5):
        t.add_module("{M}", ModuleInfo(f"C:\\w\\m{i}.dll"), float(i))
    t.add_module("{M}", ModuleInfo(r"C:\w\m4.dll"), 9.0)
    run_hooks(
        ctx(t),
        event(
            7,
            ProcessGuid="{M}",
            ImageLoaded=r"C:\w\app.exe",
            Signed="true",
            Signature="Acme",
            SignatureStatus="Valid",
        ),
        enrich=False,
    )
    run_hooks(ctx(t), event(6, ImageLoaded=r"C:\w\drv.sys", Signed="false"), enrich=False)
    track = t.get("{M}")
    assert track is not None and len(track.modules) == 3
    assert track.modules[r"C:\w\m4.dll"].load_count == 2
    assert track.signature == "Acme" and track.signed == "true"
    assert [d["image"] for d in t.driver_list()] == [r"C:\w\drv.sys"]
    t.add_score("{M}", ["A", "B"], 4)
    t.add_score("{M}", ["A"], 3)
    assert track.score == 7 and track.score_signatures == {"A": 2, "B": 1}
    assert len(t.modules()) == 3
    assert t.snapshot()["{M}"]["threat-score"] == {"signatures": {"A": 2, "B": 1}, "score": 7}


def test_seed_from_psutil_builds_a_tree_with_this_process() -> None:
    import os

    from agent.tracking.seed import seed_from_psutil

    t = Tracker()
    assert seed_from_psutil(t) > 1
    me = t.by_pid(os.getpid())
    assert me is not None and me.parent_guid != "?"
    assert t.get(me.parent_guid) is not None and me.ancestors
