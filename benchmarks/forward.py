"""Forwarding benchmark: how fast one agent pushes events, and how long a 1M backlog takes.

Measures, over real mutual TLS on 127.0.0.1:
  1. spool write rate: `Link.submit` (durable append, write-through) events/s;
  2. live push rate: events/s delivered while events are being produced;
  3. backlog drain: N events queued while the manager is unreachable, then the time to
     deliver all of them.

Targets:
  --target null     a minimal mTLS HTTP server in a subprocess that gunzips and acks each batch
                    (measures the agent side: spool + gzip + TLS + HTTP);
  --target manager  a real `heron-manager` (init + run in a temp dir; journal, index, DuckDB).

Usage:
  .venv/bin/python benchmarks/forward.py --target null --events 1000000
  .venv/bin/python benchmarks/forward.py --target manager --events 200000
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.link.config import LinkConfig  # noqa: E402
from agent.link.enroll import enroll_online  # noqa: E402
from agent.link.identity import IdentityStore  # noqa: E402
from agent.link.link import Link  # noqa: E402
from benchmarks.localmanager import (  # noqa: E402
    admin_session,
    enroll_token,
    start_manager,
    stop_manager,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_event(i: int, stamp: str) -> dict[str, Any]:
    """A Sysmon process-creation event of realistic size (~1 KiB of JSON)."""
    return {
        "Event": {
            "System": {
                "Provider": {
                    "Name": "Microsoft-Windows-Sysmon",
                    "Guid": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}",
                },
                "EventID": 1,
                "Version": 5,
                "Level": 4,
                "Task": 1,
                "Opcode": 0,
                "Keywords": "0x8000000000000000",
                "TimeCreated": {"SystemTime": stamp},
                "EventRecordID": i,
                "Correlation": {},
                "Execution": {"ProcessID": 3012, "ThreadID": 4004},
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "bench-ws",
                "Security": {"UserID": "S-1-5-18"},
            },
            "EventData": {
                "RuleName": "-",
                "UtcTime": stamp,
                "ProcessGuid": f"{{b2c3d4e5-0000-1111-2222-3333{i:08x}}}",
                "ProcessId": str(10000 + i % 50000),
                "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                "FileVersion": "10.0.19041.1",
                "Description": "Windows PowerShell",
                "Product": "Microsoft® Windows® Operating System",
                "Company": "Microsoft Corporation",
                "OriginalFileName": "PowerShell.EXE",
                "CommandLine": f"powershell.exe -NoProfile -Command Get-Process # {i}",
                "CurrentDirectory": "C:\\Users\\bench\\",
                "User": "BENCH\\bench",
                "LogonGuid": "{b2c3d4e5-0000-1111-2222-333344445555}",
                "LogonId": "0x3e7",
                "TerminalSessionId": "1",
                "IntegrityLevel": "High",
                "Hashes": "SHA1=6CBCE4A295C163791B60FC23D285E6D84F28EE4C,"
                "MD5=7353F60B1739074EB17C5F4DDDEFE239,SHA256=DE96A6E69944335375DC1AC238336066889D9FFC7D73628EF4FE1B1B1"
                "60AB32C,IMPHASH=741776AACCFC5B71FF59832DCDCACE0F",
                "ParentProcessGuid": "{b2c3d4e5-0000-1111-2222-333344446666}",
                "ParentProcessId": "4242",
                "ParentImage": "C:\\Windows\\explorer.exe",
                "ParentCommandLine": "C:\\Windows\\Explorer.EXE",
                "ParentUser": "BENCH\\bench",
            },
        }
    }


# ------------------------------------------------------------------ null target (subprocess)
def serve_null(port: int, pki_dir: Path) -> None:
    """Ack every /logs batch after gunzipping it; /key answers 200."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki_dir / "server.pem", pki_dir / "server.key")
    ctx.load_verify_locations(cafile=str(pki_dir / "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            lines = body.count(b"\n")
            out = json.dumps(
                {
                    "batch_id": self.headers.get("X-Heron-Batch-Id", ""),
                    "accepted": lines,
                    "duplicate": False,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready", flush=True)
    srv.serve_forever()


def setup_null(work: Path) -> tuple[subprocess.Popen[bytes], Path, int]:
    from appliance.security.pki import Pki

    pki = Pki.create(work / "pki", server_names=["localhost", "127.0.0.1"])
    cert, key_pem = pki.issue_client("bench-endpoint", days=30)
    state = work / "agent"
    port = _free_port()
    IdentityStore(state / "identity").save(
        uuid="bench-endpoint",
        manager=f"127.0.0.1:{port}",
        group="",
        key_pem=key_pem.encode(),
        cert_pem=cert.pem,
        ca_pem=pki.ca_pem,
    )
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-null", str(port), str(work / "pki")],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, state, port


def setup_manager(work: Path) -> tuple[subprocess.Popen[str], Path, int]:
    proc, init, urls = start_manager(work / "manager")
    port = urlsplit(urls["endpoint"]).port or 0
    state = work / "agent"
    try:
        token = enroll_token(admin_session(init), urls)
        enroll_online(
            f"127.0.0.1:{port}",
            token,
            IdentityStore(state / "identity"),
            ca_sha256=init["ca_sha256"],
        )
    except BaseException:
        stop_manager(proc, 30)
        raise
    return proc, state, port


# ------------------------------------------------------------------ measurements
def run(target: str, n_events: int, live_events: int, work: Path) -> dict[str, Any]:
    proc: subprocess.Popen[Any]
    proc, state, _ = setup_null(work) if target == "null" else setup_manager(work)
    cfg = LinkConfig(batch_delay=0.2, fsync_interval=1.0, queue_max_bytes=8 << 30)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    results: dict[str, Any] = {"target": target}
    try:
        # 1 + 2: live push while producing
        with Link(cfg, state) as link:
            link.start()
            t0 = time.perf_counter()
            for i in range(live_events):
                link.submit(make_event(i, stamp))
            t_submit = time.perf_counter() - t0
            while link.forwarder.sent_events < live_events:
                time.sleep(0.01)
            t_live = time.perf_counter() - t0
        results["spool_submit_events_per_s"] = round(live_events / t_submit)
        results["live_push_events_per_s"] = round(live_events / t_live)
        # 3: backlog built while "unreachable" (link not started), then drained
        with Link(cfg, state) as link:
            t0 = time.perf_counter()
            for i in range(n_events):
                link.submit(make_event(live_events + i, stamp))
            t_fill = time.perf_counter() - t0
            st = link.spool.stats()
            results["backlog_events"] = st.queued_events
            results["backlog_bytes"] = st.queued_bytes
            results["backlog_fill_s"] = round(t_fill, 1)
            t0 = time.perf_counter()
            link.start()
            while link.spool.stats().queued_events > 0:
                time.sleep(0.05)
            t_drain = time.perf_counter() - t0
        results["backlog_drain_s"] = round(t_drain, 1)
        results["backlog_drain_events_per_s"] = round(n_events / t_drain)
        results["evicted"] = st.evicted_events
    finally:
        stop_manager(proc, 30)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=["null", "manager"], default="null")
    p.add_argument("--events", type=int, default=1_000_000, help="backlog size to drain")
    p.add_argument("--live-events", type=int, default=100_000, help="events for the live rate")
    p.add_argument("--serve-null", nargs=2, metavar=("PORT", "PKI_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_null:
        serve_null(int(args.serve_null[0]), Path(args.serve_null[1]))
        return 0
    work = Path(tempfile.mkdtemp(prefix="heron-forward-bench-"))
    try:
        res = run(args.target, args.events, args.live_events, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
