"""Errors raised by the event store (index/).

The tree::

    ValueError
     ├── IndexQueryError      a search query, time window, cursor or SQL text is unusable
     │    └── SqlError        SQL rejected (not read-only) or failed (syntax, timeout)
     └── InvalidEventError    an appended event is not an ``{"Event": {...}}`` dict
    OSError
     └── StoreError           journal, Tantivy or DuckDB I/O failed
          └── StoreClosedError  the store was used after close()

Third-party errors (tantivy ``ValueError``, ``duckdb.Error``) are translated into these
at one boundary each, always with ``raise … from ex``.
"""

from __future__ import annotations

__all__ = [
    "IndexQueryError",
    "InvalidEventError",
    "SqlError",
    "StoreClosedError",
    "StoreError",
]


class IndexQueryError(ValueError):
    """A human query, time window or cursor cannot be understood.

    Attributes:
        query: The offending text.
        position: Character offset of the problem in ``query`` (``None`` if unknown).
    """

    def __init__(self, message: str, *, query: str = "", position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.query = query
        self.position = position

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} at position {self.position} in {self.query!r}"


class SqlError(IndexQueryError):
    """A SQL statement was refused (not read-only) or failed (syntax, timeout)."""


class StoreError(OSError):
    """The journal, the Tantivy index or the DuckDB tables failed."""


class StoreClosedError(StoreError):
    """The store was used after ``close()``."""


class InvalidEventError(ValueError):
    """An appended event is not a WHIDS/Gene event dict (``{"Event": {...}}``).

    Attributes:
        position: Index of the offending event in the batch.
    """

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(f"{message} (event #{position} of the batch)")
        self.position = position
