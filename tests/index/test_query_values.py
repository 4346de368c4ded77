"""Query-language values reach regexes and Tantivy terms escaped, for every field kind.

Property: an event holding value V in field F is found by ``F:"V"`` (V quoted with ``\\`` and
``"`` escaped), whatever V holds — regex metacharacters, quotes, Windows paths, Unicode — and
the query never fails with anything but ``IndexQueryError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from index import EndpointRef, EventStore
from index.query import tokenize_text
from tests.index.conftest import sysmon

EP = EndpointRef("5a92baeb-9384-47d3-92b4-a0db6f9b8cff", "HOST-Q", "10.0.0.9", "lab")
FILEZILLA = "C:\\Program Files (x86)\\FileZilla Server\\FileZilla Server Interface.exe"
# Field kinds: promoted (Image), promoted without kv token (CommandLine), kv only
# (TargetImage, a made-up name), raw System fields (Computer, Channel).
DATA_FIELDS = ("Image", "TargetImage", "Odd.Name_1")
META = "()[]{}.*+?^$|\\\"' "
VALUES = st.text(
    alphabet=st.sampled_from(META) | st.characters(exclude_categories=("Cs",)),
    min_size=1,
    max_size=80,
)


FIXTURE = [HealthCheck.function_scoped_fixture]  # one shared store: examples add events


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    with EventStore(Path(tmp_path_factory.mktemp("qv")), fsync=False) as s:
        yield s


def _store_and_find(store: EventStore, event: dict, query: str) -> None:
    store.append([event], endpoint=EP)
    store.flush()
    page = store.search(query, limit=1000)
    assert event["Event"]["System"] in [
        e["Event"]["System"]
        for e in page.events
        if e["Event"]["EventData"] == event["Event"]["EventData"]
    ], query


@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURE)
@given(field=st.sampled_from(DATA_FIELDS), value=VALUES, nonce=st.uuids())
@example(field="TargetImage", value=FILEZILLA, nonce=None)
@example(field="Image", value=FILEZILLA, nonce=None)
@example(field="TargetImage", value=META, nonce=None)
@example(field="TargetImage", value="ΑΣ 𝐀b ª€x İ", nonce=None)
def test_data_field_value_is_found(
    store: EventStore, field: str, value: str, nonce: object
) -> None:
    event = sysmon("x.exe", "c", extra={field: value, "Nonce": str(nonce)})
    _store_and_find(store, event, f"{field}:{quote(value)}")


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(value=VALUES.filter(lambda v: bool(tokenize_text(v))), nonce=st.uuids())
def test_command_line_words_are_found(store: EventStore, value: str, nonce: object) -> None:
    """Command lines have no exact-value token: a value is found through its words."""
    event = sysmon("x.exe", value, extra={"Nonce": str(nonce)})
    _store_and_find(store, event, f"CommandLine:{quote(value)}")


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(field=st.sampled_from(("Computer", "Channel")), value=VALUES, nonce=st.uuids())
def test_raw_field_value_is_found(store: EventStore, field: str, value: str, nonce: object) -> None:
    event = sysmon("x.exe", "c", extra={"Nonce": str(nonce)})
    event["Event"]["System"][field] = value
    _store_and_find(store, event, f"{field}:{quote(value)}")


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE)
@given(
    field=st.sampled_from(
        (
            "Image",
            "CommandLine",
            "TargetImage",
            "Computer",
            "Signature",
            "md5",
            "EventID",
            "ts",
            "detection",
            "x",
        )
    ),
    value=VALUES,
    wild=st.booleans(),
)
def test_any_value_translates_or_says_why(
    store: EventStore, field: str, value: str, wild: bool
) -> None:
    """Quoted or bare (wildcards live), no value escapes the error boundary."""
    from index import IndexQueryError

    text = f"{field}:{quote(value)}" if not wild else f"{field}:{value.replace(' ', '')}*"
    try:
        store.search(text, limit=1)
    except IndexQueryError:
        pass


@pytest.mark.parametrize(
    ("field", "query_field"),
    [
        ("Action ID", '"Action ID"'),  # Windows Defender names with spaces
        ("xmlns:auto-ns2", '"xmlns:auto-ns2"'),
        ("Hash", "Hash"),  # an alias (hash digests) that is also a Defender EventData name
        ("Computer", "Computer"),  # a raw System alias, here an EventData name
    ],
)
def test_odd_field_names_are_searchable(store: EventStore, field: str, query_field: str) -> None:
    event = sysmon("x.exe", "c", extra={field: "Unknown (x86) value", "Nonce": field})
    _store_and_find(store, event, f'{query_field}:"Unknown (x86) value"')
