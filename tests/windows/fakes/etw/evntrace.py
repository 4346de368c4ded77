import ctypes

TRACEHANDLE = ctypes.c_uint64
INVALID_PROCESSTRACE_HANDLE = TRACEHANDLE(-1)  # a ctypes object, as in pywintrace
EVENT_TRACE_CONTROL_QUERY = 0
EVENT_TRACE_CONTROL_STOP = 1
TRACE_LEVEL_INFORMATION = 4
ERROR_WMI_INSTANCE_NOT_FOUND = 4201


def ControlTraceW(handle, name, props, code):
    """Stop (or query) a session by name: 0 when it existed, 4201 otherwise."""
    from etw import etw as _etw

    if not isinstance(handle, TRACEHANDLE):
        raise TypeError("ControlTraceW: handle must be a TRACEHANDLE")
    if name not in _etw.SESSIONS:
        return ERROR_WMI_INSTANCE_NOT_FOUND
    if code == EVENT_TRACE_CONTROL_STOP:
        _etw.SESSIONS.pop(name).end()
    elif code == EVENT_TRACE_CONTROL_QUERY:
        for field, value in _etw.LOST.items():
            setattr(props.contents, field, value)
    return 0


def OpenTraceW(logfile):
    from etw import etw as _etw

    return 1 if logfile in _etw.SESSIONS or logfile in _etw.SYSTEM_SESSIONS else 2**64 - 1
