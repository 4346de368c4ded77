"""Event sources: the ``EventSource`` seam, its in-memory implementation and the registry.

A source yields WHIDS/Gene-shaped event dicts from ``events()`` until ``close()`` is called or
it runs dry. ``live`` sources describe this host right now (the pipeline enriches their events
from the host); replayed events are only tracked, never enriched. ``lossless`` sources are
throttled by the pipeline queue instead of having events dropped.

The concrete sources are built by name through ``SOURCES`` (an explicit dict): each entry names
the settings section its source reads, and its factory receives only that section plus a
``SourceContext`` (the host, the canary files). Platform-specific modules are imported lazily,
inside the factory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.config import AgentConfig, EtwConfig, LinuxConfig, ReplayConfig

__all__ = [
    "FALLBACK",
    "SOURCES",
    "SOURCE_NAMES",
    "EventSource",
    "MemorySource",
    "SourceContext",
    "SourceSpec",
    "build_sources",
    "sensor_status",
]

logger = logging.getLogger(__name__)
# What replaces linux-ebpf where eBPF cannot run (no BTF, old kernel, no CAP_BPF/CAP_PERFMON).
FALLBACK = ["linux-proc", "linux-net", "linux-file"]


@runtime_checkable
class EventSource(Protocol):
    """Anything that yields events; ``events()`` is the whole interface."""

    name: str
    live: bool
    lossless: bool

    def events(self) -> Iterator[dict[str, Any]]:
        """Yield events until closed or exhausted."""
        ...

    def close(self) -> None:
        """Ask ``events()`` to return soon; idempotent."""
        ...


class MemorySource:
    """Source over an in-memory iterable (tests, commands that inject events)."""

    def __init__(
        self,
        events: Iterable[dict[str, Any]],
        *,
        name: str = "memory",
        live: bool = False,
        lossless: bool = True,
    ) -> None:
        self.name = name
        self.live = live
        self.lossless = lossless
        self._events = events
        self._closed = threading.Event()

    def events(self) -> Iterator[dict[str, Any]]:
        for event in self._events:
            if self._closed.is_set():
                return
            yield event

    def close(self) -> None:
        self._closed.set()


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What every source may use besides its own settings section."""

    host: Any  # agent.host.Host: hostname, sensor status
    canary_files: tuple[str, ...] = ()  # canary paths, when [canaries] is enabled


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A registered source: the settings section it reads and how to build it from that."""

    section: str  # dotted key of its settings section in the agent config
    build: Callable[[Any, SourceContext], EventSource]


def _linux_proc(lc: LinuxConfig, ctx: SourceContext) -> EventSource:
    from agent.sources.procconn import ProcConnectorSource

    return ProcConnectorSource(
        host=ctx.host, hash_on_exec=lc.hash_on_exec, nice=lc.reader_nice or None
    )


def _linux_net(lc: LinuxConfig, ctx: SourceContext) -> EventSource:
    from agent.sources.netconn import NetConnectionSource

    return NetConnectionSource(host=ctx.host, interval=lc.net_poll_interval)


def _linux_file(lc: LinuxConfig, ctx: SourceContext) -> EventSource:
    from agent.sources.fanotify import FanotifySource

    return FanotifySource(
        host=ctx.host, directories=lc.file_watch_dirs, files=list(ctx.canary_files)
    )


def _linux_ebpf(lc: LinuxConfig, ctx: SourceContext) -> EventSource:
    """The eBPF sensor; raises ``EbpfUnavailable`` (handled by ``build_sources``)."""
    from agent.sources.ebpf.sensor import load_sensor
    from agent.sources.ebpf.source import EbpfSource

    sensor = load_sensor(ringbuf_mb=lc.ebpf_ringbuf_mb, files=bool(lc.ebpf_file_prefixes))
    source = EbpfSource(host=ctx.host, sensor=sensor, prefixes=lc.ebpf_file_prefixes)
    try:
        source.start()
    except BaseException:
        sensor.close()
        raise
    return source


def _canary_files(ctx: SourceContext) -> EventSource:
    """fanotify on the canary files only: the eBPF sensor sees writes, not reads."""
    from agent.sources.fanotify import FanotifySource

    return FanotifySource(host=ctx.host, directories=[], files=list(ctx.canary_files))


def _etw(ec: EtwConfig, ctx: SourceContext) -> EventSource:
    from agent.sources.etw.source import EtwSource

    return EtwSource(ec, computer=ctx.host.hostname)


def _replay(rc: ReplayConfig, ctx: SourceContext) -> EventSource:
    from agent.sources.replay import ReplaySource

    return ReplaySource(rc.paths, speed=rc.speed, rate=rc.rate, loop=rc.loop, lossless=rc.lossless)


# name → spec; agent.config declares the same names as the choices of `sources.enabled`.
SOURCES: dict[str, SourceSpec] = {
    "linux-ebpf": SourceSpec("sources.linux", _linux_ebpf),
    "linux-proc": SourceSpec("sources.linux", _linux_proc),
    "linux-net": SourceSpec("sources.linux", _linux_net),
    "linux-file": SourceSpec("sources.linux", _linux_file),
    "etw": SourceSpec("sources.etw", _etw),
    "replay": SourceSpec("sources.replay", _replay),
}
SOURCE_NAMES = frozenset(SOURCES)


def section_of(config: AgentConfig, spec: SourceSpec) -> Any:
    """The settings section `spec` reads (`"sources.linux"` → `config.sources.linux`)."""
    out: Any = config
    for part in spec.section.split("."):
        out = getattr(out, part)
    return out


def _context(config: AgentConfig, host: Any) -> SourceContext:
    if not config.canaries.enable:
        return SourceContext(host=host)
    from agent.canary import canary_paths

    return SourceContext(
        host=host, canary_files=tuple(str(p) for p in canary_paths(config.canaries))
    )


def build_sources(config: AgentConfig, host: Any) -> list[EventSource]:
    """Instantiate the sources named in ``config.sources.enabled``, each from its own section.

    ``linux-ebpf`` that cannot load is replaced by ``FALLBACK`` (those not already enabled); the
    reason goes to the log and to ``host.sensor`` (status, system information).
    """
    names = list(config.sources.enabled)
    ctx = _context(config, host)
    sources: list[EventSource] = []
    if "linux-ebpf" in names:
        from agent.sources.ebpf.sensor import EbpfUnavailable

        names.remove("linux-ebpf")
        try:
            sources.append(_linux_ebpf(config.sources.linux, ctx))
            host.sensor = {"mode": "ebpf", "reason": ""}
            if config.canaries.enable and "linux-file" not in names:
                sources.append(_canary_files(ctx))
        except EbpfUnavailable as ex:
            logger.warning(
                "eBPF sensor unavailable, using the /proc, /proc/net and fanotify "
                "sources instead: %s",
                ex,
            )
            host.sensor = {"mode": "proc", "reason": str(ex)}
            names += [n for n in FALLBACK if n not in names]
    return sources + [SOURCES[n].build(section_of(config, SOURCES[n]), ctx) for n in names]


def sensor_status(host: Any, sources: list[EventSource]) -> dict[str, Any]:
    """The ``sensor`` block of the agent status: mode, fallback reason, kernel loss counters."""
    out: dict[str, Any] = dict(getattr(host, "sensor", {}) or {})
    for source in sources:
        fn = getattr(source, "sensor_status", None)
        if callable(fn):
            try:
                out.update(fn())
            except OSError as ex:
                out["error"] = str(ex)
    return out
