"""Opening an initialized data directory: its files, fleet store, PKI and event store.

The CLI's commands and the running manager open a data directory the same way (embedded: DuckDB
and the local event store; cluster: PostgreSQL, a local journal and ClickHouse). Commands that
open the fleet database cannot run while `heron-manager run` holds it (DuckDB allows one process).
"""

from __future__ import annotations

from pathlib import Path

from ..core.config import Config, load_config
from ..core.errors import ConfigError, StoreError
from ..security.pki import Pki
from ..store import Store
from ..store.events import EventSink, NoEventStore
from .context import AppContext, build_context

__all__ = ["data_paths", "open_cluster_context", "open_context"]


def data_paths(data_dir: Path) -> dict[str, Path]:
    """Where each part of a data directory lives."""
    return {
        "config": data_dir / "config.toml",
        "pki": data_dir / "pki",
        "db": data_dir / "db" / "heron.duckdb",
        "events": data_dir / "events",
        "artifacts": data_dir / "artifacts",
    }


def open_context(
    data_dir: Path,
    *,
    config: Config | None = None,
    events_dir: Path | None = None,
    with_events: bool = True,
) -> AppContext:
    """Open an initialized data directory (fleet store, PKI, event store).

    ``events_dir`` puts the event store elsewhere than ``<data>/events`` (``run --memory-events``);
    ``with_events=False`` opens no event store (commands that only touch the fleet store).
    """
    paths = data_paths(data_dir)
    config = config or load_config(paths["config"])
    if config.cluster.mode == "cluster":
        return open_cluster_context(data_dir, config, with_events=with_events)
    if not paths["db"].exists() or not (paths["pki"] / "ca.pem").exists():
        raise ConfigError(
            "data directory is not initialized (run heron-manager init)", source=str(data_dir)
        )
    try:
        store = Store(paths["db"])
    except StoreError as ex:
        if "lock" in str(ex).lower():
            raise StoreError(
                "the fleet database is open in another process (is `heron-manager run` using "
                "this data directory? use the admin API while it runs)",
                where=str(paths["db"]),
            ) from ex
        raise
    events: EventSink = NoEventStore()
    try:
        if with_events:
            from index import EventStore

            # Tantivy is written from a child process (a second core for ingest);
            # the throwaway store of --memory-events keeps it in-process
            events = EventStore(
                events_dir or paths["events"],
                index_process=events_dir is None,
                **config.store_options(),
            )
        return build_context(
            data_dir=data_dir, config=config, store=store, events=events, pki=Pki(paths["pki"])
        )
    except BaseException:
        store.close()
        raise


def open_cluster_context(data_dir: Path, config: Config, *, with_events: bool) -> AppContext:
    """A cluster front-end: fleet in PostgreSQL, events journaled here and read from ClickHouse."""
    from ..misp.shared import LEADER_JOBS
    from .cluster import open_cluster, start_relay
    from .leader import PgLeadership

    paths = data_paths(data_dir)
    if not (paths["pki"] / "ca.pem").exists():
        raise ConfigError(
            "no PKI in the data directory (copy pki/ from the first front-end)",
            source=str(data_dir),
        )
    if not with_events:
        from ..store.postgres import ClusterStore

        store = ClusterStore(config.cluster.postgres, create=False)
        try:
            return build_context(
                data_dir=data_dir,
                config=config,
                store=store,
                events=NoEventStore(),
                pki=Pki(paths["pki"]),
            )
        except BaseException:
            store.close()
            raise
    fleet, events = open_cluster(config.cluster, paths["events"])
    try:
        ctx = build_context(
            data_dir=data_dir, config=config, store=fleet, events=events, pki=Pki(paths["pki"])
        )
        start_relay(events, config.cluster, ctx.hub)
        ctx.leadership = PgLeadership(config.cluster.postgres, LEADER_JOBS)  # lifecycle starts it
        return ctx
    except BaseException:
        events.close()
        fleet.close()
        raise
