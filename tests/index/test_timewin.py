"""WHIDS time-window parameters: since/until/last/pivot±delta."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from index import IndexQueryError, parse_duration, parse_time_window

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def clock() -> float:
    return NOW.timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("7d", timedelta(days=7)),
        ("1.5h", timedelta(minutes=90)),
        ("0", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "1x", "h", "1h-", "abc"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(IndexQueryError):
        parse_duration(text)


def test_no_parameters_means_last_hour() -> None:
    assert parse_time_window(clock=clock) == (NOW - timedelta(hours=1), NOW)
    assert parse_time_window(clock=clock, default=None) == (None, None)


def test_last_wins() -> None:
    window = parse_time_window(
        last="2d", since="2020-01-01T00:00:00Z", pivot="2021-01-01T00:00:00Z", clock=clock
    )
    assert window == (NOW - timedelta(days=2), NOW)


def test_pivot_and_delta() -> None:
    pivot = "2024-05-01T10:00:00+02:00"
    center = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert parse_time_window(pivot=pivot, clock=clock) == (
        center - timedelta(minutes=10),
        center + timedelta(minutes=10),
    )
    assert parse_time_window(pivot=pivot, delta="1h", clock=clock) == (
        center - timedelta(hours=1),
        center + timedelta(hours=1),
    )


def test_since_until() -> None:
    since = datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_time_window(since="2024-05-01T00:00:00Z", clock=clock) == (since, NOW)
    assert parse_time_window(until="2024-05-01T00:00:00Z", clock=clock) == (None, since)
    assert parse_time_window(since="2024-05-01 00:00:00", until=NOW, clock=clock) == (since, NOW)
    with pytest.raises(IndexQueryError, match="after"):
        parse_time_window(since="2024-05-02T00:00:00Z", until="2024-05-01T00:00:00Z", clock=clock)
    with pytest.raises(IndexQueryError):
        parse_time_window(since="yesterday", clock=clock)
