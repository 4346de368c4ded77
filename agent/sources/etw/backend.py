"""ETW sessions through pywintrace (Windows), behind the ``EtwBackend`` seam the source uses.

``PywintraceBackend``'s session and consumer subclasses handle pywintrace's quirks (package doc);
tests use a fake backend, so start/stop order is tested on any platform.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

from agent.errors import SourceError

from .providers import EtwProvider
from .render import DESCRIPTION_FIELD, TASK_FIELD

__all__ = ["INVALID_TRACE_HANDLES", "EtwBackend", "PywintraceBackend"]

INVALID_TRACE_HANDLES = (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF)  # INVALID_PROCESSTRACE_HANDLE, 64/32-bit


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
