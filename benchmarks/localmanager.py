"""A real manager for a benchmark: `init` + `run` in a temporary data directory, and agents
enrolled over its endpoint API (one certificate and key file pair per agent)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent


Started = tuple[subprocess.Popen[str], dict[str, Any], dict[str, Any]]


def start_manager(
    tmp: Path,
    edit: Callable[[str], str] = lambda cfg: cfg,
    *,
    env: Mapping[str, str] | None = None,
) -> Started:
    """Initialise ``tmp`` (logging at WARNING, then ``edit`` applied to config.toml) and run
    the manager on free loopback ports (with ``env`` if given); returns the process,
    `init --json` and its URLs. A manager that never says it is ready is stopped."""
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
        env=None if env is None else dict(env),
    )
    try:
        urls = json.loads(server.stdout.readline())  # type: ignore[union-attr]
    except BaseException:
        stop_manager(server, 30)
        raise
    return server, init, urls


def stop_manager(server: subprocess.Popen[Any], timeout: float) -> None:
    """Terminate the manager and wait up to ``timeout`` s (the event store indexes its backlog
    before it exits), then kill it."""
    server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextmanager
def running_manager(
    tmp: Path,
    edit: Callable[[str], str] = lambda cfg: cfg,
    *,
    env: Mapping[str, str] | None = None,
    stop_timeout: float = 60.0,
) -> Iterator[Started]:
    """`start_manager` that stops the manager when the block ends, however it ends."""
    started = start_manager(tmp, edit, env=env)
    try:
        yield started
    finally:
        stop_manager(started[0], stop_timeout)


def admin_session(init: dict[str, Any]) -> requests.Session:
    """A session on the admin API with the key `init` printed (the CA pinned, no proxies)."""
    admin = requests.Session()
    admin.trust_env, admin.verify = False, init["ca_cert"]
    admin.headers["X-Api-Key"] = init["api_key"]
    return admin


def enroll_token(admin: requests.Session, urls: dict[str, Any]) -> str:
    """A new one-time enrollment token."""
    return str(admin.post(urls["admin"] + "/enroll/tokens", json={}).json()["data"]["token"])


def enroll_agents(
    tmp: Path, init: dict[str, Any], urls: dict[str, Any], n: int, hostname: str
) -> list[tuple[str, str]]:
    """Enroll ``n`` agents (hostnames ``{hostname}-{i}``); their (certificate, key) paths."""
    from tests.appliance.conftest import make_csr

    admin = admin_session(init)
    creds = []
    for i in range(n):
        token = enroll_token(admin, urls)
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
