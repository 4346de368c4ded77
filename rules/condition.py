"""Gene conditions: tokenizer, element list and the production evaluator (docs/reference/gene.md
§5).

GENE: there is no and/or precedence; chains are right-associative within a parenthesis level,
double negation swallows the rest of the chain, unbalanced parentheses are accepted. This module
ports the tokenizer and `compute` literally (`evaluate`), and also builds an ordinary Boolean
tree (`to_tree`) that the compiler uses only after checking, over every operand assignment, that
it agrees with the literal evaluator.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConditionError, RuleRuntimeError

__all__ = [
    "quirk",
    "Element",
    "Condition",
    "tokenize",
    "parse_condition",
    "evaluate",
    "to_tree",
    "tree_source",
    "Node",
]

OPERAND, AND, OR, NOT = "operand", "and", "or", "not"
_AND_TOKENS = ("and", "AND", "&&")
_OR_TOKENS = ("or", "OR", "||")
MAX_EXHAUSTIVE = 12


@dataclass(frozen=True, slots=True)
class Element:
    """One element of a parsed condition with its parenthesis level and group counters."""

    kind: str
    operand: str
    level: int
    group: int


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition; `crashes` explains why Gene would panic on every evaluation."""

    text: str
    elements: tuple[Element, ...]
    operands: tuple[str, ...]
    crashes: str | None = None


def tokenize(condition: str) -> list[str]:
    """Split like Gene's Tokenizer: on single spaces, then `(`, `!` and trailing `)`."""
    tokens = condition.split(" ")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if len(token) == 0:
            del tokens[i]  # GENE: the piece now at i is skipped by i++ (kept verbatim)
        if len(token) > 1:
            if token[0] in "(!":
                tokens[i] = token[1:]
                tokens.insert(i, token[0])
                i += 1
                continue
            closing = 0
            for k in range(len(token) - 1, 0, -1):
                if token[k] != ")":
                    break
                closing += 1
            tokens[i] = token[: len(token) - closing]
            tokens[i + 1 : i + 1] = [")"] * closing
        i += 1
    return tokens


def parse_condition(condition: str, known: Mapping[str, object] | None = None) -> Condition:
    """Parse a condition into elements; unknown tokens/operands raise `ConditionError`."""
    elements: list[Element] = []
    level = group = 0
    for token in tokenize(condition):
        if token == "":
            raise ConditionError(
                "condition has three or more consecutive spaces (Gene panics at load)"
            )
        first = token[0]
        if first == "(":
            level += 1
        elif first == ")":
            group += 1
            level -= 1
        elif first == "!":
            elements.append(Element(NOT, "", level, group))
        elif first == "$":
            if known is not None and token not in known:
                raise ConditionError(f"unknown operand {token!r} in condition {condition!r}")
            elements.append(Element(OPERAND, token, level, group))
        elif token in _AND_TOKENS:
            elements.append(Element(AND, "", level, group))
        elif token in _OR_TOKENS:
            elements.append(Element(OR, "", level, group))
        else:
            raise ConditionError(f"unexpected token {token!r} in condition {condition!r}")
    operands = tuple(dict.fromkeys(e.operand for e in elements if e.kind == OPERAND))
    crashes = None
    if not elements and condition.strip(" ") != "" and known:
        crashes = "condition yields no elements"
    return Condition(condition, tuple(elements), operands, crashes)


class _Compute:
    """GENE `compute`: one evaluation of an element list (docs/reference/gene.md §5.4)."""

    __slots__ = ("elements", "n", "value")

    def __init__(self, elements: tuple[Element, ...], value: Callable[[str], bool]) -> None:
        self.elements = elements
        self.n = len(elements)
        self.value = value

    def lower(self, i: int) -> int:
        """First index after i whose level is lower than element i's (or n)."""
        lvl = self.elements[i].level
        for j in range(i + 1, self.n):
            if self.elements[j].level < lvl:
                return j
        return self.n

    def ev(self, acc: bool, i: int) -> tuple[int, bool]:
        if i >= self.n:
            return self.n, acc
        e = self.elements[i]
        if e.kind == OPERAND:
            v = self.value(e.operand)
            if i + 1 < self.n and self.elements[i + 1].level != e.level:
                return i + 1, v
            return self.ev(v, i + 1)
        if e.kind == AND:
            if not acc:
                return self.lower(i), False
            k, r = self.ev(False, i + 1)
            return k, acc and r
        if e.kind == OR:
            if acc:
                return self.lower(i), True
            k, r = self.ev(False, i + 1)
            return k, acc or r
        return self.negation(e, i)

    def negation(self, e: Element, i: int) -> tuple[int, bool]:
        j = i + 1
        if j >= self.n:
            raise RuleRuntimeError("! at the end of the condition (Gene panics)")
        nxt = self.elements[j]
        if nxt.kind == OPERAND and nxt.level == e.level and nxt.group == e.group:
            v = not self.value(nxt.operand)
            k = j + 1
            if k < self.n and self.elements[k].level != e.level:
                return k, v
            return self.ev(v, k)
        if nxt.kind in (OPERAND, NOT):
            k, v = self.ev(False, j)
            while k < self.n and self.elements[k].level > e.level:
                k, v = self.ev(v, k)
            if nxt.kind == OPERAND:
                return k, not v
            return self.ev(not v, k)  # GENE: double negation continues the chain
        raise RuleRuntimeError("an operator cannot follow ! (Gene panics)")


def evaluate(elements: tuple[Element, ...], value: Callable[[str], bool]) -> bool:
    """GENE `Compute`: the production evaluator, ported literally (docs/reference/gene.md §5.4).

    `value(name)` is called lazily. Raises `RuleRuntimeError` where Gene panics.
    """
    if not elements:
        raise RuleRuntimeError("condition has no elements (Gene: panic Unkown type)")
    run = _Compute(elements, value)
    k, r = run.ev(False, 0)
    while k < run.n:
        k, r = run.ev(r, k)
    return r


# --- Boolean tree used for compilation -------------------------------------------------------
Node = tuple[Any, ...]  # ("var", name) | ("not", node) | ("and"|"or", left, right)


def _build(elements: tuple[Element, ...]) -> Node | None:
    """Standard right-associative parse of the element list (candidate for `to_tree`)."""
    n = len(elements)

    def unary(i: int, lvl: int) -> tuple[Node, int]:
        if i >= n:
            raise ValueError("truncated")
        e = elements[i]
        if e.level > lvl:
            return chain(i, lvl + 1)
        if e.level < lvl:
            raise ValueError("level")
        if e.kind == NOT:
            node, j = unary(i + 1, lvl)
            return ("not", node), j
        if e.kind == OPERAND:
            return ("var", e.operand), i + 1
        raise ValueError("operator")

    def chain(i: int, lvl: int) -> tuple[Node, int]:
        left, i = unary(i, lvl)
        while i < n and elements[i].level == lvl and elements[i].kind == OPERAND:
            left, i = unary(i, lvl)  # GENE: `$a $b` is `$b` (candidate, verified below)
        if i < n and elements[i].level == lvl and elements[i].kind in (AND, OR):
            kind = elements[i].kind
            right, j = chain(i + 1, lvl)
            return (kind, left, right), j
        return left, i

    try:
        node, end = chain(0, min(0, elements[0].level))
    except (ValueError, RecursionError):
        return None
    return node if end == n else None


def _eval_tree(node: Node, env: Mapping[str, bool]) -> bool:
    kind = node[0]
    if kind == "var":
        return env[node[1]]
    if kind == "not":
        return not _eval_tree(node[1], env)
    if kind == "and":
        return _eval_tree(node[1], env) and _eval_tree(node[2], env)
    return _eval_tree(node[1], env) or _eval_tree(node[2], env)


def to_tree(cond: Condition) -> Node | None:
    """A Boolean tree equivalent to `evaluate` for every assignment, or `None`.

    `None` when the structure is unusual (quirks, possible panics) or has more than
    `MAX_EXHAUSTIVE` operands: the caller then falls back to the literal evaluator.
    """
    if not cond.elements:
        return None
    if len(cond.operands) > MAX_EXHAUSTIVE:
        return None
    tree = _build(cond.elements)
    if tree is None:
        return None
    names = cond.operands
    for bits in itertools.product((False, True), repeat=len(names)):
        env = dict(zip(names, bits, strict=True))
        try:
            expected = evaluate(cond.elements, env.__getitem__)
        except RuleRuntimeError:
            return None
        if _eval_tree(tree, env) != expected:
            return None
    return tree


def _cost(node: Node, costs: Mapping[str, float]) -> float:
    if node[0] == "var":
        return costs.get(node[1], 1.0)
    if node[0] == "not":
        return _cost(node[1], costs)
    return _cost(node[1], costs) + _cost(node[2], costs)


def tree_source(
    node: Node, exprs: Mapping[str, str], costs: Mapping[str, float] | None = None
) -> str:
    """Python source for a tree, with `exprs[name]` substituted for each operand.

    Performance: with `costs`, the cheaper side of each and/or is evaluated first. Matchers
    are pure, so this changes nothing but the time spent (trees are only built for
    conditions that cannot panic).
    """
    kind = node[0]
    if kind == "var":
        return exprs[node[1]]
    if kind == "not":
        return f"(not {tree_source(node[1], exprs, costs)})"
    left, right = node[1], node[2]
    if costs is not None and _cost(right, costs) < _cost(left, costs):
        left, right = right, left
    return f"({tree_source(left, exprs, costs)} {kind} {tree_source(right, exprs, costs)})"


def _standard_tree(text: str) -> Node | None:
    """Parse with textbook rules (and before or, balanced parentheses); None if malformed."""
    tokens = tokenize(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def factor() -> Node:
        tok = peek()
        if tok is None:
            raise ValueError("truncated")
        take()
        if tok == "!":
            return ("not", factor())
        if tok == "(":
            node = expr()
            if take() != ")":
                raise ValueError("unbalanced")
            return node
        if tok.startswith("$") and len(tok) > 1:
            return ("var", tok)
        raise ValueError(f"unexpected {tok!r}")

    def term() -> Node:
        node = factor()
        while peek() in _AND_TOKENS:
            take()
            node = ("and", node, factor())
        return node

    def expr() -> Node:
        node = term()
        while peek() in _OR_TOKENS:
            take()
            node = ("or", node, term())
        return node

    try:
        tree = expr()
    except (ValueError, IndexError, RecursionError):
        return None
    return tree if pos == len(tokens) else None


def quirk(cond: Condition) -> str | None:
    """Why Gene's reading of a condition differs from the textbook one, or None.

    Used by `rules.validate` to warn rule authors (docs/reference/gene.md §5.3).
    """
    if not cond.elements:
        return None
    standard = _standard_tree(cond.text)
    if standard is None:
        return "malformed (missing operator, unbalanced parentheses or stray spaces)"
    if len(cond.operands) > MAX_EXHAUSTIVE:
        return None
    for bits in itertools.product((False, True), repeat=len(cond.operands)):
        env = dict(zip(cond.operands, bits, strict=True))
        try:
            gene = evaluate(cond.elements, env.__getitem__)
        except RuleRuntimeError:
            return "Gene panics on some events (e.g. `!` before an operator)"
        if gene != _eval_tree(standard, env):
            return (
                "Gene evaluates it differently from textbook logic (no and/or precedence; "
                "`!!` and `!(!` negate the rest of the chain): add parentheses"
            )
    return None
