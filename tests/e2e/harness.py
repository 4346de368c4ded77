"""Real-process harness for the end-to-end tests: a `heron-manager` subprocess on 127.0.0.1.

`ManagerProc` initialises a data dir with `heron-manager init --json`, runs the manager on free
ports (restartable on the same ports), and talks to its admin API over HTTPS trusting only the
appliance CA. `enroll_cli` enrolls an agent state directory with `heron-agent enroll`.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
# Generous limits on conditions, never fixed sleeps: a loaded 2-core CI box can take tens of
# seconds to start a Python process tree (issue 25: a 30 s start-up limit failed there).
STARTUP_LIMIT = 300.0  # s: a subprocess until it is ready (or exits, which fails at once)
WAIT_LIMIT = 120.0  # s: default for wait_for conditions


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_env() -> dict[str, str]:
    """The environment for Heron subprocesses: this checkout first on the import path."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def wait_for(
    pred: Callable[[], Any],
    timeout: float = WAIT_LIMIT,
    what: str | Callable[[], str] = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def first_line(proc: subprocess.Popen[Any], limit: float = STARTUP_LIMIT) -> Any:
    """The first stdout line of `proc` (its ready line), or "" if it exits first.

    Waits on the pipe, not on a fixed sleep; fails after `limit` seconds with no line, so a
    hung start-up fails the test instead of hanging the run.
    """
    stdout = proc.stdout
    assert stdout is not None
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(limit)
    if reader.is_alive():
        proc.kill()
        raise AssertionError(f"no ready line from {proc.args!r} within {limit:.0f}s")
    return got[0]


class ManagerProc:
    """`heron-manager` in a data dir, restartable on the same ports."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.endpoint_port = free_port()
        self.admin_port = free_port()
        out = subprocess.run(
            [
                PY,
                "-m",
                "appliance",
                "init",
                "--data-dir",
                str(data),
                "--json",
                "--endpoint-listen",
                f"127.0.0.1:{self.endpoint_port}",
                "--admin-listen",
                f"127.0.0.1:{self.admin_port}",
            ],
            capture_output=True,
            check=True,
            env=agent_env(),
            cwd=ROOT,
            timeout=STARTUP_LIMIT,
        )
        init = json.loads(out.stdout.decode().strip().splitlines()[-1])
        self.api_key = init["api_key"]
        self.ca_sha256 = init["ca_sha256"]
        self.ca_file = Path(init["ca_cert"])
        self.proc: subprocess.Popen[bytes] | None = None

    def token(self) -> str:
        """A one-time enrollment token from the admin API (`POST /enroll/tokens`)."""
        return str(self.admin("POST", "/enroll/tokens", {"group": "e2e"})["token"])

    def start(self) -> None:
        with open(self.data / "manager.err", "ab") as err:
            self.proc = subprocess.Popen(
                [
                    PY,
                    "-m",
                    "appliance",
                    "run",
                    "--data-dir",
                    str(self.data),
                    "--endpoint-listen",
                    f"127.0.0.1:{self.endpoint_port}",
                    "--admin-listen",
                    f"127.0.0.1:{self.admin_port}",
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                env=agent_env(),
                cwd=ROOT,
            )
        line = first_line(self.proc, STARTUP_LIMIT)
        assert line, (self.data / "manager.err").read_text()[-2000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT_LIMIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.endpoint_port}"

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(self.ca_file))
        conn = http.client.HTTPSConnection("127.0.0.1", self.admin_port, context=ctx, timeout=60)
        try:
            conn.request(
                method,
                path,
                body=None if body is None else json.dumps(body),
                headers={"X-Api-Key": self.api_key, "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        assert resp.status < 300, f"{method} {path}: {resp.status} {data[:500]!r}"
        return json.loads(data)["data"]

    def events(self, endpoint: str, *, detections: bool = False) -> list[dict[str, Any]]:
        q = f"/search?endpoint={endpoint}&limit=10000" + ("&detections=true" if detections else "")
        return list(self.admin("GET", q)["events"])


def enroll_cli(manager: ManagerProc, state: Path) -> str:
    out = subprocess.run(
        [
            PY,
            "-m",
            "agent.cli",
            "enroll",
            "--manager",
            manager.address,
            "--token",
            manager.token(),
            "--ca-sha256",
            manager.ca_sha256,
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        env=agent_env(),
        cwd=ROOT,
        timeout=STARTUP_LIMIT,
    )
    assert out.returncode == 0, out.stderr.decode()
    return str(json.loads(out.stdout)["uuid"])
