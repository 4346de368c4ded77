"""The public surface of index/ and the error tree."""

from __future__ import annotations

import index
from index import errors


def test_exported_names_are_pinned() -> None:
    assert sorted(index.__all__) == [
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
    for name in index.__all__:
        assert getattr(index, name) is not None


def test_error_tree_subclasses_builtins() -> None:
    assert issubclass(errors.IndexQueryError, ValueError)
    assert issubclass(errors.SqlError, errors.IndexQueryError)
    assert issubclass(errors.InvalidEventError, ValueError)
    assert issubclass(errors.StoreError, OSError)
    assert issubclass(errors.StoreClosedError, errors.StoreError)
    assert set(errors.__all__) == {
        "IndexQueryError",
        "InvalidEventError",
        "SqlError",
        "StoreClosedError",
        "StoreError",
    }
