"""Fake pywin32 ``win32serviceutil`` for the Windows simulation (records calls)."""

CALLS: list = []


class ServiceFramework:
    _svc_name_ = ""

    def __init__(self, args):
        self.args = list(args)

    def ReportServiceStatus(self, status, *args, **kwargs):
        CALLS.append(("ReportServiceStatus", status))


def GetServiceClassString(cls, argv=None):
    return f"{cls.__module__}.{cls.__name__}"


def InstallService(
    pythonClassString,
    serviceName,
    displayName,
    startType=None,
    errorControl=None,
    bRunInteractive=0,
    serviceDeps=None,
    userName=None,
    password=None,
    exeName=None,
    perfMonIni=None,
    perfMonDll=None,
    exeArgs=None,
    description=None,
    delayedstart=None,
):
    CALLS.append(
        (
            "InstallService",
            dict(
                cls=pythonClassString,
                name=serviceName,
                start=startType,
                exe=exeName,
                args=exeArgs,
                description=description,
            ),
        )
    )


def StartService(serviceName, args=None, machine=None):
    CALLS.append(("StartService", serviceName))


def StopService(serviceName, machine=None):
    CALLS.append(("StopService", serviceName))


def RemoveService(serviceName):
    CALLS.append(("RemoveService", serviceName))
