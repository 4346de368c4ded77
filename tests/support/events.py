"""Builders of Gene-shaped event dicts (`{"Event": {"System": …, "EventData": …}}`)."""

from __future__ import annotations

from typing import Any

__all__ = ["SYSMON", "detection", "gene_event"]

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def detection(signatures: list[str], criticality: int, actions: list[str] | None = None) -> Any:
    """The agent's Detection block, as WHIDS puts it on a matching event."""
    return {"Signature": signatures, "Criticality": criticality, "Actions": actions or []}


def gene_event(
    eid: Any = 1,
    data: dict[str, Any] | None = None,
    *,
    channel: str = SYSMON,
    computer: str | None = None,
    time: str | None = None,
    provider: str | None = None,
    record_id: str | None = None,
    detect: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One event; System fields other than Channel and EventID are left out unless given.

    `eid` is kept as given: Gene sees "1" and 1 alike but some tests check that it does.
    """
    system: dict[str, Any] = {"Channel": channel, "EventID": eid}
    if computer is not None:
        system["Computer"] = computer
    if record_id is not None:
        system["EventRecordID"] = record_id
    if time is not None:
        system["TimeCreated"] = {"SystemTime": time}
    if provider is not None:
        system["Provider"] = {"Name": provider}
    inner: dict[str, Any] = {"System": system, "EventData": dict(data or {})}
    if detect is not None:
        inner["Detection"] = detect
    return {"Event": inner}
