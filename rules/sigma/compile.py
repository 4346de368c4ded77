"""pySigma condition trees → one Python boolean expression per rule (no query language).

pySigma resolves `1 of`/`all of` (wildcards included), modifiers and value lists into a tree of
AND/OR/NOT over (field, value) and keyword leaves. Each leaf becomes a small closure over the
event's field view (`view.py`); the rule becomes an expression over those closures, which the
engine inlines into its per-(channel, EventID) group function exactly like a Gene rule.

Performance: an OR of values on one field (the usual `Image|endswith: [...]`) is one leaf:
equalities become a set lookup, and the other tests run in one loop.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ahocorasick
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    SigmaCIDRExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaString,
    SigmaType,
)

from .logsource import Unsupported
from .values import (
    TextTest,
    cidr_test,
    expand_placeholders,
    number_test,
    string_test,
    value_test,
)
from .view import Text, ViewCache

__all__ = ["compile_condition", "required_event_ids", "Leaf", "all_text", "ALL"]

Leaf = Callable[[dict[str, Text], dict[str, Text]], bool]  # (original, lower-cased view)
_IDS = itertools.count()


def _any(v: Text | None, test: TextTest) -> bool:
    if v is None:
        return False
    if v.__class__ is str:
        return test(v)
    return any(test(x) for x in v)


class _Gen:
    """Collects leaf closures in a namespace under unique names."""

    def __init__(self, views: ViewCache, placeholders: Mapping[str, Sequence[str]]) -> None:
        self.views = views
        self.placeholders = placeholders
        self.prefix = f"_s{next(_IDS)}_"
        self.ns: dict[str, Any] = {}
        self.n = 0
        # id(test of lower-cased text) → (the test, kept alive: ids stay unique; a substring it
        # needs)
        self.needs: dict[int, tuple[TextTest, str]] = {}

    def add(self, fn: Leaf) -> str:
        return f"{self.const(fn)}(o, lo)"

    def const(self, value: Any) -> str:
        name = f"{self.prefix}{self.n}"
        self.n += 1
        self.ns[name] = value
        return name

    def inline(self, simple: list[Sequence[Any]], others: list[TextTest], v: str) -> str:
        """Source of `_fast_test(simple, others)(v)` over the text variable `v`."""
        eq, pre, suf, sub = _kinds(simple)
        parts = []
        if len(eq) == 1:
            parts.append(f"{v} == {self.const(next(iter(eq)))}")
        elif eq:
            parts.append(f"{v} in {self.const(frozenset(eq))}")
        if suf:
            parts.append(f"{v}.endswith({self.const(tuple(suf))})")
        if pre:
            parts.append(f"{v}.startswith({self.const(tuple(pre))})")
        if len(sub) <= _CHAIN or "" in sub:
            parts.extend(f"{self.const(x)} in {v}" for x in dict.fromkeys(sub))
        elif len(sub) <= _AUTOMATON:
            parts.append(f"next({self.const(_automaton(sub))}({v}), None) is not None")
        else:
            parts.append(f"{self.const(_search(sub))}({v}) is not None")
        for f in others:
            need = self.needs.get(id(f))
            call = f"{self.const(f)}({v})"
            # Performance: a substring the value must hold rejects most values in C first
            parts.append(call if need is None else f"({self.const(need[1])} in {v} and {call})")
        return "(" + " or ".join(parts) + ")"

    # --- leaves ------------------------------------------------------------------------------
    def field_leaf(self, field: str, values: list[SigmaType]) -> str:
        """One leaf: `field` matches any of `values` (OR)."""
        expanded: list[SigmaType] = []
        for v in _flatten(values):
            expanded.extend(expand_placeholders(v, self.placeholders))
        simple, low, orig, special = self._sort(field, expanded)
        tl = _fast_test(simple, low)
        to: TextTest | None = None
        if orig:
            otests = tuple(orig)

            def to(t: str) -> bool:
                return any(f(t) for f in otests)

        if not special:
            # Performance: inline in the rule's expression (no call per leaf); a tuple value
            # (unnamed `<Data>` elements) goes through the test function
            parts = []
            if tl is not None:
                var = self.var()
                parts.append(
                    f"({var} := lo.get({field!r})).__class__ is _str and "
                    f"{self.inline(simple, low, var)} "
                    f"or {var}.__class__ is _tuple and _anyt({var}, {self.const(tl)})"
                )
            if to is not None:
                var = self.var()
                tests = " or ".join(f"{self.const(f)}({var})" for f in orig)
                parts.append(
                    f"({var} := o.get({field!r})).__class__ is _str and ({tests}) "
                    f"or {var}.__class__ is _tuple and _anyt({var}, {self.const(to)})"
                )
            if parts:
                return "(" + " or ".join(parts) + ")"

        def general(o: dict[str, Text], lo: dict[str, Text]) -> bool:
            if tl is not None and _any(lo.get(field), tl):
                return True
            if to is not None and _any(o.get(field), to):
                return True
            return any(s(o, lo) for s in special)

        return self.add(general)

    def var(self) -> str:
        """A new local name for the rule's expression."""
        self.n += 1
        return f"{self.prefix}v{self.n - 1}"

    def _sort(
        self, field: str, values: list[SigmaType]
    ) -> tuple[list[Sequence[Any]], list[TextTest], list[TextTest], list[Leaf]]:
        """(plain strings, tests of the lower-cased text, of the original text, special)."""
        simple: list[Sequence[Any]] = []
        low: list[TextTest] = []
        orig: list[TextTest] = []
        special: list[Leaf] = []
        numbers: list[SigmaNumber] = []
        nets: list[SigmaCIDRExpression] = []
        for v in values:
            if isinstance(v, SigmaNull):
                special.append(self._null(field))
            elif isinstance(v, SigmaExists):
                special.append(self._exists(field, bool(v.exists)))
            elif isinstance(v, SigmaString) and type(v) is SigmaString and v.s and _simple(v.s):
                simple.append(v.s)
            elif isinstance(v, SigmaNumber):
                numbers.append(v)
            elif isinstance(v, SigmaCIDRExpression):
                nets.append(v)
            else:
                test, cased = value_test(v)
                (orig if cased else low).append(test)
                if not cased and isinstance(v, SigmaString):
                    # wildcards inside: every plain part is in a match, the longest is rarest
                    need = max((p.lower() for p in v.s if isinstance(p, str)), key=len, default="")
                    if need:
                        self.needs[id(test)] = (test, need)
        # Performance: one parse for every number (port lists) and every network of the leaf
        if numbers:
            low.append(number_test(numbers))
        if nets:
            orig.append(cidr_test(nets))
        return simple, low, orig, special

    def _null(self, field: str) -> Leaf:

        def leaf(o: dict[str, Text], lo: dict[str, Text]) -> bool:
            v = o.get(field)
            return v is None or len(v) == 0

        return leaf

    def _exists(self, field: str, flag: bool) -> Leaf:
        return lambda o, lo: (field in o) is flag

    def field_ref(self, field: str, ref: SigmaFieldReference) -> str:
        """`field` equals (starts with, ends with, contains) the value of `ref.field`.

        Performance: inline in the rule's expression; both values must be strings.
        """
        a, b = self.var(), self.var()
        if ref.starts_with and ref.ends_with:
            test = f"{b} in {a}"
        elif ref.starts_with:
            test = f"{a}.startswith({b})"
        elif ref.ends_with:
            test = f"{a}.endswith({b})"
        else:  # a string equal to `a` is a string
            return (
                f"(({a} := lo.get({field!r})).__class__ is _str and {a} == lo.get({ref.field!r}))"
            )
        return (
            f"(({a} := lo.get({field!r})).__class__ is _str and "
            f"({b} := lo.get({ref.field!r})).__class__ is _str and {test})"
        )

    def keyword_leaf(self, values: list[SigmaType]) -> str:
        """Keywords: any value of the event matches (case-insensitive unless cased/regex)."""
        subs: list[str] = []
        tests: list[tuple[TextTest, bool]] = []
        for v in _flatten(values):
            for e in expand_placeholders(v, self.placeholders):
                if isinstance(e, SigmaNumber):
                    e = SigmaString(str(e.number))
                if isinstance(e, SigmaString) and type(e) is SigmaString:
                    # SigmaHQ keywords are substrings of a value of the event
                    parts = list(e.s)
                    if not parts or parts[0] is not _STAR:
                        parts.insert(0, _STAR)
                    if parts[-1] is not _STAR:
                        parts.append(_STAR)
                    if len(parts) == 3 and isinstance(parts[1], str) and "\x00" not in parts[1]:
                        subs.append(parts[1].lower())
                    else:
                        tests.append((string_test(parts, False), False))
                else:
                    tests.append(value_test(e))
        whole = _fast_test([[_STAR, s, _STAR] for s in subs], [])

        def leaf(o: dict[str, Text], lo: dict[str, Text]) -> bool:
            if whole is not None and whole(all_text(lo)):
                return True
            for test, cased in tests:
                for k, v in (o if cased else lo).items():
                    if k != ALL and _any(v, test):
                        return True
            return False

        return self.add(leaf)


def all_text(low: dict[str, Text]) -> str:
    """Every lower-cased value of a view joined by NUL (cached in the view under ALL)."""
    text = low.get(ALL)
    if text is None:
        text = low[ALL] = "\x00".join(
            v if v.__class__ is str else "\x00".join(v) for v in low.values()
        )
    return text  # type: ignore[return-value]


ALL = "\x00all"  # the view key of `all_text` (no Sigma field has a NUL)


from sigma.types import SpecialChars  # noqa: E402

_STAR = SpecialChars.WILDCARD_MULTI


def _flatten(values: Sequence[SigmaType]) -> list[SigmaType]:
    """Expansions (windash, base64offset, ...) are OR'd values: same as listing them."""
    out: list[SigmaType] = []
    for v in values:
        if isinstance(v, SigmaExpansion):
            out.extend(_flatten(v.values))
        else:
            out.append(v)
    return out


def _simple(parts: Sequence[Any]) -> bool:
    """Plain text with `*` only at the ends: equality, startswith, endswith or contains."""
    inner = parts[1:-1] if len(parts) > 2 else [p for p in parts if p is not _STAR]
    return (
        bool(inner)
        and len(inner) == 1
        and isinstance(inner[0], str)
        and (
            len(parts) == 1
            or (len(parts) == 2 and _STAR in parts)
            or (len(parts) == 3 and parts[0] is _STAR and parts[2] is _STAR)
        )
    )


def _contains(sub: str) -> TextTest:
    return lambda t: sub in t


def _kinds(simple: list[Sequence[Any]]) -> tuple[set[str], list[str], list[str], list[str]]:
    """Plain values by kind (lower-cased): equalities, prefixes, suffixes, substrings."""
    eq: set[str] = set()
    pre: list[str] = []
    suf: list[str] = []
    sub: list[str] = []
    for parts in simple:
        if len(parts) == 1:
            eq.add(parts[0].lower())
        elif len(parts) == 3:
            sub.append(parts[1].lower())
        elif parts[0] is _STAR:
            suf.append(parts[1].lower())
        else:
            pre.append(parts[0].lower())
    return eq, pre, suf, sub


_CHAIN = 12  # up to this many substrings: `in` each; more: one Aho-Corasick pass
_AUTOMATON = 256  # beyond: a regex alternation (IOC lists of thousands: megabytes as automata)


def _automaton(sub: list[str]) -> Callable[[str], Iterator[Any]]:
    """`iter` of an Aho-Corasick automaton of (non-empty) `sub`: its first hit, if any.

    Performance: a regex alternation of 30 substrings costs ~35 ns per character (every
    branch tried at every position, 8 µs on a 240-character command line); the automaton is
    one C pass (~0.9 µs), and `in` each beats both up to about a dozen substrings.
    """
    auto = ahocorasick.Automaton()
    for x in sub:
        auto.add_word(x, None)
    auto.make_automaton()
    return auto.iter  # type: ignore[no-any-return]


def _search(sub: list[str]) -> Callable[[str], re.Match[str] | None]:
    """One regex alternation finding any of many substrings."""
    alternation = "|".join(re.escape(x) for x in sorted(set(sub), key=len, reverse=True))
    return re.compile(alternation, re.DOTALL).search


def _fast_test(simple: list[Sequence[Any]], others: list[TextTest]) -> TextTest | None:
    """One test for many plain values, each kind done by one C-level call.

    Performance: equality → set lookup, prefixes/suffixes → one `startswith`/`endswith` with a
    tuple, substrings → `in` (few), one Aho-Corasick pass (many) or a regex (thousands).
    """
    eq, pre, suf, sub = _kinds(simple)
    tests: list[TextTest] = list(others)
    if pre:
        tp = tuple(pre)
        tests.insert(0, lambda t: t.startswith(tp))
    if suf:
        ts = tuple(suf)
        tests.insert(0, lambda t: t.endswith(ts))
    if sub:
        if len(sub) <= _CHAIN or "" in sub:
            tests.extend(_contains(one) for one in dict.fromkeys(sub))
        elif len(sub) <= _AUTOMATON:
            hits = _automaton(sub)
            tests.append(lambda t: next(hits(t), None) is not None)
        else:
            search = _search(sub)
            tests.append(lambda t: search(t) is not None)
    if eq:
        fe = frozenset(eq)
        tests.insert(0, fe.__contains__)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    all_tests = tuple(tests)
    return lambda t: any(f(t) for f in all_tests)


class _Group:
    """The OR'd values of one field (or the keywords: `field` None) in an OR node."""

    __slots__ = ("field",)

    def __init__(self, field: str | None) -> None:
        self.field = field


def _or_parts(node: ConditionOR, gen: _Gen) -> list[str]:
    """OR'd values of one field merge into one leaf (first position), and OR'd keywords too."""
    by_field: dict[str | None, list[SigmaType]] = {}
    order: list[Any] = []
    for arg in node.args:
        key: str | None
        if isinstance(arg, ConditionFieldEqualsValueExpression) and not isinstance(
            arg.value, SigmaFieldReference
        ):
            key = arg.field
        elif isinstance(arg, ConditionValueExpression):
            key = None
        else:
            order.append(arg)
            continue
        if key not in by_field:
            by_field[key] = []
            order.append(_Group(key))
        by_field[key].append(arg.value)
    parts: list[str] = []
    for item in order:
        if not isinstance(item, _Group):
            parts.append(_source(item, gen))
        elif item.field is None:
            parts.append(gen.keyword_leaf(by_field[None]))
        else:
            parts.append(gen.field_leaf(item.field, by_field[item.field]))
    return parts


def _source(node: Any, gen: _Gen) -> str:
    if node is None:
        return "False"
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if isinstance(node.value, SigmaFieldReference):
            return gen.field_ref(node.field, node.value)
        return gen.field_leaf(node.field, [node.value])
    if isinstance(node, ConditionValueExpression):
        return gen.keyword_leaf([node.value])
    if isinstance(node, ConditionNOT):
        return f"(not {_source(node.args[0], gen)})"
    if isinstance(node, (ConditionAND, ConditionOR)):
        joiner = " and " if isinstance(node, ConditionAND) else " or "
        if isinstance(node, ConditionOR):
            parts = _or_parts(node, gen)
        else:
            parts = [_source(a, gen) for a in node.args]
        if not parts:
            return "True" if isinstance(node, ConditionAND) else "False"
        return "(" + joiner.join(parts) + ")"
    raise Unsupported(f"condition element {type(node).__name__} is not supported")


def compile_condition(
    trees: Sequence[Any], views: ViewCache, placeholders: Mapping[str, Sequence[str]]
) -> tuple[str, dict[str, Any]]:
    """(expression over the view `o, lo`, namespace) for the OR of a rule's conditions."""
    gen = _Gen(views, placeholders)
    gen.ns.update(_str=str, _tuple=tuple, _anyt=_any)
    exprs = [_source(t, gen) for t in trees]
    expr = exprs[0] if len(exprs) == 1 else "(" + " or ".join(exprs) + ")"
    return expr, gen.ns


def required_event_ids(node: Any) -> frozenset[int] | None:
    """EventIDs every match must have (from `EventID: n` selections), or None if unconstrained."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if (
            node.field == "EventID"
            and isinstance(node.value, SigmaNumber)
            and isinstance(node.value.number, int)
        ):
            return frozenset({node.value.number})
        if (
            node.field == "EventID"
            and isinstance(node.value, SigmaString)
            and not node.value.contains_special()
            and str(node.value).isdigit()
        ):
            return frozenset({int(str(node.value))})
        return None
    if isinstance(node, ConditionOR):
        out: set[int] = set()
        for a in node.args:
            ids = required_event_ids(a)
            if ids is None:
                return None
            out |= ids
        return frozenset(out)
    if isinstance(node, ConditionAND):
        found: frozenset[int] | None = None
        for a in node.args:
            ids = required_event_ids(a)
            if ids is not None:
                found = ids if found is None else found & ids
        return found
    return None
