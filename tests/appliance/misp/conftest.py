"""Fixtures of the MISP tests: a fake MISP on loopback, a shared manual clock, a sync factory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.misp import MemoryIocSink, MispSettings, MispStorage, MispSync
from tests.fakemisp import DEFAULT_KEY, FakeMisp
from tests.support.clock import Clock

START = 1_795_824_000.0  # 2026-11-28T00:00:00Z


@pytest.fixture
def clock() -> Clock:
    return Clock(START + 8 * 3600)


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeMisp]:
    server = FakeMisp(clock=clock)
    with server:
        yield server
    assert server.violations == [], server.violations
    assert server.warnings == [], server.warnings


def base_settings(fake: FakeMisp, **overrides: Any) -> MispSettings:
    doc: dict[str, Any] = {
        "enabled": True,
        "url": fake.url,
        "api_key": DEFAULT_KEY,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "retry_backoff": 10.0,
        "retry_backoff_max": 60.0,
        "sighting_batch_delay": 0.0,
        "namespace": "3f1b6f5e-8a53-4c0e-9d0e-6b1f0c7c2a11",
    }
    doc.update(overrides)
    return MispSettings.from_dict(doc)


MakeSync = Callable[..., MispSync]


@pytest.fixture
def make_sync(tmp_path: Path, fake: FakeMisp, clock: Clock) -> Iterator[MakeSync]:
    """Build a MispSync over files in tmp_path; calling it again simulates a restart."""
    made: list[MispSync] = []
    sink = MemoryIocSink()

    def make(**overrides: Any) -> MispSync:
        storage = MispStorage.open(tmp_path / "misp")
        settings = base_settings(fake, **overrides)
        sync = MispSync(settings, storage, clock, sink=sink, artifacts_root=tmp_path / "artifacts")
        made.append(sync)
        return sync

    yield make
    for sync in made:
        sync.close()


def seed_event(
    fake: FakeMisp,
    attrs: list[tuple[str, str]],
    *,
    published: bool = True,
    to_ids: bool | None = None,
    tags: list[str] | None = None,
) -> Any:
    """An event with attributes; published after the attributes (as an analyst would)."""
    with fake.lock:
        ev = fake.model.create_event("seed IoCs", tags=tags)
        for mtype, value in attrs:
            fake.model.create_attribute(ev.id, mtype, value, to_ids=to_ids)
        if published:
            fake.model.publish(ev.id)
        return ev


def write_artifacts(
    root: Path,
    *,
    endpoint: str = "5a1e8b4c-0000-4000-8000-000000000001",
    event_hash: str = "f00d" * 10,
    files: dict[str, tuple[str, bytes]] | None = None,
    time: str = "2026-11-28T08:00:00Z",
    commands: int = 2,
    manifest_extra: dict[str, Any] | None = None,
) -> Path:
    """An artifact directory as the agent uploads it (docs/interfaces.md)."""
    directory = root / endpoint / "{8a3f0c1e-0000-0000-0000-000000000000}" / event_hash
    directory.mkdir(parents=True)
    event = {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "Computer": "WIN-HOST01",
                "TimeCreated": {"SystemTime": time},
            },
            "EventData": {"Image": "C:\\evil\\evil.exe"},
            "Detection": {"Signature": ["Mimikatz"], "Criticality": 10},
        }
    }
    (directory / "event.json").write_bytes(json.dumps(event).encode())
    report = {
        "processes": [{"pid": 4, "image": "System"}],
        "modules": [{"path": "a.dll"}],
        "drivers": [{"name": "d.sys"}],
        "connections": [],
        "commands": [
            {"name": f"cmd{i}", "args": ["-a"], "stdout": f"out {i}", "stderr": "", "error": ""}
            for i in range(commands)
        ],
    }
    (directory / "report.json").write_bytes(json.dumps(report).encode())
    listed = []
    for name, (kind, content) in (files or {}).items():
        (directory / name).write_bytes(content)
        listed.append({"name": name, "kind": kind, "sha256": "", "size": len(content)})
    manifest = {
        "endpoint": endpoint,
        "hostname": "WIN-HOST01",
        "process_guid": "{8a3f0c1e}",
        "event_hash": event_hash,
        "rule": ["Mimikatz"],
        "time": time,
        "files": listed,
    }
    manifest.update(manifest_extra or {})
    (directory / "manifest.json").write_bytes(json.dumps(manifest).encode())
    return directory
