"""Link settings: one frozen dataclass, `LinkConfig`, declared with `rules.settings`.

The agent config may carry it as a `[link]` table (`AgentConfig.link`); without one, `attach`
reads `<data_dir>/link/link.toml` when present, else the defaults. Unknown keys are errors.
The manager address comes from enrollment (`identity.json`), not from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules import wire
from rules.settings import ConfigError, parse_section, read_toml, setting


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """[link]: connection to the manager, durable queue, polling intervals."""

    enabled: bool = setting(True, "connect to the manager (False: local only, events stay queued)")
    state_dir: str = setting("", "identity, queue and update state (default: <data_dir>/link)")
    queue_max_bytes: int = setting(
        1 << 30,
        "on-disk queue cap; beyond it the oldest events are evicted (counted and reported)",
        live=True,
    )
    queue_min_free_bytes: int = setting(
        64 << 20,
        "free bytes kept on the data disk; below it the "
        "oldest bulk events are evicted (counted and reported)",
        live=True,
    )
    segment_bytes: int = setting(4 << 20, "bytes per queue segment (= one /logs batch)")
    segment_events: int = setting(10_000, "events per queue segment (= one /logs batch)")
    batch_delay: float = setting(1.0, "seconds an open segment may wait before it is sent")
    fsync_interval: float = setting(
        1.0, "seconds between fsyncs of the open segment (0: every event)"
    )
    drain_on_stop: float = setting(5.0, "seconds spent sending queued events at shutdown (0: none)")
    compress_level: int = setting(3, "gzip level of /logs bodies (1-9)", live=True, max=9)
    timeout: float = setting(30.0, "socket timeout of manager requests, seconds")
    backoff_base: float = setting(1.0, "first retry delay after a failure, seconds", live=True)
    backoff_cap: float = setting(60.0, "longest retry delay, seconds", live=True)
    command_interval: float = setting(5.0, "seconds between /commands polls", live=True)
    command_burst_interval: float = setting(
        0.5, "poll interval right after a command arrived", live=True
    )
    command_burst_window: float = setting(30.0, "seconds the fast polling lasts", live=True)
    command_wait: float = setting(
        60.0, "long-poll: seconds the manager may hold /commands (0: poll)", live=True
    )
    idle_close: float = setting(
        20.0, "seconds before an unused connection (not the long-poll) closes", live=True
    )
    update_interval: float = setting(60.0, "seconds between rule/IoC/config/Sysmon hash checks")
    sysinfo_interval: float = setting(900.0, "seconds between system-information checks")
    upload_interval: float = setting(60.0, "seconds between artifact upload passes")
    upload_max_size: int = setting(wire.MAX_UPLOAD_SIZE, "largest artifact file uploaded, bytes")
    upload_settle: float = setting(
        300.0, "an artifact dir without manifest is sent after this idle"
    )
    renew_check_interval: float = setting(3600.0, "seconds between certificate expiry checks")
    renew_fraction: float = setting(
        1 / 3, "renew once less than this part of the lifetime is left", max=1
    )
    renew_before: float = setting(20 * 86400.0, "…or at most this many seconds before expiry")
    allowed_tools: tuple[str, ...] = setting((), "programs (besides built-ins) commands may run")
    tools_dir: str = setting(
        "", "tools from the manager; searched before PATH (default: <state_dir>/tools)"
    )
    tools_interval: float = setting(900.0, "seconds between /tools synchronisations")
    max_fetch_size: int = setting(64 << 20, "largest file a command may fetch, bytes")
    server_name: str = setting("", "name checked in the manager certificate (default: its host)")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> LinkConfig:
        """Parse a `[link]` table; unknown keys, wrong types and bad values are errors."""
        config: LinkConfig = parse_section(cls, data, key="link", source=source)
        return config

    @classmethod
    def load(cls, path: Path) -> LinkConfig:
        """Read a `link.toml` (its keys at top level or under `[link]`)."""
        data = read_toml(path)
        link = data.get("link", data)
        if not isinstance(link, dict):
            raise ConfigError("[link] must be a table", source=str(path))
        return cls.from_dict(link, source=str(path))
