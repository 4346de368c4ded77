"""Manager configuration: one frozen dataclass per TOML section, loaded once, unknown keys refused.

Each key is declared once with `rules.settings.setting` (help, bounds); `render_toml()` writes a
fully commented file (what `heron-manager init` drops into the data directory) and
docs/settings.md lists every key.
Paths are never configured here: everything lives under the data directory given on the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rules import wire
from rules.settings import (
    ConfigError,
    parse_section,
    read_toml,
    section,
    setting,
    settings_of,
)
from rules.settings import render_toml as render

from ..misp.settings import MispSettings

__all__ = [
    "AdminConfig",
    "ClusterConfig",
    "CommandsConfig",
    "Config",
    "EndpointConfig",
    "EnrollConfig",
    "HuntConfig",
    "LimitsConfig",
    "LoggingConfig",
    "RetentionConfig",
    "ServerConfig",
    "SqlConfig",
    "StreamsConfig",
    "TlsConfig",
    "load_config",
    "parse_listen",
    "render_toml",
]


def parse_listen(text: str) -> tuple[str, int]:
    """Split `HOST:PORT` (IPv6 hosts in brackets) into a tuple."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """[admin]: the HTTPS admin API and console."""

    listen: str = setting("127.0.0.1:1520", "HOST:PORT of the admin API (HTTPS, API keys)")


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """[endpoint]: the mutual-TLS endpoint (agent) API."""

    listen: str = setting("0.0.0.0:1519", "HOST:PORT of the endpoint API (mutual TLS)")
    public_url: str = setting(
        "", "URL agents use to reach the endpoint API (default: first server name)"
    )


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """[tls]: certificates and the TLS front."""

    server_names: tuple[str, ...] = setting(
        ("localhost", "127.0.0.1"), "DNS names and IPs put in the server certificate's SANs"
    )
    server_cert_days: int = setting(825, "validity of the server certificate, days")
    client_cert_days: int = setting(365, "validity of endpoint client certificates, days")
    renew_before_days: int = setting(30, "endpoints may renew this many days before expiry")
    handshake_timeout: float = setting(10.0, "seconds a client gets to finish the TLS handshake")
    idle_timeout: float = setting(300.0, "seconds an idle proxied connection is kept open")
    max_connections: int = setting(
        0, "concurrent TLS connections per listener, more are closed (0: from connection_memory)"
    )
    connection_memory: int = setting(
        1 << 30,
        "bytes of RSS idle TLS connections may use per listener (sizes max_connections)",
        min=1 << 20,
    )
    per_source_connections: int = setting(
        256, "connections one source IP may hold before it authenticated; more are closed"
    )
    reserved_connections: int = setting(
        256, "of max_connections, slots only authenticated agents and admin sessions may take"
    )
    header_timeout: float = setting(
        10.0, "seconds after the handshake to send the first request head"
    )
    anonymous_idle_timeout: float = setting(
        15.0, "seconds an unauthenticated connection may stay idle (authenticated: idle_timeout)"
    )
    anonymous_bytes: int = setting(
        1024 * 1024, "bytes an unauthenticated connection may send (e.g. /enroll) before closed"
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server]: the waitress backends."""

    threads: int = setting(
        64, "waitress worker threads per listener (API workers + streams)", min=4
    )
    channel_timeout: int = setting(120, "seconds waitress keeps an inactive backend channel")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """[limits]: request size limits (a violation is a 4xx, never a silent cut)."""

    logs_body: int = setting(wire.MAX_LOGS_BODY, "max decompressed bytes of one /logs batch")
    logs_body_compressed: int = setting(
        wire.MAX_LOGS_BODY_COMPRESSED, "max raw bytes of one /logs body"
    )
    event_line: int = setting(wire.MAX_EVENT_LINE, "max bytes of one NDJSON event line (one event)")
    event_stored: int = setting(
        256 * 1024,
        "an event longer than this is stored with its longest strings cut (marked, "
        "original length kept)",
    )
    logs_events: int = setting(wire.MAX_LOGS_EVENTS, "max events (NDJSON lines) of one /logs batch")
    logs_batch_memory: int = setting(
        384 * 1024 * 1024,
        "max estimated memory of one /logs batch while indexed: events x 16 KiB + 3 x its bytes",
    )
    min_free_bytes: int = setting(
        1024 * 1024 * 1024,
        "free bytes kept on the data directory's disk: below, /logs and "
        "uploads answer 503 + Retry-After and /healthz says disk.ok false",
    )
    upload_parts_quota: int = setting(
        1024 * 1024 * 1024, "bytes of unfinished upload chunks one endpoint may hold (429 beyond)"
    )
    upload_expiry: float = setting(
        86400.0, "seconds an unfinished upload's chunks are kept before they are deleted"
    )
    memory_budget: int = setting(
        4 * 1024 * 1024 * 1024,
        "the manager's memory budget in bytes: DuckDB gets a quarter (memory_limit, all SQL "
        "and inserts together, 2 threads), the index queue 1/8 (batches stored but not yet "
        "indexed; ingest waits beyond) and the Tantivy writer heap 1/32 (at most 256 MB)",
    )
    logs_inflight_memory: int = setting(
        1024 * 1024 * 1024,
        "estimated memory of all /logs batches being decoded and stored at once; more wait, "
        "then get 503 + Retry-After",
    )
    json_body: int = setting(8 * 1024 * 1024, "max bytes of any other JSON request body")
    upload_size: int = setting(wire.MAX_UPLOAD_SIZE, "max bytes of one uploaded artifact file")
    upload_chunk: int = setting(wire.UPLOAD_CHUNK_SIZE, "max decoded bytes of one upload chunk")


SQL_ROLES = ("admin", "analyst", "plugin")


@dataclass(frozen=True, slots=True)
class SqlConfig:
    """[sql]: read-only SQL over stored events (POST /hunt/sql)."""

    roles: tuple[str, ...] = setting(
        ("admin", "analyst"),
        "roles allowed to run SQL (of admin, analyst, plugin)",
        choices=SQL_ROLES,
        noun="role",
    )
    concurrency: int = setting(2, "SQL queries running at once; more are answered 429", min=1)
    timeout: float = setting(
        10.0, "seconds one query may take, fetching and converting rows included"
    )
    max_bytes: int = setting(
        16 * 1024 * 1024, "JSON bytes of one result; rows past it are left out (truncated: true)"
    )


@dataclass(frozen=True, slots=True)
class HuntConfig:
    """[hunt]: retro-hunt jobs (POST /hunt/jobs; POST /hunt/rules waits for one)."""

    workers: int = setting(1, "retro-hunt jobs running at once (each on one thread)", min=1)
    queue_per_user: int = setting(1, "jobs one user may have waiting; more are answered 429", min=1)
    timeout: float = setting(
        600.0, "seconds one job may run; it then stops with its results so far"
    )
    cpu_share: float = setting(
        0.5,
        "share of one core a running job may use (it idles between chunks of events)",
        min=0.05,
        max=1.0,
    )
    match_bytes: int = setting(64 * 1024 * 1024, "JSON bytes of matches one job keeps")
    max_events: int = setting(50_000_000, "events one job may scan")
    keep: int = setting(50, "finished jobs kept with their matches (the oldest are dropped)", min=1)
    kept_bytes: int = setting(
        256 * 1024 * 1024, "JSON bytes of matches all finished jobs keep (the oldest are dropped)"
    )


@dataclass(frozen=True, slots=True)
class StreamsConfig:
    """[streams]: event streams on the admin API (Server-Sent Events and WebSocket)."""

    max_clients: int = setting(32, "concurrent SSE streams; more get 503")
    heartbeat: float = setting(15.0, "seconds between SSE heartbeat comments and WebSocket pings")
    queue: int = setting(
        2_000, "events buffered per SSE stream; a slower client loses the oldest", min=1
    )
    buffer: int = setting(
        4 * 1024 * 1024, "bytes buffered per SSE stream; a slower client loses the oldest", min=1
    )
    stall: float = setting(
        60.0, "seconds an SSE stream that lost events may go without reading before it is closed"
    )
    ws_max_clients: int = setting(1_024, "concurrent WebSocket streams; more are closed with 1013")
    ws_per_key: int = setting(64, "concurrent WebSocket streams per API key; more closed with 1008")
    ws_buffer: int = setting(4 * 1024 * 1024, "bytes buffered per WebSocket stream; oldest dropped")


@dataclass(frozen=True, slots=True)
class EnrollConfig:
    """[enroll]: one-time enrollment tokens."""

    token_ttl: float = setting(7 * 86400.0, "default lifetime of an enrollment token, seconds")


@dataclass(frozen=True, slots=True)
class CommandsConfig:
    """[commands]: the per-endpoint command queue."""

    default_timeout: float = setting(
        15.0, "command timeout on the endpoint when none is given, seconds"
    )
    result_timeout: float = setting(
        600.0, "a sent command without result after this many s times out"
    )
    poll_wait: float = setting(
        0.0, "GET /commands long-poll, seconds (0 = answer 204 at once; ≤ 30)", max=30
    )
    long_poll: float = setting(
        60.0, "longest GET /commands?wait= hold in the TLS front (0: off)", max=240
    )
    update_after: float = setting(
        60.0, "X-Heron-Poll-After advised to agents up to 1,000 connected", above=0
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """[logging]: the manager's own logs."""

    level: str = setting("INFO", "log level (DEBUG, INFO, WARNING, ERROR)")
    json: bool = setting(True, "structured JSON log lines on stderr (false: plain text)")


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """[retention]: event retention and index maintenance (a background pass)."""

    max_age_days: int = setting(
        90, "drop events received more than this many days ago (0 = forever)"
    )
    max_bytes: int = setting(
        0, "drop the oldest events while their estimated bytes on disk are larger (0 = no cap)"
    )
    interval: float = setting(3600.0, "seconds between maintenance passes (0 = no periodic pass)")
    merge: bool = setting(True, "merge index segments and reclaim space after each pass")
    artifact_max_age_days: int = setting(
        30, "delete uploaded artifacts received more than this many days ago (0 = forever)"
    )
    artifact_endpoint_max_bytes: int = setting(
        5 << 30,
        "per-endpoint artifact quota: its oldest artifacts are deleted while it holds "
        "more (0 = no cap)",
    )


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """[cluster]: cluster mode (docs/cluster.md): events in ClickHouse, fleet in PostgreSQL."""

    mode: str = setting(
        "embedded",
        "embedded (one box: DuckDB + Tantivy) or cluster",
        choices=("embedded", "cluster"),
    )
    frontend: str = setting("", "this front-end's unique name (default: the host name)")
    clickhouse: tuple[str, ...] = setting(
        (),
        "HTTP URL of each ClickHouse shard, in shard order; a shard with replicas lists "
        "their URLs comma-separated (its table is then replicated: docs/cluster.md)",
    )
    clickhouse_cluster: str = setting("heron", "remote_servers cluster name of the shards")
    clickhouse_user: str = setting("default", "ClickHouse user of the shipper and searches")
    clickhouse_password: str = setting("", "its password")
    hunter_user: str = setting("", "read-only ClickHouse user for SQL hunting (readonly=1 profile)")
    hunter_password: str = setting("", "its password")
    postgres: str = setting("", "PostgreSQL connection string of the fleet store (libpq DSN)")

    def __post_init__(self) -> None:
        if self.mode == "cluster" and not (self.clickhouse and self.postgres):
            raise ValueError("cluster mode needs cluster.clickhouse and cluster.postgres")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole manager configuration."""

    admin: AdminConfig = section(AdminConfig)
    endpoint: EndpointConfig = section(EndpointConfig)
    tls: TlsConfig = section(TlsConfig)
    server: ServerConfig = section(ServerConfig)
    limits: LimitsConfig = section(LimitsConfig)
    streams: StreamsConfig = section(StreamsConfig)
    sql: SqlConfig = section(SqlConfig)
    hunt: HuntConfig = section(HuntConfig)
    enroll: EnrollConfig = section(EnrollConfig)
    commands: CommandsConfig = section(CommandsConfig)
    logging: LoggingConfig = section(LoggingConfig)
    retention: RetentionConfig = section(RetentionConfig)
    misp: MispSettings = section(MispSettings)
    cluster: ClusterConfig = section(ClusterConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Config:
        """Build a Config; unknown sections or keys, wrong types and bad values are errors."""
        config: Config = parse_section(cls, data, source=source)
        for key in ("admin", "endpoint"):
            try:
                parse_listen(getattr(config, key).listen)
            except ConfigError as ex:
                raise ConfigError(ex.message, key=f"{key}.listen", source=source) from ex
        return config

    def with_listen(self, *, admin: str | None = None, endpoint: str | None = None) -> Config:
        """Return a copy with the listen addresses overridden (CLI flags)."""
        out = self
        if admin:
            parse_listen(admin)
            out = replace(out, admin=replace(out.admin, listen=admin))
        if endpoint:
            parse_listen(endpoint)
            out = replace(out, endpoint=replace(out.endpoint, listen=endpoint))
        return out

    def store_options(self) -> dict[str, Any]:
        """EventStore keyword arguments derived from `limits.memory_budget`."""
        budget = self.limits.memory_budget
        return {
            "memory_limit": f"{max(budget // 4, 64 << 20) >> 20}MB",
            "sql_threads": 2,
            "heap_size": min(max(budget // 32, 32 << 20), 256 << 20),
            "queue_bytes": max(budget // 8, 32 << 20),
        }

    def endpoint_url(self) -> str:
        """The URL agents are told to use."""
        if self.endpoint.public_url:
            return self.endpoint.public_url
        host, port = parse_listen(self.endpoint.listen)
        name = self.tls.server_names[0] if self.tls.server_names else host
        return f"https://{name}:{port}"

    def endpoint_addresses(self) -> list[str]:
        """``host:port`` names agents can use, IP addresses first (they work without DNS,
        which many air-gapped networks lack): the public URL's host when one is configured,
        else the listen address when it is a specific IP, then the certificate's names."""
        import ipaddress
        from urllib.parse import urlsplit

        _, port = parse_listen(self.endpoint.listen)
        if self.endpoint.public_url:
            url = urlsplit(self.endpoint.public_url)
            return [f"{url.hostname}:{url.port or port}"]
        host, _ = parse_listen(self.endpoint.listen)
        names = ([] if host in ("0.0.0.0", "::", "") else [host]) + list(self.tls.server_names)

        def is_ip(name: str) -> bool:
            try:
                ipaddress.ip_address(name.strip("[]"))
            except ValueError:
                return False
            return True

        ordered = [n for n in names if is_ip(n)] + [n for n in names if not is_ip(n)]
        out: list[str] = []
        for name in ordered:
            shown = f"[{name}]" if ":" in name and not name.startswith("[") else name
            if f"{shown}:{port}" not in out:
                out.append(f"{shown}:{port}")
        return out or [f"localhost:{port}"]

    def admin_url(self) -> str:
        host, port = parse_listen(self.admin.listen)
        if host in ("0.0.0.0", "::"):
            host = self.tls.server_names[0] if self.tls.server_names else "localhost"
        return f"https://{host}:{port}"


def load_config(path: Path) -> Config:
    """Read and validate the TOML config file at `path` (missing file = all defaults)."""
    if not path.exists():
        return Config()
    return Config.from_dict(read_toml(path), source=str(path))


def render_toml(config: Config | None = None) -> str:
    """Render `config` (default: the defaults) as a commented TOML document."""
    header = "Heron manager configuration. Unknown keys are errors. See docs/settings.md."
    return render(config or Config(), header)


SECTIONS: dict[str, type] = {s.name: s.section_type for s in settings_of(Config)}
