"""Sigma values (after pySigma applied the modifiers) → Python tests on one event text.

SigmaHQ semantics: plain strings match the whole value, case-insensitively, with `*`/`?`
wildcards (so `contains` = `*x*`, `startswith` = `x*`); `cased` strings and regular expressions
are case-sensitive (regex flags `i`, `m`, `s` apply); `re` searches (unanchored); numbers match
their decimal text; `null` matches a missing or empty field; `cidr`, `gt`/`gte`/`lt`/`lte`
compare parsed values and never match text that does not parse.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import product

from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExpansion,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from .logsource import Unsupported

__all__ = ["TextTest", "string_test", "value_test", "expand_placeholders", "wildcard_regex"]

TextTest = Callable[[str], bool]
_RE_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}
_MAX_EXPANSIONS = 1024


def wildcard_regex(parts: Sequence[str | SpecialChars | Placeholder]) -> str:
    """Regex source for a Sigma string's parts (full match is up to the caller)."""
    out = []
    for p in parts:
        if p is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif p is SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        elif isinstance(p, str):
            out.append(re.escape(p))
        else:
            raise Unsupported(f"unexpanded placeholder %{p.name}%")
    return "".join(out)


def string_test(parts: Sequence[str | SpecialChars | Placeholder], cased: bool) -> TextTest:
    """Whole-value match with wildcards; the text is lower-cased by the caller unless `cased`."""
    fold: Callable[[str], str] = (lambda s: s) if cased else str.lower
    star = SpecialChars.WILDCARD_MULTI
    plain = [p for p in parts if isinstance(p, str)]
    if all(isinstance(p, str) for p in parts):
        want = fold("".join(plain))
        return want.__eq__
    if len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(parts[1], str):
        sub = fold(parts[1])
        return lambda t: sub in t
    if len(parts) == 2 and parts[1] is star and isinstance(parts[0], str):
        prefix = fold(parts[0])
        return lambda t: t.startswith(prefix)
    if len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
        suffix = fold(parts[1])
        return lambda t: t.endswith(suffix)
    if all(p is star for p in parts):
        return lambda t: True
    folded = [fold(p) if isinstance(p, str) else p for p in parts]
    rx = re.compile(wildcard_regex(folded), re.DOTALL)
    match = rx.fullmatch
    return lambda t: match(t) is not None


def _compare(expr: SigmaCompareExpression) -> TextTest:
    n = expr.number.number
    op = expr.op

    def test(t: str) -> bool:
        try:
            v = float(t.strip())
        except ValueError:
            return False
        if op is CompareOperators.LT:
            return v < n
        if op is CompareOperators.LTE:
            return v <= n
        if op is CompareOperators.GT:
            return v > n
        if op is CompareOperators.GTE:
            return v >= n
        return v != n

    return test


def _cidr(expr: SigmaCIDRExpression) -> TextTest:
    net = expr.network

    def test(t: str) -> bool:
        try:
            return ipaddress.ip_address(t.strip().strip("[]")) in net
        except ValueError:
            return False

    return test


def _number(n: SigmaNumber) -> TextTest:
    want = str(n.number)

    def test(t: str) -> bool:
        if t == want:
            return True
        s = t.strip()
        try:
            return float(int(s, 0) if s[:2].lower() == "0x" else s) == n.number
        except ValueError:
            return False

    return test


def value_test(value: SigmaType) -> tuple[TextTest, bool]:
    """(test, cased): `cased` tests get the original text, the others the lower-cased text."""
    if isinstance(value, SigmaString):
        cased = isinstance(value, SigmaCasedString)
        return string_test(value.s, cased), cased
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for f in value.flags:
            flags |= _RE_FLAGS[f]
        try:
            rx = re.compile(str(value.regexp), flags)
        except re.error as ex:
            raise Unsupported(f"regular expression not supported by Python re: {ex}") from ex
        search = rx.search
        return (lambda t: search(t) is not None), True
    if isinstance(value, SigmaBool):
        want = "true" if value.boolean else "false"
        alt = "1" if value.boolean else "0"
        return (lambda t: t == want or t == alt), False
    if isinstance(value, SigmaNumber):
        return _number(value), False
    if isinstance(value, SigmaCompareExpression):
        return _compare(value), True
    if isinstance(value, SigmaCIDRExpression):
        return _cidr(value), True
    if isinstance(value, SigmaExpansion):
        subs = [value_test(v) for v in value.values]
        low = [t for t, c in subs if not c]
        orig = [t for t, c in subs if c]
        if orig and low:
            lowered = [lambda t, f=f: f(t.lower()) for f in low]
            both = orig + lowered
            return (lambda t: any(f(t) for f in both)), True
        tests = orig or low
        return (lambda t: any(f(t) for f in tests)), bool(orig)
    raise Unsupported(f"value type {type(value).__name__} is not supported")


def expand_placeholders(
    value: SigmaType, placeholders: Mapping[str, Sequence[str]]
) -> list[SigmaType]:
    """Replace `%name%` placeholders (expand modifier) by every configured value."""
    if not isinstance(value, SigmaString) or not any(isinstance(p, Placeholder) for p in value.s):
        return [value]
    choices: list[list[list[str | SpecialChars | Placeholder]]] = []
    for part in value.s:
        if isinstance(part, Placeholder):
            values = placeholders.get(part.name)
            if not values:
                raise Unsupported(
                    f"placeholder %{part.name}% has no values (set them in the "
                    f"Sigma placeholders file)"
                )
            choices.append([SigmaString(v).s for v in values])
        else:
            choices.append([[part]])
    out: list[SigmaType] = []
    for combo in product(*choices):
        if len(out) >= _MAX_EXPANSIONS:
            raise Unsupported(f"placeholder expansion exceeds {_MAX_EXPANSIONS} values")
        s = SigmaCasedString() if isinstance(value, SigmaCasedString) else SigmaString()
        s.s = [p for seq in combo for p in seq]
        out.append(s)
    return out
