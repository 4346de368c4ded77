"""The cluster tier: real ClickHouse shards and a real PostgreSQL on loopback (docs/cluster.md).

Skipped, with the reason, only where the servers are not installed (.ci/sysdeps.sh installs
Debian's clickhouse-server and postgresql-15).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from index import EventStore
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import ClickHouse, create_schema
from tests.cluster import servers
from tests.cluster.servers import HUNTER_PASSWORD
from tests.index.conftest import corpus, corpus_store  # noqa: F401 - shared fixtures

CLUSTER = "heron"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def ch_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[servers.ClickHouse]]:
    """Two ClickHouse servers, two shards of the ``heron`` cluster, schema created."""
    if servers.CH_BIN is None:
        pytest.skip("clickhouse-server is not installed (bash .ci/sysdeps.sh installs it)")
    nodes = servers.start_clickhouse(tmp_path_factory.mktemp("clickhouse"), 2)
    try:
        create_schema([ClickHouse(n.url) for n in nodes], CLUSTER)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="session")
def shards(ch_servers: list[servers.ClickHouse]) -> list[ClickHouse]:
    return [ClickHouse(n.url) for n in ch_servers]


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Postgres]:
    if servers.PG_BIN is None:
        pytest.skip("PostgreSQL is not installed (bash .ci/sysdeps.sh installs postgresql-15)")
    pg = servers.start_postgres(Path(tmp_path_factory.mktemp("postgres")))
    try:
        yield pg
    finally:
        servers.stop_postgres(pg)


@pytest.fixture(scope="session")
def cluster_corpus(
    corpus_store: EventStore,  # noqa: F811 - the shared fixture
    shards: list[ClickHouse],
) -> Iterator[ClusterEvents]:
    """The corpus store's journal shipped to both shards (as a front-end's would be)."""
    root = Path(corpus_store.root)
    shipper = Shipper(
        corpus_store.journal, shards, frontend="corpus", state_path=root / "ship.json"
    )
    while shipper.lag():
        shipper.ship_once()
    hunter = ClickHouse(shards[1].url, user="hunter", password=HUNTER_PASSWORD)
    yield ClusterEvents(shards[1], hunter)
