"""Fake pywin32 ``servicemanager`` for the Windows simulation (records, never hosts)."""

EVENTLOG_INFORMATION_TYPE = 4
PYS_SERVICE_STARTED = 0x1002
PYS_SERVICE_STOPPED = 0x1004
CALLS: list = []


def LogMsg(*args):
    CALLS.append(("LogMsg", args))


def Initialize(*args):
    CALLS.append(("Initialize", args))


def PrepareToHostSingle(cls):
    CALLS.append(("PrepareToHostSingle", cls))


def StartServiceCtrlDispatcher():
    raise OSError("winsim: not started by the SCM")
