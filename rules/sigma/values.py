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
from typing import Any

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

__all__ = [
    "TextTest",
    "cidr_test",
    "expand_placeholders",
    "literal_regex_test",
    "number_test",
    "string_test",
    "value_test",
    "wildcard_regex",
]

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
    if all(p is star or isinstance(p, str) for p in folded):
        return _star_test(folded)
    if len(folded) > 2 and folded[0] is star and folded[-1] is star:
        # Performance: `.*x.*` fullmatch backtracks over the text; a search for `x` does not
        search = re.compile(wildcard_regex(folded[1:-1]), re.DOTALL).search
        return lambda t: search(t) is not None
    rx = re.compile(wildcard_regex(folded), re.DOTALL)
    match = rx.fullmatch
    return lambda t: match(t) is not None


def _star_test(parts: Sequence[str | SpecialChars | Placeholder]) -> TextTest:
    """`a*b*c` (only `*` wildcards): prefix `a`, suffix `c`, `b` found in order in between.

    Performance: the regex `.*` fullmatch of such a pattern backtracks (microseconds per value
    for `* -e* JAB*`); leftmost `find`s decide the same match in C.
    """
    segs = [""]
    for p in parts:
        if isinstance(p, str):
            segs[-1] += p
        else:
            segs.append("")
    head, *mid, tail = segs
    fixed = len(head) + len(tail)

    def test(t: str) -> bool:
        if len(t) < fixed or not t.startswith(head) or not t.endswith(tail):
            return False
        i, end = len(head), len(t) - len(tail)
        for s in mid:
            i = t.find(s, i, end)
            if i < 0:
                return False
            i += len(s)
        return True

    return test


_sre: Any = getattr(re, "_parser", None) or __import__("sre_parse")
_ANY_STAR = (_sre.MAX_REPEAT, _sre.MIN_REPEAT)


def _segments(pattern: str, flags: int) -> tuple[list[str], bool] | None:
    """(literal segments, dotall) if `pattern` is `lit(.*lit)*` (`.*?` too), else None.

    Leading/trailing `.*` are dropped: they never decide whether a search finds a match.
    Under IGNORECASE only characters without case qualify (`+`, `{`, `^`, digits, ...).
    """
    try:
        parsed = _sre.parse(pattern, flags)
    except (re.error, RecursionError, OverflowError):
        return None
    flags = parsed.state.flags
    icase = flags & re.IGNORECASE
    segs: list[str] = [""]
    for op, arg in parsed:
        if op is _sre.LITERAL:
            c = chr(arg)
            if icase and not (c.isascii() and c.lower() == c.upper()):
                return None
            segs[-1] += c
        elif (
            op in _ANY_STAR
            and arg[0] == 0
            and arg[1] == _sre.MAXREPEAT
            and list(arg[2]) == [(_sre.ANY, None)]
        ):
            segs.append("")
        else:
            return None
    segs = [x for x in segs if x]
    dotall = bool(flags & re.DOTALL)
    if not segs or (len(segs) > 1 and not dotall and any("\n" in x for x in segs)):
        return None
    return segs, dotall


def literal_regex_test(pattern: str, flags: int) -> TextTest | None:
    r"""A C-level test equal to `re.search(pattern, t, flags) is not None`, for `lit(.*lit)*`.

    Performance: such regexes backtrack badly on texts that nearly match (`\+.*\+...` with
    14 `+`: ~1.7 ms on a long PowerShell command line); leftmost `find`s in order decide the
    same. Without DOTALL `.` stops at `\n`: every segment must then be in one line.
    """
    found = _segments(pattern, flags)
    if found is None:
        return None
    segs, dotall = found
    if len(segs) == 1:
        one = segs[0]
        return lambda t: one in t
    if len(set(segs)) == 1 and len(segs[0]) == 1:
        # `c.*c.*c`: some line holds c at least k times
        c, k = segs[0], len(segs)

        def count(t: str) -> bool:
            if t.count(c) < k:
                return False
            if dotall or "\n" not in t:
                return True
            return any(line.count(c) >= k for line in t.split("\n"))

        return count

    def ordered(t: str) -> bool:
        i = 0
        for s in segs:
            i = t.find(s, i)
            if i < 0:
                return False
            i += len(s)
        return True

    if dotall:
        return ordered
    return lambda t: ordered(t) if "\n" not in t else any(map(ordered, t.split("\n")))


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


_MEMO = 1024  # values remembered per cidr test (cleared when full)


def cidr_test(exprs: Sequence[SigmaCIDRExpression]) -> TextTest:
    """Any of the networks contains the address `t` (parsed once, result remembered).

    Performance: parsing an address costs ~1.5 µs and a rule lists up to 8 ranges; addresses
    repeat, and the result is a function of the text alone.
    """
    nets = tuple(e.network for e in exprs)
    memo: dict[str, bool] = {}

    def test(t: str) -> bool:
        hit = memo.get(t)
        if hit is None:
            try:
                addr = ipaddress.ip_address(t.strip().strip("[]"))
            except ValueError:
                hit = False
            else:
                hit = any(addr in net for net in nets)
            if len(t) <= 64:
                if len(memo) >= _MEMO:
                    memo.clear()
                memo[t] = hit
        return hit

    return test


def number_test(numbers: Sequence[SigmaNumber]) -> TextTest:
    """`t` is the decimal text of one of `numbers`, or parses (hex too) to one of them.

    One parse for all the numbers of a leaf (a rule lists up to 10 ports).
    """
    wants = frozenset(str(n.number) for n in numbers)
    values = frozenset(n.number for n in numbers)

    def test(t: str) -> bool:
        if t in wants:
            return True
        s = t.strip()
        try:
            return float(int(s, 0) if s[:2].lower() == "0x" else s) in values
        except (ValueError, OverflowError):  # not a number / beyond a float: none of ours
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
        fast = literal_regex_test(str(value.regexp), flags)
        if fast is not None:
            return fast, True
        search = rx.search
        return (lambda t: search(t) is not None), True
    if isinstance(value, SigmaBool):
        want = "true" if value.boolean else "false"
        alt = "1" if value.boolean else "0"
        return (lambda t: t == want or t == alt), False
    if isinstance(value, SigmaNumber):
        return number_test([value]), False
    if isinstance(value, SigmaCompareExpression):
        return _compare(value), True
    if isinstance(value, SigmaCIDRExpression):
        return cidr_test([value]), True
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
