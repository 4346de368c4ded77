"""Windows event XML: the rendering details golang-evtx applies, and damaged input."""

from __future__ import annotations

import io

from rules.inputs.winxml import iter_xml_events, parse_event, win_time

NS = "xmlns='http://schemas.microsoft.com/win/2004/08/events/event'"
SERVICE = (
    f"<Event {NS}><System><Provider Name='Service Control Manager' "
    "Guid='{555908d1-a6d7-4695-8e1e-26931d2012f4}' EventSourceName='Service Control "
    "Manager'/><EventID Qualifiers='16384'>7045</EventID><Version>0</Version>"
    "<Level>4</Level><Task>0</Task><Opcode>0</Opcode><Keywords>0x8080000000000000"
    "</Keywords><TimeCreated SystemTime='2019-03-19T13:05:42.000000000Z'/>"
    "<EventRecordID>5</EventRecordID><Correlation/><Execution ProcessID='512' "
    "ThreadID='600'/><Channel>System</Channel><Computer>PC01</Computer><Security "
    "UserID='S-1-5-21-1'/></System><EventData><Data Name='ServiceName'>evil &amp; co"
    "</Data><Data Name='ImagePath'>%COMSPEC% /c \x0f x</Data><Data Name='Empty'/>"
    "</EventData><RenderingInfo Culture='en-US'><Message>A service was installed"
    "</Message></RenderingInfo></Event>"
)
CLASSIC = (
    f"<Event {NS}><System><Provider Name='MsiInstaller'/><EventID Qualifiers='0'>1040"
    "</EventID><TimeCreated SystemTime='2019-02-13T18:01:41.5938300Z'/><Channel>"
    "Application</Channel><Computer>PC01</Computer><Security/></System><EventData>"
    "<Data>C:\\a.msi</Data><Data>2128</Data><Data></Data><Data></Data><Binary></Binary>"
    "</EventData></Event>"
)
USERDATA = (
    f"<Event {NS}><System><EventID>1102</EventID><TimeCreated SystemTime="
    "'2019-02-13T18:01:41Z'/><Channel>Security</Channel></System><UserData>"
    "<LogFileCleared xmlns='http://manifests.microsoft.com/win/2004/08/windows/eventlog'>"
    "<SubjectUserName>admin01</SubjectUserName></LogFileCleared></UserData></Event>"
)


def test_rendering_follows_golang_evtx() -> None:
    ev = parse_event(SERVICE)["Event"]
    system = ev["System"]
    assert system["EventID"] == {"Qualifiers": "16384", "Value": "7045"}
    assert system["Provider"]["EventSourceName"] == "Service Control Manager"
    assert system["TimeCreated"] == {"SystemTime": "2019-03-19T13:05:42Z"}
    assert system["Correlation"] == {} and system["Security"] == {"UserID": "S-1-5-21-1"}
    assert ev["EventData"] == {
        "ServiceName": "evil & co",
        "ImagePath": "%COMSPEC% /c \x0f x",
        "Empty": "",
    }
    assert "RenderingInfo" not in ev


def test_classic_provider_unnamed_data_and_binary() -> None:
    ev = parse_event(CLASSIC)["Event"]
    assert ev["System"]["MsiInstaller"] == "" and "Provider" not in ev["System"]
    assert ev["System"]["EventID"] == {"Qualifiers": "0", "Value": "1040"}  # as EVTX
    assert ev["System"]["TimeCreated"]["SystemTime"] == "2019-02-13T18:01:41.59383Z"
    assert ev["System"]["Security"] == {}
    assert ev["EventData"] == {"Data": ["C:\\a.msi", "2128"], "Binary": None}


def test_user_data_keeps_namespace_keys() -> None:
    ev = parse_event(USERDATA)["Event"]
    assert ev["UserData"] == {
        "LogFileCleared": {
            "xmlns": "http://manifests.microsoft.com/win/2004/08/windows/eventlog",
            "SubjectUserName": "admin01",
        }
    }


def test_stream_layouts_and_a_broken_event_in_the_middle() -> None:
    errors: list[str] = []
    broken = SERVICE.replace("</Data><Data Name='ImagePath'>", "</Dta><Data Name='ImagePath'>")
    text = (
        "<?xml version='1.0' encoding='UTF-8'?>\r\n<Events>\r\n"
        + SERVICE
        + "\r\n"
        + broken
        + CLASSIC
        + "&#x2;"
        + USERDATA
        + "</Events>"
    )
    events = list(iter_xml_events(io.StringIO(text), "x.xml", errors.append))
    assert [e["Event"]["System"]["Channel"] for e in events] == [
        "System",
        "Application",
        "Security",
    ]
    assert len(errors) == 1 and "x.xml: event #2: invalid XML" in errors[0]


def test_events_split_across_read_chunks(monkeypatch: object) -> None:
    import rules.inputs.winxml as winxml

    setattr(winxml, "_CHUNK", 7)  # noqa: B010 - force every boundary case
    try:
        text = (SERVICE + CLASSIC) * 3
        events = list(iter_xml_events(io.StringIO(text), "x", lambda m: None))
    finally:
        setattr(winxml, "_CHUNK", 1 << 20)  # noqa: B010
    assert len(events) == 6


def test_unterminated_event_is_an_error() -> None:
    errors: list[str] = []
    assert list(iter_xml_events(io.StringIO(SERVICE[:200]), "x", errors.append)) == []
    assert errors == ["x: event #1 is not terminated"]


def test_win_time() -> None:
    assert win_time("2019-04-27T15:57:25.868863200Z") == "2019-04-27T15:57:25.8688632Z"
    assert win_time("2019-04-27T15:57:25Z") == "2019-04-27T15:57:25Z"
    assert win_time("garbage") == "garbage"
