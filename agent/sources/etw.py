"""Windows ETW real-time source through pywintrace, rendered to the WHIDS/Gene JSON shape.

Providers: Sysmon, Windows Defender, PowerShell, AMSI and optionally Kernel-File, in one session
named ``sources.etw.session_name``; the Security log comes from the ``EventLog-Security``
real-time session. A session with our name left over by a killed agent keeps running (ETW
sessions are system-wide, pywintrace#45), so it is stopped by name at start and at close.

Platform-independent parts are pure and unit-tested with recorded pywintrace dicts:
``render_etw`` (pywintrace ``(event_id, dict)`` → event) and ``KernelFileFilter`` (WHIDS
FileObject correlation: only the first read/write per opened file, with its name). Session
handling goes through an ``EtwBackend`` (``PywintraceBackend`` on Windows), so start/stop order
is tested with a fake backend.

pywintrace (0.2/0.3) quirks handled by ``PywintraceBackend``'s consumer subclass:

* it writes the event message over a property named ``Description`` (Sysmon 1 and 7 have one):
  the property is kept under ``DESCRIPTION_FIELD`` and rendered back as ``Description``;
* it upper-cases the task name: the manifest spelling is kept under ``TASK_FIELD``;
* it compares OpenTrace's int result with a ctypes object, so a consumer that cannot attach
  (EventLog-Security without the rights) looks started: the handle is checked here, and a
  consumer whose ProcessTrace thread ended is reported;
* its own lost events (session buffers) are read with ``ETW.query()`` and counted in ``lost``.

Providers are enabled on their Operational channel keyword (bit 63), not on every keyword: all
bits at level 5 also pull the PowerShell/AMSI analytic and debug events (noise, lost buffers).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from agent.errors import SourceError
from agent.render import make_event

if TYPE_CHECKING:
    from agent.config import EtwConfig

__all__ = [
    "DESCRIPTION_FIELD",
    "PROVIDERS",
    "SECURITY_SESSION",
    "TASK_FIELD",
    "EtwBackend",
    "EtwProvider",
    "EtwSource",
    "KernelFileFilter",
    "PywintraceBackend",
    "enabled_for",
    "filetime_to_epoch",
    "render_etw",
]

logger = logging.getLogger(__name__)

SECURITY_SESSION = "EventLog-Security"
_FILETIME_EPOCH = 116444736000000000  # 1601-01-01 → 1970-01-01 in 100 ns units
DESCRIPTION_FIELD = "\x00Description"  # the event's own Description property (see above)
TASK_FIELD = "\x00TaskName"  # the task name as the manifest spells it
OPERATIONAL = 0x8000000000000000  # keyword bit of a manifest provider's first (Operational) channel
INVALID_TRACE_HANDLES = (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF)  # INVALID_PROCESSTRACE_HANDLE, 64/32-bit


@dataclass(frozen=True, slots=True)
class EtwProvider:
    """A provider we know how to enable and name."""

    name: str
    guid: str
    channel: str
    level: int = 4  # TRACE_LEVEL_INFORMATION
    keywords: int = OPERATIONAL


PROVIDERS: dict[str, EtwProvider] = {
    p.name: p
    for p in (
        EtwProvider(
            "Microsoft-Windows-Sysmon",
            "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}",
            "Microsoft-Windows-Sysmon/Operational",
        ),
        EtwProvider(
            "Microsoft-Windows-Windows Defender",
            "{11CD958A-C507-4EF3-B3F2-5FD9DFBD2C78}",
            "Microsoft-Windows-Windows Defender/Operational",
        ),
        # 4104 (script block) is Verbose: level 5, still only the Operational channel.
        EtwProvider(
            "Microsoft-Windows-PowerShell",
            "{A0C1853B-5C40-4B15-8766-3CF1C58F985A}",
            "Microsoft-Windows-PowerShell/Operational",
            level=5,
        ),
        # AMSI has no Operational channel; keyword 0x1 (Event1) carries the scan events (1101).
        EtwProvider(
            "Microsoft-Antimalware-Scan-Interface",
            "{2A576B87-09A7-520E-C21A-4942F0271D67}",
            "Microsoft-Antimalware-Scan-Interface/Operational",
            keywords=0x1,
        ),
        EtwProvider(
            "Microsoft-Windows-Kernel-File",
            "{EDD08927-9CC4-4E65-B970-C2560FB5C289}",
            "Microsoft-Windows-Kernel-File/Analytic",
            level=0xFF,
            keywords=0x10 | 0x20 | 0x100 | 0x200,
        ),
        EtwProvider(
            "Microsoft-Windows-Security-Auditing",
            "{54849625-5478-4994-A5BA-3E3B0328C30D}",
            "Security",
        ),
    )
}
_BY_GUID = {p.guid.upper(): p for p in PROVIDERS.values()}
_META_KEYS = frozenset(
    {
        "EventHeader",
        "Task Name",
        "Description",
        "UserData",
        "EventExtendedData",
        TASK_FIELD,
        DESCRIPTION_FIELD,
    }
)


def enabled_for(provider: EtwProvider, level: int, keyword: int) -> bool:
    """Whether ETW delivers an event of ``level``/``keyword`` to a session enabling ``provider``.

    EnableTraceEx2 semantics with MatchAllKeyword 0: level 0 (LogAlways) always passes, else it
    must be at most the enabled level; keyword 0 always passes, else it must share a bit with
    MatchAnyKeyword.
    """
    return (level == 0 or level <= provider.level) and (
        keyword == 0 or bool(keyword & provider.keywords)
    )


def filetime_to_epoch(filetime: int) -> float:
    """Windows FILETIME (100 ns since 1601, UTC) → seconds since the Unix epoch."""
    return (int(filetime) - _FILETIME_EPOCH) / 1e7


def _value(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, bytes | bytearray):
        return v.hex().upper()
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    if v is None:
        return None
    return str(v)


def _norm_guid(g: str) -> str:
    g = str(g).strip().upper()
    return g if g.startswith("{") else "{" + g + "}"


def render_etw(event_id: int, record: dict[str, Any], *, computer: str) -> dict[str, Any]:
    """Render one pywintrace callback ``(event_id, record)`` as a WHIDS event."""
    header = record.get("EventHeader", {})
    desc = header.get("EventDescriptor", {})
    guid = _norm_guid(header.get("ProviderId", ""))
    provider = _BY_GUID.get(guid)
    name = provider.name if provider else record.get("Task Name", "") or guid
    channel = provider.channel if provider else f"{name}/Operational"
    data = {k: _value(v) for k, v in record.items() if k not in _META_KEYS}
    if DESCRIPTION_FIELD in record:
        data["Description"] = _value(record[DESCRIPTION_FIELD])
    task_name = str(record.get(TASK_FIELD) or record.get("Task Name", ""))
    return make_event(
        channel=channel,
        provider=name,
        provider_guid=guid,
        event_id=int(desc.get("Id", event_id)),
        data=data,
        computer=computer,
        ts=filetime_to_epoch(header.get("TimeStamp", _FILETIME_EPOCH)),
        pid=int(header.get("ProcessId", 0)),
        tid=int(header.get("ThreadId", 0)),
        task=int(desc.get("Task", 0)),
        task_name=task_name,
        level=int(desc.get("Level", 4)),
        opcode=int(desc.get("Opcode", 0)),
        keywords=int(desc.get("Keyword", 0)),
        activity_id=str(header.get("ActivityId", "")).strip("{}").upper()
        if header.get("ActivityId") not in (None, "{00000000-0000-0000-0000-000000000000}")
        else "",
    )


class KernelFileFilter:
    """WHIDS Kernel-File correlation: FileObject of create (12) → name; close (14) forgets it.

    Read (15) and write (16) pass only for the first occurrence per FileObject, with
    ``TargetFilename`` set to the name seen at create. Memory is bounded (LRU of open objects).
    """

    CREATE, CLOSE, READ, WRITE = 12, 14, 15, 16

    def __init__(self, max_open: int = 65536) -> None:
        self.max_open = max_open
        self._open: OrderedDict[str, tuple[str, set[int]]] = OrderedDict()

    def accept(self, event: dict[str, Any]) -> bool:
        ev = event["Event"]
        eid = int(ev["System"]["EventID"])
        data = ev["EventData"]
        fobj = str(data.get("FileObject", ""))
        if eid == self.CREATE:
            self._open[fobj] = (str(data.get("FileName", "")), set())
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
            return False
        if eid == self.CLOSE:
            self._open.pop(fobj, None)
            return False
        if eid in (self.READ, self.WRITE):
            entry = self._open.get(fobj)
            if entry is None or eid in entry[1]:
                return False
            entry[1].add(eid)
            data["TargetFilename"] = entry[0]
            data.setdefault("FileName", entry[0])
            return True
        return True


class EtwBackend(Protocol):
    """What the source needs from an ETW binding (pywintrace on Windows, a fake in tests).

    The started objects have ``stop()``; they may also have ``error() -> str`` (non-empty once
    the consumer stopped receiving) and ``lost() -> int`` (events the session itself lost).
    """

    def stop_session(self, name: str) -> bool:
        """Stop a running session by name; False when none was running."""
        ...

    def start_session(
        self,
        name: str,
        providers: list[EtwProvider],
        callback: Callable[[tuple[int, dict[str, Any]]], None],
    ) -> Any:
        """Start a real-time session with ``providers``; raises SourceError when it cannot."""
        ...

    def start_consumer(
        self, session: str, callback: Callable[[tuple[int, dict[str, Any]]], None]
    ) -> Any:
        """Consume an existing session (EventLog-Security); raises SourceError when it cannot."""
        ...


def _pywintrace_classes(etw: Any) -> tuple[type[Any], type[Any]]:
    """(session, consumer) subclasses of pywintrace's ``ETW``/``EventConsumer`` (see module doc)."""
    from etw.common import rel_ptr_to_str

    base: Any = etw.etw.EventConsumer
    session_base: Any = etw.ETW

    class Consumer(base):  # type: ignore[misc]
        event_callback: Callable[[tuple[int, dict[str, Any]]], None]

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.heron_task = ""
            callback = self.event_callback

            def tagged(item: tuple[int, dict[str, Any]]) -> None:
                if self.heron_task:
                    item[1][TASK_FIELD] = self.heron_task
                callback(item)

            self.event_callback = tagged

        def _getEventInformation(self, record: Any) -> Any:
            info = base._getEventInformation(record)
            offset = info.contents.TaskNameOffset or info.contents.ProviderNameOffset
            self.heron_task = str(rel_ptr_to_str(info, offset)).strip()
            return info

        def _unpackSimpleType(
            self,
            record: Any,
            info: Any,
            event_property: Any,
        ) -> Any:
            field = super()._unpackSimpleType(record, info, event_property)
            if isinstance(field, dict) and "Description" in field:
                return {DESCRIPTION_FIELD: field["Description"]}
            return field

    class Session(session_base):  # type: ignore[misc]
        provider: Any
        running: bool

        def start(self) -> None:
            # ETW.start builds pywintrace's own EventConsumer, and swallows every provider
            # start error but ERROR_ALREADY_EXISTS: same steps, our consumer, errors raised.
            # attributes read with pywintrace's constructor defaults, and
            # parse_events/trace_logfile only where the release has them (0.2.0 vs later).
            if self.provider is None:
                properties = getattr(self, "properties", None) or etw.etw.TraceProperties()
                self.provider = etw.etw.EventProvider(self.session_name, properties, self.providers)
            if not self.running:
                self.running = True
                self.provider.start()
                later = [
                    getattr(self, n) for n in ("parse_events", "trace_logfile") if hasattr(self, n)
                ]
                self.consumer = Consumer(
                    self.session_name,
                    self.event_callback,
                    getattr(self, "task_name_filters", None) or [],
                    getattr(self, "event_id_filters", None) or [],
                    getattr(self, "callback_data_flag", 0),
                    *later,
                )
                self.consumer.start()

    return Session, Consumer


class _Running:
    """A started pywintrace session or consumer, as the source sees it."""

    def __init__(
        self,
        name: str,
        consumer: Any,
        session: Any = None,
        query: Callable[[str], Any] | None = None,
    ) -> None:
        self.name = name
        self.consumer = consumer
        self.session = session
        self.query = query  # name → EVENT_TRACE_PROPERTIES of a session we own

    def opened(self) -> bool:
        handle = self.consumer.trace_handle
        return int(getattr(handle, "value", handle) or 0) not in INVALID_TRACE_HANDLES

    def error(self) -> str:
        thread = self.consumer.process_thread
        if thread is not None and not thread.is_alive():
            return f"ETW consumer of {self.name!r} stopped (ProcessTrace returned)"
        return ""

    def lost(self) -> int:
        if self.query is None:
            return 0
        props = self.query(self.name)
        return int(props.EventsLost) + int(props.RealTimeBuffersLost)

    def stop(self) -> None:
        (self.session or self.consumer).stop()


class PywintraceBackend:
    """``EtwBackend`` over pywintrace (fireeye/pywintrace 0.2/0.3; Windows)."""

    etw: Any
    _session_cls: type[Any]
    _consumer_cls: type[Any]

    def __init__(self) -> None:
        if sys.platform == "win32":
            import etw  # pywintrace: its import fails off Windows (ctypes.oledll)

            self.etw = etw
            self._session_cls, self._consumer_cls = _pywintrace_classes(etw)
        else:
            raise SourceError("the ETW source needs Windows")

    def stop_session(self, name: str) -> bool:
        from etw import evntrace as et

        props = self.etw.etw.TraceProperties()
        status = et.ControlTraceW(et.TRACEHANDLE(0), name, props.get(), et.EVENT_TRACE_CONTROL_STOP)
        return bool(status == 0)

    def query(self, name: str) -> Any:
        """EVENT_TRACE_PROPERTIES of session ``name`` (EventsLost, RealTimeBuffersLost, ...)."""
        from etw import evntrace as et

        props = self.etw.etw.TraceProperties()
        status = et.ControlTraceW(
            et.TRACEHANDLE(0), name, props.get(), et.EVENT_TRACE_CONTROL_QUERY
        )
        if status != 0:
            raise OSError(status, f"ControlTraceW(QUERY, {name!r}) failed")
        return props.get().contents

    def start_session(
        self,
        name: str,
        providers: list[EtwProvider],
        callback: Callable[[tuple[int, dict[str, Any]]], None],
    ) -> Any:
        infos = [
            self.etw.ProviderInfo(
                p.name, self.etw.GUID(p.guid), level=p.level, any_keywords=p.keywords
            )
            for p in providers
        ]
        session = self._session_cls(
            session_name=name, providers=infos, event_callback=callback, ignore_exists_error=False
        )
        try:
            session.start()
        except OSError as ex:
            raise SourceError(f"cannot start ETW session {name!r}: {ex}") from ex
        return self._checked(_Running(name, session.consumer, session, self.query))

    def start_consumer(
        self, session: str, callback: Callable[[tuple[int, dict[str, Any]]], None]
    ) -> Any:
        consumer = self._consumer_cls(session, callback, None, None, 0)
        consumer.start()
        return self._checked(_Running(session, consumer))

    @staticmethod
    def _checked(running: _Running) -> _Running:
        if not running.opened():
            try:
                running.stop()
            except Exception:  # noqa: BLE001 - already failing; the handle is invalid
                pass
            raise SourceError(
                f"cannot open ETW session {running.name!r} (OpenTrace failed: "
                "missing rights, or the session does not exist)"
            )
        return running


class EtwSource:
    """Real-time ETW consumer (Windows; any ``EtwBackend`` elsewhere, for tests)."""

    name = "etw"
    live = True
    lossless = False

    def __init__(
        self,
        config: EtwConfig,
        *,
        computer: str,
        buffer: int = 50_000,
        backend: EtwBackend | None = None,
    ) -> None:
        unknown = [p for p in config.providers if p not in PROVIDERS]
        if unknown:
            raise SourceError(f"unknown ETW providers: {unknown}")
        self.config = config
        self.computer = computer
        self._backend = backend
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(buffer)
        self._closed = threading.Event()
        self._kfile = KernelFileFilter()
        self.dropped = 0  # our queue was full
        self.etw_lost = 0  # lost by ETW itself (session buffers)
        self.error = ""  # a consumer that failed or stopped (the source runs on without it)
        self._sessions: list[Any] = []

    @property
    def lost(self) -> int:
        """Events lost before reaching the agent: ETW's buffers plus our full queue."""
        return self.dropped + self.etw_lost

    def _callback(self, item: tuple[int, dict[str, Any]]) -> None:
        event_id, record = item
        try:
            event = render_etw(event_id, record, computer=self.computer)
        except (KeyError, TypeError, ValueError):
            logger.error("cannot render ETW event %r", event_id, exc_info=True)
            return
        if event["Event"]["System"]["Channel"].startswith(
            "Microsoft-Windows-Kernel-File"
        ) and not self._kfile.accept(event):
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def providers(self) -> list[EtwProvider]:
        """Providers enabled in our session (Kernel-File only when configured)."""
        names = list(self.config.providers)
        if self.config.kernel_file and "Microsoft-Windows-Kernel-File" not in names:
            names.append("Microsoft-Windows-Kernel-File")
        return [PROVIDERS[n] for n in names]

    def _start(self) -> EtwBackend:
        backend = self._backend or PywintraceBackend()
        name = self.config.session_name
        if backend.stop_session(name):
            logger.warning("stopped stale ETW session %r (left by a previous agent)", name)
        self._sessions.append(backend.start_session(name, self.providers(), self._callback))
        if self.config.security_log:
            try:
                self._sessions.append(backend.start_consumer(SECURITY_SESSION, self._callback))
            except SourceError as ex:  # Sysmon & co. still run; status says it
                self.error = str(ex)
                logger.error("%s", ex)
        logger.info("ETW session %r started", name)
        return backend

    CHECK_INTERVAL = 5.0  # seconds between consumer health / lost-event checks

    def events(self) -> Iterator[dict[str, Any]]:
        backend = self._start()
        next_check = time.monotonic() + self.CHECK_INTERVAL
        try:
            while not self._closed.is_set():
                try:
                    yield self._queue.get(timeout=0.25)
                except queue.Empty:
                    pass
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.CHECK_INTERVAL
                    self._check()
        finally:
            self._stop_sessions(backend)

    def _check(self) -> None:
        """Count ETW lost events; a dead main session ends the source, a dead consumer is noted."""
        lost = 0
        for i, running in enumerate(self._sessions):
            count = getattr(running, "lost", None)
            if callable(count):
                try:
                    lost += int(count())
                except Exception:
                    logger.debug("ETW query failed", exc_info=True)
            check = getattr(running, "error", None)
            err = check() if callable(check) else ""
            if err and i == 0:
                raise SourceError(err)
            if err and err != self.error:
                self.error = err
                logger.error("%s", err)
        self.etw_lost = lost

    def _stop_sessions(self, backend: EtwBackend) -> None:
        for s in reversed(self._sessions):
            try:
                s.stop()
            except Exception:
                logger.error("ETW stop failed", exc_info=True)
        self._sessions.clear()
        backend.stop_session(self.config.session_name)  # by name too: never leave it running

    def close(self) -> None:
        self._closed.set()
