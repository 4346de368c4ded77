"""`make run`: one manager plus one local Linux agent enrolled over mutual TLS.

This launcher only orchestrates processes: it runs `heron-manager` and `heron-agent` as
subprocesses (the appliance never imports the agent). On the first run it initialises
`<data-dir>/manager` (the manager loads its default rules on its first start), mints an
enrollment token and enrolls `<data-dir>/agent`; later runs reuse everything, with the ports
of the current run. Ctrl-C stops both programs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def _program(name: str, module: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


class AdminClient:
    """Minimal HTTPS client for the admin API, trusting only the appliance CA."""

    def __init__(self, url: str, api_key: str, ca_file: Path) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.ssl = ssl.create_default_context(cafile=str(ca_file))

    def call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-Api-Key", self.api_key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self.ssl, timeout=timeout) as resp:
            payload = json.loads(resp.read() or b"null")
        return payload.get("data") if isinstance(payload, dict) else payload

    def wait_healthy(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"heron-manager exited with code {proc.returncode}")
            try:
                self.call("GET", "/healthz", timeout=2.0)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise SystemExit("heron-manager did not answer /healthz in time")


def _init_manager(mdir: Path, args: argparse.Namespace, admin_file: Path) -> dict[str, Any]:
    if not (mdir / "pki" / "ca.pem").exists():
        out = subprocess.run(
            [
                *_program("heron-manager", "appliance.cli"),
                "init",
                "--data-dir",
                str(mdir),
                "--json",
                "--admin-listen",
                args.admin_listen,
                "--endpoint-listen",
                args.endpoint_listen,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        admin_file.write_text(out, encoding="utf-8")
        os.chmod(admin_file, 0o600)
    return dict(json.loads(admin_file.read_text(encoding="utf-8")))


def _enroll_agent(
    adir: Path, client: AdminClient, args: argparse.Namespace, ca: Path, state: Path
) -> None:
    """Enroll the local agent, again (``--force``) when the endpoint address changed."""
    enrolled = (adir / "link" / "identity" / "identity.json").exists()  # agent.link.identity
    previous = state.read_text(encoding="utf-8").strip() if state.exists() else ""
    if enrolled and previous in ("", args.endpoint_listen):
        return
    token = client.call("POST", "/enroll/tokens", {"group": "local", "ttl": 600})
    force = ["--force"] if enrolled else []
    subprocess.run(
        [
            *_program("heron-agent", "agent.cli"),
            "enroll",
            "--data-dir",
            str(adir),
            "--manager",
            args.endpoint_listen,
            "--token",
            token["token"],
            "--ca",
            str(ca),
            *force,
        ],
        check=True,
    )
    state.write_text(args.endpoint_listen + "\n", encoding="utf-8")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--data-dir", default=".heron")
    parser.add_argument("--admin-listen", default="127.0.0.1:1520")
    parser.add_argument("--endpoint-listen", default="127.0.0.1:1519")
    parser.add_argument("--no-agent", action="store_true", help="start the manager only")
    args = parser.parse_args(argv)
    data = Path(args.data_dir).resolve()
    mdir, adir = data / "manager", data / "agent"
    data.mkdir(parents=True, exist_ok=True)
    info = _init_manager(mdir, args, data / "admin.json")
    ca = Path(info["ca_cert"])
    # The listen addresses of this run win over those of the first (init) run.
    info["admin_url"] = f"https://{args.admin_listen}"
    client = AdminClient(info["admin_url"], info["api_key"], ca)
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        procs.append(
            subprocess.Popen(
                [
                    *_program("heron-manager", "appliance.cli"),
                    "run",
                    "--data-dir",
                    str(mdir),
                    "--admin-listen",
                    args.admin_listen,
                    "--endpoint-listen",
                    args.endpoint_listen,
                ]
            )
        )
        client.wait_healthy(procs[0])
        if not args.no_agent:
            _enroll_agent(adir, client, args, ca, data / "agent-manager.txt")
            agent_cmd = [*_program("heron-agent", "agent.cli"), "run", "--data-dir", str(adir)]
            if os.geteuid() != 0:
                print("note: not root, the live Linux sources need root; the agent may see little")
            procs.append(subprocess.Popen(agent_cmd))
        _banner(info, ca)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(list(reversed(procs)))


def _banner(info: dict[str, Any], ca: Path) -> None:
    url, key = info["admin_url"], info["api_key"]
    print(
        "\nHeron is running.\n"
        f"  console   : {url}/console/  (log in with the API key)\n"
        f"  admin API : {url}/\n"
        f"  API key   : {key}\n"
        f"  CA        : {ca}  (sha256 {info.get('ca_sha256', '?')})\n"
        "  detections: "
        f"curl --cacert {ca} -H 'X-Api-Key: {key}' '{url}/search?detections=true&last=1h'\n"
        "  browser   : the certificate comes from Heron's own CA; trust it once, e.g. Chromium: "
        f"certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n heron -i {ca}; Firefox: Settings > "
        "Certificates > Import.\n"
        "Ctrl-C stops the manager and the agent.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
