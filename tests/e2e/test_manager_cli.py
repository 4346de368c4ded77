"""`heron-manager` as installers and agents use it: init --json, run, enroll, restart."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from rules import wire

from .harness import STARTUP_LIMIT, WAIT_LIMIT, first_line

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=check,
        timeout=STARTUP_LIMIT,
    )


class Running:
    def __init__(self, data: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "run",
                "--data-dir",
                str(data),
                "--admin-listen",
                "127.0.0.1:0",
                "--endpoint-listen",
                "127.0.0.1:0",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = first_line(self.proc, STARTUP_LIMIT)
        assert line, self.proc.stderr.read()  # type: ignore[union-attr]
        urls = json.loads(line)
        self.admin, self.endpoint = urls["admin"], urls["endpoint"]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=WAIT_LIMIT)
        assert self.proc.returncode == 0, err
        return err


def _session(ca: str, **kw: Any) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_init_run_enroll_ingest_restart(tmp_path: Path) -> None:
    data = tmp_path / "heron"
    init = json.loads(cli("init", "--data-dir", str(data), "--json").stdout)
    assert set(init) == {"admin_url", "endpoint_url", "api_key", "ca_cert", "ca_sha256"}
    assert init["admin_url"] == "https://127.0.0.1:1520"
    assert cli("init", "--data-dir", str(data), check=False).returncode == 2
    assert "[limits]" in (data / "config.toml").read_text()

    server = Running(data)
    try:
        admin = _session(init["ca_cert"], headers={"X-Api-Key": init["api_key"]})
        # a fresh install serves Heron's default rules from its first start
        served = admin.get(server.admin + "/rules", timeout=10).json()["data"]
        assert len(served) >= 5, served
        token = admin.post(
            server.admin + "/enroll/tokens", json={"group": "lab"}, timeout=10
        ).json()["data"]
        assert token["ca_sha256"] == init["ca_sha256"]
        from tests.appliance.conftest import make_csr

        csr, key_pem = make_csr()
        enrolled = (
            _session(init["ca_cert"])
            .post(
                server.endpoint + "/enroll",
                json={"token": token["token"], "csr_pem": csr, "hostname": "cli-host"},
                timeout=10,
            )
            .json()
        )
        (tmp_path / "c.pem").write_text(enrolled["certificate_pem"])
        (tmp_path / "c.key").write_text(key_pem)
        agent = _session(init["ca_cert"], cert=(str(tmp_path / "c.pem"), str(tmp_path / "c.key")))
        ev = {
            "Event": {
                "System": {
                    "Channel": "Security",
                    "EventID": 4688,
                    "Computer": "c",
                    "TimeCreated": {"SystemTime": "2026-03-01T10:00:00Z"},
                },
                "EventData": {"NewProcessName": "C:\\evil\\payload.exe"},
            }
        }
        res = agent.post(
            server.endpoint + "/logs",
            timeout=10,
            data=gzip.compress(json.dumps(ev).encode() + b"\n"),
            headers={"Content-Encoding": "gzip", wire.HEADER_BATCH_ID: "b1"},
        )
        assert res.json() == {"batch_id": "b1", "accepted": 1, "duplicate": False}
        eps = admin.get(server.admin + "/endpoints", timeout=10).json()["data"]
        assert [e["hostname"] for e in eps] == ["cli-host"]
    finally:
        log = server.stop()
    assert '"level": "INFO"' in log and "shutting down" in log

    # the stopped manager's CLI sees the state; the restarted one still has the event
    users = [
        json.loads(ln) for ln in cli("user", "list", "--data-dir", str(data)).stdout.splitlines()
    ]
    # heron-local-cli: the key `run` gives the CLI while it runs (appliance/runtime/localadmin.py)
    assert [u["identifier"] for u in users] == ["admin", "heron-local-cli"]
    # no --role: least privilege, as POST /users (issue 15)
    added = json.loads(cli("user", "add", "bob", "--data-dir", str(data)).stdout)
    assert added["key"].startswith("hk_") and added["role"] == "analyst"
    admin2 = json.loads(
        cli("user", "add", "eve", "--role", "admin", "--data-dir", str(data)).stdout
    )
    assert admin2["role"] == "admin"
    listed = cli("endpoint", "list", "--data-dir", str(data)).stdout
    assert enrolled["uuid"] in listed
    bundle_dir = tmp_path / "bundle"
    bundle = json.loads(
        cli("enroll", "bundle", "--out", str(bundle_dir), "--data-dir", str(data)).stdout
    )
    assert oct(os.stat(bundle_dir / "client.key").st_mode & 0o777) == "0o600"
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    # an IP address first (no DNS needed), every name in `addresses`
    assert meta["manager"] == "127.0.0.1:1519" and meta["client_cert"] == "client.pem"
    assert "localhost:1519" in meta["addresses"]
    assert (
        wire.EnrollBundle.from_dict(dict(meta, certificate_pem="c", key_pem="k", ca_pem="a")).uuid
        == bundle["uuid"]
    )

    server = Running(data)
    try:
        bob = _session(init["ca_cert"], headers={"X-Api-Key": added["key"]})
        res = bob.post(
            server.admin + "/hunt/sql", timeout=10, json={"query": "SELECT count(*) FROM events"}
        )
        assert res.json()["data"]["rows"] == [[1]]
        offline = _session(
            init["ca_cert"], cert=(str(bundle_dir / "client.pem"), str(bundle_dir / "client.key"))
        )
        assert offline.get(server.endpoint + "/key", timeout=10).text == bundle["uuid"]
        agent = _session(init["ca_cert"], cert=(str(tmp_path / "c.pem"), str(tmp_path / "c.key")))
        res = agent.post(
            server.endpoint + "/logs",
            timeout=10,
            data=gzip.compress(json.dumps(ev).encode() + b"\n"),
            headers={"Content-Encoding": "gzip", wire.HEADER_BATCH_ID: "b1"},
        )
        assert res.json()["duplicate"] is True  # idempotency survives a restart
        assert bob.post(server.admin + "/iocs", json=[], timeout=10).status_code == 403
    finally:
        server.stop()
    sql = json.loads(cli("sql", "SELECT count(*) AS n FROM events", "--data-dir", str(data)).stdout)
    assert sql["rows"] == [[1]]
    assert json.loads(cli("reindex", "--data-dir", str(data)).stdout)["reindexed"] is True
    found = cli("search", "payload.exe", "--data-dir", str(data)).stdout.splitlines()
    assert len(found) == 1 and json.loads(found[0])["Event"]["EventData"]["NewProcessName"]
    revoked = json.loads(cli("endpoint", "revoke", bundle["uuid"], "--data-dir", str(data)).stdout)
    assert revoked["revoked"] == 1


def test_openapi_and_routes_commands() -> None:
    doc = json.loads(cli("openapi", "--api", "endpoint").stdout)
    assert "/logs" in doc["paths"] and doc["openapi"] == "3.1.0"
    routes = cli("routes").stdout
    assert "GET     /endpoints/{uuid}/artifacts/{pguid}/{ehash}/{fname}" in routes
