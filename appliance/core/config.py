"""Manager configuration: one frozen dataclass per TOML section, loaded once, unknown keys refused.

Each field carries its help text in `metadata["help"]`; `render_toml()` writes a fully
commented file
(what `heron-manager init` drops into the data directory) and docs/manager.md lists every key.
Paths are never configured here: everything lives under the data directory given on the CLI.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from rules import wire

from ..misp.settings import MispSettings
from .errors import ConfigError

__all__ = [
    "AdminConfig",
    "ClusterConfig",
    "CommandsConfig",
    "Config",
    "EndpointConfig",
    "EnrollConfig",
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

T = TypeVar("T")


def _f(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def parse_listen(text: str) -> tuple[str, int]:
    """Split `HOST:PORT` (IPv6 hosts in brackets) into a tuple."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """[admin]: the HTTPS admin API and console."""

    listen: str = _f("127.0.0.1:1520", "HOST:PORT of the admin API (HTTPS, API keys)")


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """[endpoint]: the mutual-TLS endpoint (agent) API."""

    listen: str = _f("0.0.0.0:1519", "HOST:PORT of the endpoint API (mutual TLS)")
    public_url: str = _f(
        "", "URL agents use to reach the endpoint API (default: first server name)"
    )


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """[tls]: certificates and the TLS front."""

    server_names: tuple[str, ...] = _f(
        ["localhost", "127.0.0.1"], "DNS names and IPs put in the server certificate's SANs"
    )
    server_cert_days: int = _f(825, "validity of the server certificate, days")
    client_cert_days: int = _f(365, "validity of endpoint client certificates, days")
    renew_before_days: int = _f(30, "endpoints may renew this many days before expiry")
    handshake_timeout: float = _f(10.0, "seconds a client gets to finish the TLS handshake")
    idle_timeout: float = _f(300.0, "seconds an idle proxied connection is kept open")
    max_connections: int = _f(
        0, "concurrent TLS connections per listener, more are closed (0: from connection_memory)"
    )
    connection_memory: int = _f(
        1 << 30, "bytes of RSS idle TLS connections may use per listener (sizes max_connections)"
    )
    per_source_connections: int = _f(
        256, "connections one source IP may hold before it authenticated; more are closed"
    )
    reserved_connections: int = _f(
        256, "of max_connections, slots only authenticated agents and admin sessions may take"
    )
    header_timeout: float = _f(10.0, "seconds after the handshake to send the first request head")
    anonymous_idle_timeout: float = _f(
        15.0, "seconds an unauthenticated connection may stay idle (authenticated: idle_timeout)"
    )
    anonymous_bytes: int = _f(
        1024 * 1024, "bytes an unauthenticated connection may send (e.g. /enroll) before closed"
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server]: the waitress backends."""

    threads: int = _f(64, "waitress worker threads per listener (API workers + streams)")
    channel_timeout: int = _f(120, "seconds waitress keeps an inactive backend channel")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """[limits]: request size limits (a violation is a 4xx, never a silent cut)."""

    logs_body: int = _f(wire.MAX_LOGS_BODY, "max decompressed bytes of one /logs batch")
    logs_body_compressed: int = _f(wire.MAX_LOGS_BODY_COMPRESSED, "max raw bytes of one /logs body")
    event_line: int = _f(wire.MAX_EVENT_LINE, "max bytes of one NDJSON event line (one event)")
    event_stored: int = _f(
        256 * 1024,
        "an event longer than this is stored with its longest strings cut (marked, "
        "original length kept)",
    )
    logs_events: int = _f(wire.MAX_LOGS_EVENTS, "max events (NDJSON lines) of one /logs batch")
    logs_batch_memory: int = _f(
        384 * 1024 * 1024,
        "max estimated memory of one /logs batch while indexed: events x 16 KiB + 3 x its bytes",
    )
    min_free_bytes: int = _f(
        1024 * 1024 * 1024,
        "free bytes kept on the data directory's disk: below, /logs and "
        "uploads answer 503 + Retry-After and /healthz says disk.ok false",
    )
    upload_parts_quota: int = _f(
        1024 * 1024 * 1024, "bytes of unfinished upload chunks one endpoint may hold (429 beyond)"
    )
    upload_expiry: float = _f(
        86400.0, "seconds an unfinished upload's chunks are kept before they are deleted"
    )
    memory_budget: int = _f(
        4 * 1024 * 1024 * 1024,
        "the manager's memory budget in bytes: DuckDB gets a quarter (memory_limit, all SQL "
        "and inserts together, 2 threads) and the Tantivy writer heap 1/32 (at most 256 MB)",
    )
    logs_inflight_memory: int = _f(
        1024 * 1024 * 1024,
        "estimated memory of all /logs batches being decoded and stored at once; more wait, "
        "then get 503 + Retry-After",
    )
    json_body: int = _f(8 * 1024 * 1024, "max bytes of any other JSON request body")
    upload_size: int = _f(wire.MAX_UPLOAD_SIZE, "max bytes of one uploaded artifact file")
    upload_chunk: int = _f(wire.UPLOAD_CHUNK_SIZE, "max decoded bytes of one upload chunk")


SQL_ROLES = ("admin", "analyst", "plugin")


@dataclass(frozen=True, slots=True)
class SqlConfig:
    """[sql]: read-only SQL over stored events (POST /hunt/sql)."""

    roles: tuple[str, ...] = _f(
        ["admin", "analyst"], "roles allowed to run SQL (of admin, analyst, plugin)"
    )
    concurrency: int = _f(2, "SQL queries running at once; more are answered 429")
    timeout: float = _f(10.0, "seconds one query may take, fetching and converting rows included")
    max_bytes: int = _f(
        16 * 1024 * 1024, "JSON bytes of one result; rows past it are left out (truncated: true)"
    )

    def __post_init__(self) -> None:
        bad = [r for r in self.roles if r not in SQL_ROLES]
        if bad:
            raise ValueError(f"sql.roles: unknown role(s) {', '.join(bad)} (use {SQL_ROLES})")
        if self.concurrency < 1:
            raise ValueError("sql.concurrency must be at least 1")


@dataclass(frozen=True, slots=True)
class StreamsConfig:
    """[streams]: event streams on the admin API (Server-Sent Events and WebSocket)."""

    max_clients: int = _f(32, "concurrent SSE streams; more get 503")
    heartbeat: float = _f(15.0, "seconds between SSE heartbeat comments and WebSocket pings")
    queue: int = _f(2_000, "events buffered per stream; a slower client loses the oldest")
    ws_max_clients: int = _f(1_024, "concurrent WebSocket streams; more are closed with 1013")
    ws_per_key: int = _f(64, "concurrent WebSocket streams per API key; more closed with 1008")
    ws_buffer: int = _f(4 * 1024 * 1024, "bytes buffered per WebSocket stream; oldest dropped")


@dataclass(frozen=True, slots=True)
class EnrollConfig:
    """[enroll]: one-time enrollment tokens."""

    token_ttl: float = _f(7 * 86400.0, "default lifetime of an enrollment token, seconds")


@dataclass(frozen=True, slots=True)
class CommandsConfig:
    """[commands]: the per-endpoint command queue."""

    default_timeout: float = _f(15.0, "command timeout on the endpoint when none is given, seconds")
    result_timeout: float = _f(600.0, "a sent command without result after this many s times out")
    poll_wait: float = _f(0.0, "GET /commands hold in waitress without wait=, seconds (≤ 30)")
    long_poll: float = _f(60.0, "longest GET /commands?wait= hold in the TLS front (0: off)")
    update_after: float = _f(60.0, "X-Heron-Poll-After advised to agents up to 1,000 connected")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """[logging]: the manager's own logs."""

    level: str = _f("INFO", "log level (DEBUG, INFO, WARNING, ERROR)")
    json: bool = _f(True, "structured JSON log lines on stderr (false: plain text)")


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """[retention]: event retention and index maintenance (a background pass)."""

    max_age_days: int = _f(90, "drop events received more than this many days ago (0 = forever)")
    max_bytes: int = _f(
        0, "drop the oldest events while their estimated bytes on disk are larger (0 = no cap)"
    )
    interval: float = _f(3600.0, "seconds between maintenance passes (0 = no periodic pass)")
    merge: bool = _f(True, "merge index segments and reclaim space after each pass")
    artifact_max_age_days: int = _f(
        30, "delete uploaded artifacts received more than this many days ago (0 = forever)"
    )
    artifact_endpoint_max_bytes: int = _f(
        5 << 30,
        "per-endpoint artifact quota: its oldest artifacts are deleted while it holds "
        "more (0 = no cap)",
    )


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """[cluster]: cluster mode (docs/cluster.md): events in ClickHouse, fleet in PostgreSQL."""

    mode: str = _f("embedded", "embedded (one box: DuckDB + Tantivy) or cluster")
    frontend: str = _f("", "this front-end's unique name (default: the host name)")
    clickhouse: tuple[str, ...] = _f([], "HTTP URL of each ClickHouse shard, in shard order")
    clickhouse_cluster: str = _f("heron", "remote_servers cluster name of the shards")
    clickhouse_user: str = _f("default", "ClickHouse user of the shipper and searches")
    clickhouse_password: str = _f("", "its password")
    hunter_user: str = _f("", "read-only ClickHouse user for SQL hunting (readonly=1 profile)")
    hunter_password: str = _f("", "its password")
    postgres: str = _f("", "PostgreSQL connection string of the fleet store (libpq DSN)")

    def __post_init__(self) -> None:
        if self.mode not in ("embedded", "cluster"):
            raise ValueError("cluster.mode must be embedded or cluster")
        if self.mode == "cluster" and not (self.clickhouse and self.postgres):
            raise ValueError("cluster mode needs cluster.clickhouse and cluster.postgres")


SECTIONS: dict[str, type] = {
    "admin": AdminConfig,
    "endpoint": EndpointConfig,
    "tls": TlsConfig,
    "server": ServerConfig,
    "limits": LimitsConfig,
    "streams": StreamsConfig,
    "sql": SqlConfig,
    "enroll": EnrollConfig,
    "commands": CommandsConfig,
    "logging": LoggingConfig,
    "retention": RetentionConfig,
    "misp": MispSettings,
    "cluster": ClusterConfig,
}


@dataclass(frozen=True, slots=True)
class Config:
    """The whole manager configuration."""

    admin: AdminConfig = field(default_factory=AdminConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    sql: SqlConfig = field(default_factory=SqlConfig)
    enroll: EnrollConfig = field(default_factory=EnrollConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    misp: MispSettings = field(default_factory=MispSettings)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Config:
        """Build a Config; unknown sections or keys and wrong types raise ConfigError."""
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            section = SECTIONS.get(name)
            if section is None:
                raise ConfigError(f"unknown section [{name}]", where=source)
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] must be a table", where=source)
            kwargs[name] = _section(section, value, f"{source}:[{name}]")
        config = cls(**kwargs)
        for listen in (config.admin.listen, config.endpoint.listen):
            parse_listen(listen)
        if config.commands.poll_wait > 30:
            raise ConfigError("commands.poll_wait must be at most 30 seconds", where=source)
        if config.tls.max_connections < 0 or config.tls.connection_memory < 1 << 20:
            raise ConfigError(
                "tls.max_connections must be ≥ 0 and tls.connection_memory ≥ 1 MiB", where=source
            )
        if not 0 <= config.commands.long_poll <= 240:
            raise ConfigError("commands.long_poll must be within 0..240 seconds", where=source)
        if config.server.threads < 4:
            raise ConfigError("server.threads must be at least 4", where=source)
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


def _section(cls: type[T], data: dict[str, Any], where: str) -> T:
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for key, value in data.items():
        spec = known.get(key)
        if spec is None:
            raise ConfigError(f"unknown key {key!r}", where=where)
        if spec.default is not MISSING:
            default: Any = spec.default
        else:
            default = spec.default_factory()  # type: ignore[operator]
        out[key] = _coerce(key, value, default, where)
    try:
        return cls(**out)
    except ConfigError:
        raise
    except ValueError as ex:  # a section's own checks: MispSettings raises MispSettingsError
        raise ConfigError(ex.args[0] if ex.args else str(ex), where=where) from ex


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be a boolean", where=where)
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{key} must be a non-negative integer", where=where)
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{key} must be a non-negative number", where=where)
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings", where=where)
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string", where=where)
    return value


def load_config(path: Path) -> Config:
    """Read and validate the TOML config file at `path` (missing file = all defaults)."""
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as ex:
        raise ConfigError(str(ex), where=str(path)) from ex
    return Config.from_dict(data, source=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_toml(config: Config | None = None) -> str:
    """Render `config` (default: the defaults) as a commented TOML document."""
    config = config or Config()
    lines = ["# Heron manager configuration. Unknown keys are errors. See docs/manager.md.", ""]
    for name, cls in SECTIONS.items():
        section = getattr(config, name)
        lines.append(f"# {(cls.__doc__ or '').strip()}")
        lines.append(f"[{name}]")
        for spec in fields(cls):
            lines.append(f"# {spec.metadata['help']}")
            lines.append(f"{spec.name} = {_toml_value(getattr(section, spec.name))}")
        lines.append("")
    return "\n".join(lines)
