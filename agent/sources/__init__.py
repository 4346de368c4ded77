"""Event sources: the ``EventSource`` seam, its in-memory implementation and the registry.

A source yields WHIDS/Gene-shaped event dicts from ``events()`` until ``close()`` is called or
it runs dry. ``live`` sources describe this host right now (the pipeline enriches their events
from the host); replayed events are only tracked, never enriched. ``lossless`` sources are
throttled by the pipeline queue instead of having events dropped.

The concrete sources are built by name through ``SOURCE_FACTORIES`` (an explicit dict; the
platform-specific modules are imported lazily, inside the factory).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.config import AgentConfig

__all__ = [
    "FALLBACK",
    "SOURCE_FACTORIES",
    "SOURCE_NAMES",
    "EventSource",
    "MemorySource",
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


def _linux_proc(config: AgentConfig, host: Any) -> EventSource:
    from agent.sources.procconn import ProcConnectorSource

    lc = config.sources.linux
    return ProcConnectorSource(host=host, hash_on_exec=lc.hash_on_exec, nice=lc.reader_nice or None)


def _linux_net(config: AgentConfig, host: Any) -> EventSource:
    from agent.sources.netconn import NetConnectionSource

    return NetConnectionSource(host=host, interval=config.sources.linux.net_poll_interval)


def _linux_file(config: AgentConfig, host: Any) -> EventSource:
    from agent.sources.fanotify import FanotifySource

    canaries: list[str] = []
    if config.canaries.enable:
        from agent.canary import canary_paths

        canaries = [str(p) for p in canary_paths(config.canaries)]
    return FanotifySource(
        host=host, directories=config.sources.linux.file_watch_dirs, files=canaries
    )


def _linux_ebpf(config: AgentConfig, host: Any) -> EventSource:
    """The eBPF sensor; raises ``EbpfUnavailable`` (handled by ``build_sources``)."""
    from agent.sources.ebpf.sensor import load_sensor
    from agent.sources.ebpf.source import EbpfSource

    lc = config.sources.linux
    sensor = load_sensor(ringbuf_mb=lc.ebpf_ringbuf_mb, files=bool(lc.ebpf_file_prefixes))
    source = EbpfSource(host=host, sensor=sensor, prefixes=lc.ebpf_file_prefixes)
    try:
        source.start()
    except BaseException:
        sensor.close()
        raise
    return source


def _canary_files(config: AgentConfig, host: Any) -> EventSource:
    """fanotify on the canary files only: the eBPF sensor sees writes, not reads."""
    from agent.canary import canary_paths
    from agent.sources.fanotify import FanotifySource

    return FanotifySource(
        host=host, directories=[], files=[str(p) for p in canary_paths(config.canaries)]
    )


def _etw(config: AgentConfig, host: Any) -> EventSource:
    from agent.sources.etw import EtwSource

    return EtwSource(config.sources.etw, computer=host.hostname)


def _replay(config: AgentConfig, host: Any) -> EventSource:
    from agent.sources.replay import ReplaySource

    rc = config.sources.replay
    return ReplaySource(rc.paths, speed=rc.speed, rate=rc.rate, loop=rc.loop, lossless=rc.lossless)


SOURCE_FACTORIES: dict[str, Callable[[AgentConfig, Any], EventSource]] = {
    "linux-ebpf": _linux_ebpf,
    "linux-proc": _linux_proc,
    "linux-net": _linux_net,
    "linux-file": _linux_file,
    "etw": _etw,
    "replay": _replay,
}
SOURCE_NAMES = frozenset(SOURCE_FACTORIES)


def build_sources(config: AgentConfig, host: Any) -> list[EventSource]:
    """Instantiate the sources named in ``config.sources.enabled``.

    ``linux-ebpf`` that cannot load is replaced by ``FALLBACK`` (those not already enabled); the
    reason goes to the log and to ``host.sensor`` (status, system information).
    """
    names = list(config.sources.enabled)
    sources: list[EventSource] = []
    if "linux-ebpf" in names:
        from agent.sources.ebpf.sensor import EbpfUnavailable

        names.remove("linux-ebpf")
        try:
            sources.append(_linux_ebpf(config, host))
            host.sensor = {"mode": "ebpf", "reason": ""}
            if config.canaries.enable and "linux-file" not in names:
                sources.append(_canary_files(config, host))
        except EbpfUnavailable as ex:
            logger.warning(
                "eBPF sensor unavailable, using the /proc, /proc/net and fanotify "
                "sources instead: %s",
                ex,
            )
            host.sensor = {"mode": "proc", "reason": str(ex)}
            names += [n for n in FALLBACK if n not in names]
    return sources + [SOURCE_FACTORIES[name](config, host) for name in names]


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
