"""A real manager for a benchmark: `init` + `run` in a temporary data directory, and agents
enrolled over its endpoint API (one certificate and key file pair per agent)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent


def start_manager(
    tmp: Path, edit: Callable[[str], str] = lambda cfg: cfg
) -> tuple[subprocess.Popen[str], dict[str, Any], dict[str, Any]]:
    """Initialise ``tmp`` (logging at WARNING, then ``edit`` applied to config.toml) and run
    the manager on free loopback ports; returns the process, `init --json` and its URLs."""
    py = sys.executable
    init = json.loads(
        subprocess.check_output(
            [py, "-m", "appliance", "init", "--data-dir", str(tmp), "--json"]
            + ["--admin-listen", "127.0.0.1:0", "--endpoint-listen", "127.0.0.1:0"],
            cwd=ROOT,
        )
    )
    cfg = (tmp / "config.toml").read_text().replace('level = "INFO"', 'level = "WARNING"')
    (tmp / "config.toml").write_text(edit(cfg))
    server = subprocess.Popen(
        [py, "-m", "appliance", "run", "--data-dir", str(tmp)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    urls = json.loads(server.stdout.readline())  # type: ignore[union-attr]
    return server, init, urls


def enroll_agents(
    tmp: Path, init: dict[str, Any], urls: dict[str, Any], n: int, hostname: str
) -> list[tuple[str, str]]:
    """Enroll ``n`` agents (hostnames ``{hostname}-{i}``); their (certificate, key) paths."""
    from tests.appliance.conftest import make_csr

    admin = requests.Session()
    admin.trust_env, admin.verify = False, init["ca_cert"]
    admin.headers["X-Api-Key"] = init["api_key"]
    creds = []
    for i in range(n):
        token = admin.post(urls["admin"] + "/enroll/tokens", json={}).json()["data"]["token"]
        csr, key_pem = make_csr()
        res = requests.post(
            urls["endpoint"] + "/enroll",
            verify=init["ca_cert"],
            timeout=30,
            json={"token": token, "csr_pem": csr, "hostname": f"{hostname}-{i}"},
        )
        res.raise_for_status()
        cert, key = tmp / f"a{i}.pem", tmp / f"a{i}.key"
        cert.write_text(res.json()["certificate_pem"])
        key.write_text(key_pem)
        creds.append((str(cert), str(key)))
    return creds
