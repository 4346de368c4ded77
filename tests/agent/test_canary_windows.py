"""Windows canaries: Security 4663 needs the audit policy and a SACL (issue 26 point 9)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path, PureWindowsPath
from typing import Any

import pytest

from agent.canary_audit import AUDITED_ACCESS, FILE_SYSTEM_SUBCATEGORY, audit_canaries
from agent.pipeline import event_pid


class FakeWin32Security:
    """The pywin32 calls audit_canaries makes, recorded (names and constants as in pywin32)."""

    TOKEN_ADJUST_PRIVILEGES, TOKEN_QUERY = 0x20, 0x8
    SE_SECURITY_NAME, SE_PRIVILEGE_ENABLED = "SeSecurityPrivilege", 0x2
    ACL_REVISION_DS, SE_FILE_OBJECT, SACL_SECURITY_INFORMATION = 4, 1, 8

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on

        class ACL:
            def __init__(self) -> None:
                self.aces: list[tuple[Any, ...]] = []

            def AddAuditAccessAceEx(self, *args: Any) -> None:
                self.aces.append(args)

        self.ACL = ACL
        self.module = types.ModuleType("win32security")
        for name in dir(self):
            if not name.startswith("_") and name not in ("calls", "fail_on", "module"):
                setattr(self.module, name, getattr(self, name))

    def OpenProcessToken(self, process: Any, access: int) -> str:
        self.calls.append(("OpenProcessToken", access))
        return "token"

    def LookupPrivilegeValue(self, system: Any, name: str) -> str:
        return f"luid({name})"

    def AdjustTokenPrivileges(self, token: str, disable: bool, privs: list[Any]) -> None:
        self.calls.append(("AdjustTokenPrivileges", token, disable, privs))

    def ConvertStringSidToSid(self, sid: str) -> str:
        return f"sid({sid})"

    def SetNamedSecurityInfo(
        self,
        path: str,
        kind: int,
        info: int,
        owner: Any,
        group: Any,
        dacl: Any,
        sacl: Any,
    ) -> None:
        if path == self.fail_on:
            raise OSError(5, "SetNamedSecurityInfo", "Access is denied.")
        self.calls.append(
            ("SetNamedSecurityInfo", path, kind, info, owner, group, dacl, list(sacl.aces))
        )


def _install(monkeypatch: pytest.MonkeyPatch, sec: FakeWin32Security) -> None:
    api = types.ModuleType("win32api")
    api.GetCurrentProcess = lambda: -1  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "win32api", api)
    monkeypatch.setitem(sys.modules, "win32security", sec.module)


def test_audit_policy_and_sacl_for_every_canary(monkeypatch: pytest.MonkeyPatch) -> None:
    sec = FakeWin32Security()
    _install(monkeypatch, sec)
    ran: list[list[str]] = []

    def runner(argv: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    paths = [
        PureWindowsPath(r"C:\Users\Public\Documents\passwords.xlsx"),
        PureWindowsPath(r"C:\Users\bob\Desktop\passwords.xlsx"),
    ]
    assert audit_canaries(paths, runner=runner) == []
    assert ran == [
        ["auditpol", "/set", f"/subcategory:{FILE_SYSTEM_SUBCATEGORY}", "/success:enable"]
    ]
    assert (
        "AdjustTokenPrivileges",
        "token",
        False,
        [("luid(SeSecurityPrivilege)", 0x2)],
    ) in sec.calls  # before any SACL is written
    sacls = [c for c in sec.calls if c[0] == "SetNamedSecurityInfo"]
    assert [c[1] for c in sacls] == [str(p) for p in paths]
    for c in sacls:
        assert c[2:7] == (1, 8, None, None, None)  # file object, SACL only: DACL untouched
        # revision, no inheritance flags, mask, Everyone, audit success, not failure
        assert c[7] == [(4, 0, AUDITED_ACCESS, "sid(S-1-1-0)", True, False)]
    assert AUDITED_ACCESS & 0x7 == 0x7  # the AccessMask bits Builtin:CanaryAccessed tests


def test_audit_errors_are_returned_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    sec = FakeWin32Security(fail_on=r"C:\locked\a.txt")
    _install(monkeypatch, sec)

    def runner(argv: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 87, b"", b"Error 0x00000057")

    errors = audit_canaries(
        [PureWindowsPath(r"C:\locked\a.txt"), PureWindowsPath(r"C:\b.txt")], runner=runner
    )
    assert len(errors) == 2 and "auditpol failed (87)" in errors[0]
    assert "Access is denied" in errors[1]
    assert [c[1] for c in sec.calls if c[0] == "SetNamedSecurityInfo"] == [r"C:\b.txt"]


def test_security_event_pids_are_hex() -> None:
    assert event_pid({"ProcessId": "0x10cc"}) == 4300  # Security 4663 (recorded)
    assert event_pid({"ProcessId": "4242"}) == 4242 and event_pid({"ProcessId": 4242}) == 4242
    assert event_pid({}) == 0 and event_pid({"ProcessId": "-"}) == 0


def test_canaries_are_audited_only_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import canary, canary_audit
    from agent.config import CanaryConfig

    seen: list[list[str]] = []
    monkeypatch.setattr(
        canary_audit,
        "audit_canaries",
        lambda paths, **kw: seen.append([str(p) for p in paths]) or [],
    )
    config = CanaryConfig(enable=True, directories=[str(tmp_path)], files=["a.txt"])
    monkeypatch.setattr(sys, "platform", "linux")
    canary.create_canaries(config)
    assert seen == []
    monkeypatch.setattr(sys, "platform", "win32")
    canary.create_canaries(config)
    assert seen == [[str(tmp_path / "a.txt")]]
