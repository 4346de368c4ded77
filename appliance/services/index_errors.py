"""The one boundary where `index/` errors become manager domain errors (docs/style.md §5.8).

`tests/appliance/test_streams_store.py` checks that every error class `index` exports is mapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import index

from ..core.errors import ApplianceError, InvalidParam, StoreError, Unavailable, ValidationError

__all__ = ["INDEX_ERRORS", "index_errors"]

# Most specific first: the first matching class wins.
INDEX_ERRORS: tuple[tuple[type[Exception], type[ApplianceError]], ...] = (
    (index.SqlError, InvalidParam),
    (index.IndexQueryError, InvalidParam),
    (index.InvalidEventError, ValidationError),
    (index.StoreClosedError, Unavailable),
    (index.StoreError, StoreError),
)


@contextmanager
def index_errors(what: str) -> Iterator[None]:
    """Translate index errors raised inside the block, naming `what` was being done."""
    try:
        yield
    except tuple(cls for cls, _ in INDEX_ERRORS) as ex:
        for cls, mapped in INDEX_ERRORS:
            if isinstance(ex, cls):
                raise mapped(f"{what}: {ex}") from ex
        raise  # pragma: no cover - the tuple above and the loop list the same classes
