"""A cheap necessary test for a set of keyword literals, run before their automaton pass.

Keyword rules (`Mimikatz Use`: 20 literals, every Windows channel) make each event scan the
joined text of the fields no rule indexes (~300 characters of GUIDs, times, ids) with an
Aho-Corasick automaton: ~3 µs per event, for a hit in almost none. A few short substrings
(`anchors`) such that every literal contains one of them are checked first with
`str.__contains__` (C, ~0.2 µs each); the automaton only runs when one is in the text. A text
holding a literal holds its anchor, so no hit is ever skipped.

The anchors are chosen greedily (set cover): most literals covered per expected cost, where
an anchor made of rarer characters (punctuation other than path, GUID and time characters)
is less likely to be in the text for nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache

__all__ = ["anchors", "any_in"]

_COMMON = frozenset("abcdefghijklmnopqrstuvwxyz0123456789\\ .-_/,=")  # in most event text
_P_COMMON, _P_RARE = 0.05, 0.005  # rough per-character odds at a position of event text
_TEXT = 300  # characters of a typical joined text
_CHECK, _PASS = 0.2, 3.0  # µs: one `in` check, one automaton pass over the text
MAX_ANCHORS = 6  # beyond, the checks cost about what the automaton does


def _odds(anchor: str) -> float:
    """How likely `anchor` is somewhere in a typical text."""
    p = 1.0
    for c in anchor:
        p *= _P_COMMON if c in _COMMON else _P_RARE
    return min(1.0, _TEXT * p)


def anchors(literals: Iterable[str]) -> tuple[str, ...] | None:
    """Anchors (2-5 characters) such that every literal contains one, or None when there is
    no worthwhile set (an empty or marker-holding literal, or more than `MAX_ANCHORS`).

    Performance: remembered per literal set (most blocks share the same keyword rules).
    """
    return _anchors(frozenset(literals))


@lru_cache(maxsize=256)
def _anchors(literals: frozenset[str]) -> tuple[str, ...] | None:
    left = set(literals)
    if not left or any(not lit or "\x00" in lit or "\x01" in lit or "\x02" in lit for lit in left):
        return None
    chosen: list[str] = []
    while left:
        covers: Counter[str] = Counter()  # anchor → literals of `left` holding it
        for lit in left:
            covers.update(_substrings(lit))
        best = max(
            sorted(covers),  # ties: the same anchors on every run
            key=lambda a: covers[a] / (_CHECK + _odds(a) * _PASS),
        )
        chosen.append(best)
        left = {lit for lit in left if best not in lit}
        if len(chosen) > MAX_ANCHORS:
            return None
    return tuple(chosen)


def _substrings(lit: str) -> set[str]:
    """The candidate anchors of one literal: its substrings of 2-5 characters (or itself)."""
    if len(lit) < 2:
        return {lit}
    return {lit[i : i + n] for n in range(2, 6) for i in range(len(lit) - n + 1)}


def any_in(marks: tuple[str, ...]) -> Callable[[str], bool]:
    """`lambda t: m1 in t or m2 in t ...`: no Python-level loop per check."""
    source = "lambda t: " + " or ".join(f"{m!r} in t" for m in marks)
    return eval(source)  # type: ignore[no-any-return]
