"""Windows: make canary accesses reach the Security log as event 4663 (Builtin:CanaryAccessed).

4663 is written only when the "File System" audit subcategory is on *and* the file has a SACL
entry for the access; Windows sets neither by default. ``audit_canaries`` turns the subcategory
on (``auditpol``, by GUID: subcategory names are localized) and gives every canary a SACL that
audits successful read, write, append and delete by Everyone — the AccessMask bits 0x1, 0x2 and
0x4 the rule tests. Writing a SACL needs SeSecurityPrivilege, which the agent (LocalSystem)
holds but must enable. pywin32 is imported here, on Windows only; tests inject fakes.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any

__all__ = ["AUDITED_ACCESS", "FILE_SYSTEM_SUBCATEGORY", "audit_canaries", "auditpol_command"]

logger = logging.getLogger(__name__)

FILE_SYSTEM_SUBCATEGORY = "{0CCE921D-69AE-11D9-BED3-505054503030}"  # Object Access\File System
FILE_READ_DATA, FILE_WRITE_DATA, FILE_APPEND_DATA, DELETE = 0x1, 0x2, 0x4, 0x10000
AUDITED_ACCESS = FILE_READ_DATA | FILE_WRITE_DATA | FILE_APPEND_DATA | DELETE
EVERYONE = "S-1-1-0"

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), capture_output=True, timeout=60, check=False)


def auditpol_command() -> list[str]:
    return ["auditpol", "/set", f"/subcategory:{FILE_SYSTEM_SUBCATEGORY}", "/success:enable"]


def _enable_security_privilege(win32api: Any, win32security: Any) -> None:
    token = win32security.OpenProcessToken(
        win32api.GetCurrentProcess(),
        win32security.TOKEN_ADJUST_PRIVILEGES | win32security.TOKEN_QUERY,
    )
    luid = win32security.LookupPrivilegeValue(None, win32security.SE_SECURITY_NAME)
    win32security.AdjustTokenPrivileges(token, False, [(luid, win32security.SE_PRIVILEGE_ENABLED)])


def audit_canaries(paths: Iterable[PurePath], *, runner: Runner = _run) -> list[str]:
    """Audit policy on, and a SACL on every path; returns the errors (logged, not raised)."""
    errors: list[str] = []
    try:
        proc = runner(auditpol_command())
        if proc.returncode != 0:
            errors.append(
                f"auditpol failed ({proc.returncode}): "
                f"{proc.stderr.decode('utf-8', 'replace').strip()[:200]}"
            )
    except OSError as ex:
        errors.append(f"auditpol: {ex}")
    try:
        import win32api
        import win32security

        _enable_security_privilege(win32api, win32security)
        sacl = win32security.ACL()
        sacl.AddAuditAccessAceEx(
            win32security.ACL_REVISION_DS,
            0,
            AUDITED_ACCESS,
            win32security.ConvertStringSidToSid(EVERYONE),
            True,
            False,
        )
        for path in paths:
            try:
                win32security.SetNamedSecurityInfo(
                    str(path),
                    win32security.SE_FILE_OBJECT,
                    win32security.SACL_SECURITY_INFORMATION,
                    None,
                    None,
                    None,
                    sacl,
                )
            except Exception as ex:  # noqa: BLE001 - pywintypes.error: per file
                errors.append(f"SACL on {path}: {ex}")
    except Exception as ex:  # noqa: BLE001 - ImportError, pywintypes.error (privilege)
        errors.append(f"canary SACL: {ex}")
    for err in errors:
        logger.error("canary access auditing (Security 4663) not set: %s", err)
    return errors
