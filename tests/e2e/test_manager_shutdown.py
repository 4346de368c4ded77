"""SIGTERM of the real `heron-manager run` in its busiest state exits within 30 s (issue 18).

At once: two agents posting /logs batches back to back, a CPU-heavy retro-hunt job running, an
SSE client that stopped reading while large events stream, an agent held in a `GET /commands`
long-poll, and MISP sync against a peer that accepts connections and never answers. After a
restart on the same data directory, every batch the manager acknowledged is stored.
"""

from __future__ import annotations

import gzip
import signal
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.appliance.conftest import make_csr
from tests.e2e.harness import WAIT_LIMIT, ManagerProc, wait_for

pytestmark = pytest.mark.e2e
BATCH = 200
STOP_LIMIT = 30.0  # s: systemd's stop timeout is 90 s; the issue asks for 30 in every state


def _event(tag: str, i: int, blob: int = 0) -> dict[str, Any]:
    data = {"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": f"cmd /c marker {tag}e{i}"}
    if blob:
        data["Blob"] = "x" * blob
    return {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "WS-STOP",
                "EventID": 1,
                "TimeCreated": {"SystemTime": "2026-11-28T10:00:00.000000Z"},
            },
            "EventData": data,
        }
    }


def _enroll(manager: ManagerProc, tmp: Path, name: str) -> requests.Session:
    csr, key_pem = make_csr()
    res = requests.post(
        f"https://{manager.address}/enroll",
        verify=str(manager.ca_file),
        json={"token": manager.token(), "csr_pem": csr, "hostname": name},
        timeout=60,
    )
    res.raise_for_status()
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert.write_text(res.json()["certificate_pem"])
    key.write_text(key_pem)
    session = requests.Session()
    session.trust_env, session.verify = False, str(manager.ca_file)
    session.cert = (str(cert), str(key))
    return session


def _post(manager: ManagerProc, session: requests.Session, tag: str, n: int, blob: int = 0) -> int:
    body = gzip.compress(b"\n".join(orjson.dumps(_event(tag, i, blob)) for i in range(n)), 1)
    return session.post(
        f"https://{manager.address}/logs",
        data=body,
        timeout=60,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/x-ndjson",
            "X-Heron-Batch-Id": f"{tag}-{uuid.uuid4()}",
        },
    ).status_code


def _ingest(
    manager: ManagerProc, session: requests.Session, who: str, acked: list[str], stop: Any
) -> None:
    n = 0
    while not stop.is_set():
        tag = f"{who}b{n}"
        try:
            if _post(manager, session, tag, BATCH) == 200:
                acked.append(tag)
        except requests.RequestException:
            return  # the manager is gone
        n += 1


def _hung_peer() -> socket.socket:
    """A TCP listener that accepts connections (the kernel does) and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    return srv


def _stalled_sse(manager: ManagerProc) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(manager.ca_file))
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", manager.admin_port), timeout=60)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock = ctx.wrap_socket(raw)
    sock.sendall(
        f"GET /stream/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: {manager.api_key}\r\n\r\n".encode()
    )
    assert b"200" in sock.recv(64)  # then never read again
    return sock


def test_sigterm_in_every_busy_state_exits_within_30_s(tmp_path: Path) -> None:
    hung = _hung_peer()
    manager = ManagerProc(tmp_path / "data")
    config = manager.data / "config.toml"
    port = hung.getsockname()[1]
    text = config.read_text().replace("poll_wait = 0.0", "poll_wait = 30.0")
    misp = text.index("[misp]")
    text = text[:misp] + text[misp:].replace("enabled = false", "enabled = true", 1).replace(
        'url = ""', f'url = "http://127.0.0.1:{port}"', 1
    ).replace('api_key = ""', f'api_key = "{"k" * 40}"', 1)
    config.write_text(text)
    manager.start()
    threads: list[threading.Thread] = []
    stop = threading.Event()
    try:
        a, b = (_enroll(manager, tmp_path, f"ws-stop-{i}") for i in range(2))
        for lo in range(0, 20_000, 2000):  # something for the retro-hunt to scan
            assert _post(manager, a, f"fill{lo}", 2000) == 200
        wait_for(
            lambda: manager.admin("GET", "/search?limit=1")["total"] >= 20_000,
            WAIT_LIMIT,
            "the fill to be indexed",
        )
        heavy = {
            "Name": "Heavy",
            "Meta": {"Events": {"Microsoft-Windows-Sysmon/Operational": [1]}, "Schema": "2.0.0"},
            "Matches": [f"$m{i}: CommandLine ~= '(a|b|c)*{i}x$'" for i in range(40)],
            "Condition": " or ".join(f"$m{i}" for i in range(40)),
        }
        job = manager.admin("POST", "/hunt/jobs", {"rules": [heavy]})
        sse = _stalled_sse(manager)
        for i in range(6):  # 6 x 20 events of 200 KB for the stalled stream
            assert _post(manager, b, f"big{i}", 20, blob=200_000) == 200
        held: list[int] = []

        def long_poll() -> None:
            try:
                held.append(b.get(f"https://{manager.address}/commands", timeout=120).status_code)
            except requests.RequestException:
                held.append(-1)  # the manager closed it while stopping

        poll = threading.Thread(target=long_poll, daemon=True)
        poll.start()
        acked: list[str] = []
        for who, session in (("a", a), ("b", b)):
            threads.append(
                threading.Thread(target=_ingest, args=(manager, session, who, acked, stop))
            )
            threads[-1].start()
        wait_for(lambda: len(acked) >= 10, WAIT_LIMIT, "10 acknowledged batches")
        state = manager.admin("GET", f"/hunt/jobs/{job['id']}")["state"]
        assert state == "running" and poll.is_alive() and not held  # still busy
        assert manager.proc is not None
        started = time.monotonic()
        manager.proc.send_signal(signal.SIGTERM)
        manager.proc.wait(WAIT_LIMIT)
        took = time.monotonic() - started
        stop.set()
        for t in threads:
            t.join(60)
        sse.close()
        assert manager.proc.returncode == 0, (manager.data / "manager.err").read_text()[-3000:]
        assert took < STOP_LIMIT, f"SIGTERM took {took:.1f} s"

        manager.proc = None
        manager.start()
        tags = sorted(set(acked))
        wanted = {f"{t}e{i}" for t in tags for i in range(BATCH)}
        got = wait_for(
            lambda: (
                (
                    rows := manager.admin(
                        "POST",
                        "/hunt/sql",
                        {
                            "query": "SELECT regexp_extract(command_line, 'marker (\\S+)', 1) "
                            "FROM events WHERE regexp_matches(command_line, 'marker [ab]b')",
                            "max_rows": 100_000,
                        },
                    )["rows"]
                )
                and wanted <= {r[0] for r in rows}
                and rows
            ),
            WAIT_LIMIT,
            "every acknowledged batch after the restart",
        )
        assert len(got) >= len(wanted)
    finally:
        stop.set()
        manager.stop()
        hung.close()
