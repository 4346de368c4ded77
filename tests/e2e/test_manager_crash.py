"""kill -9 of the real `heron-manager run` during sustained /logs ingest over mutual TLS.

Several agents post at once, so their batches share journal fsyncs (group commit).

After a restart on the same data directory, every batch the manager acknowledged (200) is
searchable exactly once, in Tantivy (search) and in DuckDB (SQL); the manager's index writer
child process does not outlive it.
"""

from __future__ import annotations

import gzip
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import requests

from tests.appliance.conftest import make_csr
from tests.e2e.harness import WAIT_LIMIT, ManagerProc, wait_for
from tests.support.events import gene_event

pytestmark = pytest.mark.e2e
BATCH = 50


def _event(batch: int, i: int) -> dict[str, Any]:
    data = {
        "Image": "C:\\Windows\\System32\\cmd.exe",
        "CommandLine": f"cmd /c marker b{batch}e{i}",
        "Marker": f"b{batch}e{i}",
    }
    return gene_event(1, data, computer="WS-CRASH", time="2026-11-28T10:00:00.000000Z")


def _enroll(manager: ManagerProc, tmp: Path) -> tuple[str, str]:
    csr, key_pem = make_csr()
    res = requests.post(
        f"https://{manager.address}/enroll",
        verify=str(manager.ca_file),
        json={"token": manager.token(), "csr_pem": csr, "hostname": "ws-crash"},
        timeout=30,
    )
    res.raise_for_status()
    cert, key = tmp / "agent.pem", tmp / "agent.key"
    cert.write_text(res.json()["certificate_pem"])
    key.write_text(key_pem)
    return str(cert), str(key)


POSTERS = 6


def _post_until_stopped(
    manager: ManagerProc,
    cred: tuple[str, str],
    acked: list[int],
    stop: threading.Event,
    batch: int,
) -> None:
    session = requests.Session()
    session.trust_env, session.verify, session.cert = False, str(manager.ca_file), cred
    while not stop.is_set():
        body = gzip.compress(b"\n".join(orjson.dumps(_event(batch, i)) for i in range(BATCH)))
        try:
            res = session.post(
                f"https://{manager.address}/logs",
                data=body,
                timeout=30,
                headers={
                    "Content-Encoding": "gzip",
                    "Content-Type": "application/x-ndjson",
                    "X-Heron-Batch-Id": f"crash-{batch}-{uuid.uuid4()}",
                },
            )
        except requests.RequestException:
            return  # the manager is gone
        if res.status_code == 200:
            acked.append(batch)
        batch += POSTERS


def test_kill_9_of_the_manager_loses_no_acknowledged_event(tmp_path: Path) -> None:
    manager = ManagerProc(tmp_path / "data")
    manager.start()
    try:
        cred = _enroll(manager, tmp_path)
        assert manager.proc is not None
        writers = psutil.Process(manager.proc.pid).children(recursive=True)
        assert writers, "the manager has no index writer process"
        acked: list[int] = []
        stop = threading.Event()
        posters = [
            threading.Thread(target=_post_until_stopped, args=(manager, cred, acked, stop, n))
            for n in range(POSTERS)
        ]
        for poster in posters:
            poster.start()
        wait_for(lambda: len(acked) >= 60, WAIT_LIMIT, "60 acknowledged batches")
        manager.proc.send_signal(signal.SIGKILL)
        manager.proc.wait(WAIT_LIMIT)
        stop.set()
        for poster in posters:
            poster.join(30)
        _, alive = psutil.wait_procs(writers, timeout=WAIT_LIMIT)
        assert not alive, "the index writer outlived the manager"

        manager.proc = None
        manager.start()
        total = len(acked) * BATCH
        sql = (
            "SELECT count(*), count(DISTINCT regexp_extract(command_line, "
            "'marker (b\\d+e\\d+)', 1)) FROM events"
        )
        rows = wait_for(
            lambda: (
                (r := manager.admin("POST", "/hunt/sql", {"query": sql})["rows"])
                and r[0][0] >= total
                and r
            ),
            60,
            "the acknowledged events in SQL",
        )
        count, distinct = rows[0]
        assert count == distinct  # nothing twice (the unacknowledged tail may be there once)
        markers = {
            r[0]
            for r in manager.admin(
                "POST",
                "/hunt/sql",
                {
                    "query": (
                        "SELECT regexp_extract(command_line, 'marker (b\\d+e\\d+)', 1) FROM events"
                    ),
                    "max_rows": 100_000,
                },
            )["rows"]
        }
        assert {f"b{b}e{i}" for b in acked for i in range(BATCH)} <= markers
        wait_for(
            lambda: manager.admin("GET", "/search?q=EventID:1&limit=1")["total"] == count,
            20,
            "Tantivy to hold exactly what DuckDB holds (searchable within 2 s)",
        )
        probe = acked[len(acked) // 2]
        assert manager.admin("GET", f"/search?q=Marker:b{probe}e7")["total"] == 1
    finally:
        manager.stop()
