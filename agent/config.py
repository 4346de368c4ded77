"""Agent configuration: one frozen dataclass per TOML section, declared with `rules.settings`.

Each key is declared once (`setting(default, help, bounds, live)`); parsing, ``dump_toml``
(``heron-agent config --dump``) and docs/settings.md derive from those declarations. Unknown keys,
wrong types and values out of bounds are errors (``ConfigError`` names the key). The names a list
may hold (sources, actions) are declared here as choices; the registries in ``agent.sources`` and
``agent.actions.registry`` build what they name and a test keeps both in step, so this module
imports neither. Environment variables are not read here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.settings import (
    ConfigError,
    parse_section,
    read_toml,
    render_toml,
    section,
    setting,
    toml_value,
)

__all__ = [
    "ACTION_CHOICES",
    "SOURCE_CHOICES",
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
    "parse_rule_limits",
]

# What `sources.enabled` and the action lists may name (agent/sources, agent/actions/registry).
SOURCE_CHOICES = ("etw", "linux-ebpf", "linux-proc", "linux-net", "linux-file", "replay")
ACTION_CHOICES = ("blacklist", "memdump", "filedump", "regdump", "brief", "report", "kill")

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


def _band(name: str, help: str) -> Any:
    linux, windows = band_defaults("linux")[name], band_defaults("win32")[name]
    return setting(
        _BANDS[name],
        help,
        choices=ACTION_CHOICES,
        noun="action",
        live=True,
        doc=f"{toml_value(linux)} (Windows: {toml_value(windows)})",
    )


def parse_rule_limits(entries: Iterable[str]) -> dict[str, int]:
    """``["Rule=N", …]`` → ``{rule: N}``; malformed entries raise ``ValueError``."""
    out: dict[str, int] = {}
    for entry in entries:
        name, sep, value = entry.rpartition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise ValueError(f"expected RULE=N, got {entry!r}")
        out[name.strip()] = int(value)
    return out


@dataclass(frozen=True, slots=True)
class GeneralConfig:
    """[general]: where the agent keeps its state and what it forwards."""

    data_dir: str = setting(
        default_data_dir(),
        "state directory: artifacts/, alerts/, rules/",
        doc=r'"/var/lib/heron-agent" (Windows: "C:\\ProgramData\\Heron\\Agent")',
    )
    hostname: str = setting(
        "", "override of the reported computer name (empty: the OS hostname)", live=True
    )
    endpoint_uuid: str = setting(
        "", "endpoint id written to artifact manifests (set by enrollment)", live=True
    )
    criticality_threshold: int = setting(
        0, "events with a detection of at least this score are sent (0: every detection)", live=True
    )
    enable_filters: bool = setting(True, "also send events matched only by Filter rules", live=True)
    log_all: bool = setting(False, "send every event to the sinks, detection or not", live=True)
    queue_size: int = setting(20000, "bounded queue between the sources and the pipeline", min=1)
    ignore_self: bool = setting(
        True, "drop live events of the agent and of its child processes", live=True
    )


@dataclass(frozen=True, slots=True)
class LinuxConfig:
    """[sources.linux]: live Linux telemetry."""

    net_poll_interval: float = setting(0.5, "seconds between /proc/net connection scans")
    file_watch_dirs: list[str] = setting(
        ["/tmp", "/var/tmp", "/dev/shm", "/etc", "/root"],
        "directories watched with fanotify (create/modify/delete)",
    )
    reader_nice: int = setting(
        -10,
        "nice value of the proc connector reader thread (0: unchanged); "
        "a prompt reader catches short-lived processes",
        min=-20,
        max=19,
    )
    ebpf_file_prefixes: list[str] = setting(
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
    ebpf_ringbuf_mb: int = setting(
        8,
        "linux-ebpf: ring buffer size in MiB (rounded up to a power "
        "of two); a full buffer drops records, counted per type",
    )
    hash_on_exec: bool = setting(
        False,
        "hash images in the proc connector thread (default: the "
        "enrichment stage hashes them, keeping /proc reads fast)",
    )


@dataclass(frozen=True, slots=True)
class EtwConfig:
    """[sources.etw]: Windows ETW real-time session (pywintrace)."""

    session_name: str = setting(
        "Heron-EDR", "ETW session name; a stale session of that name is stopped"
    )
    providers: list[str] = setting(
        [
            "Microsoft-Windows-Sysmon",
            "Microsoft-Windows-Windows Defender",
            "Microsoft-Windows-PowerShell",
            "Microsoft-Antimalware-Scan-Interface",
        ],
        "providers enabled in the session (known names, see agent.sources.etw.providers.PROVIDERS)",
    )
    security_log: bool = setting(True, "also consume the EventLog-Security real-time session")
    kernel_file: bool = setting(
        False, "enable Microsoft-Windows-Kernel-File (create/close/read/write)"
    )


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """[sources.replay]: EVTX / JSONL replay."""

    paths: list[str] = setting([], "EVTX (.evtx) or JSON Lines (.jsonl, .json, .jsonl.gz) files")
    speed: float = setting(
        0.0, "1.0 = recorded pace, 10 = ten times faster, 0 = as fast as possible"
    )
    rate: float = setting(0.0, "fixed events/s instead of recorded timing (0: off)")
    loop: bool = setting(False, "start again at the end (benchmarks)")
    lossless: bool = setting(
        True,
        "block instead of dropping when the queue is full (false: behave "
        "like a live source, for benchmarks)",
    )


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    """[sources]: which event sources run."""

    enabled: list[str] = setting(
        ["etw"] if IS_WINDOWS else ["linux-ebpf"],
        "source names: etw, linux-ebpf, linux-proc, linux-net, linux-file, "
        "replay; linux-ebpf falls back to linux-proc + linux-net + "
        "linux-file where eBPF is unavailable",
        choices=SOURCE_CHOICES,
        noun="source",
        doc='["linux-ebpf"] (Windows: ["etw"])',
    )
    linux: LinuxConfig = section(LinuxConfig, "Linux sources")
    etw: EtwConfig = section(EtwConfig, "ETW sources")
    replay: ReplayConfig = section(ReplayConfig, "replay")


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """[tracking]: process tracking and enrichment."""

    enrich: bool = setting(
        True, "add WHIDS enrichment fields to live events (never to replayed ones)"
    )
    max_tracks: int = setting(16384, "maximum process tracks kept; the oldest terminated go first")
    terminated_ttl: float = setting(
        10.0, "seconds a terminated track is kept once it has no live child"
    )
    hash_max_size: int = setting(64 * 1024 * 1024, "files larger than this are not hashed (bytes)")
    hash_cache_size: int = setting(4096, "entries of the (path, size, mtime) → hashes cache")
    modules_per_process: int = setting(256, "maximum modules remembered per process")
    sysmon_archive_dir: str = setting(
        r"C:\Sysmon" if IS_WINDOWS else "",
        "Sysmon ArchiveDirectory: archived deleted files (filedump of "
        "EventID 23) and clipboard captures (ClipboardData of 24)",
        doc='"" (Windows: "C:\\Sysmon")',
    )


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """[rules]: detection rules, containers and IoCs."""

    paths: list[str] = setting([], "Gene rule files or directories (*.gen, *.json)", live=True)
    containers_dir: str = setting(
        "", "directory of container files NAME.txt / NAME.cont (one value a line)", live=True
    )
    ioc_file: str = setting(
        "", "local IoC file: JSON list of {type, value} or lines 'type:value'", live=True
    )
    ioc_criticality: int = setting(10, "criticality of IoC:<type> detections", live=True)


@dataclass(frozen=True, slots=True)
class ActionsConfig:
    """[actions]: response actions (docs/reference/whids.md §1.5)."""

    allowed: list[str] = setting(
        ["brief", "report", "filedump", "regdump", "blacklist"],
        "actions allowed to run; kill and memdump are opt-in",
        live=True,
        choices=ACTION_CHOICES,
        noun="action",
    )
    low: list[str] = _band("low", "default actions for criticality 1-4")
    medium: list[str] = _band("medium", "default actions for 5-7")
    high: list[str] = _band("high", "default actions for 8-9")
    critical: list[str] = _band("critical", "default actions for 10")
    max_per_process: int = setting(
        4, "actions runs per process GUID (WHIDS dump.max-dumps)", live=True
    )
    act_on_untracked: bool = setting(
        False, "run actions for processes the tracker does not know", live=True
    )
    workers: int = setting(2, "action worker threads", min=1)
    queue_size: int = setting(256, "pending action jobs; more are dropped and counted", min=1)
    max_file_size: int = setting(
        100 * 1024 * 1024, "filedump skips files larger than this (bytes)", live=True
    )
    max_memdump_size: int = setting(
        512 * 1024 * 1024,
        "memdump size bound (Linux: stops there; Windows: the richest minidump kind that fits)",
        live=True,
    )
    artifact_quota_bytes: int = setting(
        1 << 30,
        "artifact bytes on disk; above it uploaded artifacts "
        "are evicted, then evidence is skipped (0: no quota)",
        live=True,
    )
    artifact_quota_per_hour: int = setting(
        256 << 20,
        "artifact bytes written per hour; above it evidence is skipped (0: no quota)",
        live=True,
    )
    max_per_rule_hour: int = setting(
        20,
        "evidence jobs (dumps, reports) per rule per sliding hour; "
        "more are skipped and counted (0: no limit)",
        live=True,
    )
    rule_limits: list[str] = setting(
        [], 'per-rule overrides of max_per_rule_hour: "Rule=N"', live=True
    )
    max_report_items: int = setting(
        500,
        "longest list kept in a report (processes, modules, "
        "connections…); cut lists carry a marker and their full length",
        live=True,
    )


@dataclass(frozen=True, slots=True)
class ReportCommand:
    """One [[reporting.commands]] entry."""

    name: str = setting("", "program name or path", live=True)
    args: list[str] = setting([], "arguments", live=True)
    description: str = setting("", "free text", live=True)
    expect_json: bool = setting(False, "parse stdout as JSON", live=True)
    timeout: float = setting(0.0, "seconds (0: reporting.timeout)", live=True)


@dataclass(frozen=True, slots=True)
class ReportingConfig:
    """[reporting]: IR report (docs/reference/whids.md §1.9)."""

    timeout: float = setting(60.0, "default timeout of each report command (seconds)", live=True)
    osquery_tables: list[str] = setting(
        [
            "processes",
            "services",
            "scheduled_tasks",
            "drivers",
            "startup_items",
            "process_open_sockets",
        ],
        "osqueryi --json tables, run when osqueryi is on PATH",
        live=True,
    )
    commands: list[ReportCommand] = setting([], "extra commands [[reporting.commands]]", live=True)


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    """[canaries]: canary files and their generated rules."""

    enable: bool = setting(False, "create canary files and load the generated rules")
    directories: list[str] = setting([], "directories (environment variables expanded)")
    files: list[str] = setting([], "file names created in every directory")
    actions: list[str] = setting(
        ["kill", "memdump", "filedump", "blacklist", "report"],
        "actions of the canary rules (still gated by actions.allowed)",
    )
    whitelist: list[str] = setting([], "images allowed to touch canaries")
    max_size: int = setting(64 * 1024, "random content size bound of a created canary (bytes)")
    delete_on_stop: bool = setting(False, "delete created canaries when the agent stops")


@dataclass(frozen=True, slots=True)
class AlertLogConfig:
    """[alert_log]: local rotating JSON Lines log (standalone mode)."""

    enable: bool = setting(True, "write the alert log")
    dir: str = setting("", "directory (empty: <data_dir>/alerts)")
    detections_only: bool = setting(True, "log only events carrying a Detection")
    max_bytes: int = setting(50 * 1024 * 1024, "rotate when alerts.log exceeds this size")
    rotation_interval: float = setting(5 * 3600.0, "rotate after this many seconds")
    keep: int = setting(10, "rotated files kept (alerts.log.1 … alerts.log.N)")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """[limits]: self-limits of the agent process."""

    max_cpu_percent: float = setting(25.0, "percent of one core; above it sources are throttled")
    max_rss_mb: int = setting(256, "resident memory; above it tracks and caches are trimmed")
    check_interval: float = setting(5.0, "seconds between self checks")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Whole agent configuration (``config.toml``)."""

    general: GeneralConfig = section(GeneralConfig)
    sources: SourcesConfig = section(SourcesConfig)
    tracking: TrackingConfig = section(TrackingConfig)
    rules: RulesConfig = section(RulesConfig)
    actions: ActionsConfig = section(ActionsConfig)
    reporting: ReportingConfig = section(ReportingConfig)
    canaries: CanaryConfig = section(CanaryConfig)
    alert_log: AlertLogConfig = section(AlertLogConfig)
    limits: LimitsConfig = section(LimitsConfig)
    link: dict[str, Any] = setting(
        {},
        "[link] table, validated by agent.link.config.LinkConfig (manager connection)",
        live=True,
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


def parse_config(data: dict[str, Any], *, source: str = "<dict>") -> AgentConfig:
    """Build an ``AgentConfig`` from a decoded TOML mapping; unknown keys are errors."""
    config: AgentConfig = parse_section(AgentConfig, data, source=source)
    try:
        parse_rule_limits(config.actions.rule_limits)
    except ValueError as ex:
        raise ConfigError(str(ex), key="actions.rule_limits", source=source) from ex
    return config


def load_config(path: str | Path | None) -> AgentConfig:
    """Load ``path`` (TOML); ``None`` gives the defaults, a missing file is an error."""
    if path is None:
        return parse_config({})
    return parse_config(read_toml(path), source=str(path))


def dump_toml(config: AgentConfig | None = None) -> str:
    """Render ``config`` (default: the defaults) as commented TOML that loads back equal."""
    return render_toml(
        config or AgentConfig(), "Heron agent configuration (heron-agent config --dump)"
    )
