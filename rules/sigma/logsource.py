"""Sigma logsource → Heron (channel, EventIDs, field renames) mapping (docs/rules.md table).

A Sigma rule names what it needs by `logsource` (product/category/service); Heron indexes rules by
(channel, EventID). `resolve` turns one logsource into the `Target`s it reads, or raises
`Unsupported` naming why (a source Heron does not collect, or an unknown one), so that no rule is
silently dropped. Channels follow pySigma's `windows_logsource_mapping`; categories follow the
Sysmon event IDs SigmaHQ's taxonomy documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Target",
    "Unsupported",
    "resolve",
    "SYSMON",
    "LINUX_SYSMON",
    "SECURITY",
    "WINDOWS_SERVICES",
    "WINDOWS_CATEGORIES",
    "LINUX_CATEGORIES",
    "PROC_CREATION_4688",
]

SYSMON = "Microsoft-Windows-Sysmon/Operational"
LINUX_SYSMON = "Linux-Sysmon/Operational"
SECURITY = "Security"
PS_OPERATIONAL = ("Microsoft-Windows-PowerShell/Operational", "PowerShellCore/Operational")
PS_CLASSIC = "Windows PowerShell"


class Unsupported(Exception):
    """A logsource (or rule feature) Heron cannot evaluate; `str()` is the reason."""


@dataclass(frozen=True, slots=True)
class Target:
    """One place a Sigma rule reads: a channel, its EventIDs (empty = all) and field renames."""

    channel: str
    event_ids: frozenset[int] = frozenset()
    renames: Mapping[str, str] = field(default_factory=dict)  # Sigma field → event field


# Security 4688 carries process creation with its own names (pySigma windows-audit pipeline).
PROC_CREATION_4688: dict[str, str] = {
    "Image": "NewProcessName",
    "ParentImage": "ParentProcessName",
    "ProcessId": "NewProcessId",
    "ParentProcessId": "ProcessId",
    "User": "SubjectUserName",
    "LogonId": "SubjectLogonId",
    "IntegrityLevel": "MandatoryLabel",
}

WINDOWS_SERVICES: dict[str, tuple[str, ...]] = {
    "security": ("Security",),
    "application": ("Application",),
    "system": ("System",),
    "sysmon": (SYSMON,),
    "powershell": PS_OPERATIONAL,
    "powershell-classic": (PS_CLASSIC,),
    "taskscheduler": ("Microsoft-Windows-TaskScheduler/Operational",),
    "wmi": ("Microsoft-Windows-WMI-Activity/Operational",),
    "dns-server": ("DNS Server",),
    "dns-server-audit": ("Microsoft-Windows-DNS-Server/Audit",),
    "dns-server-analytic": ("Microsoft-Windows-DNS-Server/Analytical",),
    "driver-framework": ("Microsoft-Windows-DriverFrameworks-UserMode/Operational",),
    "ntlm": ("Microsoft-Windows-NTLM/Operational",),
    "dhcp": ("Microsoft-Windows-DHCP-Server/Operational",),
    "msexchange-management": ("MSExchange Management",),
    "applocker": (
        "Microsoft-Windows-AppLocker/MSI and Script",
        "Microsoft-Windows-AppLocker/EXE and DLL",
        "Microsoft-Windows-AppLocker/Packaged app-Deployment",
        "Microsoft-Windows-AppLocker/Packaged app-Execution",
    ),
    "printservice-admin": ("Microsoft-Windows-PrintService/Admin",),
    "printservice-operational": ("Microsoft-Windows-PrintService/Operational",),
    "codeintegrity-operational": ("Microsoft-Windows-CodeIntegrity/Operational",),
    "smbclient-security": ("Microsoft-Windows-SmbClient/Security",),
    "smbclient-connectivity": ("Microsoft-Windows-SmbClient/Connectivity",),
    "smbserver-connectivity": ("Microsoft-Windows-SMBServer/Connectivity",),
    "firewall-as": ("Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",),
    "bits-client": ("Microsoft-Windows-Bits-Client/Operational",),
    "windefend": ("Microsoft-Windows-Windows Defender/Operational",),
    "terminalservices-localsessionmanager": (
        "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    ),
    "servicebus-client": (
        "Microsoft-ServiceBus-Client/Operational",
        "Microsoft-ServiceBus-Client/Admin",
    ),
    "microsoft-servicebus-client": (
        "Microsoft-ServiceBus-Client/Operational",
        "Microsoft-ServiceBus-Client/Admin",
    ),
    "ldap": ("Microsoft-Windows-LDAP-Client/Debug",),
    "ldap_debug": ("Microsoft-Windows-LDAP-Client/Debug",),
    "security-mitigations": (
        "Microsoft-Windows-Security-Mitigations/Kernel Mode",
        "Microsoft-Windows-Security-Mitigations/User Mode",
    ),
    "diagnosis-scripted": ("Microsoft-Windows-Diagnosis-Scripted/Operational",),
    "shell-core": ("Microsoft-Windows-Shell-Core/Operational",),
    "openssh": ("OpenSSH/Operational",),
    "bitlocker": ("Microsoft-Windows-BitLocker/BitLocker Management",),
    "vhdmp": ("Microsoft-Windows-VHDMP/Operational",),
    "appxdeployment-server": ("Microsoft-Windows-AppXDeploymentServer/Operational",),
    "lsa-server": ("Microsoft-Windows-LSA/Operational",),
    "appxpackaging-om": ("Microsoft-Windows-AppxPackaging/Operational",),
    # pySigma names the display name; the real channel is DNS-Client/Operational.
    "dns-client": (
        "Microsoft-Windows-DNS-Client/Operational",
        "Microsoft-Windows-DNS Client Events/Operational",
    ),
    "appmodel-runtime": ("Microsoft-Windows-AppModel-Runtime/Admin",),
    "capi2": ("Microsoft-Windows-CAPI2/Operational",),
    "certificateservicesclient-lifecycle-system": (
        "Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational",
    ),
    "application-experience": (
        "Microsoft-Windows-Application-Experience/Program-Telemetry",
        "Microsoft-Windows-Application-Experience/Program-Compatibility-Assistant",
    ),
    "hyper-v-worker": ("Microsoft-Windows-Hyper-V-Worker",),
    "iis-configuration": ("Microsoft-IIS-Configuration/Operational",),
    "kernel-event-tracing": ("Microsoft-Windows-Kernel-EventTracing",),
    "kernel-shimengine": (
        "Microsoft-Windows-Kernel-ShimEngine/Operational",
        "Microsoft-Windows-Kernel-ShimEngine/Diagnostic",
    ),
    "ntfs": ("Microsoft-Windows-Ntfs/Operational",),
    "sense": ("Microsoft-Windows-SENSE/Operational",),
}

# category → (channel, EventIDs) list. Sysmon IDs per SigmaHQ's taxonomy appendix.
WINDOWS_CATEGORIES: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "process_creation": ((SYSMON, (1,)), (SECURITY, (4688,))),
    "file_change": ((SYSMON, (2,)),),
    "network_connection": ((SYSMON, (3,)),),
    "sysmon_status": ((SYSMON, (4, 16)),),
    "process_termination": ((SYSMON, (5,)),),
    "driver_load": ((SYSMON, (6,)),),
    "image_load": ((SYSMON, (7,)),),
    "create_remote_thread": ((SYSMON, (8,)),),
    "raw_access_thread": ((SYSMON, (9,)),),
    "process_access": ((SYSMON, (10,)),),
    "file_event": ((SYSMON, (11,)),),
    "registry_add": ((SYSMON, (12,)),),
    "registry_delete": ((SYSMON, (12,)),),
    "registry_set": ((SYSMON, (13,)),),
    "registry_rename": ((SYSMON, (14,)),),
    "registry_event": ((SYSMON, (12, 13, 14)),),
    "create_stream_hash": ((SYSMON, (15,)),),
    "pipe_created": ((SYSMON, (17, 18)),),
    "wmi_event": ((SYSMON, (19, 20, 21)),),
    "dns_query": ((SYSMON, (22,)),),
    "file_delete": ((SYSMON, (23, 26)),),
    "clipboard_capture": ((SYSMON, (24,)),),
    "process_tampering": ((SYSMON, (25,)),),
    "file_delete_detected": ((SYSMON, (26,)),),
    "file_block_executable": ((SYSMON, (27,)),),
    "file_block_shredding": ((SYSMON, (28,)),),
    "file_executable_detected": ((SYSMON, (29,)),),
    "sysmon_error": ((SYSMON, (255,)),),
    "ps_module": (tuple((c, (4103,)) for c in PS_OPERATIONAL)),
    "ps_script": (tuple((c, (4104,)) for c in PS_OPERATIONAL)),
    "ps_classic_start": ((PS_CLASSIC, (400,)),),
    "ps_classic_provider_start": ((PS_CLASSIC, (600,)),),
    "ps_classic_script": ((PS_CLASSIC, (800,)),),
}
# Categories that SigmaHQ feeds from ETW providers Heron does not subscribe to.
WINDOWS_NOT_COLLECTED = {
    "file_access": "Microsoft-Windows-Kernel-File ETW file access is not mapped to a channel",
    "file_rename": "Microsoft-Windows-Kernel-File ETW file rename is not mapped to a channel",
}

# Heron's Linux events (agent/sources) in the Sysmon-for-Linux schema.
LINUX_CATEGORIES: dict[str, tuple[int, ...]] = {
    "process_creation": (1,),
    "network_connection": (3,),
    "process_termination": (5,),
    "file_event": (11,),
    "file_create": (11,),
    "file_delete": (23,),
}


def resolve(logsource: Mapping[str, str | None]) -> list[Target]:
    """The targets of a logsource; raises `Unsupported` with the reason."""
    product = (logsource.get("product") or "").lower()
    category = (logsource.get("category") or "").lower()
    service = (logsource.get("service") or "").lower()
    if product == "windows":
        if category:
            if category in WINDOWS_NOT_COLLECTED:
                raise Unsupported(
                    f"logsource not collected: windows/{category} "
                    f"({WINDOWS_NOT_COLLECTED[category]})"
                )
            found = WINDOWS_CATEGORIES.get(category)
            if found is None:
                raise Unsupported(f"unknown logsource: windows/{category}")
            out = []
            for channel, ids in found:
                renames = PROC_CREATION_4688 if (channel, ids) == (SECURITY, (4688,)) else {}
                out.append(Target(channel, frozenset(ids), renames))
            return out
        if service:
            channels = WINDOWS_SERVICES.get(service)
            if channels is None:
                raise Unsupported(f"unknown logsource: windows service {service!r}")
            return [Target(c) for c in channels]
        return [Target("")]  # any Windows channel: the rule's own EventID/Channel fields decide
    if product == "linux":
        if category and not service:
            linux_ids = LINUX_CATEGORIES.get(category)
            if linux_ids is None:
                raise Unsupported(f"logsource not collected: linux/{category}")
            return [Target(LINUX_SYSMON, frozenset(linux_ids))]
        what = service or "(no category)"
        raise Unsupported(
            f"logsource not collected: linux/{what} (Heron's Linux events are "
            f"Sysmon-for-Linux process/network/file events; no auditd or syslog)"
        )
    name = "/".join(x for x in (product, category, service) if x) or "(empty)"
    raise Unsupported(f"logsource not collected: {name}")


def collected(logsource: Mapping[str, str | None]) -> bool:
    """Whether Heron collects this logsource at all (the denominator of the load report)."""
    try:
        resolve(logsource)
    except Unsupported as ex:
        return not str(ex).startswith("logsource not collected")
    return True
