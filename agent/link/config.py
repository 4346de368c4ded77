"""Link settings: one frozen dataclass, `LinkConfig`, with help text on every field.

The agent config may carry it as a `[link]` table (`AgentConfig.link`); without one, `attach`
reads `<data_dir>/link/link.toml` when present, else the defaults. Unknown keys are errors.
The manager address comes from enrollment (`identity.json`), not from here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from rules import wire


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors agent.config
    if isinstance(default, list | tuple):
        default = tuple(default)  # immutable, so a plain default is safe
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """[link]: connection to the manager, durable queue, polling intervals."""

    enabled: bool = _f(True, "connect to the manager (False: local only, events stay queued)")
    state_dir: str = _f("", "identity, queue and update state (default: <data_dir>/link)")
    queue_max_bytes: int = _f(
        1 << 30, "on-disk queue cap; beyond it the oldest events are evicted (counted and reported)"
    )
    queue_min_free_bytes: int = _f(
        64 << 20,
        "free bytes kept on the data disk; below it the "
        "oldest bulk events are evicted (counted and reported)",
    )
    segment_bytes: int = _f(4 << 20, "bytes per queue segment (= one /logs batch)")
    segment_events: int = _f(10_000, "events per queue segment (= one /logs batch)")
    batch_delay: float = _f(1.0, "seconds an open segment may wait before it is sent")
    fsync_interval: float = _f(1.0, "seconds between fsyncs of the open segment (0: every event)")
    drain_on_stop: float = _f(5.0, "seconds spent sending queued events at shutdown (0: none)")
    compress_level: int = _f(3, "gzip level of /logs bodies (1-9)")
    timeout: float = _f(30.0, "socket timeout of manager requests, seconds")
    backoff_base: float = _f(1.0, "first retry delay after a failure, seconds")
    backoff_cap: float = _f(60.0, "longest retry delay, seconds")
    command_interval: float = _f(5.0, "seconds between /commands polls")
    command_burst_interval: float = _f(0.5, "poll interval right after a command arrived")
    command_burst_window: float = _f(30.0, "seconds the fast polling lasts")
    command_wait: float = _f(60.0, "long-poll: seconds the manager may hold /commands (0: poll)")
    idle_close: float = _f(20.0, "seconds before an unused connection (not the long-poll) closes")
    update_interval: float = _f(60.0, "seconds between rule/IoC/config/Sysmon hash checks")
    sysinfo_interval: float = _f(900.0, "seconds between system-information checks")
    upload_interval: float = _f(60.0, "seconds between artifact upload passes")
    upload_max_size: int = _f(wire.MAX_UPLOAD_SIZE, "largest artifact file uploaded, bytes")
    upload_settle: float = _f(300.0, "an artifact dir without manifest is sent after this idle")
    renew_check_interval: float = _f(3600.0, "seconds between certificate expiry checks")
    renew_fraction: float = _f(1 / 3, "renew once less than this part of the lifetime is left")
    renew_before: float = _f(20 * 86400.0, "…or at most this many seconds before expiry")
    allowed_tools: tuple[str, ...] = _f([], "programs (besides built-ins) commands may run")
    tools_dir: str = _f(
        "", "tools from the manager; searched before PATH (default: <state_dir>/tools)"
    )
    tools_interval: float = _f(900.0, "seconds between /tools synchronisations")
    max_fetch_size: int = _f(64 << 20, "largest file a command may fetch, bytes")
    server_name: str = _f("", "name checked in the manager certificate (default: its host)")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> LinkConfig:
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError("unknown key", key=f"link.{key}", source=source)
            default = known[key].default
            if isinstance(default, tuple):
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise ConfigError(
                        "expected a list of strings", key=f"link.{key}", source=source
                    )
                value = tuple(value)
            elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                value, type(default) if not isinstance(default, float) else int | float
            ):
                raise ConfigError(
                    f"expected {type(default).__name__}, got {value!r}",
                    key=f"link.{key}",
                    source=source,
                )
            kwargs[key] = float(value) if isinstance(default, float) else value
        return cls(**kwargs)

    @classmethod
    def load(cls, path: Path) -> LinkConfig:
        """Read a `link.toml` (its keys at top level or under `[link]`)."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as ex:
            raise ConfigError(f"cannot read link settings: {ex}", source=str(path)) from ex
        return cls.from_dict(data.get("link", data), source=str(path))
