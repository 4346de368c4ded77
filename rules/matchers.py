"""Gene `Matches` entries: lexing, field paths and compilation to fast Python expressions.

Owns the three match forms of docs/reference/gene.md §3 (field, indirect field-to-field, `extract()
in
container`), the operator semantics (`=`, `~=`, `&=`, `<`, `>`, `<=`, `>=`) and the code each
matcher contributes to a compiled rule: a Python boolean expression over `d` (the event dict) and
`ed` (its `Event.EventData` dict), with helper objects placed in a shared namespace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import MatchSyntaxError, RegexError
from .event import MISSING, go_string, lookup
from .goparse import parse_float, parse_int
from .goregex import compile_go, required_literal

__all__ = [
    "FieldMatch",
    "IndirectMatch",
    "ContainerMatch",
    "Matcher",
    "parse_match",
    "resolve_path",
    "CodeGen",
]

# GENE: the recognisers, written in Go RE2 syntax and translated like rule regexes.
_PATH = r"""([\w/]+|".*?")"""
_FIELD_RE = compile_go(
    r"(?P<name>\$\w+):\s*(?P<operand>" + _PATH + r")\s*(?P<operator>(=|~=|\&=|<|>|>=|<=))\s+"
    r"'(?P<value>.*)'"
)
_INDIRECT_RE = compile_go(
    r"(?P<name>\$\w+):\s*(?P<operand>" + _PATH + r")\s*(?P<operator>=)\s+@(?P<value>" + _PATH + ")"
)
_CONTAINER_RE = compile_go(
    r"(?P<name>\$\w+):\s+extract\(\s*'(?P<regexp>.*?\(\?P<(?P<rexname>.*?)>.*?\).*?)'\s*,\s*"
    r"(?P<operand>" + _PATH + r")\s*\)\s+in\s+(?P<container>[\w\.\-]+)"
)

Operator = Literal["=", "~=", "&=", "<", ">", "<=", ">="]


def resolve_path(
    operand: str, base: tuple[str, ...] | None, *, single: bool = False
) -> tuple[str, ...]:
    """GENE: absolute paths split on `/`; relative ones are appended to the LogType base.

    With `single` (container operands) a relative path is one key, not split.
    """
    if operand.startswith("/"):
        return tuple(p for p in operand.split("/") if p)
    if base is None:
        raise MatchSyntaxError(
            "log format error: either known log format or absolute fields match must be used"
        )
    if single:
        return (*base, operand)
    return (*base, *(p for p in operand.split("/") if p))


@dataclass(frozen=True, slots=True)
class FieldMatch:
    """`$name: Field OP 'value'`."""

    name: str
    path: tuple[str, ...]
    operator: str
    value: str
    number: float | int | None = None
    pattern: re.Pattern[str] | None = None

    def test(self, data: Any) -> bool:
        raw = lookup(data, self.path)
        if raw is MISSING:
            return False
        return _apply(self, go_string(raw))


@dataclass(frozen=True, slots=True)
class IndirectMatch:
    """`$name: Field = @OtherField`: both present and equal as text."""

    name: str
    path: tuple[str, ...]
    other: tuple[str, ...]

    def test(self, data: Any) -> bool:
        a = lookup(data, self.path)
        if a is MISSING:
            return False
        b = lookup(data, self.other)
        return b is not MISSING and go_string(a) == go_string(b)


@dataclass(frozen=True, slots=True)
class ContainerMatch:
    """`$name: extract('re(?P<g>..)', Field) in container`: lower-cased membership."""

    name: str
    path: tuple[str, ...]
    regexp: str
    group: str
    container: str
    pattern: re.Pattern[str] | None = None

    def test(self, data: Any, values: frozenset[str] | set[str] = frozenset()) -> bool:
        raw = lookup(data, self.path)
        if raw is MISSING or self.pattern is None:
            return False
        return _extract_in(self.pattern, self.group, go_string(raw), values)


Matcher = FieldMatch | IndirectMatch | ContainerMatch


def _flags(flag: int, text: str) -> bool:
    value = parse_int(text)
    return value is not None and (flag & value) == flag


def _compare(op: str, ref: float, text: str) -> bool:
    value = parse_float(text)
    if value is None:
        return False
    if op == ">":
        return value > ref
    if op == "<":
        return value < ref
    if op == ">=":
        return value >= ref
    return value <= ref


def _apply(m: FieldMatch, text: str) -> bool:
    if m.operator == "=":
        return text == m.value
    if m.operator == "~=":
        assert m.pattern is not None
        return m.pattern.search(text) is not None
    if m.operator == "&=":
        return _flags(int(m.number or 0), text)
    return _compare(m.operator, float(m.number or 0.0), text)


def _extract_in(
    pattern: re.Pattern[str], group: str, text: str, values: frozenset[str] | set[str]
) -> bool:
    found = pattern.search(text)
    if found is None:
        return False
    try:
        extracted = found.group(group)
    except IndexError:
        return False
    return (extracted or "").lower() in values


def _field(text: str, base: tuple[str, ...] | None) -> FieldMatch:
    m = _FIELD_RE.search(text)
    assert m is not None
    name, operator = m.group("name"), m.group("operator")
    operand = m.group("operand").strip("\"'")
    value = m.group("value").strip("\"'")
    path = resolve_path(operand, base)
    number: float | int | None = None
    pattern = None
    if operator == "~=":
        try:
            pattern = compile_go(f"({value})")
        except RegexError as ex:
            raise RegexError(f"{ex.reason} in match {text!r}") from ex
    elif operator == "&=":
        number = parse_int(value)
        if number is None:
            raise MatchSyntaxError(f"&= needs an integer, got {value!r} in match {text!r}")
    elif operator != "=":
        number = parse_float(value)
        if number is None:
            raise MatchSyntaxError(f"{operator} needs a number, got {value!r} in match {text!r}")
    return FieldMatch(name, path, operator, value, number, pattern)


def parse_match(
    text: str, base: tuple[str, ...] | None, containers: frozenset[str] | None = None
) -> Matcher:
    """Parse one `Matches` entry (GENE order: field, indirect, container).

    `containers` is the set of container names that exist (`None`: do not check, compile).
    Raises `MatchSyntaxError` for anything Gene refuses to load.
    """
    if _FIELD_RE.search(text):
        return _field(text, base)
    m = _INDIRECT_RE.search(text)
    if m is not None:
        path = resolve_path(m.group("operand").strip("\"'"), base)
        other = resolve_path(m.group("value").strip("\"'"), base)
        return IndirectMatch(m.group("name"), path, other)
    m = _CONTAINER_RE.search(text)
    if m is not None:
        path = resolve_path(m.group("operand"), base, single=True)
        cm = ContainerMatch(
            m.group("name"), path, m.group("regexp"), m.group("rexname"), m.group("container")
        )
        if containers is not None and cm.container not in containers:
            return cm  # GENE: the rule gets disabled; the pattern is never compiled
        try:
            pattern = compile_go(cm.regexp)
        except RegexError as ex:
            raise RegexError(f"{ex.reason} in match {text!r}") from ex
        if cm.group not in pattern.groupindex:
            raise RegexError(f"extract() group {cm.group!r} is not a valid group in {text!r}")
        return ContainerMatch(cm.name, path, cm.regexp, cm.group, cm.container, pattern)
    raise MatchSyntaxError(f"unknown match statement {text!r}")


HELPERS: dict[str, Any] = {
    "_M": MISSING,
    "_gs": go_string,
    "_lk": lookup,
    "_str": str,
    "_flags": _flags,
    "_cmp": _compare,
    "_xin": _extract_in,
}


class CodeGen:
    """Collects helper objects and turns matchers into Python expressions.

    Performance: relative winevt fields read `ed.get(key)` directly; the `%v` conversion runs
    only for non-string values, so the common case is one dict lookup plus one compare/search.
    """

    def __init__(self, data_base: tuple[str, ...], prefix: str = "_c") -> None:
        self.ns: dict[str, Any] = dict(HELPERS)
        self.base = data_base
        self.prefix = prefix  # unique per rule, so namespaces of many rules can be merged
        self._n = 0

    def const(self, value: Any) -> str:
        key = f"{self.prefix}{len(self.ns)}"
        self.ns[key] = value
        return key

    def _var(self) -> str:
        self._n += 1
        return f"v{self._n}"

    def getter(self, path: tuple[str, ...]) -> str:
        if len(path) == len(self.base) + 1 and path[: len(self.base)] == self.base:
            return f"ed.get({path[-1]!r}, _M)"
        return f"_lk(d, {self.const(path)})"

    def expr(self, m: Matcher, containers: Mapping[str, Any]) -> str:
        v = self._var()
        get = self.getter(m.path)
        text = f"({v} if {v}.__class__ is _str else _gs({v}))"
        if isinstance(m, FieldMatch):
            if m.operator == "=":
                val = self.const(m.value)
                return (
                    f"(({v} := {get}) == {val} or ({v}.__class__ is not _str and "
                    f"{v} is not _M and _gs({v}) == {val}))"
                )
            if m.operator == "~=":
                assert m.pattern is not None
                search = self.const(m.pattern.search)
                lit = required_literal(m.pattern)
                if lit is None:
                    return f"(({v} := {get}) is not _M and {search}({text}) is not None)"
                # Performance: a substring test skips the regex scan when a literal every
                # match contains is absent (under (?i): ASCII text, lower-cased)
                t = self._var()
                need = self.const(lit[0])
                found = (
                    f"(not ({t} := {text}).isascii() or {need} in {t}.lower())"
                    if lit[1]
                    else f"{need} in ({t} := {text})"
                )
                return f"(({v} := {get}) is not _M and {found} and {search}({t}) is not None)"
            if m.operator == "&=":
                return f"(({v} := {get}) is not _M and _flags({m.number!r}, {text}))"
            ref = self.const(float(m.number or 0.0))
            return f"(({v} := {get}) is not _M and _cmp({m.operator!r}, {ref}, {text}))"
        if isinstance(m, IndirectMatch):
            w = self._var()
            other = self.getter(m.other)
            return (
                f"(({v} := {get}) is not _M and ({w} := {other}) is not _M and "
                f"{text} == ({w} if {w}.__class__ is _str else _gs({w})))"
            )
        pattern = self.const(m.pattern)
        values = self.const(containers[m.container])
        return f"(({v} := {get}) is not _M and _xin({pattern}, {m.group!r}, {text}, {values}))"
