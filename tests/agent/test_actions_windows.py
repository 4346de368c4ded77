"""Windows evidence actions on recorded inputs: bounded minidumps under the DbgHelp lock,
`(Default)` registry values (issue 26 point 9)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.actions.artifacts import ArtifactDir
from agent.actions.base import ActionContext, ActionSettings
from agent.actions.dumps import split_registry_path
from agent.actions.windump import DUMP_KINDS, dump_bounded, memdump_windows
from agent.errors import ActionError
from agent.host import make_host
from agent.tracking.tracker import Tracker

MiB = 1024 * 1024
# Minidump sizes by kind, as written for one powershell.exe (~900 MiB committed).
RECORDED_SIZES = {"full": 905 * MiB, "private": 212 * MiB, "normal": 3 * MiB}


class FakeDbgHelp:
    """Writes sparse files of the recorded size per MINIDUMP_TYPE; tracks concurrent calls."""

    def __init__(self, sizes: dict[str, int], delay: float = 0.0) -> None:
        self.by_flags = {flags: sizes[name] for name, flags in DUMP_KINDS}
        self.delay = delay
        self.inside = 0
        self.most_inside = 0
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, path: Path, flags: int) -> None:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.calls.append(flags)
        try:
            time.sleep(self.delay)  # a dump takes time; overlapping callers would show here
            with path.open("wb") as fh:
                fh.truncate(self.by_flags[flags])
        finally:
            with self._lock:
                self.inside -= 1


def _tmp(tmp_path: Path) -> Any:
    return lambda kind: tmp_path / f".{kind}.tmp"


def test_full_dump_when_it_fits(tmp_path: Path) -> None:
    dbghelp = FakeDbgHelp(RECORDED_SIZES)
    path, kind = dump_bounded(dbghelp, _tmp(tmp_path), limit=1024 * MiB, private_bytes=700 * MiB)
    assert kind == "full" and path.stat().st_size == 905 * MiB


def test_size_limit_picks_a_smaller_kind(tmp_path: Path) -> None:
    """The default 512 MiB limit (= the largest upload) against a 905 MiB full dump."""
    dbghelp = FakeDbgHelp(RECORDED_SIZES)
    path, kind = dump_bounded(dbghelp, _tmp(tmp_path), limit=512 * MiB, private_bytes=None)
    assert kind == "private" and path.stat().st_size <= 512 * MiB
    assert dbghelp.calls == [DUMP_KINDS[0][1], DUMP_KINDS[1][1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".private.tmp"]  # full one deleted
    # with the private bytes known up front the full dump is not even written
    dbghelp = FakeDbgHelp(RECORDED_SIZES)
    dump_bounded(
        dbghelp, lambda kind: tmp_path / f".{kind}.2.tmp", limit=512 * MiB, private_bytes=700 * MiB
    )
    assert dbghelp.calls == [DUMP_KINDS[1][1]]


def test_nothing_fits(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="even a normal minidump exceeds"):
        dump_bounded(FakeDbgHelp(RECORDED_SIZES), _tmp(tmp_path), limit=MiB, private_bytes=None)
    assert list(tmp_path.iterdir()) == []


def test_dbghelp_is_never_entered_twice_at_once(tmp_path: Path) -> None:
    dbghelp = FakeDbgHelp({"full": 10, "private": 10, "normal": 10}, delay=0.05)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            dump_bounded(
                dbghelp, lambda kind: tmp_path / f"{i}.{kind}", limit=MiB, private_bytes=None
            )
        except BaseException as ex:  # noqa: BLE001 - reported below
            errors.append(ex)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(dbghelp.calls) == 4 and dbghelp.most_inside == 1


def test_memdump_windows_registers_the_artifact(tmp_path: Path, config_factory: Any) -> None:
    config = config_factory(actions={"max_memdump_size": 512 * MiB})
    art = ArtifactDir(
        tmp_path / "art",
        process_guid="{G}",
        event_hash="f" * 40,
        endpoint="e",
        hostname="h",
        rule=["R"],
        ts=0.0,
    )
    image = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
    ctx = ActionContext(
        event={"Event": {"EventData": {}}},
        detection={},
        process_guid="{G}",
        pid=999_999,
        image=image,
        command_line="",
        artifacts=art,
        tracker=Tracker(),
        host=make_host(),
        settings=ActionSettings.from_config(config),
        clock=lambda: 1.0,
    )
    path = memdump_windows(ctx, write=FakeDbgHelp(RECORDED_SIZES))
    assert path.name == "powershell.exe_999999_1000000000_private.dmp"
    assert [(f.name, f.kind) for f in art.files()] == [(path.name, "memdump")]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # Sysmon 13 TargetObject of a key's default value
        (
            r"HKLM\SOFTWARE\Classes\CLSID\{0A29FF9E-7F9C-4437-8B11-F424491E3931}\InprocServer32\(Default)",
            (
                "HKEY_LOCAL_MACHINE",
                r"SOFTWARE\Classes\CLSID\{0A29FF9E-7F9C-4437-8B11-F424491E3931}\InprocServer32",
                "",
            ),
        ),
        (
            r"HKU\S-1-5-21-1-2-3-1001\Software\Microsoft\Windows\CurrentVersion\Run\Updater",
            (
                "HKEY_USERS",
                r"S-1-5-21-1-2-3-1001\Software\Microsoft\Windows\CurrentVersion\Run",
                "Updater",
            ),
        ),
    ],
)
def test_registry_path_of_a_default_value(target: str, expected: tuple[str, str, str]) -> None:
    assert split_registry_path(target) == expected
