"""Heron event store: write-ahead journal, Tantivy search, DuckDB analytics.

Public names (other packages import only these)::

    EventStore, EndpointRef, AppendResult, SearchPage, SqlResult, StoreState, IndexHealth,
    IndexState,
    IndexQueryError, SqlError, StoreError, StoreClosedError, InvalidEventError,
    parse_time_window, parse_duration
"""

from __future__ import annotations

from index.errors import (
    IndexQueryError,
    InvalidEventError,
    SqlError,
    StoreClosedError,
    StoreError,
)
from index.store import (
    AppendResult,
    EndpointRef,
    EventStore,
    IndexHealth,
    IndexState,
    SearchPage,
    StoreState,
)
from index.tables import SqlResult
from index.timewin import parse_duration, parse_time_window

__all__ = [
    "AppendResult",
    "EndpointRef",
    "EventStore",
    "IndexHealth",
    "IndexQueryError",
    "IndexState",
    "InvalidEventError",
    "SearchPage",
    "SqlError",
    "SqlResult",
    "StoreClosedError",
    "StoreError",
    "StoreState",
    "parse_duration",
    "parse_time_window",
]
