"""Fake pywin32 ``servicemanager`` for the Windows simulation (records, never hosts)."""

EVENTLOG_INFORMATION_TYPE = 4
PYS_SERVICE_STARTED = 0x1002
PYS_SERVICE_STOPPED = 0x1004
CALLS: list = []


def LogMsg(*args):  # noqa: N802
    CALLS.append(("LogMsg", args))


def Initialize(*args):  # noqa: N802
    CALLS.append(("Initialize", args))


def PrepareToHostSingle(cls):  # noqa: N802
    CALLS.append(("PrepareToHostSingle", cls))


def StartServiceCtrlDispatcher():  # noqa: N802
    raise OSError("winsim: not started by the SCM")
