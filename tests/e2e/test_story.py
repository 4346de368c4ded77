"""The whole product story, end to end, with real processes on 127.0.0.1.

A fake MISP (tests/fakemisp, driven by the real PyMISP client inside the manager), a real
`heron-manager` subprocess, and a real live Linux `heron-agent` enrolled over mutual TLS:

1. an analyst publishes a sha256 IoC in MISP; the manager pulls it and the agent receives it;
2. a process whose image matches the IoC runs → detection, kill, filedump and IR report;
3. the sighting appears in MISP with `<endpoint uuid>|<hostname>` as source;
4. the report appears in MISP as an `edr-report` object of the day's event;
5. the event is searchable by its hash and was streamed over SSE.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakemisp import DEFAULT_KEY, FakeMisp

from .harness import ROOT, STARTUP_LIMIT, WAIT_LIMIT, ManagerProc, agent_env, enroll_cli, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.live,
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0, reason="live Linux agent needs root"
    ),
]

AGENT_CONFIG = """
[general]
data_dir = "{data}"
hostname = "story-host"
criticality_threshold = 5

[sources]
enabled = ["linux-proc"]

[actions]
allowed = ["kill", "report", "filedump", "brief"]
critical = ["kill", "filedump", "report"]
act_on_untracked = true

[reporting]
timeout = 10.0
osquery_tables = []

[link]
state_dir = "{state}"
batch_delay = 0.05
command_interval = 0.5
update_interval = 0.3
upload_interval = 0.5
upload_settle = 2.0
backoff_base = 0.1
backoff_cap = 0.5
fsync_interval = 0.0
"""


class SseReader:
    """Reads `/stream/detections` on a thread and keeps every `data:` payload."""

    def __init__(self, manager: ManagerProc) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(manager.ca_file))
        self.conn = http.client.HTTPSConnection(
            "127.0.0.1", manager.admin_port, context=ctx, timeout=120
        )
        self.conn.request("GET", "/stream/detections", headers={"X-Api-Key": manager.api_key})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()[:300]
        self.payloads: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                line = self.resp.fp.readline()
                if not line:
                    return
                if line.startswith(b"data:"):
                    self.payloads.append(json.loads(line[5:]))
        except (OSError, ValueError):
            return

    def close(self) -> None:
        self.conn.close()


@pytest.fixture()
def misp() -> Iterator[FakeMisp]:
    with FakeMisp() as fake:
        yield fake


@pytest.fixture()
def manager(tmp_path: Path) -> Iterator[ManagerProc]:
    mgr = ManagerProc(tmp_path / "manager")
    mgr.start()
    yield mgr
    mgr.stop()


@pytest.fixture()
def agent(manager: ManagerProc, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    state, data = tmp_path / "agent-link", tmp_path / "agent"
    uuid = enroll_cli(manager, state)
    config = tmp_path / "agent.toml"
    config.write_text(AGENT_CONFIG.format(data=data, state=state), encoding="utf-8")
    log = tmp_path / "agent.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        env=agent_env(),
        cwd=ROOT,
    )
    try:
        wait_for(
            lambda: "agent started" in log.read_text(errors="replace"),
            STARTUP_LIMIT,
            lambda: f"agent start; log: {log.read_text(errors='replace')[-2000:]}",
        )
        yield uuid, log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(WAIT_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _evil_binary(tmp_path: Path) -> tuple[Path, str]:
    """A copy of sleep(1) with a unique trailer: still runs, has its own sha256."""
    path = tmp_path / "bin" / "evil-updater"
    path.parent.mkdir()
    shutil.copy("/bin/sleep", path)
    with path.open("ab") as fh:
        fh.write(os.urandom(32))
    path.chmod(0o755)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_ioc_from_misp_detected_killed_reported_and_shared(
    misp: FakeMisp, manager: ManagerProc, agent: tuple[str, Path], tmp_path: Path
) -> None:
    uuid, agent_log = agent
    evil, sha256 = _evil_binary(tmp_path)

    # 1. the IoC is published in MISP, pulled by the manager, and reaches the agent
    with misp.lock:
        ev = misp.model.create_event("Heron story: evil updater", published=False)
        misp.model.create_attribute(ev.id, "sha256", sha256, to_ids=True)
        misp.model.publish(ev.id)
    manager.admin(
        "PUT",
        "/misp/settings",
        {
            "enabled": True,
            "url": misp.url,
            "api_key": DEFAULT_KEY,
            "verify_tls": False,
            "sighting_batch_delay": 0.2,
            "report_zip_files": True,
        },
    )
    manager.admin("POST", "/misp/sync", {})
    wait_for(
        lambda: any(i["value"] == sha256 for i in manager.admin("GET", "/iocs")),
        WAIT_LIMIT,
        "the IoC in the manager's IoC table",
    )
    wait_for(
        lambda: "IoCs loaded: 1 indicators" in agent_log.read_text(errors="replace"),
        WAIT_LIMIT,
        "the IoC on the agent",
    )

    # 2. a matching process runs: detection, kill, filedump, report
    stream = SseReader(manager)
    try:
        proc = subprocess.Popen([str(evil), "60"])
        try:
            proc.wait(WAIT_LIMIT)  # it sleeps 60 s unless the agent kills it
        finally:
            if proc.poll() is None:
                proc.kill()
        # killed, not ended by itself (it sleeps 60 s): the kill latency is a benchmark figure
        # (benchmarks/agent_noise.py), not a margin here
        assert proc.returncode == -signal.SIGKILL, "the agent did not kill the process"

        hits = wait_for(
            lambda: manager.admin("GET", f"/search?q={sha256}&detections=true&endpoint={uuid}")[
                "events"
            ],
            WAIT_LIMIT,
            "the detection in search",
        )
        detection = hits[0]["Event"]["Detection"]
        assert "IoC:sha256" in detection["Signature"]
        assert detection["Criticality"] == 10
        assert hits[0]["Event"]["EventData"]["Image"] == str(evil)

        # 5. streamed over SSE
        wait_for(
            lambda: any(sha256.upper() in json.dumps(p).upper() for p in stream.payloads),
            WAIT_LIMIT,
            "the detection on /stream/detections",
        )
    finally:
        stream.close()

    dirs = wait_for(
        lambda: [
            d
            for d in manager.admin("GET", f"/endpoints/{uuid}/artifacts")
            if {"report.json", "manifest.json"} <= {f["name"] for f in d["files"]}
            and any(f["name"].endswith("_evil-updater.bin") for f in d["files"])
        ],
        WAIT_LIMIT,
        "filedump + report artifacts on the manager",
    )
    files = {f["name"] for f in dirs[0]["files"]}
    dumped = next(n for n in files if n.endswith("_evil-updater.bin"))
    raw = manager.admin("GET", f"{dirs[0]['base-url']}{dumped}")
    assert hashlib.sha256(base64.b64decode(raw)).hexdigest() == sha256

    # 3. sighting in MISP with the endpoint as source
    def sightings() -> list[Any]:
        with misp.lock:
            return [s for s in misp.model.sightings if s.source.startswith(f"{uuid}|")]

    seen = wait_for(sightings, WAIT_LIMIT, "the sighting in MISP")
    hostname = manager.admin("GET", f"/endpoints/{uuid}")["hostname"]
    assert hostname and seen[0].source == f"{uuid}|{hostname}"

    # 4. the IR report as an edr-report object in the day's event
    manager.admin("POST", "/misp/sync", {})

    def reports() -> list[Any]:
        with misp.lock:
            return [
                o
                for e in misp.model.events.values()
                for o in misp.model.objects_of(e.id)
                if o.name == "edr-report"
            ]

    objs = wait_for(reports, WAIT_LIMIT, "the edr-report object in MISP")

    # One object per uploaded IR report, never a duplicate. The agent may still be uploading a
    # second report directory, so compare report ids (event hashes) once both sides agree,
    # rather than counting directories listed at one instant.
    def report_ids() -> list[str]:
        with misp.lock:
            return [
                a["value"]
                for o in reports()
                for a in misp.model.render_object(o)["Attribute"]
                if a["object_relation"] == "id"
            ]

    def uploaded() -> set[str]:
        return {
            d["event-hash"]
            for d in manager.admin("GET", f"/endpoints/{uuid}/artifacts")
            if "report.json" in {f["name"] for f in d["files"]}
        }

    def in_step() -> bool:
        manager.admin("POST", "/misp/sync", {})
        return set(report_ids()) == uploaded()

    wait_for(in_step, WAIT_LIMIT, "one edr-report per uploaded report")
    manager.admin("POST", "/misp/sync", {})  # a further sync pushes nothing new
    ids = report_ids()
    assert len(ids) == len(set(ids)), f"an edr-report pushed twice: {ids}"
    objs = reports()
    with misp.lock:
        rendered = [misp.model.render_object(o)["Attribute"] for o in objs]
    for attrs in rendered:
        names = {a["value"] for a in attrs if a["type"] in ("attachment", "malware-sample")}
        assert {"event.json", "processes.json"} <= names, names
    # the agent dumps a file once per sha256 across its artifact store: a later report of the
    # same process references the first copy (filerefs.json), so one report carries it
    dumped = [
        a
        for attrs in rendered
        for a in attrs
        if a["object_relation"] in ("executable", "additional-file")
    ]
    assert any("evil-updater" in a["value"] for a in dumped), rendered
    assert not misp.violations, misp.violations
