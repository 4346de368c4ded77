"""All Sigma rules of one (channel, EventID) candidate list, behind a literal index.

Performance: SigmaHQ has ~1,400 process-creation rules; running each on every Sysmon EID 1
would cost milliseconds per event. Almost every rule has a *necessary* literal condition: an
AND branch that can only be true if a field equals / starts with / ends with / contains one of a
few strings (`Image|endswith: '\\rundll32.exe'`). Those literals are indexed per field; an event
looks up its field values once (one Aho-Corasick pass per value finds every equality, prefix,
suffix and substring literal, `_FieldIndex`) and only the rules whose literal was seen run their
full condition. Rules without such a literal always run. The index only skips rules that cannot
match, so results are those of running every rule.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import ahocorasick
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    SigmaExpansion,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from .anchors import anchors, any_in
from .compile import ALL
from .view import views_for

if TYPE_CHECKING:
    from ..compiler import CompiledRule
    from .view import ViewCache

__all__ = ["compile_block", "necessary", "regex_literals", "rule_literals"]

_STAR = SpecialChars.WILDCARD_MULTI
_WILD = (SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE)
_sre: Any = getattr(re, "_parser", None) or __import__("sre_parse")
_LITERAL: Any = _sre.LITERAL
_IN, _RANGE, _SUBPATTERN, _BRANCH, _AT = _sre.IN, _sre.RANGE, _sre.SUBPATTERN, _sre.BRANCH, _sre.AT
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT)
_FOLDED = "iIsS"  # ASCII letters (?i) also matches with non-ASCII ones (İ ı ſ)
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")
Lit = tuple[str, str, str]  # (field, kind: eq|pre|suf|sub, lower-cased literal)
_COMMON = frozenset({"EventID", "Channel", "Provider_Name"})  # the block already selected them
GROUPS = 2  # literal groups indexed per rule: a rule runs when each has a literal in the event


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
        alts = regex_literals(str(v.regexp), _icase(v))
        return [(field, "sub", lit) for lit in alts] if alts else None
    if not isinstance(v, SigmaString):
        return None
    p = v.s
    if type(v) is not SigmaString or not _plain_ends(p):
        # wildcards inside (or cased): every plain part occurs in a match; take the longest
        # (a cased part is matched on the original text: only its ASCII runs are sure to be
        # in the lower-cased one)
        parts = [x for x in p if isinstance(x, str)]
        if not parts or not all(isinstance(x, str) or x in _WILD for x in p):
            return None
        if type(v) is not SigmaString:
            parts = [run for x in parts for run in _ASCII_RUNS.findall(x)]
        best = max(parts, key=len, default="")
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


def _keyword_lits(v: Any) -> list[Lit] | None:
    """A keyword is a substring of some value: its longest plain part is in the joined text."""
    if isinstance(v, SigmaExpansion):
        out: list[Lit] = []
        for x in v.values:
            lits = _keyword_lits(x)
            if lits is None:
                return None
            out.extend(lits)
        return out
    if isinstance(v, SigmaNumber):
        return [(ALL, "sub", str(v.number).lower())]
    if isinstance(v, SigmaRegularExpression):
        alts = regex_literals(str(v.regexp), _icase(v))
        return [(ALL, "sub", lit) for lit in alts] if alts else None
    if not isinstance(v, SigmaString):
        return None
    parts = [x for x in v.s if isinstance(x, str)]
    if not parts or not all(isinstance(x, str) or x in _WILD for x in v.s):
        return None
    best = max(parts, key=len)
    if not best or "\x00" in best:
        return None
    return [(ALL, "sub", best.lower())]


def _plain_ends(p: Sequence[Any]) -> bool:
    return (
        (len(p) == 1 and isinstance(p[0], str))
        or (len(p) == 2 and _STAR in p and any(isinstance(x, str) for x in p))
        or (len(p) == 3 and p[0] is _STAR and p[2] is _STAR and isinstance(p[1], str))
    )


def _icase(v: SigmaRegularExpression) -> bool:
    return SigmaRegularExpressionFlag.IGNORECASE in v.flags


def regex_literals(pattern: str, icase: bool = False) -> list[str] | None:
    r"""Strings (lower-cased), one of which every match of `pattern` contains, if any.

    A run of concatenated items that each match one of a few known strings (a literal, a
    small class `[ "']`, a group or alternation of those, a fixed repeat `{2}`) matches one of
    their products; the cheapest such set of at most `_ALTS` strings (`_lit_p`) wins, so
    `\\[a-z0-9]{1,32}\.[a-z0-9]{1,6}\.[ "']` gives `. `, `."`, `.'` rather than `\\`.
    Anchors are zero-width; anything else (`\s`, `.`, open repeats, ...) ends a run.

    The regex runs on the original text, the index sees it lower-cased: only ASCII characters
    are kept (lower-casing maps them one to one), and under IGNORECASE (`icase`, or `(?i)` in
    the pattern) not `i` nor `s` either, which Python's case folding also matches with
    U+0130/U+0131 and U+017F (`İ` lower-cases to two characters, `ı` and `ſ` to themselves,
    so the run would not be in the lower-cased text).
    """
    try:
        parsed = _sre.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    if parsed.state.flags & re.IGNORECASE:
        icase = True
    banned = _FOLDED if icase else ""
    runs: list[list[frozenset[str]]] = [[]]
    for op, arg in parsed:
        alts = _exact(op, arg, banned)
        if alts is None:
            runs.append([])
        elif alts != _EMPTY:
            runs[-1].append(alts)
    best, cost = None, 0.0
    for run in runs:
        # a known character more on either side makes a set rarer (bar common fragments):
        # sets start at the run's start or after an item of several strings, and end before
        # one or at the run's end
        for i in range(len(run)):
            if i and len(run[i - 1]) == 1:
                continue
            acc: frozenset[str] | None = _EMPTY
            for j in range(i, len(run)):
                acc = _product(acc, run[j])
                if acc is None:
                    break
                if j + 1 < len(run) and len(run[j + 1]) == 1:
                    continue
                p = sum(_lit_p("", "sub", x) for x in acc)
                if best is None or p < cost:
                    best, cost = acc, p
    return None if best is None else sorted(best)


_ALTS = 16  # strings at most in the set a regex contributes
_EMPTY = frozenset({""})


def _product(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None or b is None or len(a) * len(b) > _ALTS:
        return None
    return frozenset(x + y for x in a for y in b)


def _exact(op: Any, arg: Any, banned: str) -> frozenset[str] | None:
    """The (lower-cased) strings one regex item can match, if few and all ASCII, else None."""
    if op is _LITERAL:
        c = chr(arg)
        return frozenset({c.lower()}) if c.isascii() and c not in banned else None
    if op is _IN:
        chars: set[str] = set()
        for kind, v in arg:
            if kind is _LITERAL:
                chars.add(chr(v))
            elif kind is _RANGE and v[1] - v[0] < _ALTS * 2:
                chars.update(map(chr, range(v[0], v[1] + 1)))
            else:
                return None  # NEGATE, categories, wide ranges
        if not all(c.isascii() and c not in banned for c in chars):
            return None
        low = frozenset(c.lower() for c in chars)
        return low if len(low) <= _ALTS else None
    if op is _SUBPATTERN:
        return None if arg[1] or arg[2] else _exact_seq(arg[3], banned)
    if op is _BRANCH:
        out: set[str] = set()
        for seq in arg[1]:
            alts = _exact_seq(seq, banned)
            if alts is None:
                return None
            out |= alts
        return frozenset(out) if len(out) <= _ALTS else None
    if op in _REPEATS and arg[0] == arg[1] and arg[0] <= 4:
        one, acc = _exact_seq(arg[2], banned), _EMPTY
        for _ in range(arg[0]):
            acc = _product(acc, one)  # type: ignore[assignment]
        return acc
    if op is _AT:
        return _EMPTY  # zero-width: the neighbours are adjacent in the text
    return None


def _exact_seq(seq: Any, banned: str) -> frozenset[str] | None:
    acc: frozenset[str] | None = _EMPTY
    for op, arg in seq:
        acc = _product(acc, _exact(op, arg, banned))
        if acc is None:
            return None
    return acc


def _leaf_lits(node: ConditionFieldEqualsValueExpression) -> list[Lit] | None:
    return _value_lits(node.field, node.value)


# Fragments most values of their fields contain (paths, extensions): they add no selectivity.
_COMMON_PARTS = re.compile(
    r"\\program files( \(x86\))?\\|\\windows\\|\\system32\\|\\syswow64\\|\\users\\|"
    r"\\appdata\\|\\local\\|\\roaming\\|\\temp\\|\\microsoft\\|c:\\|"
    r"\.exe|\.dll|\.sys|windows|system32|microsoft|authori|autori|"
    r"\\software\\|\\system\\|currentcontrolset|\\services|currentversion|"
    r"\\(svchost|cmd|powershell|conhost|explorer|services)\.exe"
)
_ENUM = re.compile(r"[a-z0-9_-]{0,6}")  # short equalities are mostly enumerations (`3`, `true`)
_KIND_P = {"eq": 0.5, "pre": 2.0, "suf": 2.0, "sub": 8.0}  # a substring can start anywhere


@lru_cache(maxsize=1 << 16)  # Performance: ranking asks again for the same literals
def _lit_p(field: str, kind: str, lit: str) -> float:
    """A rough (relative) chance that a literal holds on an event.

    Each character outside common fragments (`_COMMON_PARTS`: `.exe`, `\\windows\\`, ...)
    divides it by 3; System fields are the same for the whole block.
    """
    if field in _COMMON:
        return 8.0
    if kind == "eq" and _ENUM.fullmatch(lit):
        return 0.3
    return _KIND_P[kind] * 0.3 ** len(_COMMON_PARTS.sub("", lit))


def _cost(group: list[Lit]) -> float:
    """How often a group (an OR of literals) is expected to hold: the sum of its chances."""
    return sum(_lit_p(field, kind, lit) for field, kind, lit in group)


def _either(branches: list[list[list[Lit]]]) -> list[list[Lit]]:
    """Groups for an OR of `branches` (each: its groups, all of which hold when it does).

    A true branch makes its best group hold, and its second best: one group takes the best
    of every branch, a second (if it differs) the second best (or best) of every branch.
    """
    ranked = [sorted(groups, key=_cost) for groups in branches]
    first = [lit for groups in ranked for lit in groups[0]]
    if all(len(groups) == 1 for groups in ranked):
        return [first]
    second = [lit for groups in ranked for lit in groups[min(1, len(groups) - 1)]]
    return [first, second]


def necessary(node: Any) -> list[list[Lit]]:
    """Groups of literals such that `node` can only be true if every group has one that holds.

    An empty list: no such group (NOT, null/exists/number/compare leaves).
    """
    if isinstance(node, ConditionFieldEqualsValueExpression):
        lits = _leaf_lits(node)
        return [lits] if lits else []
    if isinstance(node, ConditionValueExpression):
        # keywords: substrings of the joined event text (`all_text`), one automaton pass
        lits = _keyword_lits(node.value)
        return [lits] if lits else []
    if isinstance(node, ConditionOR):
        branches = []
        for a in node.args:
            groups = necessary(a)
            if not groups:
                return []
            branches.append(groups)
        return _either(branches)
    if isinstance(node, ConditionAND):
        return [g for a in node.args for g in necessary(a)]
    return []


def rule_literals(trees: Sequence[Any]) -> list[list[Lit]]:
    """A rule's necessary literal groups, the `GROUPS` most selective (empty: always runs)."""
    branches = [necessary(tree) for tree in trees]
    if not all(branches):
        return []
    groups = branches[0] if len(branches) == 1 else _either(branches)
    return [list(dict.fromkeys(map(_clip, g))) for g in sorted(groups, key=_cost)[:GROUPS]]


KEY_CHARS = 16  # longest literal indexed


def _clip(lit: Lit) -> Lit:
    """A literal of at most `KEY_CHARS` that holds whenever `lit` does: its last characters
    (paths, domains, hashes: the end is the specific part; a prefix's end is a substring).

    Performance: 16 characters of a longer literal are about as rare, and the block's automata
    keep ~40 % fewer characters (hash, domain and path lists): less to build, less memory.
    """
    field, kind, text = lit
    if len(text) <= KEY_CHARS:
        return lit
    return field, "sub" if kind in ("sub", "pre") else "suf", text[-KEY_CHARS:]


_KEY = {"eq": "\x01{}\x02", "pre": "\x01{}", "suf": "{}\x02", "sub": "{}"}
_START, _END = "\x01", "\x02"  # around a value: prefix, suffix and equality keys are anchored


class _FieldIndex:
    """Every literal of one field in one Aho-Corasick automaton.

    A value is searched as `\x01value\x02`: a prefix literal is the key `\x01lit`, a suffix
    `lit\x02`, an equality `\x01lit\x02`, a substring `lit` (the empty one: `\x01`). A key
    that holds for the value occurs in that text, so no rule that can match is skipped; a
    marker inside a value can only add candidates, which then run their full condition.

    Performance: one C-level pass over a value finds every key, and the hits' rule ids reach
    the candidate set without a Python-level step per hit (`set.update(*map(...))`).
    """

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: dict[str, list[int]] = {}

    def finish(self) -> Any:
        auto = ahocorasick.Automaton()
        for key, ids in self.keys.items():
            auto.add_word(key, tuple(ids))
        auto.make_automaton()
        return auto.iter


class _Plan:
    """The static part of a block: view getters, literal indexes, always-run rules.

    With the block's `channel` known, rules whose view renames fields of another channel read
    the shared view (what their cache returns there): one view, each field scanned once.
    """

    def __init__(self, rules: Sequence[CompiledRule], channel: str | None = None) -> None:
        always: list[int] = []
        second: list[int] = []  # rules with a second group (its hits are recorded as n + i)
        n = self.n = len(rules)
        self.merged: set[str] = set()  # rename channels whose views were merged into the shared
        per_view: dict[int, dict[str, _FieldIndex]] = {}
        caches: dict[int, int] = {}  # id(ViewCache) → slot in the per-event view list
        self.views: list[ViewCache] = []  # per slot of the per-event view list
        slot_of: list[int] = []
        for i, c in enumerate(rules):
            views: ViewCache = c.ns["__views__"]
            if channel is not None and views.renames and views.channel != channel:
                self.merged.add(views.channel)
                views = views_for({})
            if id(views) not in caches:
                caches[id(views)] = len(self.views)
                self.views.append(views)
            slot_of.append(caches[id(views)])
            keys = c.ns.get("__keys__")
            if keys is None:  # once per rule: (group, field, automaton key) of its literals
                groups = rule_literals(c.rule.trees)  # type: ignore[attr-defined]
                keys = c.ns["__keys__"] = [
                    (g, field, _KEY[kind].format(lit) or _START)
                    for g, lits in enumerate(groups)
                    for field, kind, lit in lits
                ]
            if not keys:
                always.append(i)
                continue
            if keys[-1][0]:
                second.append(i)
            fields = per_view.setdefault(id(views), {})
            for g, field, key in keys:
                fi = fields.get(field)
                if fi is None:
                    fi = fields[field] = _FieldIndex()
                fi.keys.setdefault(key, []).append(i + g * n)
        # per view: (slot, field automata, indexed names, keyword automaton, keyword anchors)
        self.indexes: list[tuple[int, tuple[tuple[str, Any], ...], frozenset[str], Any, Any]] = []
        for key, fields in per_view.items():
            # Keywords are substrings of any value (`all_text`): each field's automaton also
            # holds them, and `words` (keywords alone) scans the joined values of the fields no
            # rule indexes. Performance: each value is scanned once, not again in all_text.
            words = fields.pop(ALL, None)
            marks = None if words is None else anchors(words.keys)
            if words is not None:
                for fi in fields.values():
                    for word, ids in words.keys.items():
                        fi.keys.setdefault(word, []).extend(ids)
            self.indexes.append(
                (
                    caches[key],
                    tuple((field, fi.finish()) for field, fi in fields.items()),
                    frozenset(fields) | {ALL},
                    None if words is None else words.finish(),
                    None if marks is None else any_in(marks),
                )
            )
        self.base = frozenset(always)
        self.second = frozenset(second)
        self.rules = list(zip([c.ns["__vfn__"] for c in rules], slot_of, rules, strict=True))


Block = Callable[[Any], list["CompiledRule"]]
_HIT = itemgetter(1)  # (end, ids) → ids


MEMO_ENTRIES = 1024  # per field automaton of a block, cleared when full (benchmarks: 0 = no memo)
_MEMO_CHARS = 512  # longer values (unique command lines, scripts) are scanned every time


def _scan(it: Any, v: str, memo: dict[str, frozenset[int]]) -> frozenset[int]:
    """The rule ids of every key in `v` lower-cased (one automaton pass), remembered in `memo`.

    Performance: event fields repeat (images, parents, hashes, directories, users: ~70 % of
    the indexed characters of the 5,371 corpus events are values seen before in the same
    field), and a pass costs 10-50 ns per character; a lookup hashes the value once. The
    hits of a value are a function of the value alone, so the memo never changes a result.
    """
    ids = frozenset(chain.from_iterable(map(_HIT, it(_START + v.lower() + _END))))
    if len(v) <= _MEMO_CHARS:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[v] = ids
    return ids


def _lookup(plan: _Plan) -> Callable[[Any], list[tuple[Any, Any, CompiledRule]]]:
    """`due(d)` → (condition, view, rule) of every rule the index lets through, in order.

    The index reads the original-case view (`ViewCache.fields`): memos are keyed by the
    original value and scans lower-case it. The lower-cased view is only built for events
    with candidates (about half of the corpus events have none).
    """
    base, table = plan.base, plan.rules
    getters = [v.get for v in plan.views]
    fgetters = [v.fields for v in plan.views]
    texts = [v.text for v in plan.views]
    n, second = plan.n, plan.second
    hit, start, end, sep, scan = _HIT, _START, _END, "\x00", _scan
    Memo = dict[str, frozenset[int]]
    Index = tuple[int, tuple[tuple[str, Any, Memo], ...], frozenset[str], Any, Any]
    indexes: list[Index] = [
        # a memo per field automaton: value → rule ids of its hits
        (slot, tuple((f, it, Memo()) for f, it in fields), names, words, marks)
        for slot, fields, names, words, marks in plan.indexes
    ]
    one = len(getters) == 1

    def due(d: Any) -> list[tuple[Any, Any, CompiledRule]]:
        got = [fgetters[0](d)] if one else [get(d) for get in fgetters]
        cand = set(base)
        add = cand.update
        for slot, fields, names, words, marks in indexes:
            orig = got[slot]
            if words is not None and (
                marks is None or (text := texts[slot](d)) is None or marks(text)
            ):
                # the fields no rule indexes, picked and joined in C (in any order: no
                # keyword literal holds a NUL), lower-cased in one call. Performance: only
                # when the whole text has an anchor of the keywords (`anchors`)
                rest = list(map(orig.__getitem__, orig.keys() - names))
                try:
                    text = sep.join(rest)  # type: ignore[arg-type]
                except TypeError:  # tuples (unnamed <Data>)
                    text = sep.join(v if v.__class__ is str else sep.join(v) for v in rest)
                add(*map(hit, words(start + text.lower() + end)))
            for f, it, memo in fields:
                v = orig.get(f)
                if v is None:
                    continue
                if v.__class__ is str:
                    ids = memo.get(v)
                    add(ids if ids is not None else scan(it, v, memo))
                else:
                    for x in v:
                        ids = memo.get(x)
                        add(ids if ids is not None else scan(it, x, memo))
        if not cand:
            return []
        views = [getters[0](d)] if one else [get(d) for get in getters]
        out = []
        for i in sorted(cand):
            if i >= n:
                break
            if i in second and i + n not in cand:
                continue  # the rule's second literal group is not in the event
            vfn, slot, rule = table[i]
            out.append((vfn, views[slot], rule))
        return out

    return due


Due = Callable[[Any], list[tuple[Any, Any, "CompiledRule"]]]


def _unless_renamed(fast: Due, merged: frozenset[str], unmerged: Callable[[], Due]) -> Due:
    """`fast`, except for events whose view names a channel of `merged` in `Channel`.

    A view's `Channel` comes from EventData when the event has one (view.py); where it names a
    renamed channel, the renamed view applies after all: the unmerged plan (built once needed).
    """
    shared = views_for({}).fields
    slow: list[Due] = []

    def due(d: Any) -> list[tuple[Any, Any, CompiledRule]]:
        if shared(d).get("Channel") not in merged:
            return fast(d)
        if not slow:
            slow.append(unmerged())
        return slow[0](d)

    return due


def compile_block(
    rules: Sequence[CompiledRule], channel: str | None = None
) -> tuple[Block, Callable[[Any, int], Any]]:
    """(`run(d)`, `timed(d, scale)`): the rules of `rules` (Sigma, load order) that match `d`.

    `channel`: the channel of every event the block will see, if known (`_Plan`).

    `timed` also adds each evaluated rule's match time × `scale` to its `time_ns` (the
    engine's 1-in-N timing sample); the shared index lookup is not attributed.
    """
    plan = _Plan(rules, channel)
    due = _lookup(plan)
    if plan.merged:
        due = _unless_renamed(due, frozenset(plan.merged), lambda: _lookup(_Plan(rules)))

    def run(d: Any) -> list[CompiledRule]:
        return [rule for vfn, view, rule in due(d) if vfn(*view)]

    def timed(d: Any, scale: int) -> list[CompiledRule]:
        clock = time.perf_counter_ns
        out = []
        for vfn, view, rule in due(d):
            t0 = clock()
            hit = vfn(*view)
            rule.time_ns += (clock() - t0) * scale
            if hit:
                out.append(rule)
        return out

    return run, timed
