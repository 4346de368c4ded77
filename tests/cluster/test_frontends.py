"""The cluster tier end to end: two `heron-manager run` front-ends over two ClickHouse shards and
one PostgreSQL, four agents (mutual TLS) enrolled across both, a kill -9 of one front-end
during ingest, commands and revocation across front-ends."""

from __future__ import annotations

import gzip
import shutil
import signal
import subprocess
import threading
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.appliance.conftest import make_csr
from tests.cluster.servers import HUNTER_PASSWORD, ClickHouse, Postgres
from tests.e2e.harness import PY, ROOT, WAIT_LIMIT, ManagerProc, agent_env, free_port, wait_for
from tests.support.events import gene_event

pytestmark = pytest.mark.e2e
BATCH = 40


def _cluster_toml(name: str, ch: list[ClickHouse], pg: Postgres) -> str:
    urls = ", ".join(f'"{n.url}"' for n in ch)
    return (
        f'\n[cluster]\nmode = "cluster"\nfrontend = "{name}"\nclickhouse = [{urls}]\n'
        f'hunter_user = "hunter"\nhunter_password = "{HUNTER_PASSWORD}"\n'
        f'postgres = "{pg.dsn}"\n'
    )


def _second_frontend(first: ManagerProc, data: Path, toml: str) -> ManagerProc:
    """Front-end B: the same PKI and API key, its own ports and journal."""
    data.mkdir(parents=True)
    shutil.copytree(first.data / "pki", data / "pki")
    b = ManagerProc.__new__(ManagerProc)
    b.data, b.endpoint_port, b.admin_port = data, free_port(), free_port()
    b.api_key, b.ca_sha256, b.ca_file = first.api_key, first.ca_sha256, data / "pki" / "ca.pem"
    b.proc = None
    (data / "config.toml").write_text(
        f'[admin]\nlisten = "127.0.0.1:{b.admin_port}"\n'
        f'[endpoint]\nlisten = "127.0.0.1:{b.endpoint_port}"\n' + toml
    )
    return b


def two_frontends(
    tmp_path: Path, ch: list[ClickHouse], pg: Postgres, names: tuple[str, str], dsn: str = ""
) -> tuple[ManagerProc, ManagerProc, dict[str, Any]]:
    """Front-ends `a` and `b` of one cluster (not started): config written, `cluster init` run
    on `a`, its admin key set on both; `dsn` replaces the server's default database."""

    def toml(name: str) -> str:
        text = _cluster_toml(name, ch, pg)
        return text.replace(pg.dsn, dsn) if dsn else text

    a = ManagerProc(tmp_path / "a")
    conf = (a.data / "config.toml").read_text()
    conf = conf[: conf.index("\n[cluster]\n")]  # init wrote the embedded defaults: replace them
    (a.data / "config.toml").write_text(conf + toml(names[0]))
    b = _second_frontend(a, tmp_path / "b", toml(names[1]))
    out = subprocess.run(
        [PY, "-m", "appliance", "cluster", "init", "--data-dir", str(a.data)],
        capture_output=True,
        env=agent_env(),
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    init: dict[str, Any] = orjson.loads(out.stdout.strip().splitlines()[-1])
    a.api_key = b.api_key = init.get("api_key", a.api_key)
    return a, b, init


def _event(agent: str, batch: int, i: int) -> dict[str, Any]:
    data = {
        "Image": "C:\\Windows\\System32\\cmd.exe",
        "CommandLine": f"cmd /c marker {agent}b{batch}e{i}",
    }
    return gene_event(1, data, computer=agent, time="2026-11-28T10:00:00.000000Z")


class Agent:
    def __init__(self, name: str, front: ManagerProc, token: str, tmp: Path) -> None:
        csr, key_pem = make_csr()
        res = requests.post(
            f"https://{front.address}/enroll",
            verify=str(front.ca_file),
            json={"token": token, "csr_pem": csr, "hostname": name},
            timeout=30,
        )
        res.raise_for_status()
        self.uuid = res.json()["uuid"]
        cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
        cert.write_text(res.json()["certificate_pem"])
        key.write_text(key_pem)
        self.name, self.front = name, front
        self.session = requests.Session()
        self.session.trust_env, self.session.verify = False, str(front.ca_file)
        self.session.cert = (str(cert), str(key))
        self.acked: list[int] = []

    def post(self, batch: int) -> int:
        body = gzip.compress(
            b"\n".join(orjson.dumps(_event(self.name, batch, i)) for i in range(BATCH))
        )
        res = self.session.post(
            f"https://{self.front.address}/logs",
            data=body,
            timeout=30,
            headers={
                "Content-Encoding": "gzip",
                "Content-Type": "application/x-ndjson",
                "X-Heron-Batch-Id": f"{self.name}-{batch}",
            },
        )
        if res.status_code == 200:
            self.acked.append(batch)
        return res.status_code

    def post_until(self, stop: threading.Event) -> None:
        batch = 0
        while not stop.is_set():
            try:
                self.post(batch)
            except requests.RequestException:
                return  # the front-end is gone
            batch += 1


def _sql(front: ManagerProc, query: str) -> list[list[Any]]:
    return list(front.admin("POST", "/hunt/sql", {"query": query})["rows"])


def test_two_front_ends_one_cluster(
    tmp_path: Path, ch_servers: list[ClickHouse], pg_server: Postgres
) -> None:
    a, b, init = two_frontends(tmp_path, ch_servers, pg_server, ("fe-a", "fe-b"))
    assert init["ok"] and len(init["shards"]) == 2 and init["postgres"]["ok"]
    a.start()
    b.start()
    try:
        # Tokens made on one front-end enroll on the other (PostgreSQL holds them).
        agents = [
            Agent(f"ag{i}", front, (b if front is a else a).token(), tmp_path)
            for i, front in enumerate([a, a, b, b])
        ]
        stop = threading.Event()
        posters = [threading.Thread(target=ag.post_until, args=(stop,)) for ag in agents]
        for th in posters:
            th.start()
        wait_for(
            lambda: all(len(ag.acked) >= 5 for ag in agents), WAIT_LIMIT, "every agent acknowledged"
        )
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(WAIT_LIMIT)
        wait_for(
            lambda: all(len(ag.acked) >= 10 for ag in agents[2:]),
            WAIT_LIMIT,
            "B keeps ingesting while A is down",
        )
        stop.set()
        for th in posters:
            th.join(60)
        a.proc = None
        a.start()
        acked = {f"{ag.name}b{bt}e{i}" for ag in agents for bt in ag.acked for i in range(BATCH)}
        marker = "extract(command_line, 'marker (ag[0-9]+b[0-9]+e[0-9]+)')"
        # only this test's front-ends: other tests of the session ship into the same shards
        ours = "FROM heron.events WHERE frontend IN ('fe-a', 'fe-b')"
        count_sql = f"SELECT count(), uniqExact({marker}) {ours}"
        rows = wait_for(
            lambda: (r := _sql(b, count_sql)) and int(r[0][0]) >= len(acked) and r,
            WAIT_LIMIT,
            "every acknowledged event in ClickHouse",
        )
        count, distinct = int(rows[0][0]), int(rows[0][1])
        if count != distinct:  # say which rows, to tell a re-shipped seq from a re-append
            dups = _sql(
                b,
                f"SELECT {marker} AS m, groupArray(frontend), groupArray(seq), "
                f"groupArray(batch_id), groupArray(batch_idx) {ours} "
                "GROUP BY m HAVING count() > 1 LIMIT 5",
            )
            raise AssertionError(f"an event landed twice: {dups}")
        markers = {
            r[0]
            for r in b.admin(
                "POST",
                "/hunt/sql",
                {"query": f"SELECT {marker} {ours}", "max_rows": 100_000},
            )["rows"]
        }
        assert acked <= markers
        # Searchable and countable from either front-end.
        # (every front-end's EventID 1 rows: other tests of the session add some)
        all_ones = int(_sql(b, "SELECT count() FROM heron.events WHERE event_id = 1")[0][0])
        assert all_ones >= count
        for front in (a, b):
            assert front.admin("GET", "/search?q=EventID:1&limit=1")["total"] == all_ones
            probe = agents[0]
            q = urllib.parse.quote(f'"marker {probe.name}b{probe.acked[-1]}e7"')
            assert front.admin("GET", f"/search?q={q}")["total"] == 1
        # A stream on B carries what an agent sends to A.
        streamed: dict[str, Any] = {}
        source = agents[0]
        sse = _sse(b, f"/stream/events?endpoint={source.uuid}&limit=1", streamed)
        sse.start()
        batch = 50_000
        while sse.is_alive():
            assert batch < 50_000 + 600, "B's stream never carried A's events"
            assert source.post(batch) == 200
            batch += 1
            sse.join(0.2)
        assert f"marker {source.name}b" in streamed["text"]
        # A command queued on B is delivered to an agent connected to A, once.
        target = agents[0]
        b.admin("POST", f"/endpoints/{target.uuid}/command", {"name": "hostname"})
        res = target.session.get(f"https://{a.address}/commands", timeout=30)
        assert res.status_code == 200 and res.json()["name"] == "hostname"
        assert target.session.get(f"https://{a.address}/commands", timeout=30).status_code == 204
        # Revocation on A takes effect on B.
        victim = agents[3]
        assert victim.post(10_000) == 200
        a.admin("POST", f"/endpoints/{victim.uuid}/revoke")
        wait_for(lambda: _refused(victim), WAIT_LIMIT, "B to refuse the revoked agent")
    finally:
        a.stop()
        b.stop()


def _sse(front: ManagerProc, path: str, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        res = requests.get(
            f"https://127.0.0.1:{front.admin_port}{path}",
            timeout=120,
            verify=str(front.ca_file),
            headers={"X-Api-Key": front.api_key},
        )
        out["text"] = res.text

    return threading.Thread(target=run, daemon=True)


def _refused(agent: Agent) -> bool:
    agent.session.close()
    try:
        return agent.post(uuid.uuid4().int % 10_000 + 20_000) in (401, 403)
    except requests.RequestException:
        return True  # refused during the TLS handshake
