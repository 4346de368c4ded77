"""Linux audit logs (`/var/log/audit/audit.log`, raw or ENRICHED) → Heron events.

One event per audit record (line), as Sigma's auditd rules see them: channel `Linux-Audit`,
`EventID` the numeric record type (`EXECVE` → 1309), `Computer` the `node=` prefix, the time
and serial of `msg=audit(TIME:SERIAL)` as `SystemTime` and `EventRecordID`, and every `key=value`
field in `EventData` with `type`. Values auditd hex-encodes because they may hold spaces or
control characters (`proctitle`, `EXECVE` arguments, `name`, `exe`, `comm`, `cwd`, `cmd`) are
decoded (NULs of `proctitle` become spaces); quotes are removed. ENRICHED logs append the
translated fields after a `\\x1d` separator; they are kept with an upper-case name (`UID`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["parse_line", "iter_audit", "CHANNEL", "RECORD_TYPES"]

CHANNEL = "Linux-Audit"
# linux/audit.h and libaudit's user-space record types
RECORD_TYPES = {
    "LOGIN": 1006,
    "USER_AUTH": 1100,
    "USER_ACCT": 1101,
    "USER_MGMT": 1102,
    "CRED_ACQ": 1103,
    "CRED_DISP": 1104,
    "USER_START": 1105,
    "USER_END": 1106,
    "USER_AVC": 1107,
    "USER_CHAUTHTOK": 1108,
    "USER_ERR": 1109,
    "CRED_REFRESH": 1110,
    "USYS_CONFIG": 1111,
    "USER_LOGIN": 1112,
    "USER_LOGOUT": 1113,
    "ADD_USER": 1114,
    "DEL_USER": 1115,
    "ADD_GROUP": 1116,
    "DEL_GROUP": 1117,
    "DAC_CHECK": 1118,
    "CHGRP_ID": 1119,
    "TEST": 1120,
    "TRUSTED_APP": 1121,
    "USER_SELINUX_ERR": 1122,
    "USER_CMD": 1123,
    "USER_TTY": 1124,
    "CHUSER_ID": 1125,
    "GRP_AUTH": 1126,
    "SYSTEM_BOOT": 1127,
    "SYSTEM_SHUTDOWN": 1128,
    "SYSTEM_RUNLEVEL": 1129,
    "SERVICE_START": 1130,
    "SERVICE_STOP": 1131,
    "GRP_MGMT": 1132,
    "GRP_CHAUTHTOK": 1133,
    "DAEMON_START": 1200,
    "DAEMON_END": 1201,
    "DAEMON_ABORT": 1202,
    "DAEMON_CONFIG": 1203,
    "DAEMON_ROTATE": 1205,
    "DAEMON_RESUME": 1206,
    "SYSCALL": 1300,
    "PATH": 1302,
    "IPC": 1303,
    "SOCKETCALL": 1304,
    "CONFIG_CHANGE": 1305,
    "SOCKADDR": 1306,
    "CWD": 1307,
    "EXECVE": 1309,
    "IPC_SET_PERM": 1311,
    "MQ_OPEN": 1312,
    "MQ_SENDRECV": 1313,
    "MQ_NOTIFY": 1314,
    "MQ_GETSETATTR": 1315,
    "KERNEL_OTHER": 1316,
    "FD_PAIR": 1317,
    "OBJ_PID": 1318,
    "TTY": 1319,
    "EOE": 1320,
    "BPRM_FCAPS": 1321,
    "CAPSET": 1322,
    "MMAP": 1323,
    "NETFILTER_PKT": 1324,
    "NETFILTER_CFG": 1325,
    "SECCOMP": 1326,
    "PROCTITLE": 1327,
    "FEATURE_CHANGE": 1328,
    "REPLACE": 1329,
    "KERN_MODULE": 1330,
    "FANOTIFY": 1331,
    "TIME_INJOFFSET": 1332,
    "TIME_ADJNTPVAL": 1333,
    "BPF": 1334,
    "EVENT_LISTENER": 1335,
    "URINGOP": 1336,
    "OPENAT2": 1337,
    "AVC": 1400,
    "SELINUX_ERR": 1401,
    "MAC_POLICY_LOAD": 1403,
    "MAC_STATUS": 1404,
    "MAC_CONFIG_CHANGE": 1405,
    "ANOM_PROMISCUOUS": 1700,
    "ANOM_ABEND": 1701,
    "ANOM_LINK": 1702,
    "ANOM_CREAT": 1703,
    "INTEGRITY_DATA": 1800,
    "ANOM_LOGIN_FAILURES": 2100,
    "ANOM_LOGIN_TIME": 2101,
    "ANOM_LOGIN_SESSIONS": 2102,
    "ANOM_LOGIN_ACCT": 2103,
    "ANOM_LOGIN_LOCATION": 2104,
    "ANOM_MAX_DAC": 2105,
    "ANOM_MAX_MAC": 2106,
    "RESP_ANOMALY": 2200,
    "CRYPTO_KEY_USER": 2404,
    "CRYPTO_SESSION": 2405,
    "VIRT_CONTROL": 2500,
    "VIRT_RESOURCE": 2501,
    "VIRT_MACHINE_ID": 2502,
}
_HEAD = re.compile(r"^(?:node=(\S+) )?type=(\S+) msg=audit\((\d+)(?:\.(\d+))?:(\d+)\):\s?")
_FIELD = re.compile(r'([\w-]+)=("[^"]*"|\'[^\']*\'|\S*)')
_HEXED = frozenset(
    (
        "proctitle",
        "name",
        "exe",
        "comm",
        "cwd",
        "cmd",
        "path",
        "data",
        "old-path",
        "new-path",
        "argv",
        "file",
        "ocomm",
        "acct",
        "grp",
        "new_group",
    )
)
_UNKNOWN_TYPE = re.compile(r"^UNKNOWN\[(\d+)\]$")


def _unhex(key: str, value: str, record_type: str) -> str:
    """Decode an unquoted hex-encoded string field; other values are returned unchanged."""
    if not (key in _HEXED or (record_type == "EXECVE" and key[:1] == "a" and key[1:].isdigit())):
        return value
    if len(value) < 2 or len(value) % 2 or value == "(null)":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return value
    text = raw.decode("utf-8", errors="replace")
    return text.replace("\0", " ").rstrip() if key == "proctitle" else text


def _fields(text: str, record_type: str, out: dict[str, Any]) -> None:
    for m in _FIELD.finditer(text):
        key, value = m.group(1), m.group(2)
        if value[:1] in ("'", '"'):
            value = value[1:-1]
            if key == "msg" and "=" in value:  # user-space records nest their fields in msg='…'
                _fields(value, record_type, out)
                continue
        else:
            value = _unhex(key, value, record_type)
        out[key] = value


def parse_line(line: str) -> dict[str, Any] | None:
    """One audit record → `{"Event": {...}}`, or None when the line is not an audit record."""
    m = _HEAD.match(line)
    if m is None:
        return None
    node, record_type, secs, frac, serial = m.groups()
    body, _, enriched = line[m.end() :].rstrip("\r\n").partition("\x1d")
    data: dict[str, Any] = {"type": record_type}
    _fields(body, record_type, data)
    if enriched:
        extra: dict[str, Any] = {}
        _fields(enriched, "", extra)
        for key, value in extra.items():
            data.setdefault(key, value)
    unknown = _UNKNOWN_TYPE.match(record_type)
    event_id = int(unknown.group(1)) if unknown else RECORD_TYPES.get(record_type, 0)
    when = datetime.fromtimestamp(int(secs), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = (frac or "").rstrip("0")
    system = {
        "Provider": {"Name": "auditd"},
        "EventID": str(event_id),
        "TimeCreated": {"SystemTime": f"{when}.{frac}Z" if frac else f"{when}Z"},
        "EventRecordID": serial,
        "Channel": CHANNEL,
        "Computer": node or "",
    }
    return {"Event": {"System": system, "EventData": data}}


def iter_audit(fh: TextIO, skipped: Any) -> Iterator[dict[str, Any]]:
    """Events of an audit log; `skipped()` is called for each non-blank line that is not one."""
    for line in fh:
        event = parse_line(line)
        if event is not None:
            yield event
        elif line.strip():
            skipped()
