"""Go number parsing as Gene uses it: `strconv.ParseInt(s, 0, bits)` and `parseToFloat`.

GENE: `&=` parses with base-0 ParseInt (`0x`, `0o`, `0b`, leading `0` = octal, `_` separators);
`<`, `>`, `<=`, `>=` try that first and then `strconv.ParseFloat` (docs/reference/gene.md §3.1).
"""

from __future__ import annotations

import re

__all__ = ["parse_int", "parse_float"]

_DEC = re.compile(r"[0-9]+(?:_[0-9]+)*\Z")
_BASES = {
    "x": (16, re.compile(r"_?[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*\Z")),
    "o": (8, re.compile(r"_?[0-7]+(?:_[0-7]+)*\Z")),
    "b": (2, re.compile(r"_?[01]+(?:_[01]+)*\Z")),
}
_OCT = re.compile(r"_?[0-7]+(?:_[0-7]+)*\Z")
_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:_[0-9]+)*)?\.?[0-9]*(?:[eE][+-]?[0-9]+)?"
    r"|0[xX][0-9a-fA-F_]*\.?[0-9a-fA-F_]*[pP][+-]?[0-9]+"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])\Z"
)


def parse_int(text: str, bits: int = 64) -> int | None:
    """Go `strconv.ParseInt(text, 0, bits)`; `None` when Go would return an error."""
    if not text or not text.isascii():
        return None
    body = text
    neg = False
    if body[0] in "+-":
        neg = body[0] == "-"
        body = body[1:]
    if not body:
        return None
    if len(body) > 1 and body[0] == "0" and body[1] in "xXoObB":
        base, pattern = _BASES[body[1].lower()]
        digits = body[2:]
        if not pattern.match(digits):
            return None
        value = int(digits.replace("_", ""), base)
    elif len(body) > 1 and body[0] == "0":
        if not _OCT.match(body[1:]):
            return None
        value = int(body[1:].replace("_", ""), 8)
    else:
        if not _DEC.match(body):
            return None
        value = int(body.replace("_", ""))
    if neg:
        value = -value
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        return None
    return value


def _go_parse_float(text: str) -> float | None:
    """Go `strconv.ParseFloat(text, 64)`; `None` on syntax or range error."""
    if not text or not text.isascii() or not _FLOAT.match(text):
        return None
    body = text.lstrip("+-")
    low = body.lower()
    if low in ("inf", "infinity"):
        return float("-inf") if text[0] == "-" else float("inf")
    if low == "nan":
        return float("nan")
    if low.startswith("0x"):
        if "__" in body or body.endswith("_"):
            return None
        try:
            value = float.fromhex(text.replace("_", ""))
        except (ValueError, OverflowError):
            return None
    else:
        if "_" in body:  # Go only allows underscores with a base prefix
            return None
        if body in ("", ".") or not any(c.isdigit() for c in body.split("e")[0].split("E")[0]):
            return None
        try:
            value = float(text)
        except ValueError:
            return None
    if value in (float("inf"), float("-inf")):
        return None  # out of range: ParseFloat returns ±Inf with an error
    return value


def parse_float(text: str) -> float | None:
    """GENE `parseToFloat`: base-0 ParseInt first, then ParseFloat; `None` if both fail."""
    value = parse_int(text)
    if value is not None:
        return float(value)
    return _go_parse_float(text)
