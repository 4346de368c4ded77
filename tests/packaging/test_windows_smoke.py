"""packaging/windows/smoke.py (the Windows workflow's live smoke) against a real local manager."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from rules import wire
from tests.e2e.test_manager_tls import Manager, _csr, _session

SMOKE = Path(__file__).resolve().parents[2] / "packaging" / "windows" / "smoke.py"
MARKER = "heronsmoke4242"


def _smoke(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Manager, Path]]:
    m = Manager(tmp_path_factory.mktemp("mgr"))
    key_file = m.tmp / "first-admin-key.json"  # the shape `heron-manager init --key-file` writes
    key_file.write_text(
        json.dumps(
            {"admin_url": m.admin_url, "api_key": m.admin_key, "ca_cert": str(m.pki.ca_path)}
        )
    )
    yield m, key_file
    m.close()


def test_token_enrolls_then_the_event_is_found(mgr: tuple[Manager, Path]) -> None:
    m, key_file = mgr
    proc = _smoke("token", str(key_file))
    assert proc.returncode == 0, proc.stderr
    token, ca_sha256 = proc.stdout.split()
    assert ca_sha256 == m.pki.ca_sha256  # what the MSI's CA_SHA256 gets
    csr, key_pem = _csr()
    res = _session(m.pki.ca_path).post(
        m.ep_url + "/enroll",
        timeout=10,
        json={"token": token, "csr_pem": csr, "hostname": "WIN-RUNNER"},
    )
    assert res.status_code == 200, res.text
    (m.tmp / "c.pem").write_text(res.json()["certificate_pem"])
    (m.tmp / "c.key").write_text(key_pem)
    assert _smoke("endpoints", str(key_file), "--expect", "1").returncode == 0
    assert _smoke("endpoints", str(key_file), "--expect", "2").returncode == 1

    event = {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "Computer": "WIN-RUNNER",
                "TimeCreated": {"SystemTime": "2026-01-01T00:00:00Z"},
            },
            "EventData": {
                "Image": r"C:\Windows\System32\cmd.exe",
                "CommandLine": f"cmd.exe /c echo {MARKER}",
            },
        }
    }
    agent = _session(m.pki.ca_path, (str(m.tmp / "c.pem"), str(m.tmp / "c.key")))
    res = agent.post(
        m.ep_url + "/logs",
        data=gzip.compress(json.dumps(event).encode() + b"\n"),
        timeout=10,
        headers={"Content-Encoding": "gzip", wire.HEADER_BATCH_ID: "smoke-1"},
    )
    assert res.status_code == 200, res.text
    proc = _smoke("event", str(key_file), MARKER, "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    assert MARKER in proc.stdout
    proc = _smoke("event", str(key_file), "heronsmokenothere", "--timeout", "2")
    assert proc.returncode == 1 and "no Sysmon process creation" in proc.stderr


def test_bad_key_is_a_clean_failure(mgr: tuple[Manager, Path], tmp_path: Path) -> None:
    m, key_file = mgr
    bad = tmp_path / "k.json"
    bad.write_text(json.dumps(dict(json.loads(key_file.read_text()), api_key="nope")))
    proc = _smoke("token", str(bad))
    assert proc.returncode == 1 and "401" in proc.stderr
    assert requests is not None
