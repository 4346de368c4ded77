"""Hypothesis strategies: events in every shape Heron's EVTX reader and JSON input can produce.

Empty elements ``{}`` (an empty ``<Channel/>`` as golang-evtx renders it), ``#attributes`` /
``#text`` forms, lists for unnamed ``<Data>``, numbers or strings for leaves, ``null``, and
missing or odd ``System`` blocks.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

SYSMON = "Microsoft-Windows-Sysmon/Operational"
TEXT = st.text(max_size=24)
LEAF = st.one_of(
    TEXT,
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)
ELEMENT = st.one_of(
    LEAF,
    st.just({}),
    st.fixed_dictionaries(
        {
            "#attributes": st.dictionaries(TEXT, LEAF, max_size=2),
            "#text": st.one_of(TEXT, st.none()),
        }
    ),
    st.lists(st.one_of(TEXT, st.none()), max_size=4),
    st.dictionaries(TEXT, LEAF, max_size=3),
)
CHANNEL = st.one_of(
    st.sampled_from(
        [
            SYSMON,
            "Security",
            "Microsoft-Windows-Kernel-File/Analytic",
            "Linux-Sysmon/Operational",
            "",
        ]
    ),
    ELEMENT,
)
EVENT_ID = st.one_of(
    st.sampled_from(["1", "3", "4663", "11", "22", "0"]),
    st.integers(0, 70000),
    st.fixed_dictionaries({"Qualifiers": TEXT, "Value": st.one_of(TEXT, LEAF)}),
    ELEMENT,
)
TIME = st.one_of(
    st.just({"SystemTime": "2024-05-01T10:00:00.1234567Z"}),
    st.fixed_dictionaries({"SystemTime": st.one_of(TEXT, LEAF)}),
    ELEMENT,
)
DATA_KEYS = (
    st.sampled_from(
        [
            "Image",
            "CommandLine",
            "ProcessGuid",
            "ProcessId",
            "Hashes",
            "ParentImage",
            "TargetFilename",
            "QueryName",
            "DestinationIp",
            "TargetObject",
            "User",
            "Data",
            "RuleName",
        ]
    )
    | TEXT
)
SYSTEM = st.fixed_dictionaries(
    {},
    optional={
        "Channel": CHANNEL,
        "EventID": EVENT_ID,
        "TimeCreated": TIME,
        "Computer": st.one_of(TEXT, ELEMENT),
        "EventRecordID": st.one_of(TEXT, LEAF),
        "Execution": st.one_of(st.fixed_dictionaries({"ProcessID": LEAF}), ELEMENT),
        "Provider": ELEMENT,
        "Correlation": st.just({}),
    },
)
DATA = st.one_of(st.dictionaries(DATA_KEYS, ELEMENT, max_size=6), ELEMENT)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """One ``{"Event": {...}}`` object of any rendering shape."""
    inner: dict[str, Any] = {}
    system = draw(st.one_of(SYSTEM, SYSTEM, ELEMENT, st.just(None)))
    if system is not None or draw(st.booleans()):
        inner["System"] = system
    for key in ("EventData", "UserData"):
        if draw(st.booleans()):
            inner[key] = draw(DATA)
    return {"Event": inner}
