"""Action runner under load: response first, bounded evidence, budgets, de-duplication, caps."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from agent.actions.artifacts import ArtifactDir
from agent.actions.base import ActionContext, ActionSettings
from agent.actions.budget import ArtifactStore, RuleLimiter, parse_rule_limits
from agent.actions.dumps import filedump
from agent.actions.planner import Plan
from agent.actions.report import cap_report
from agent.actions.runner import ActionRunner, Job
from agent.host import make_host
from agent.tracking.tracker import Tracker
from tests.support.waiting import wait_for

GUID = "{11111111-2222-3333-4444-555555555555}"


def _job(actions: tuple[str, ...], *, rule: str = "R", n: int = 0) -> Job:
    event = {"Event": {"EventData": {"ProcessGuid": GUID, "ProcessId": "4242", "N": n}}}
    return Job(event, {"Signature": [rule]}, Plan(actions), f"{n:040x}", GUID, 4242, "/tmp/x", "x")


def _runner(
    tmp_path: Path, config_factory: Any, registry: dict[str, Any], **actions: Any
) -> ActionRunner:
    config = config_factory(actions=actions)
    return ActionRunner(
        config=config, tracker=Tracker(), host=make_host(), root=tmp_path / "art", registry=registry
    )


def test_kill_runs_while_evidence_workers_are_stuck(tmp_path: Path, config_factory: Any) -> None:
    release = threading.Event()
    started = threading.Event()
    killed: list[bool] = []  # per kill: was the evidence worker still stuck when it ran?

    def slow_report(ctx: ActionContext) -> None:
        started.set()
        release.wait()  # stuck until the test ends (set in `finally`)

    registry = {"report": slow_report, "kill": lambda ctx: killed.append(not release.is_set())}
    runner = _runner(
        tmp_path, config_factory, registry, workers=1, queue_size=4, max_per_rule_hour=0
    )
    runner.start()
    try:
        for i in range(8):  # 1 running + 4 queued + 3 dropped
            runner.submit(_job(("report",), n=i))
        assert started.wait(60)
        assert runner.submit(_job(("report", "kill"), n=99))
        wait_for(lambda: killed, 60, "the kill (it must not wait behind the stuck evidence worker)")
        assert killed == [True]  # it ran while the worker was stuck: a condition, not a margin
        st = runner.status()
        assert st["dropped_actions"] == {"report": 4}  # 3 report-only jobs + the kill's report
        assert st["runs"]["kill"] == 1
    finally:
        release.set()
        assert runner.wait_idle(20)
        runner.stop()


def test_memdump_of_a_killed_process_is_skipped(tmp_path: Path, config_factory: Any) -> None:
    ran: list[str] = []
    registry = {n: (lambda ctx, n=n: ran.append(n)) for n in ("memdump", "report", "kill")}
    runner = _runner(tmp_path, config_factory, registry)
    runner.start()
    try:
        runner.submit(_job(("memdump", "report", "kill")))
        assert runner.wait_idle(10)
    finally:
        runner.stop()
    assert sorted(ran) == ["kill", "report"]
    assert runner.status()["skipped"] == {"memdump: process killed first": 1}


def test_rule_rate_limit_is_per_rule_sliding_hour_and_counted(
    tmp_path: Path, config_factory: Any
) -> None:
    now = [1000.0]
    lim = RuleLimiter(2, {"Noisy": 1}, clock=lambda: now[0])
    assert lim.allow(["Noisy"]) and not lim.allow(["Noisy"])
    assert lim.allow(["Other"]) and lim.allow(["Other"]) and not lim.allow(["Other"])
    assert lim.allow(["Noisy", "Fresh"])  # any rule with room lets the job through
    now[0] += 3600
    assert lim.allow(["Noisy"])
    assert parse_rule_limits(["A=3", "B.c=0"]) == {"A": 3, "B.c": 0}

    ran: list[str] = []
    runner = _runner(
        tmp_path,
        config_factory,
        {"brief": lambda ctx: ran.append("brief")},
        max_per_rule_hour=3,
        rule_limits=["Quiet=1"],
    )
    runner.start()
    try:
        for i in range(5):
            runner.submit(_job(("brief",), rule="Loud", n=i))
            runner.submit(_job(("brief",), rule="Quiet", n=100 + i))
        assert runner.wait_idle(10)
    finally:
        runner.stop()
    assert len(ran) == 4
    assert runner.status()["budget"]["rate_limited"] == {"Loud": 2, "Quiet": 4}
    # live from a pushed configuration
    runner.configure(config_factory(actions={"max_per_rule_hour": 0}))
    assert runner.limiter.allow(["Loud"])


def test_artifact_quota_evicts_uploaded_first_then_skips(tmp_path: Path) -> None:
    root = tmp_path / "art"
    old = root / "g1" / "h1"
    old.mkdir(parents=True)
    (old / "dump.bin").write_bytes(b"x" * 4000)
    (old / ".uploaded").write_text("")
    pending = root / "g2" / "h2"
    pending.mkdir(parents=True)
    (pending / "dump.bin").write_bytes(b"y" * 3000)
    store = ArtifactStore(root, quota_bytes=5000, quota_per_hour=0)
    assert store.admit(["filedump"])  # 7000 > 5000: the uploaded dir goes, 3000 left
    assert not old.exists() and pending.exists()
    assert store.stats.evicted_dirs == 1 and store.stats.evicted_bytes == 4000
    store.added(2500)  # 5500: nothing uploaded left to evict
    assert not store.admit(["filedump", "report"])
    assert store.stats.over_quota == {"filedump": 1, "report": 1}
    hourly = ArtifactStore(tmp_path / "other", quota_bytes=0, quota_per_hour=100)
    hourly.added(60)
    assert hourly.admit(["report"])
    hourly.added(60)
    assert not hourly.admit(["report"])


def test_filedump_is_deduplicated_across_the_store(tmp_path: Path, config_factory: Any) -> None:
    payload = tmp_path / "tmpdir" / "build-tool"
    payload.parent.mkdir()
    payload.write_bytes(b"\x7fELF" + b"z" * 100_000)
    config = config_factory()
    root = tmp_path / "art"
    store = ArtifactStore(root, quota_bytes=0, quota_per_hour=0)
    host = make_host()

    def run(n: int) -> ArtifactDir:
        art = ArtifactDir(
            root,
            process_guid=f"g{n}",
            event_hash=f"h{n}",
            endpoint="",
            hostname="",
            rule=[],
            ts=0.0,
            on_write=store.added,
        )
        ctx = ActionContext(
            event={"Event": {"EventData": {"Image": str(payload)}}},
            detection={},
            process_guid=f"g{n}",
            pid=1,
            image=str(payload),
            command_line="",
            artifacts=art,
            tracker=Tracker(),
            host=host,
            settings=ActionSettings.from_config(config),
            clock=lambda: 1.0,
            store=store,
        )
        filedump(ctx)
        return art

    first = run(1)
    copies = [f for f in first.files() if f.kind == "filedump"]
    assert len(copies) == 1 and (first.path / copies[0].name).stat().st_size == 100_004
    for n in (2, 3):
        again = run(n)
        assert [f.kind for f in again.files()] == ["fileref"]
        refs = json.loads((again.path / "filerefs.json").read_text())
        assert refs == [
            {
                "path": str(payload),
                "sha256": copies[0].sha256,
                "size": 100_004,
                "ref": f"g1/h1/{copies[0].name}",
            }
        ]
    assert store.stats.dedup_refs == 2 and store.stats.dedup_bytes_saved == 200_008
    # a restarted agent rebuilds the index from the manifests
    fresh = ArtifactStore(root, quota_bytes=0, quota_per_hour=0)
    assert fresh.known(copies[0].sha256) == f"g1/h1/{copies[0].name}"


def test_report_lists_are_capped_with_lengths_and_the_tree_kept_first() -> None:
    tree = [{"pid": 7, "process-guid": "{AA}"}]
    report: dict[str, Any] = {
        "tree": tree,
        "processes": [{"pid": i, "process-guid": f"{{{i}}}"} for i in range(50)]
        + [{"pid": 7, "process-guid": "{AA}"}],
        "connections": [{"pid": i, "process_guid": ""} for i in range(30)]
        + [{"pid": 7, "process_guid": "{AA}"}],
        "modules": [{"image": str(i)} for i in range(5)],
        "dns": {f"{{{i}}}": {} for i in range(20)},
    }
    cap_report(report, 10, "{AA}")
    assert len(report["processes"]) == 10 and report["processes"][0]["pid"] == 7
    assert report["connections"][0]["pid"] == 7
    assert len(report["modules"]) == 5
    assert report["truncated"] == {
        "processes": {"kept": 10, "total": 51},
        "connections": {"kept": 10, "total": 31},
        "dns": {"kept": 10, "total": 20},
    }
