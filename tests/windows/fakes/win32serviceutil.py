"""Fake pywin32 ``win32serviceutil`` for the Windows simulation (records calls)."""

CALLS: list = []


class ServiceFramework:
    _svc_name_ = ""

    def __init__(self, args):
        self.args = list(args)

    def ReportServiceStatus(self, status, *args, **kwargs):  # noqa: N802
        CALLS.append(("ReportServiceStatus", status))


def GetServiceClassString(cls, argv=None):  # noqa: N802
    return f"{cls.__module__}.{cls.__name__}"


def InstallService(
    pythonClassString,
    serviceName,
    displayName,
    startType=None,  # noqa: N802,N803
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


def StartService(serviceName, args=None, machine=None):  # noqa: N802,N803
    CALLS.append(("StartService", serviceName))


def StopService(serviceName, machine=None):  # noqa: N802,N803
    CALLS.append(("StopService", serviceName))


def RemoveService(serviceName):  # noqa: N802,N803
    CALLS.append(("RemoveService", serviceName))
