"""Replicated shards: two shards × two ClickHouse 18.16 replicas over a real ZooKeeper.

`cluster init` creates ``ReplicatedReplacingMergeTree`` tables, an event ingested by a
front-end lands on both replicas of its shard, a replica killed (-9) while the shipper inserts
into it catches up after its restart with every event exactly once, and `cluster status`
reports each replica's health.
"""

from __future__ import annotations

import gzip
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import requests

from appliance.core.config import ClusterConfig
from appliance.runtime.cluster import cluster_status
from appliance.store.postgres import PgDatabase
from index import EventStore, chship
from index.chreplica import ReplicaSet, parse_shards
from index.chship import Shipper
from index.clickhouse import ClickHouse, ClickHouseError, create_schema, shard_of
from index.journal import Journal
from tests.cluster import servers
from tests.cluster.test_ship import _fill, spread_endpoints
from tests.e2e.harness import PY, ROOT, WAIT_LIMIT, ManagerProc, agent_env, wait_for
from tests.index.conftest import sysmon
from tests.support.events import gene_event

SHARDS, REPLICAS = 2, 2


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[servers.ClickHouse]]:
    """ZooKeeper + two shards of two replicas each, in shard order (no schema yet)."""
    if servers.CH_BIN is None:
        pytest.skip("clickhouse-server is not installed (bash .ci/sysdeps.sh installs it)")
    reason = servers.zookeeper_missing()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("replicas")
    zk = servers.start_zookeeper(base)
    try:
        nodes = servers.start_clickhouse(base, SHARDS, replicas=REPLICAS, zookeeper=zk.port)
        try:
            yield nodes
        finally:
            for node in nodes:
                node.stop()
    finally:
        zk.stop()


def _specs(nodes: list[servers.ClickHouse]) -> list[str]:
    """The config's ``clickhouse`` list: one entry per shard, its replicas comma-separated."""
    return [", ".join(n.url for n in nodes if n.shard == shard) for shard in range(SHARDS)]


def _count(node: servers.ClickHouse, where: str) -> tuple[int, int]:
    _, rows = ClickHouse(node.url).rows(
        f"SELECT count(), uniqExact(frontend, seq) FROM heron.events_local WHERE {where}"
    )
    return int(rows[0][0]), int(rows[0][1])


def _wait_count(node: servers.ClickHouse, where: str, want: tuple[int, int]) -> None:
    """Until ``node`` holds ``want`` = (rows, distinct events) matching ``where``."""
    wait_for(lambda: _count(node, where) == want, WAIT_LIMIT, f"{want} rows on {node.url}")


@pytest.fixture(scope="module")
def schema(replicated: list[servers.ClickHouse]) -> list[ClickHouse]:
    shards = parse_shards(_specs(replicated))
    create_schema(shards, "heron")
    return shards


def test_schema_is_replicated_on_every_server(
    replicated: list[servers.ClickHouse], schema: list[ClickHouse]
) -> None:
    assert all(isinstance(s, ReplicaSet) and len(s.replicas) == REPLICAS for s in schema)
    for node in replicated:
        ch = ClickHouse(node.url)
        engines = dict(
            ch.rows("SELECT name, engine FROM system.tables WHERE database = 'heron'")[1]
        )
        assert engines == {
            "events_local": "ReplicatedReplacingMergeTree",
            "events": "Distributed",
        }
        _, rows = ch.rows(
            "SELECT zookeeper_path, replica_name, total_replicas FROM system.replicas "
            "WHERE database = 'heron' AND table = 'events_local'"
        )
        path, name, total = rows[0]
        assert path == f"/clickhouse/tables/{node.shard + 1:02d}/heron/events_local"
        assert name == f"r{node.replica + 1}" and int(total) == REPLICAS
    create_schema(schema, "heron")  # idempotent


def test_declared_replicas_over_an_unreplicated_table_are_refused(
    shards: list[ClickHouse],
) -> None:
    """The session's plain shards hold unreplicated tables: a config that now lists
    replicas must not silently keep them (converting is a manual step)."""
    with pytest.raises(ClickHouseError, match="not replicated"):
        create_schema([ReplicaSet([s.url, s.url]) for s in shards], "heron")


def test_replica_killed_while_shipping_catches_up_exactly_once(
    tmp_path: Path,
    replicated: list[servers.ClickHouse],
    schema: list[ClickHouse],
    pg_server: servers.Postgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frontend = f"fe-{uuid.uuid4().hex[:8]}"
    last = _fill(tmp_path, 50, 120, frontend)
    monkeypatch.setattr(chship, "_ROUND_ROWS", 300)  # many rounds: the kill lands inside
    shards = parse_shards(_specs(replicated))
    shipper = Shipper(
        Journal(tmp_path / "journal", fsync=False),
        shards,
        frontend=frontend,
        state_path=tmp_path / "ship.json",
        retry_interval=0.05,
    )
    victim = replicated[0]  # shard 1's first replica: where its inserts go
    ours = f"frontend = '{frontend}'"
    dsn = servers.fresh_database(pg_server)
    db = PgDatabase(dsn)
    db.create_schema()  # cluster_status also asks PostgreSQL
    db.close()
    config = ClusterConfig(mode="cluster", clickhouse=tuple(_specs(replicated)), postgres=dsn)
    shipper.start()
    try:
        while _count(victim, ours)[0] == 0:
            pass  # NOTE: busy-poll on the condition (ClickHouse answers each poll)
        victim.kill()
        assert shipper.lag() > 0, "the kill must land while shipping"
        down = cluster_status(config)
        assert not down["ok"]
        states = {r["url"]: r["ok"] for s in down["shards"] for r in s["replicas"]}
        assert states == {n.url: n is not victim for n in replicated}
        wait_for(lambda: shipper.lag() == 0, WAIT_LIMIT, "shipping through the other replica")
    finally:
        shipper.stop()
    first = shards[0]
    assert isinstance(first, ReplicaSet) and first.preferred.url == replicated[1].url
    expected = [0] * SHARDS
    for record in Journal(tmp_path / "journal", fsync=False).read(after_seq=0):
        expected[shard_of(record.endpoint["uuid"], SHARDS)] += len(record.events)
    assert sum(expected) == last and all(expected)
    victim.start()
    for node in replicated:
        _wait_count(node, ours, (expected[node.shard], expected[node.shard]))
    status = wait_for(
        lambda: (
            (st := cluster_status(config))["ok"]
            and all(r["queue_size"] == 0 for s in st["shards"] for r in s["replicas"])
            and st
        ),
        WAIT_LIMIT,
        "every replica healthy again",
    )
    for shard in status["shards"]:
        for rep in shard["replicas"]:
            assert rep["is_readonly"] == 0 and rep["active_replicas"] == REPLICAS
            assert rep["absolute_delay"] >= 0


class DroppingProxy:
    """An HTTP proxy in front of a replica that can swallow one INSERT's answer: the server
    commits the block, the client sees the connection closed (the ambiguous failure)."""

    def __init__(self, port: int) -> None:
        target = f"http://127.0.0.1:{port}"
        self.drop = threading.Event()  # set: swallow the next INSERT's answer
        self.dropped = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = urllib.request.Request(target + self.path, data=body, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        status, answer = resp.status, resp.read()
                except urllib.error.HTTPError as ex:
                    status, answer = ex.code, ex.read()
                swallow = "query=INSERT" in self.path and proxy.drop.is_set()
                if swallow and not proxy.dropped.is_set():
                    proxy.dropped.set()
                    return  # committed by the server; the client never hears it
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_an_insert_whose_answer_is_lost_is_resent_once(
    tmp_path: Path,
    replicated: list[servers.ClickHouse],
    schema: list[ClickHouse],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first replica commits the journal's tail, the answer is lost and the replica dies
    before the other one fetched the part, while ingest goes on: the shipper re-sends the
    same rows to the other replica, where ZooKeeper's block ids drop them, so after the
    restart each replica holds every event once (a round rebuilt with the newer events would
    have landed the lost rows twice)."""
    frontend = f"fe-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(chship, "_ROUND_ROWS", 300)
    eps = [e for e in spread_endpoints(frontend, 4, SHARDS) if shard_of(e.uuid, SHARDS) == 0]
    victim, other = replicated[0], replicated[1]
    ClickHouse(other.url).execute("SYSTEM STOP FETCHES heron.events_local")
    proxy = DroppingProxy(victim.http_port)
    specs = _specs(replicated)
    specs[0] = f"{proxy.url}, {other.url}"
    ours = f"frontend = '{frontend}'"

    def ingest(store: EventStore, tag: str, batches: int) -> None:
        for b in range(batches):
            events = [sysmon(f"C:\\bin\\{tag}.exe", f"{tag} {b} {i}") for i in range(50)]
            store.append(events, endpoint=eps[b % len(eps)], batch_id=f"{tag}{b}")

    with EventStore(tmp_path / "fe", fsync=False) as store:
        ingest(store, "early", 8)  # 400 events: a round of 300, then a tail of 100
        shipper = Shipper(
            store.journal,
            parse_shards(specs),
            frontend=frontend,
            state_path=tmp_path / "ship.json",
        )
        try:
            assert shipper.ship_once() >= 300  # through the proxy, answered
            landed = _count(victim, ours)[0]
            proxy.drop.set()
            with pytest.raises(ClickHouseError):
                shipper.ship_once()  # the tail: committed by the victim, answer swallowed
            assert proxy.dropped.is_set() and _count(victim, ours)[0] > landed
            victim.kill()
            proxy.close()
            ingest(store, "late", 4)  # ingest goes on meanwhile
            while shipper.lag():
                shipper.ship_once()
        finally:
            ClickHouse(other.url).execute("SYSTEM START FETCHES heron.events_local")
            victim.start()
        expected = [0] * SHARDS
        for record in store.journal.read(after_seq=0):
            expected[shard_of(record.endpoint["uuid"], SHARDS)] += len(record.events)
    for node in replicated:
        _wait_count(node, ours, (expected[node.shard], expected[node.shard]))


@pytest.mark.e2e
def test_front_end_on_replicas_init_status_and_ingest(
    tmp_path: Path, replicated: list[servers.ClickHouse], pg_server: servers.Postgres
) -> None:
    dsn = servers.fresh_database(pg_server)
    front = ManagerProc(tmp_path / "fe")
    conf = (front.data / "config.toml").read_text()
    specs = ", ".join(f'"{s}"' for s in _specs(replicated))
    (front.data / "config.toml").write_text(
        conf[: conf.index("\n[cluster]\n")]
        + f'\n[cluster]\nmode = "cluster"\nfrontend = "fe-r"\nclickhouse = [{specs}]\n'
        f'postgres = "{dsn}"\n'
    )

    def manager(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [PY, "-m", "appliance", *args, "--data-dir", str(front.data)],
            capture_output=True,
            env=agent_env(),
            cwd=ROOT,
            timeout=120,
        )

    out = manager("cluster", "init")
    assert out.returncode == 0, out.stderr[-3000:]
    init = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert init["ok"] and len(init["shards"]) == SHARDS
    for shard in init["shards"]:
        assert [r["ok"] for r in shard["replicas"]] == [True] * REPLICAS
        assert {"queue_size", "absolute_delay", "is_readonly"} <= set(shard["replicas"][0])
    front.api_key = init["api_key"]
    front.start()
    try:
        from tests.appliance.conftest import make_csr

        csr, key_pem = make_csr()
        res = requests.post(
            f"https://{front.address}/enroll",
            verify=str(front.ca_file),
            json={"token": front.token(), "csr_pem": csr, "hostname": "rep-1"},
            timeout=30,
        )
        res.raise_for_status()
        (tmp_path / "a.pem").write_text(res.json()["certificate_pem"])
        (tmp_path / "a.key").write_text(key_pem)
        endpoint = res.json()["uuid"]
        marker = f"replicated-{uuid.uuid4().hex[:8]}"
        event = gene_event(1, {"CommandLine": f"cmd /c {marker}"}, computer="rep-1")
        res = requests.post(
            f"https://{front.address}/logs",
            data=gzip.compress(orjson.dumps(event)),
            verify=str(front.ca_file),
            cert=(str(tmp_path / "a.pem"), str(tmp_path / "a.key")),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"},
            timeout=30,
        )
        assert res.status_code == 200, res.text
        shard = shard_of(endpoint, SHARDS)
        where = f"frontend = 'fe-r' AND position(command_line, '{marker}') > 0"
        for node in replicated:
            _wait_count(node, where, (1, 1) if node.shard == shard else (0, 0))
        assert front.admin("GET", f"/search?q=%22{marker}%22")["total"] == 1
        out = manager("cluster", "status")
        assert out.returncode == 0, out.stdout[-3000:]
    finally:
        front.stop()
