"""Helpers shared by resources: the admin envelope, query parameters, path parameters."""

from __future__ import annotations

import re
from typing import Any

import falcon
import orjson

from ..core.errors import InvalidParam

__all__ = ["envelope", "json_raw", "q_bool", "q_int", "q_str", "raw", "uuid_param"]

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def envelope(resp: falcon.Response, data: Any, status: int = 200) -> None:
    """WHIDS admin envelope `{"data", "message", "error"}`."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(
        {"data": data, "message": "OK", "error": ""}, option=orjson.OPT_NON_STR_KEYS, default=str
    )


def raw(resp: falcon.Response, body: bytes | str, content_type: str = falcon.MEDIA_TEXT) -> None:
    resp.content_type = content_type
    resp.data = body.encode("utf-8") if isinstance(body, str) else body


def json_raw(resp: falcon.Response, data: Any) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(data, default=str)


def uuid_param(value: str, name: str = "uuid") -> str:
    if not UUID_RE.fullmatch(value or ""):
        raise InvalidParam(f"{name} must be a UUID (8-4-4-4-12 hex)")
    return value.lower()


def q_str(req: falcon.Request, name: str, default: str = "", max_len: int = 1024) -> str:
    value = req.get_param(name)
    if value is None:
        return default
    if len(value) > max_len or "\x00" in value:
        raise InvalidParam(f"{name} is too long or contains NUL")
    return value


def q_int(req: falcon.Request, name: str, default: int, *, lo: int = 0, hi: int = 10**9) -> int:
    value = req.get_param(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as ex:
        raise InvalidParam(f"{name} must be an integer") from ex
    if not lo <= number <= hi:
        raise InvalidParam(f"{name} must be between {lo} and {hi}")
    return number


def q_bool(req: falcon.Request, name: str, default: bool = False) -> bool:
    value = req.get_param(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidParam(f"{name} must be a boolean")


NEXT_CURSOR = "X-Heron-Next-Cursor"
PAGE_QUERY = {"limit": "integer", "cursor": "string"}


def paged(req: falcon.Request, default: int, hi: int) -> tuple[int, str | None]:
    """`limit` and `cursor` of a keyset-paged list (see store/keyset.py)."""
    return q_int(req, "limit", default, lo=1, hi=hi), q_str(req, "cursor", "", 512) or None


def next_page(resp: falcon.Response, cursor: str | None) -> None:
    """Name the next page in a header, so the WHIDS `data` list keeps its shape."""
    if cursor:
        resp.set_header(NEXT_CURSOR, cursor)
