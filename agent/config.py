"""Agent configuration: one frozen dataclass per TOML section, loaded once.

Every field carries its help text in ``metadata["help"]``; ``dump_toml`` renders the defaults
(``heron-agent config --dump``) and ``docs/agent.md`` lists them. Unknown keys and wrong types are
errors (``ConfigError`` names the key). Environment variables are not read here.
"""

from __future__ import annotations

import sys
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

__all__ = [
    "ActionsConfig",
    "AgentConfig",
    "AlertLogConfig",
    "CanaryConfig",
    "EtwConfig",
    "GeneralConfig",
    "LimitsConfig",
    "LinuxConfig",
    "ReplayConfig",
    "ReportCommand",
    "ReportingConfig",
    "RulesConfig",
    "SourcesConfig",
    "TrackingConfig",
    "band_defaults",
    "default_data_dir",
    "dump_toml",
    "load_config",
    "parse_config",
]

IS_WINDOWS = sys.platform == "win32"


def default_data_dir() -> str:
    """Platform default for ``general.data_dir``."""
    return r"C:\ProgramData\Heron\Agent" if IS_WINDOWS else "/var/lib/heron-agent"


# Actions that only work on some platforms (agent/actions/dumps.py): `regdump` reads the Windows
# registry, `memdump` has a Windows and a Linux implementation.
_PLATFORM_ACTIONS: dict[str, tuple[str, ...]] = {
    "regdump": ("win32",),
    "memdump": ("win32", "linux"),
}


def band_defaults(platform: str = sys.platform) -> dict[str, list[str]]:
    """Default ``actions.<band>`` lists on ``platform`` (a ``sys.platform`` value).

    Actions the platform cannot run are left out, so a Linux agent does not add ``regdump`` to
    its detections nor write "registry not available" records.
    """
    wanted = {
        "low": [],
        "medium": ["brief", "filedump", "regdump"],
        "high": ["report", "filedump", "regdump"],
        "critical": ["report", "filedump", "regdump", "memdump"],
    }
    if not platform.startswith("win32"):
        # Medium-severity Linux detections (exec from /tmp, …) fire constantly on build and
        # package hosts: a brief report, no file copies, unless the rule asks for them.
        wanted["medium"] = ["brief"]
    return {
        band: [a for a in names if platform.startswith(_PLATFORM_ACTIONS.get(a, ("",)))]
        for band, names in wanted.items()
    }


_BANDS = band_defaults()


def _f(default: Any, help: str) -> Any:  # noqa: A002 - "help" mirrors datasette's Setting
    if isinstance(default, list | dict):

        def copy() -> Any:
            return type(default)(default)

        return field(default_factory=copy, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class GeneralConfig:
    """[general]: where the agent keeps its state and what it forwards."""

    data_dir: str = _f(default_data_dir(), "state directory: artifacts/, alerts/, rules/")
    hostname: str = _f("", "override of the reported computer name (empty: the OS hostname)")
    endpoint_uuid: str = _f("", "endpoint id written to artifact manifests (set by enrollment)")
    criticality_threshold: int = _f(
        0, "events with a detection of at least this score are sent (0: every detection)"
    )
    enable_filters: bool = _f(True, "also send events matched only by Filter rules")
    log_all: bool = _f(False, "send every event to the sinks, detection or not")
    queue_size: int = _f(20000, "bounded queue between the sources and the pipeline")
    ignore_self: bool = _f(True, "drop live events of the agent and of its child processes")


@dataclass(frozen=True, slots=True)
class LinuxConfig:
    """[sources.linux]: live Linux telemetry."""

    net_poll_interval: float = _f(0.5, "seconds between /proc/net connection scans")
    file_watch_dirs: list[str] = _f(
        ["/tmp", "/var/tmp", "/dev/shm", "/etc", "/root"],
        "directories watched with fanotify (create/modify/delete)",
    )
    reader_nice: int = _f(
        -10,
        "nice value of the proc connector reader thread (0: unchanged); "
        "a prompt reader catches short-lived processes",
    )
    ebpf_file_prefixes: list[str] = _f(
        [
            "/tmp/",
            "/var/tmp/",
            "/dev/shm/",
            "/etc/",
            "/root/",
            "/home/",
            "/var/spool/cron/",
            "/var/lib/",
            "/usr/lib/systemd/",
            "/lib/systemd/",
            "/usr/local/bin/",
            "/usr/bin/",
            "/usr/sbin/",
            "/boot/",
        ],
        "linux-ebpf: file events only under these path prefixes (matched in the kernel, "
        "recursive; at most 64, 256 bytes each)",
    )
    ebpf_ringbuf_mb: int = _f(
        8,
        "linux-ebpf: ring buffer size in MiB (rounded up to a power "
        "of two); a full buffer drops records, counted per type",
    )
    hash_on_exec: bool = _f(
        False,
        "hash images in the proc connector thread (default: the "
        "enrichment stage hashes them, keeping /proc reads fast)",
    )


@dataclass(frozen=True, slots=True)
class EtwConfig:
    """[sources.etw]: Windows ETW real-time session (pywintrace)."""

    session_name: str = _f("Heron-EDR", "ETW session name; a stale session of that name is stopped")
    providers: list[str] = _f(
        [
            "Microsoft-Windows-Sysmon",
            "Microsoft-Windows-Windows Defender",
            "Microsoft-Windows-PowerShell",
            "Microsoft-Antimalware-Scan-Interface",
        ],
        "providers enabled in the session (known names, see agent.sources.etw.PROVIDERS)",
    )
    security_log: bool = _f(True, "also consume the EventLog-Security real-time session")
    kernel_file: bool = _f(False, "enable Microsoft-Windows-Kernel-File (create/close/read/write)")


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """[sources.replay]: EVTX / JSONL replay."""

    paths: list[str] = _f([], "EVTX (.evtx) or JSON Lines (.jsonl, .json, .jsonl.gz) files")
    speed: float = _f(0.0, "1.0 = recorded pace, 10 = ten times faster, 0 = as fast as possible")
    rate: float = _f(0.0, "fixed events/s instead of recorded timing (0: off)")
    loop: bool = _f(False, "start again at the end (benchmarks)")
    lossless: bool = _f(
        True,
        "block instead of dropping when the queue is full (false: behave "
        "like a live source, for benchmarks)",
    )


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    """[sources]: which event sources run."""

    enabled: list[str] = _f(
        ["etw"] if IS_WINDOWS else ["linux-ebpf"],
        "source names: etw, linux-ebpf, linux-proc, linux-net, linux-file, "
        "replay; linux-ebpf falls back to linux-proc + linux-net + "
        "linux-file where eBPF is unavailable",
    )
    linux: LinuxConfig = field(default_factory=LinuxConfig, metadata={"help": "Linux sources"})
    etw: EtwConfig = field(default_factory=EtwConfig, metadata={"help": "ETW sources"})
    replay: ReplayConfig = field(default_factory=ReplayConfig, metadata={"help": "replay"})


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """[tracking]: process tracking and enrichment."""

    enrich: bool = _f(True, "add WHIDS enrichment fields to live events (never to replayed ones)")
    max_tracks: int = _f(16384, "maximum process tracks kept; the oldest terminated go first")
    terminated_ttl: float = _f(10.0, "seconds a terminated track is kept once it has no live child")
    hash_max_size: int = _f(64 * 1024 * 1024, "files larger than this are not hashed (bytes)")
    hash_cache_size: int = _f(4096, "entries of the (path, size, mtime) → hashes cache")
    modules_per_process: int = _f(256, "maximum modules remembered per process")
    sysmon_archive_dir: str = _f(
        r"C:\Sysmon" if IS_WINDOWS else "",
        "Sysmon ArchiveDirectory: archived deleted files (filedump of "
        "EventID 23) and clipboard captures (ClipboardData of 24)",
    )


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """[rules]: detection rules, containers and IoCs."""

    paths: list[str] = _f([], "Gene rule files or directories (*.gen, *.json)")
    containers_dir: str = _f(
        "", "directory of container files NAME.txt / NAME.cont (one value a line)"
    )
    ioc_file: str = _f("", "local IoC file: JSON list of {type, value} or lines 'type:value'")
    ioc_criticality: int = _f(10, "criticality of IoC:<type> detections")


@dataclass(frozen=True, slots=True)
class ActionsConfig:
    """[actions]: response actions (WHIDS §1.5)."""

    allowed: list[str] = _f(
        ["brief", "report", "filedump", "regdump", "blacklist"],
        "actions allowed to run; kill and memdump are opt-in",
    )
    low: list[str] = _f(_BANDS["low"], "default actions for criticality 1-4")
    medium: list[str] = _f(_BANDS["medium"], "default actions for 5-7")
    high: list[str] = _f(_BANDS["high"], "default actions for 8-9")
    critical: list[str] = _f(_BANDS["critical"], "default actions for 10")
    max_per_process: int = _f(4, "actions runs per process GUID (WHIDS dump.max-dumps)")
    act_on_untracked: bool = _f(False, "run actions for processes the tracker does not know")
    workers: int = _f(2, "action worker threads")
    queue_size: int = _f(256, "pending action jobs; more are dropped and counted")
    max_file_size: int = _f(100 * 1024 * 1024, "filedump skips files larger than this (bytes)")
    max_memdump_size: int = _f(
        512 * 1024 * 1024,
        "memdump size bound (Linux: stops there; Windows: the richest minidump kind that fits)",
    )
    artifact_quota_bytes: int = _f(
        1 << 30,
        "artifact bytes on disk; above it uploaded artifacts "
        "are evicted, then evidence is skipped (0: no quota)",
    )
    artifact_quota_per_hour: int = _f(
        256 << 20, "artifact bytes written per hour; above it evidence is skipped (0: no quota)"
    )
    max_per_rule_hour: int = _f(
        20,
        "evidence jobs (dumps, reports) per rule per sliding hour; "
        "more are skipped and counted (0: no limit)",
    )
    rule_limits: list[str] = _f([], 'per-rule overrides of max_per_rule_hour: "Rule=N"')
    max_report_items: int = _f(
        500,
        "longest list kept in a report (processes, modules, "
        "connections…); cut lists carry a marker and their full length",
    )


@dataclass(frozen=True, slots=True)
class ReportCommand:
    """One [[reporting.commands]] entry."""

    name: str = _f("", "program name or path")
    args: list[str] = _f([], "arguments")
    description: str = _f("", "free text")
    expect_json: bool = _f(False, "parse stdout as JSON")
    timeout: float = _f(0.0, "seconds (0: reporting.timeout)")


@dataclass(frozen=True, slots=True)
class ReportingConfig:
    """[reporting]: IR report (WHIDS §1.9)."""

    timeout: float = _f(60.0, "default timeout of each report command (seconds)")
    osquery_tables: list[str] = _f(
        [
            "processes",
            "services",
            "scheduled_tasks",
            "drivers",
            "startup_items",
            "process_open_sockets",
        ],
        "osqueryi --json tables, run when osqueryi is on PATH",
    )
    commands: list[ReportCommand] = field(
        default_factory=list, metadata={"help": "extra commands [[reporting.commands]]"}
    )


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    """[canaries]: canary files and their generated rules."""

    enable: bool = _f(False, "create canary files and load the generated rules")
    directories: list[str] = _f([], "directories (environment variables expanded)")
    files: list[str] = _f([], "file names created in every directory")
    actions: list[str] = _f(
        ["kill", "memdump", "filedump", "blacklist", "report"],
        "actions of the canary rules (still gated by actions.allowed)",
    )
    whitelist: list[str] = _f([], "images allowed to touch canaries")
    max_size: int = _f(64 * 1024, "random content size bound of a created canary (bytes)")
    delete_on_stop: bool = _f(False, "delete created canaries when the agent stops")


@dataclass(frozen=True, slots=True)
class AlertLogConfig:
    """[alert_log]: local rotating JSON Lines log (standalone mode)."""

    enable: bool = _f(True, "write the alert log")
    dir: str = _f("", "directory (empty: <data_dir>/alerts)")
    detections_only: bool = _f(True, "log only events carrying a Detection")
    max_bytes: int = _f(50 * 1024 * 1024, "rotate when alerts.log exceeds this size")
    rotation_interval: float = _f(5 * 3600.0, "rotate after this many seconds")
    keep: int = _f(10, "rotated files kept (alerts.log.1 … alerts.log.N)")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """[limits]: self-limits of the agent process."""

    max_cpu_percent: float = _f(25.0, "percent of one core; above it sources are throttled")
    max_rss_mb: int = _f(256, "resident memory; above it tracks and caches are trimmed")
    check_interval: float = _f(5.0, "seconds between self checks")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Whole agent configuration (``config.toml``)."""

    general: GeneralConfig = field(default_factory=GeneralConfig, metadata={"help": ""})
    sources: SourcesConfig = field(default_factory=SourcesConfig, metadata={"help": ""})
    tracking: TrackingConfig = field(default_factory=TrackingConfig, metadata={"help": ""})
    rules: RulesConfig = field(default_factory=RulesConfig, metadata={"help": ""})
    actions: ActionsConfig = field(default_factory=ActionsConfig, metadata={"help": ""})
    reporting: ReportingConfig = field(default_factory=ReportingConfig, metadata={"help": ""})
    canaries: CanaryConfig = field(default_factory=CanaryConfig, metadata={"help": ""})
    alert_log: AlertLogConfig = field(default_factory=AlertLogConfig, metadata={"help": ""})
    limits: LimitsConfig = field(default_factory=LimitsConfig, metadata={"help": ""})
    link: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "[link] table, validated by agent.link.config.LinkConfig (manager connection)"
        },
    )

    @property
    def data_dir(self) -> Path:
        return Path(self.general.data_dir)

    @property
    def alert_dir(self) -> Path:
        return Path(self.alert_log.dir) if self.alert_log.dir else self.data_dir / "alerts"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    def with_overrides(self, **sections: Any) -> AgentConfig:
        """Return a copy with whole sections replaced (tests, CLI flags)."""
        return replace(self, **sections)


# --- parsing ---------------------------------------------------------------------------------


def _check_scalar(value: Any, tp: Any, key: str, source: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected a boolean, got {value!r}", key=key, source=source)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", key=key, source=source)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"expected a number, got {value!r}", key=key, source=source)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key=key, source=source)
        return value
    raise ConfigError(f"unsupported type {tp!r}", key=key, source=source)


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    if is_dataclass(tp):
        return _build(tp, value, key, source)
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", key=key, source=source)
        return dict(value)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", key=key, source=source)
        return [_convert(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if isinstance(tp, types.UnionType):
        raise ConfigError("union types are not supported", key=key, source=source)
    return _check_scalar(value, tp, key, source)


def _build(cls: Any, data: Any, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"expected a table, got {data!r}", key=prefix, source=source)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for name in data:
        if name not in known:
            raise ConfigError("unknown key", key=f"{prefix}.{name}".lstrip("."), source=source)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{prefix}.{name}".lstrip("."), source)
    return cls(**kwargs)


def parse_config(data: dict[str, Any], *, source: str = "<dict>") -> AgentConfig:
    """Build an ``AgentConfig`` from a decoded TOML mapping; unknown keys are errors."""
    config: AgentConfig = _build(AgentConfig, data, "", source)
    _validate(config, source)
    return config


def _validate(config: AgentConfig, source: str) -> None:
    from agent.actions.registry import ACTION_NAMES
    from agent.sources import SOURCE_NAMES

    for name in config.sources.enabled:
        if name not in SOURCE_NAMES:
            raise ConfigError(f"unknown source {name!r}", key="sources.enabled", source=source)
    acts = config.actions
    for section in ("allowed", "low", "medium", "high", "critical"):
        for name in getattr(acts, section):
            if name not in ACTION_NAMES:
                raise ConfigError(
                    f"unknown action {name!r}", key=f"actions.{section}", source=source
                )
    from agent.actions.budget import parse_rule_limits

    try:
        parse_rule_limits(acts.rule_limits)
    except ValueError as ex:
        raise ConfigError(str(ex), key="actions.rule_limits", source=source) from ex
    if config.general.queue_size < 1 or acts.queue_size < 1 or acts.workers < 1:
        raise ConfigError(
            "queue sizes and workers must be >= 1", key="general.queue_size", source=source
        )


def load_config(path: str | Path | None) -> AgentConfig:
    """Load ``path`` (TOML); ``None`` or a missing default file gives the defaults."""
    if path is None:
        return parse_config({})
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as ex:
        raise ConfigError("configuration file not found", source=str(p)) from ex
    except tomllib.TOMLDecodeError as ex:
        raise ConfigError(f"invalid TOML: {ex}", source=str(p)) from ex
    return parse_config(data, source=str(p))


# --- dumping ---------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


def _dump_table(obj: Any, name: str, out: list[str]) -> None:
    scalars: list[str] = []
    nested: list[tuple[str, Any]] = []
    arrays: list[tuple[str, list[Any]]] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, dict):
            scalars.append(f"# [{f.name}] table: {f.metadata.get('help', '')}")
            if value:
                tables.append((f.name, value))
            continue
        if is_dataclass(value):
            nested.append((f.name, value))
        elif isinstance(value, list) and value and is_dataclass(value[0]):
            arrays.append((f.name, value))
        elif isinstance(value, list) and not value and f.name == "commands":
            arrays.append((f.name, value))
        else:
            helptext = f.metadata.get("help", "")
            if helptext:
                scalars.append(f"# {helptext}")
            scalars.append(f"{f.name} = {_toml_value(value)}")
    if name and scalars:
        out.append(f"\n[{name}]")
    out.extend(scalars)
    for sub, value in nested:
        _dump_table(value, f"{name}.{sub}".lstrip("."), out)
    for sub, items in arrays:
        full = f"{name}.{sub}".lstrip(".")
        if not items:
            out.append(f"# [[{full}]] entries: " + ", ".join(f.name for f in fields(ReportCommand)))
        for item in items:
            out.append(f"\n[[{full}]]")
            for f in fields(item):
                out.append(f"{f.name} = {_toml_value(getattr(item, f.name))}")
    for sub, table in tables:
        _dump_raw(table, f"{name}.{sub}".lstrip("."), out)


def _dump_raw(table: dict[str, Any], name: str, out: list[str]) -> None:
    out.append(f"\n[{name}]")
    nested = []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((key, value))
        else:
            out.append(f"{key} = {_toml_value(value)}")
    for key, value in nested:
        _dump_raw(value, f"{name}.{key}", out)


def dump_toml(config: AgentConfig | None = None) -> str:
    """Render ``config`` (default: the defaults) as commented TOML that loads back equal."""
    out: list[str] = ["# Heron agent configuration (heron-agent config --dump)"]
    _dump_table(config or AgentConfig(), "", out)
    return "\n".join(out).strip() + "\n"


def field_docs() -> list[tuple[str, Any, str]]:
    """Every (dotted key, default, help) of the configuration, for docs and tests."""
    rows: list[tuple[str, Any, str]] = []

    def walk(cls: Any, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            tp = hints[f.name]
            key = f"{prefix}.{f.name}".lstrip(".")
            if is_dataclass(tp):
                walk(tp, key)
                continue
            if typing.get_origin(tp) is dict:
                rows.append((key, {}, f.metadata.get("help", "")))
                continue
            factory = f.default_factory
            default = (
                f.default
                if f.default is not MISSING
                else (factory() if callable(factory) else None)
            )
            rows.append((key, default, f.metadata.get("help", "")))

    walk(AgentConfig, "")
    return rows
