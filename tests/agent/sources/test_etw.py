"""Windows ETW code paths with recorded pywintrace callback dicts (fixtures/etw_records.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import rules
from agent.canary import canary_rules
from agent.config import CanaryConfig, EtwConfig
from agent.errors import SourceError
from agent.service import build_agent
from agent.sinks import MemorySink
from agent.sources import MemorySource
from agent.sources.etw.backend import PywintraceBackend, _Running
from agent.sources.etw.providers import PROVIDERS, enabled_for
from agent.sources.etw.render import (
    DESCRIPTION_FIELD,
    TASK_FIELD,
    KernelFileFilter,
    filetime_to_epoch,
    render_etw,
)
from agent.sources.etw.source import EtwSource
from tests.conftest import SHARED

RECORDS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "etw_records.json").read_text(encoding="utf-8")
)


def _rendered(provider: str, event_id: int) -> list[dict[str, Any]]:
    return [
        render_etw(r["event_id"], r["record"], computer="DESKTOP")
        for r in RECORDS
        if r["provider"] == provider and r["event_id"] == event_id
    ]


def test_filetime_conversion() -> None:
    assert filetime_to_epoch(116444736000000000) == 0.0
    assert filetime_to_epoch(133374384000000000) == 1692964800.0  # 2023-08-25T12:00:00Z


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: f"{r['provider']}-{r['event_id']}")
def test_every_record_renders_to_the_whids_shape(rec: dict[str, Any]) -> None:
    event = render_etw(rec["event_id"], rec["record"], computer="DESKTOP")
    system = event["Event"]["System"]
    assert set(system) == {
        "Channel",
        "Computer",
        "EventID",
        "Correlation",
        "Execution",
        "Keywords",
        "Level",
        "Opcode",
        "Task",
        "Provider",
        "TimeCreated",
    }
    assert system["Channel"] == PROVIDERS[rec["provider"]].channel
    assert system["EventID"] == rec["event_id"] and isinstance(system["EventID"], int)
    assert system["Provider"] == {
        "Guid": rec["record"]["EventHeader"]["ProviderId"],
        "Name": rec["provider"],
    }
    assert system["Execution"]["ProcessID"] == rec["record"]["EventHeader"]["ProcessId"]
    assert system["TimeCreated"]["SystemTime"].startswith("2023-08-25T12:0")
    assert system["TimeCreated"]["SystemTime"].endswith("Z")
    data = event["Event"]["EventData"]
    assert "EventHeader" not in data and "Task Name" not in data and "Description" not in data
    assert list(data) == sorted(data)
    assert all(isinstance(v, str) for v in data.values())
    assert rules.Event(event).event_id == rec["event_id"]


def test_sysmon_process_create_fields() -> None:
    (ev, _child) = _rendered("Microsoft-Windows-Sysmon", 1)
    data = ev["Event"]["EventData"]
    assert data["ProcessId"] == "4242" and data["TerminalSessionId"] == "1"
    assert data["ProcessGuid"] == "{515CD0D1-7669-6123-4E00-000000007300}"
    assert ev["Event"]["System"]["Keywords"]["Value"] == 0x8000000000000000
    assert ev["Event"]["System"]["Level"] == {"Value": 4, "Name": "Information"}


def test_booleans_and_numbers_are_sysmon_strings() -> None:
    (ev,) = _rendered("Microsoft-Windows-Sysmon", 3)
    data = ev["Event"]["EventData"]
    assert data["Initiated"] == "true" and data["SourceIsIpv6"] == "false"
    assert data["DestinationPort"] == "443"


@pytest.mark.shared_data
def test_gene_rules_match_rendered_etw_events() -> None:
    ruleset = rules.load([SHARED / "corpus" / "gene-rules" / "compiled.gen"])
    engine = rules.Engine(ruleset)
    (_, child) = _rendered("Microsoft-Windows-Sysmon", 1)
    det = engine.match(child)
    assert det is not None and "PowershellExecEnc" in det.signatures
    (defender,) = _rendered("Microsoft-Windows-Windows Defender", 1116)
    det = engine.match(defender)
    assert det is not None and "DefenderMalwareDetected" in det.signatures


def test_kernel_file_filter_passes_first_read_and_write_with_name() -> None:
    events = _rendered("Microsoft-Windows-Kernel-File", 12) + [
        render_etw(r["event_id"], r["record"], computer="D")
        for r in RECORDS
        if r["provider"] == "Microsoft-Windows-Kernel-File" and r["event_id"] != 12
    ]
    events.sort(key=lambda e: e["Event"]["System"]["TimeCreated"]["SystemTime"])
    f = KernelFileFilter()
    passed = [e for e in events if f.accept(e)]
    # create, read, read (dup), write, close, read-after-close → first read + first write only
    assert [e["Event"]["System"]["EventID"] for e in passed] == [15, 16]
    assert all(e["Event"]["EventData"]["TargetFilename"].endswith("canary.docx") for e in passed)


def test_kernel_file_filter_is_bounded() -> None:
    f = KernelFileFilter(max_open=10)
    for i in range(100):
        ev = {
            "Event": {
                "System": {"EventID": 12},
                "EventData": {"FileObject": hex(i), "FileName": f"f{i}"},
            }
        }
        f.accept(ev)
    assert len(f._open) == 10


def test_canary_rules_fire_on_security_4663_and_kernel_file(tmp_path: Path) -> None:
    cfg = CanaryConfig(
        enable=True, directories=[r"C:\Users\Public\Documents"], files=["canary.docx"]
    )
    engine = rules.Engine(rules.loads(canary_rules(cfg, windows=True)))
    (sec,) = _rendered("Microsoft-Windows-Security-Auditing", 4663)
    det = engine.match(sec)
    assert det is not None and det.signatures == ("Builtin:CanaryAccessed",)
    assert det.criticality == 10 and "kill" in det.actions
    sec["Event"]["EventData"]["AccessMask"] = "0x80"  # read attributes only: not an access
    sec["Event"].pop("Detection")
    assert engine.match(sec) is None
    kf = KernelFileFilter()
    kernel = [
        render_etw(r["event_id"], r["record"], computer="D")
        for r in RECORDS
        if r["provider"] == "Microsoft-Windows-Kernel-File"
    ]
    hits = [engine.match(e) for e in kernel if kf.accept(e)]
    assert [h.signatures if h else None for h in hits] == [("Builtin:CanaryReadWrite",)] * 2


@pytest.mark.shared_data
def test_etw_pipeline_enrichment_from_recorded_sysmon(config_factory: Any) -> None:
    sysmon = [
        render_etw(r["event_id"], r["record"], computer="DESKTOP")
        for r in RECORDS
        if r["provider"] == "Microsoft-Windows-Sysmon"
    ]
    sysmon.sort(key=lambda e: e["Event"]["System"]["TimeCreated"]["SystemTime"])
    config = config_factory(
        general={"log_all": True, "ignore_self": False}, actions={"allowed": []}
    )
    sink = MemorySink()
    agent = build_agent(config, sources=[], sinks=[sink])
    agent.reload_rules((SHARED / "corpus" / "gene-rules" / "compiled.gen").read_text())
    for ev in sysmon:
        agent.process(ev, live=True)  # live: the enrichment hooks run
    by_eid = {}
    for e in sink.events:
        by_eid.setdefault(e["Event"]["System"]["EventID"], []).append(e["Event"]["EventData"])
    child = by_eid[1][1]
    assert child["Ancestors"] == r"C:\Windows\System32\cmd.exe"
    assert child["ParentUser"] == r"DESKTOP\bob" and child["ParentIntegrityLevel"] == "Medium"
    assert child["Services"] == "N/A"
    conn = by_eid[3][0]
    assert conn["ImageHashes"].startswith("SHA1=04C5D2B4") and conn["IntegrityLevel"] == "High"
    assert int(conn["ProcessThreatScore"]) >= 5  # PowershellExecEnc added to the track score
    track = agent.tracker.get("{515CD0D1-7669-6123-4F00-000000007300}")
    assert track is not None and track.terminated
    assert track.dns == {"203.0.113.7": {"cdn.evil.example": 1}}
    assert track.connections["203.0.113.7"]["ports"] == {"443": 1}
    assert track.score_signatures.get("PowershellExecEnc") == 1
    agent.close()


def test_etw_source_refuses_unknown_provider_and_non_windows() -> None:
    with pytest.raises(SourceError, match="unknown ETW providers"):
        EtwSource(EtwConfig(providers=["Nope"]), computer="x")
    src = EtwSource(EtwConfig(), computer="x")
    import sys

    if sys.platform != "win32":
        with pytest.raises(SourceError, match="needs Windows"):
            next(iter(src.events()))


class FakeBackend:
    """Records session calls; feeds recorded pywintrace records through the callbacks."""

    def __init__(self, stale: bool) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.stale = stale
        self.callbacks: dict[str, Any] = {}

    def stop_session(self, name: str) -> bool:
        self.calls.append(("stop_session", name))
        was, self.stale = self.stale, False
        return was

    def start_session(self, name: str, providers: list[Any], callback: Any) -> Any:
        self.calls.append(("start_session", (name, [p.name for p in providers])))
        self.callbacks[name] = callback
        return Handle(self, name)

    def start_consumer(self, session: str, callback: Any) -> Any:
        self.calls.append(("start_consumer", session))
        self.callbacks[session] = callback
        return Handle(self, session)


class Handle:
    def __init__(self, backend: FakeBackend, name: str) -> None:
        self.backend, self.name = backend, name

    def stop(self) -> None:
        self.backend.calls.append(("stop", self.name))


def test_etw_session_lifecycle_with_stale_session(caplog: Any) -> None:
    backend = FakeBackend(stale=True)
    cfg = EtwConfig(session_name="Heron-Test", kernel_file=True)
    src = EtwSource(cfg, computer="DESKTOP", backend=backend)
    it = src.events()
    sysmon = next(r for r in RECORDS if r["provider"] == "Microsoft-Windows-Sysmon")
    security = next(r for r in RECORDS if r["event_id"] == 4663)

    def feed() -> None:
        backend.callbacks["Heron-Test"]((sysmon["event_id"], sysmon["record"]))
        backend.callbacks["EventLog-Security"]((security["event_id"], security["record"]))

    import threading

    threading.Timer(0.05, feed).start()
    got = [next(it), next(it)]
    src.close()
    assert list(it) == []
    assert [e["Event"]["System"]["Channel"] for e in got] == [
        "Microsoft-Windows-Sysmon/Operational",
        "Security",
    ]
    assert backend.calls == [
        ("stop_session", "Heron-Test"),
        (
            "start_session",
            (
                "Heron-Test",
                [
                    "Microsoft-Windows-Sysmon",
                    "Microsoft-Windows-Windows Defender",
                    "Microsoft-Windows-PowerShell",
                    "Microsoft-Antimalware-Scan-Interface",
                    "Microsoft-Windows-Kernel-File",
                ],
            ),
        ),
        ("start_consumer", "EventLog-Security"),
        ("stop", "EventLog-Security"),
        ("stop", "Heron-Test"),
        ("stop_session", "Heron-Test"),
    ]
    assert "stopped stale ETW session 'Heron-Test'" in caplog.text


def test_etw_callback_renders_and_bounds_its_queue() -> None:
    src = EtwSource(EtwConfig(), computer="DESKTOP", buffer=2)
    for rec in RECORDS[:4]:
        src._callback((rec["event_id"], rec["record"]))
    assert src._queue.qsize() == 2 and src.lost == 2
    assert MemorySource([]).events is not None


def test_security_and_kernel_file_events_get_process_fields(config_factory: Any) -> None:
    config = config_factory(
        general={"log_all": True, "ignore_self": False}, actions={"allowed": []}
    )
    sink = MemorySink()
    agent = build_agent(config, sources=[], sinks=[sink])
    for rec in RECORDS:
        if rec["provider"] == "Microsoft-Windows-Sysmon" and rec["event_id"] == 1:
            agent.process(render_etw(rec["event_id"], rec["record"], computer="D"), live=True)
    (sec,) = _rendered("Microsoft-Windows-Security-Auditing", 4663)
    agent.process(sec, live=True)
    data = sec["Event"]["EventData"]
    assert data["ProcessGuid"] == "{515CD0D1-7669-6123-4F00-000000007300}"  # pid 0x10cc
    assert data["Image"].endswith("powershell.exe") and data["ImageHashes"].startswith("SHA1=")
    kf = KernelFileFilter()
    kernel = [
        render_etw(r["event_id"], r["record"], computer="D")
        for r in RECORDS
        if r["provider"] == "Microsoft-Windows-Kernel-File"
    ]
    passed = [e for e in kernel if kf.accept(e)]
    for e in passed:
        agent.process(e, live=True)
    assert [e["Event"]["EventData"]["EventType"] for e in passed] == ["Read", "Write"]
    assert all(e["Event"]["EventData"]["ProcessGuid"].startswith("{515CD0D1") for e in passed)
    track = agent.tracker.by_pid(4300)
    assert track is not None and str(list(track.last_files)[-1]).endswith("canary.docx")
    agent.close()


# --- issue 26 point 7 --------------------------------------------------------------------------


def test_sysmon_description_property_and_manifest_task_name_survive() -> None:
    """What PywintraceBackend's consumer keeps: the Description property, the task's spelling."""
    rec = next(r for r in RECORDS if r.get("raw"))
    record = dict(rec["record"])
    record[DESCRIPTION_FIELD] = rec["raw"]["description"]  # _unpackSimpleType moved it here
    record[TASK_FIELD] = rec["raw"]["task"]  # _getEventInformation kept it
    ev = render_etw(rec["event_id"], record, computer="D")
    assert ev["Event"]["EventData"]["Description"] == "Windows Command Processor"
    assert ev["Event"]["System"]["Task"]["Name"] == "Process Create (rule: ProcessCreate)"
    assert TASK_FIELD not in ev["Event"]["EventData"]
    # without them: the message is still not taken for the property; no made-up title case
    plain = render_etw(rec["event_id"], rec["record"], computer="D")
    assert "Description" not in plain["Event"]["EventData"]
    assert plain["Event"]["System"]["Task"]["Name"] == "PROCESS CREATE (RULE: PROCESSCREATE)"


def test_event_extended_data_does_not_leak_into_event_data() -> None:
    rec = RECORDS[0]
    record = dict(rec["record"], EventExtendedData=[{"ExtType": 5, "Data": "S-1-5-18"}])
    ev = render_etw(rec["event_id"], record, computer="D")
    assert "EventExtendedData" not in ev["Event"]["EventData"]


@pytest.mark.parametrize(
    "rec",
    [r for r in RECORDS if r["provider"] in EtwConfig().providers],
    ids=lambda r: f"{r['provider']}-{r['event_id']}",
)
def test_recorded_events_pass_the_provider_filters(rec: dict[str, Any]) -> None:
    desc = rec["record"]["EventHeader"]["EventDescriptor"]
    assert enabled_for(PROVIDERS[rec["provider"]], desc["Level"], desc["Keyword"])


# EventDescriptors (level, keyword) of the noise all keywords at level 5 pulled in: PowerShell
# Analytic 7937 (command started, channel bit 62 | Pipeline 0x2), PowerShell Debug 40962,
# AMSI's debug/analytic events (keyword 0x2, level 5), Sysmon's Debug channel.
NOISE = [
    ("Microsoft-Windows-PowerShell", 4, 0x4000000000000002),
    ("Microsoft-Windows-PowerShell", 5, 0x2000000000000100),
    ("Microsoft-Antimalware-Scan-Interface", 5, 0x2),
    ("Microsoft-Windows-Sysmon", 5, 0x4000000000000000),
]


@pytest.mark.parametrize(("provider", "level", "keyword"), NOISE)
def test_analytic_and_debug_events_are_not_enabled(provider: str, level: int, keyword: int) -> None:
    assert not enabled_for(PROVIDERS[provider], level, keyword)


class _Ctypes:
    """ctypes.c_uint64 stand-in: pywintrace keeps TRACEHANDLE objects, not ints."""

    def __init__(self, value: int) -> None:
        self.value = value


class _Consumer:
    def __init__(self, handle: int, alive: bool = True) -> None:
        self.trace_handle = _Ctypes(handle)
        self.process_thread = type("T", (), {"is_alive": lambda self: alive})()
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_failed_open_trace_is_detected() -> None:
    with pytest.raises(SourceError, match="cannot open ETW session 'EventLog-Security'"):
        PywintraceBackend._checked(_Running("EventLog-Security", _Consumer(2**64 - 1)))
    ok = _Running("EventLog-Security", _Consumer(0x1A2B))
    assert PywintraceBackend._checked(ok) is ok and ok.error() == ""
    assert "stopped" in _Running("x", _Consumer(1, alive=False)).error()


class _Health:
    def __init__(self, lost: int = 0, error: str = "") -> None:
        self._lost, self._error = lost, error

    def lost(self) -> int:
        return self._lost

    def error(self) -> str:
        return self._error

    def stop(self) -> None:
        pass


def test_lost_events_and_consumer_errors_are_reported() -> None:
    src = EtwSource(EtwConfig(), computer="D", buffer=1)
    src._sessions = [_Health(lost=7), _Health(error="ETW consumer of 'EventLog-Security' stopped")]
    src._callback((RECORDS[0]["event_id"], RECORDS[0]["record"]))
    src._callback((RECORDS[0]["event_id"], RECORDS[0]["record"]))  # queue full: dropped
    src._check()
    assert src.lost == 8 and "EventLog-Security" in src.error
    src._sessions = [_Health(error="ETW consumer of 'Heron-EDR' stopped")]
    with pytest.raises(SourceError, match="Heron-EDR"):  # the main session: the source ends
        src._check()
