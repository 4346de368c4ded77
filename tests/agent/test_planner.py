"""Action planning (pure) and the runner's behaviour with recorded Windows detections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.actions import ACTION_ORDER, ActionSettings, band_of, plan_actions
from agent.actions.dumps import filedump_candidates, regdump, split_registry_path
from agent.actions.runner import ActionRunner, Job
from agent.host import make_host
from agent.tracking.tracker import Tracker

ALL = list(ACTION_ORDER)


def plan(requested: list[str], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "allowed": ALL,
        "tracked": True,
        "act_on_untracked": False,
        "done_for_process": 0,
        "max_per_process": 4,
    }
    args.update(kw)
    return plan_actions(requested, **args)


@pytest.mark.parametrize(
    ("crit", "band"),
    [
        (0, None),
        (1, "low"),
        (4, "low"),
        (5, "medium"),
        (7, "medium"),
        (8, "high"),
        (9, "high"),
        (10, "critical"),
        (11, None),
        (-3, None),
    ],
)
def test_bands(crit: int, band: str | None) -> None:
    assert band_of(crit) == band


def test_order_is_suspend_dump_kill() -> None:
    p = plan(["kill", "report", "memdump", "filedump", "blacklist", "kill"])
    assert p.run == ("blacklist", "memdump", "filedump", "report", "kill")
    assert not p.skipped


def test_opt_in_actions_are_skipped_unless_allowed() -> None:
    p = plan(["kill", "memdump", "filedump"], allowed=["filedump", "report"])
    assert p.run == ("filedump",)
    assert dict(p.skipped) == {"kill": "not allowed", "memdump": "not allowed"}


def test_unknown_action_and_memdump_once() -> None:
    p = plan(["explode", "memdump"], memory_dumped=True)
    assert p.run == () and not p
    assert dict(p.skipped) == {"explode": "unknown action", "memdump": "memory already dumped"}


def test_per_process_limit_gates_every_action_including_kill() -> None:
    p = plan(["kill", "filedump"], done_for_process=4)
    assert p.run == ()
    assert {r for _, r in p.skipped} == {"per-process limit"}
    assert plan(["kill"], done_for_process=3).run == ("kill",)


def test_untracked_processes_need_opt_in() -> None:
    assert plan(["filedump"], tracked=False).run == ()
    assert plan(["filedump"], tracked=False, act_on_untracked=True).run == ("filedump",)


WIN_EVENT = {
    "Event": {
        "System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 13},
        "EventData": {
            "ProcessGuid": "{11111111-2222-3333-4444-555555555555}",
            "ProcessId": "4242",
            "Image": r"C:\Windows\regedit.exe",
            "TargetObject": r"HKLM\SOFTWARE\Evil\Blob",
            "Details": "Binary Data",
            "EventType": "SetValue",
        },
    }
}


def test_windows_job_runs_planned_actions_and_writes_manifest(
    tmp_path: Path, config_factory: Any
) -> None:
    config = config_factory(actions={"allowed": ["regdump", "brief", "filedump"]})
    tracker = Tracker()
    host = make_host(hostname="DESKTOP")
    calls: list[str] = []
    registry = {
        "regdump": regdump,
        "brief": lambda ctx: calls.append("brief"),
        "filedump": lambda ctx: calls.append("filedump"),
    }
    runner = ActionRunner(
        config=config,
        tracker=tracker,
        host=host,
        root=tmp_path / "art",
        registry=registry,
        clock=lambda: 1700000000.0,
    )
    det = {"Signature": ["RegBlob"], "Criticality": 6, "Actions": ["regdump", "brief"]}
    p = plan_actions(
        det["Actions"] + ["filedump", "kill"],
        allowed=config.actions.allowed,
        tracked=False,
        act_on_untracked=True,
        done_for_process=0,
        max_per_process=4,
    )
    assert p.run == ("filedump", "regdump", "brief")
    art = runner.run_job(
        Job(
            WIN_EVENT,
            det,
            p,
            "ab" * 20,
            "{11111111-2222-3333-4444-555555555555}",
            4242,
            r"C:\Windows\regedit.exe",
            "regedit",
        )
    )
    assert calls == ["filedump", "brief"]
    assert art.path == tmp_path / "art" / "11111111-2222-3333-4444-555555555555" / ("ab" * 20)
    manifest = art.manifest()
    assert {f["kind"] for f in manifest["files"]} == {"event", "regdump"}
    assert manifest["rule"] == ["RegBlob"] and manifest["time"].startswith("2023-11-14T22:13:20")
    assert runner.stats.runs == {"filedump": 1, "regdump": 1, "brief": 1}


def test_windows_registry_path_split_and_filedump_candidates(
    tmp_path: Path, config_factory: Any
) -> None:
    assert split_registry_path(r"HKLM\SOFTWARE\Evil\Blob") == (
        "HKEY_LOCAL_MACHINE",
        r"SOFTWARE\Evil",
        "Blob",
    )
    from agent.actions.artifacts import ArtifactDir
    from agent.actions.base import ActionContext

    exe = tmp_path / "payload.exe"
    exe.write_bytes(b"MZ\x90\x00")
    rel = tmp_path / "stage.ps1"
    rel.write_text("x")
    event = {
        "Event": {
            "EventData": {
                "Image": str(exe),
                "CurrentDirectory": str(tmp_path),
                "CommandLine": f'"{exe}" -run stage.ps1 missing.txt',
                "ParentImage": r"C:\Windows\explorer.exe",
            }
        }
    }
    ctx = ActionContext(
        event=event,
        detection={},
        process_guid="g",
        pid=1,
        image=str(exe),
        command_line="",
        artifacts=ArtifactDir(
            tmp_path / "a",
            process_guid="g",
            event_hash="h",
            endpoint="",
            hostname="",
            rule=[],
            ts=0.0,
        ),
        tracker=Tracker(),
        host=make_host(),
        settings=ActionSettings.from_config(config_factory()),
        clock=lambda: 0.0,
    )
    assert filedump_candidates(ctx) == [str(exe), str(rel)]
