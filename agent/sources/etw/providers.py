"""The ETW providers the source can enable, and what a session enabling one receives."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPERATIONAL", "PROVIDERS", "EtwProvider", "enabled_for"]

OPERATIONAL = 0x8000000000000000  # keyword bit of a manifest provider's first (Operational) channel


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


def enabled_for(provider: EtwProvider, level: int, keyword: int) -> bool:
    """Whether ETW delivers an event of ``level``/``keyword`` to a session enabling ``provider``.

    EnableTraceEx2 semantics with MatchAllKeyword 0: level 0 (LogAlways) always passes, else it
    must be at most the enabled level; keyword 0 always passes, else it must share a bit with
    MatchAnyKeyword.
    """
    return (level == 0 or level <= provider.level) and (
        keyword == 0 or bool(keyword & provider.keywords)
    )
