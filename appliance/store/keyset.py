"""Opaque keyset cursors: the last row's sort key, base64 of a JSON array.

Lists page by keyset (`WHERE key > last ORDER BY key LIMIT n + 1`), so the 10,000th row costs
what the first does and rows added meanwhile are neither skipped nor repeated.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ..core.errors import InvalidParam

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, types: tuple[type | tuple[type, ...], ...]) -> list[Any]:
    """The key of `cursor`, checked against `types` (one per key part); InvalidParam if not."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as ex:
        raise InvalidParam("cursor is not one this server issued") from ex
    if not isinstance(key, list) or len(key) != len(types):
        raise InvalidParam("cursor does not match this list")
    if not all(
        isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, types, strict=True)
    ):
        raise InvalidParam("cursor is not one this server issued")
    return key
