"""All Sigma rules of one (channel, EventID) candidate list, behind a literal index.

Performance: SigmaHQ has ~1,400 process-creation rules; running each on every Sysmon EID 1
would cost milliseconds per event. Almost every rule has a *necessary* literal condition: an
AND branch that can only be true if a field equals / starts with / ends with / contains one of a
few strings (`Image|endswith: '\\rundll32.exe'`). Those literals are indexed per field; an event
looks up its field values once (dict hits for equality, one slice per distinct suffix/prefix
length, trigram buckets for substrings) and only the rules whose literal was seen run their full
condition. Rules without such a literal always run. The index only skips rules that cannot
match, so results are those of running every rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import SigmaExpansion, SigmaRegularExpression, SigmaString, SpecialChars

if TYPE_CHECKING:
    from ..compiler import CompiledRule
    from .view import ViewCache

__all__ = ["compile_block", "necessary", "rule_literals"]

_STAR = SpecialChars.WILDCARD_MULTI
_WILD = (SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE)
_sre: Any = getattr(re, "_parser", None) or __import__("sre_parse")
_LITERAL: Any = _sre.LITERAL
Lit = tuple[str, str, str]  # (field, kind: eq|pre|suf|sub, lower-cased literal)
_NSLICES = 65536
_SLICES = [slice(k, k + 3) for k in range(_NSLICES)]  # Performance: map(v.__getitem__) is C
_SLICES2 = [slice(k, k + 2) for k in range(_NSLICES)]
_WEIGHT = {"eq": 1.0, "suf": 1.2, "pre": 1.2, "sub": 3.0}


def _value_lits(field: str, v: Any) -> list[Lit] | None:
    if isinstance(v, SigmaExpansion):
        out: list[Lit] = []
        for x in v.values:
            lits = _value_lits(field, x)
            if lits is None:
                return None
            out.extend(lits)
        return out
    if isinstance(v, SigmaRegularExpression):
        lit = regex_literal(str(v.regexp))
        return [(field, "sub", lit)] if lit else None
    if not isinstance(v, SigmaString):
        return None
    p = v.s
    if type(v) is not SigmaString or not _plain_ends(p):
        # wildcards inside (or cased): every plain part occurs in a match; take the longest
        parts = [x for x in p if isinstance(x, str)]
        if not parts or not all(isinstance(x, str) or x in _WILD for x in p):
            return None
        best = max(parts, key=len)
        return [(field, "sub", best.lower())] if best else None
    if len(p) == 1 and isinstance(p[0], str):
        return [(field, "eq", p[0].lower())]
    if len(p) == 2 and p[0] is _STAR and isinstance(p[1], str):
        return [(field, "suf", p[1].lower())]
    if len(p) == 2 and p[1] is _STAR and isinstance(p[0], str):
        return [(field, "pre", p[0].lower())]
    if len(p) == 3 and p[0] is _STAR and p[2] is _STAR and isinstance(p[1], str) and p[1]:
        return [(field, "sub", p[1].lower())]
    return None


def _plain_ends(p: Sequence[Any]) -> bool:
    return (
        (len(p) == 1 and isinstance(p[0], str))
        or (len(p) == 2 and _STAR in p and any(isinstance(x, str) for x in p))
        or (len(p) == 3 and p[0] is _STAR and p[2] is _STAR and isinstance(p[1], str))
    )


def regex_literal(pattern: str) -> str | None:
    """The longest literal run every match of `pattern` contains (lower-cased), if any.

    Only top-level concatenated literals count: alternations, optional or repeated parts and
    groups break the run. Lower-casing keeps it necessary for the lower-cased text.
    """
    try:
        parsed = _sre.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    best, run = "", []
    for op, arg in parsed:
        if op is _LITERAL:
            run.append(chr(arg))
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    if len(run) > len(best):
        best = "".join(run)
    return best.lower() if best else None


def _leaf_lits(node: ConditionFieldEqualsValueExpression) -> list[Lit] | None:
    return _value_lits(node.field, node.value)


def necessary(node: Any) -> list[Lit] | None:
    """Literals of which at least one must hold for `node` to be true (None: no such set)."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf_lits(node)
    if isinstance(node, ConditionValueExpression):
        # keywords: left to the rule (one C-level search of the joined event text); indexing
        # them would cost a trigram set of the whole event on every event
        return None
    if isinstance(node, ConditionOR):
        out: list[Lit] = []
        for a in node.args:
            lits = necessary(a)
            if lits is None:
                return None
            out.extend(lits)
        return out
    if isinstance(node, ConditionAND):
        best: list[Lit] | None = None
        best_cost = 0.0
        for a in node.args:
            lits = necessary(a)
            if lits is None:
                continue
            cost = sum(_WEIGHT[k] for _, k, _ in lits)
            if best is None or cost < best_cost:
                best, best_cost = lits, cost
        return best
    return None  # NOT, keywords, null/exists/regex/number leaves


def rule_literals(trees: Sequence[Any]) -> list[Lit]:
    """A rule's necessary literals (empty: none, the rule always runs)."""
    lits: list[Lit] = []
    for tree in trees:
        found = necessary(tree)
        if not found:
            return []
        lits.extend(found)
    return lits


class _FieldIndex:
    __slots__ = (
        "eq",
        "pre",
        "suf",
        "sub",
        "short",
        "pre_lens",
        "suf_lens",
        "sub_keys",
        "short_keys",
    )

    def __init__(self) -> None:
        self.eq: dict[str, list[int]] = {}
        self.pre: dict[str, list[int]] = {}
        self.suf: dict[str, list[int]] = {}
        self.sub: dict[str, dict[str, list[int]]] = {}  # trigram → {literal: rules}
        self.short: dict[str, list[int]] = {}  # substrings under 3 characters
        self.pre_lens: tuple[int, ...] = ()
        self.suf_lens: tuple[int, ...] = ()
        self.sub_keys: frozenset[str] = frozenset()
        self.short_keys: frozenset[str] = frozenset()

    def add(self, kind: str, lit: str, i: int) -> None:
        if kind == "sub":
            if len(lit) < 3:
                self.short.setdefault(lit, []).append(i)
                return
            self.sub.setdefault(lit, {}).setdefault(lit, []).append(i)  # re-bucketed in finish
            return
        getattr(self, kind).setdefault(lit, []).append(i)

    def finish(self) -> None:
        self.pre_lens = tuple(sorted({len(k) for k in self.pre}))
        self.suf_lens = tuple(sorted({len(k) for k in self.suf}))
        # Performance: file each substring under its rarest trigram, so that the buckets an
        # event's trigrams open hold few literals to check with `in`.
        lits = {lit: ids for bucket in self.sub.values() for lit, ids in bucket.items()}
        freq: dict[str, int] = {}
        grams_of = {}
        for lit in lits:
            grams = {lit[k : k + 3] for k in range(len(lit) - 2)}
            grams_of[lit] = grams
            for g in grams:
                freq[g] = freq.get(g, 0) + 1
        self.sub = {}
        for lit, ids in lits.items():
            best = min(sorted(grams_of[lit]), key=freq.__getitem__)
            self.sub.setdefault(best, {})[lit] = ids
        # Performance: set & frozenset iterates the smaller side; set.intersection(dict) and
        # dict.keys() & set iterate the whole index.
        self.sub_keys = frozenset(self.sub)
        self.short_keys = frozenset(self.short)

    def collect(self, v: str, out: set[int]) -> None:
        ids = self.eq.get(v)
        if ids:
            out.update(ids)
        if self.suf:
            suf = self.suf
            for n in self.suf_lens:
                ids = suf.get(v[-n:])
                if ids:
                    out.update(ids)
        if self.pre:
            pre = self.pre
            for n in self.pre_lens:
                ids = pre.get(v[:n])
                if ids:
                    out.update(ids)
        if self.sub and len(v) > 2:
            sub = self.sub
            n = len(v) - 2
            grams = (
                set(map(v.__getitem__, _SLICES[:n]))
                if n <= _NSLICES
                else {v[k : k + 3] for k in range(n)}
            )
            for g in grams & self.sub_keys:
                for lit, ids in sub[g].items():
                    if lit in v:
                        out.update(ids)
        if self.short:
            short = self.short
            keys = self.short_keys
            found = set(v) & keys  # 1-character literals
            if len(v) > 1:
                found |= (
                    set(map(v.__getitem__, _SLICES2[: len(v) - 1]))
                    if len(v) <= _NSLICES
                    else {v[k : k + 2] for k in range(len(v) - 1)}
                ) & keys
            for lit in found:
                out.update(short[lit])


class _Plan:
    """The static part of a block: view getters, literal indexes, always-run rules."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        always: list[int] = []
        per_view: dict[int, dict[str, _FieldIndex]] = {}
        caches: dict[int, int] = {}  # id(ViewCache) → slot in the per-event view list
        self.getters: list[Callable[[Any], Any]] = []
        slot_of: list[int] = []
        for i, c in enumerate(rules):
            views: ViewCache = c.ns["__views__"]
            if id(views) not in caches:
                caches[id(views)] = len(self.getters)
                self.getters.append(views.get)
            slot_of.append(caches[id(views)])
            lits = c.ns.get("__lits__")
            if lits is None:
                lits = c.ns["__lits__"] = rule_literals(c.rule.trees)  # type: ignore[attr-defined]
            if not lits:
                always.append(i)
                continue
            fields = per_view.setdefault(id(views), {})
            for field, kind, lit in lits:
                fi = fields.get(field)
                if fi is None:
                    fi = fields[field] = _FieldIndex()
                fi.add(kind, lit, i)
        for fields in per_view.values():
            for fi in fields.values():
                fi.finish()
        self.indexes = [(caches[key], tuple(f.items())) for key, f in per_view.items()]
        self.base = frozenset(always)
        self.rules = list(zip([c.ns["__vfn__"] for c in rules], slot_of, rules, strict=True))


def compile_block(rules: Sequence[CompiledRule]) -> Callable[[Any], list[CompiledRule]]:
    """`run(d)` → the rules of `rules` (Sigma, load order) that match event `d`."""
    plan = _Plan(rules)
    getters, indexes, base, table = plan.getters, plan.indexes, plan.base, plan.rules

    def run(d: Any) -> list[CompiledRule]:
        got = [get(d) for get in getters]
        cand = set(base)
        for slot, fields in indexes:
            low = got[slot][1]
            for field, fi in fields:
                v = low.get(field)
                if v is None:
                    continue
                if v.__class__ is str:
                    fi.collect(v, cand)
                else:
                    for x in v:
                        fi.collect(x, cand)
        out = []
        for i in sorted(cand):
            vfn, slot, rule = table[i]
            if vfn(*got[slot]):
                out.append(rule)
        return out

    return run
