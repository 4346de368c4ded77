"""Condition tokenizer and evaluator: Gene's production semantics (docs/reference/gene.md §5.5)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from rules.condition import evaluate, parse_condition, to_tree, tokenize, tree_source
from rules.errors import ConditionError, RuleRuntimeError

B = Callable[[bool, bool, bool, bool], bool]
# (condition, equivalent standard Boolean expression over a, b, c, d) — docs/reference/gene.md §5.5
WORKED: list[tuple[str, B]] = [
    ("$a and $b or $c", lambda a, b, c, d: a and (b or c)),
    ("$a or $b and $c", lambda a, b, c, d: a or (b and c)),
    ("$a and $b or $c and $d", lambda a, b, c, d: a and (b or (c and d))),
    ("$a or $b and $c or $d", lambda a, b, c, d: a or (b and (c or d))),
    ("$a and $b and $c or $d", lambda a, b, c, d: a and b and (c or d)),
    ("$a and !$b or $c", lambda a, b, c, d: a and ((not b) or c)),
    ("!$a or $b and $c", lambda a, b, c, d: (not a) or (b and c)),
    ("($a or $b) and $c or $d", lambda a, b, c, d: (a or b) and (c or d)),
    ("$a and ($b or $c) or $d", lambda a, b, c, d: a and (b or c or d)),
    ("($a and $b) or $c", lambda a, b, c, d: (a and b) or c),
    ("($a and $b) or ($c and $d)", lambda a, b, c, d: (a and b) or (c and d)),
    ("!($a and $b) or $c", lambda a, b, c, d: (not (a and b)) or c),
    ("($a or $b) and !($c or $d)", lambda a, b, c, d: (a or b) and not (c or d)),
    ("!!$a or $c", lambda a, b, c, d: a and not c),
    ("$a and !!$b or $c", lambda a, b, c, d: a and b and not c),
    ("!(!$a) and $b", lambda a, b, c, d: a and b),
    ("!(!(!$a)) and $b", lambda a, b, c, d: not (a and b)),
    ("$a $b", lambda a, b, c, d: b),
    ("$a $b or $c", lambda a, b, c, d: b or c),
    ("$a or", lambda a, b, c, d: a),
    ("$a and", lambda a, b, c, d: False),
    ("and $a", lambda a, b, c, d: False),
    ("or $a", lambda a, b, c, d: a),
    ("$a and $b) or $c", lambda a, b, c, d: (a and b) or c),
    ("($a or $b", lambda a, b, c, d: a or b),
    ("$a AND $b || $c", lambda a, b, c, d: a and (b or c)),
    ("$a && $b OR $c", lambda a, b, c, d: a and (b or c)),
    ("$a  and $b", lambda a, b, c, d: a and b),
    ("$a and  ($b or $c)", lambda a, b, c, d: a and c),
]
ASSIGNMENTS = list(itertools.product((False, True), repeat=4))


@pytest.mark.parametrize(("condition", "expected"), WORKED, ids=[w[0] for w in WORKED])
def test_worked_examples(condition: str, expected: B) -> None:
    cond = parse_condition(condition)
    tree = to_tree(cond)
    for a, b, c, d in ASSIGNMENTS:
        env = {"$a": a, "$b": b, "$c": c, "$d": d}
        assert evaluate(cond.elements, env.__getitem__) == expected(a, b, c, d), env
        if tree is not None:  # the compiled form agrees wherever it is used
            code = tree_source(tree, {k: repr(v) for k, v in env.items()})
            assert eval(code) == expected(a, b, c, d)


def test_tokenizer_splits_like_gene() -> None:
    assert tokenize("((!$a") == ["(", "(", "!", "$a"]
    assert tokenize("!($a") == ["!", "(", "$a"]
    assert tokenize("$b))") == ["$b", ")", ")"]
    assert tokenize("$a and  !$b") == ["$a", "and", "!$b"]  # verbatim after two spaces


def test_two_spaces_before_negation_panics_only_when_reached() -> None:
    cond = parse_condition("$a and  !$b")
    assert evaluate(cond.elements, {"$a": False, "$b": False}.__getitem__) is False
    with pytest.raises(RuleRuntimeError):
        evaluate(cond.elements, {"$a": True, "$b": False}.__getitem__)
    assert to_tree(cond) is None  # possible panic → literal evaluator


@pytest.mark.parametrize("condition", ["$a and not $b", "$a And $b", "$a xor $b", "$a | $b"])
def test_unexpected_tokens_are_load_errors(condition: str) -> None:
    with pytest.raises(ConditionError, match="unexpected token"):
        parse_condition(condition, {"$a": 1, "$b": 1})


def test_unknown_operand_is_a_load_error() -> None:
    with pytest.raises(ConditionError, match=r"unknown operand '\$a,'"):
        parse_condition("$a, and $b", {"$a": 1, "$b": 1})


def test_three_spaces_crash_gene_at_load() -> None:
    with pytest.raises(ConditionError, match="three or more"):
        parse_condition("$a   and $b")


def test_negation_before_operator_panics() -> None:
    cond = parse_condition("$a and ! or $b")
    with pytest.raises(RuleRuntimeError):
        evaluate(cond.elements, {"$a": True, "$b": True}.__getitem__)


def test_evaluation_is_lazy() -> None:
    calls: list[str] = []

    def value(name: str) -> bool:
        calls.append(name)
        return name == "$b"

    cond = parse_condition("$a and $b and $c")
    assert evaluate(cond.elements, value) is False
    assert calls == ["$a"]


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("($a and $b) or $c", None),
        ("$a or $b and $c", None),  # right-associative reading agrees with precedence here
        ("!($a or $b) and $c", None),
        ("$a and $b or $c", "no and/or precedence"),
        ("$a $b", "malformed"),
        ("($a or $b", "malformed"),
        ("!!$a or $c", "negate the rest"),
        ("$a and ! or $b", "malformed"),
    ],
)
def test_quirk_explains_differences_from_textbook_logic(condition: str, reason: str | None) -> None:
    from rules.condition import quirk

    found = quirk(parse_condition(condition))
    assert (found is None) if reason is None else (found is not None and reason in found)


def test_missing_operator_still_compiles_to_a_verified_tree() -> None:
    cond = parse_condition("$l and !($a or $b $c or $d)")
    tree = to_tree(cond)
    assert tree is not None and "$b" not in repr(tree)  # GENE: `$b $c` keeps only `$c`
