"""Fake pywintrace (``etw``) for the Windows simulation: real signatures, recorded events.

Mirrors fireeye/pywintrace's package layout and public signatures (``etw/__init__.py`` exports
``GUID``, ``ETW``, ``ProviderInfo``; ``etw.etw`` has ``EventConsumer``, ``EventProvider``,
``TraceProperties``; ``etw.evntrace`` the ctypes constants and ``ControlTraceW``). Events come
from ``tests/agent/fixtures/etw_records.json`` (dicts in pywintrace's callback shape) and are
delivered as ``event_callback((event_id, dict))`` on a consumer thread, like ProcessTrace does.
"""

from etw.etw import ETW, ProviderInfo  # noqa: F401
from etw.GUID import GUID  # noqa: F401
