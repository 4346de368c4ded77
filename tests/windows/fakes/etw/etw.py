"""``etw.etw`` of the fake pywintrace: ETW, EventProvider, EventConsumer, ProviderInfo."""

import copy
import json
import threading
from pathlib import Path
from types import SimpleNamespace

from etw import evntrace as et
from etw.GUID import GUID

RECORDS = json.loads(
    (Path(__file__).resolve().parents[3] / "agent" / "fixtures" / "etw_records.json").read_text(
        encoding="utf-8"
    )
)
SESSIONS: dict = {}  # name → running ETW (system-wide, like real sessions)
LOST = {"EventsLost": 2, "RealTimeBuffersLost": 1}  # what ControlTraceW(QUERY) reports
SYSTEM_SESSIONS = {"EventLog-System"}  # EventLog-Security is not readable: OpenTrace fails
LOCK = threading.Lock()


class TraceProperties:
    def __init__(
        self, ring_buf_size=1024, max_str_len=1024, min_buffers=0, max_buffers=0, props=None
    ):
        self.ring_buf_size = ring_buf_size
        self.contents = SimpleNamespace(EventsLost=0, RealTimeBuffersLost=0)

    def get(self):
        return self  # pywintrace: a POINTER(EVENT_TRACE_PROPERTIES); .contents is the struct


class ProviderInfo:
    def __init__(
        self,
        name,
        guid,
        level=et.TRACE_LEVEL_INFORMATION,
        any_keywords=None,
        all_keywords=None,
        params=None,
    ):
        if not isinstance(guid, GUID):
            raise TypeError("ProviderInfo: guid must be an etw.GUID")
        if not isinstance(level, int) or not 0 <= level <= 255:
            raise TypeError("ProviderInfo: level is a UCHAR")
        for kw in (any_keywords, all_keywords):
            if kw is not None and not isinstance(kw, list | int):
                raise TypeError("ProviderInfo: keywords are a list of names or a bitmask")
        self.name = name
        self.guid = guid
        self.level = level
        self.any_bitmask = any_keywords if isinstance(any_keywords, int) else 0
        self.all_bitmask = all_keywords if isinstance(all_keywords, int) else 0
        self.params = params


class EventConsumer:
    def __init__(
        self,
        logger_name,
        event_callback,
        task_name_filters,
        event_id_filters,
        callback_data_flag,
        parse_events=True,
        trace_logfile=None,
    ):
        self.logger_name = logger_name
        self.event_callback = event_callback
        self.trace_handle = None
        self.process_thread = None
        self.end_capture = threading.Event()

    @staticmethod
    def _getEventInformation(entry):
        rec, raw = entry["record"], entry.get("raw", {})
        strings = {1: raw.get("task", rec.get("Task Name", "")), 2: entry["provider"]}
        return SimpleNamespace(
            strings=strings,
            contents=SimpleNamespace(TaskNameOffset=1 if strings[1] else 0, ProviderNameOffset=2),
        )

    def _unpackSimpleType(self, record, info, event_property):
        name, value = event_property
        return {name: value}

    def _processEvent(self, entry):
        """pywintrace's steps on one recorded event, ending in ``callback((event_id, dict))``.

        The recorded dicts are pywintrace output; an entry's ``raw`` part holds what pywintrace
        loses (the manifest's task name, the event message and a ``Description`` property).
        """
        from etw.common import rel_ptr_to_str

        rec, raw = entry["record"], entry.get("raw", {})
        out = {
            "EventHeader": copy.deepcopy(rec["EventHeader"]),
            "Task Name": rec["EventHeader"]["ProviderId"],
        }
        info = self._getEventInformation(entry)
        offset = info.contents.TaskNameOffset or info.contents.ProviderNameOffset
        task_name = rel_ptr_to_str(info, offset).strip().upper()
        props = {
            k: v for k, v in rec.items() if k not in ("EventHeader", "Task Name", "Description")
        }
        if "description" in raw:
            props["Description"] = raw["description"]
        parsed = {}
        for item in copy.deepcopy(props).items():
            parsed.update(self._unpackSimpleType(entry, info, item))
        parsed["Description"] = raw.get("message", rec.get("Description", ""))
        parsed["Task Name"] = task_name
        out.update(parsed)
        if self.event_callback:
            self.event_callback((entry["event_id"], out))

    def start(self):
        handle = et.OpenTraceW(self.logger_name)
        # pywintrace compares an int with a ctypes object here: a failure goes unnoticed.
        if handle == et.INVALID_PROCESSTRACE_HANDLE:
            raise OSError("OpenTrace failed")
        self.trace_handle = et.TRACEHANDLE(handle)
        self.process_thread = threading.Thread(target=self._run, daemon=True)
        self.process_thread.start()

    def _run(self):
        if self.trace_handle.value == 2**64 - 1:
            self.end_capture.set()  # ProcessTrace fails at once on an invalid handle
            return
        session = SESSIONS.get(self.logger_name)
        enabled = {str(p.guid): p for p in session.providers} if session else {}
        for rec in RECORDS:
            if self.end_capture.is_set():
                return
            header = rec["record"]["EventHeader"]
            provider = enabled.get(header["ProviderId"].upper())
            if provider is not None and _delivered(provider, header["EventDescriptor"]):
                self._processEvent(rec)
        self.end_capture.wait()

    def stop(self):
        self.end_capture.set()
        self.process_thread.join()


def _delivered(provider, desc):
    """EnableTraceEx2 filtering: level (0 always passes), MatchAnyKeyword (0 always passes)."""
    level, keyword = desc["Level"], desc["Keyword"]
    return (level == 0 or level <= provider.level) and (
        keyword == 0 or not provider.any_bitmask or keyword & provider.any_bitmask
    )


class EventProvider:
    def __init__(self, session_name, session_properties, providers):
        self.session_name = session_name
        self.session_properties = session_properties
        self.providers = providers

    def start(self):
        with LOCK:
            if self.session_name in SESSIONS:
                raise OSError(183, "Cannot create a file when that file already exists")
            SESSIONS[self.session_name] = self

    def stop(self):
        with LOCK:
            SESSIONS.pop(self.session_name, None)

    def end(self):
        pass


class ETW:
    def __init__(
        self,
        session_name=None,
        ring_buf_size=1024,
        max_str_len=1024,
        min_buffers=0,
        max_buffers=0,
        event_callback=None,
        task_name_filters=None,
        properties=None,
        providers=None,
        ignore_exists_error=True,
        event_id_filters=None,
        callback_data_flag=0,
        parse_events=True,
        trace_logfile=None,
    ):
        for p in providers or []:
            if not isinstance(p, ProviderInfo):
                raise TypeError("ETW: providers must be ProviderInfo instances")
        self.session_name = session_name
        self.providers = providers or []
        self.properties = properties or TraceProperties(ring_buf_size, max_str_len)
        self.event_callback = event_callback
        self.task_name_filters = task_name_filters or []
        self.event_id_filters = event_id_filters or []
        self.ignore_exists_error = ignore_exists_error
        self.callback_data_flag = callback_data_flag
        self.parse_events = parse_events
        self.trace_logfile = trace_logfile
        self.provider = None
        self.consumer = None
        self.running = False

    def start(self):
        if self.provider is None:
            self.provider = EventProvider(self.session_name, self.properties, self.providers)
        if self.running is False:
            self.running = True
            try:
                self.provider.start()
            except OSError:
                if not self.ignore_exists_error:
                    raise
            self.consumer = EventConsumer(
                self.session_name,
                self.event_callback,
                self.task_name_filters,
                self.event_id_filters,
                self.callback_data_flag,
                self.parse_events,
                self.trace_logfile,
            )
            self.consumer.start()

    def stop(self):
        if self.provider:
            self.running = False
            self.provider.stop()
            self.consumer.stop()
