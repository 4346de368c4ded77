"""Compile `Rule`s into `CompiledRule`s: matchers + condition → one Python function per rule.

Owns Gene's rule-compilation semantics (docs/reference/gene.md §3.3, §5, §6): LogType base for
relative
fields, duplicate match names (last wins), rules disabled by an unknown container (kept and
counted, never evaluated, rest not parsed), and the condition compiled either to a straight
Python expression (when proven equivalent to Gene's evaluator) or to the literal evaluator.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .condition import Condition, evaluate, parse_condition, to_tree, tree_source
from .errors import ConditionError, RuleError, RuleRuntimeError
from .event import go_string
from .matchers import CodeGen, ContainerMatch, FieldMatch, Matcher, parse_match
from .rule import LOG_TYPES, Rule

__all__ = ["CompiledRule", "compile_rule", "compile_group", "GroupFn"]

logger = logging.getLogger(__name__)
RuleFn = Callable[[dict[str, Any], dict[str, Any]], bool]
_WINEVT_BASE = LOG_TYPES["winevt"]
_IDS = itertools.count()


class CompiledRule:
    """A rule ready to run: filters, scoring data and its match function `fn(d, ed)`."""

    __slots__ = (
        "rule",
        "name",
        "criticality",
        "is_filter",
        "attack",
        "actions",
        "disabled",
        "events",
        "computers",
        "fn",
        "matchers",
        "condition",
        "literal",
        "unused",
        "hits",
        "time_ns",
        "runtime_errors",
        "source",
        "ns",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.name
        self.criticality = rule.criticality
        self.is_filter = rule.meta.filter
        self.attack = tuple(a.to_dict() for a in rule.meta.attack)
        self.actions = rule.actions
        self.disabled: str | None = None
        self.events: dict[str, frozenset[int]] | None = {
            k: frozenset(v) for k, v in rule.meta.events.items()
        } or None
        self.computers = frozenset(rule.meta.computers) or None
        self.fn: RuleFn | None = None
        self.matchers: dict[str, Matcher] = {}
        self.condition: Condition | None = None
        self.literal = False
        self.unused: tuple[str, ...] = ()
        self.hits = 0
        self.time_ns = 0
        self.runtime_errors = 0
        self.source: str | None = None  # Python boolean expression over d, ed (tree path)
        self.ns: dict[str, Any] = {}

    def accepts(self, channel: str, event_id: int) -> bool:
        """GENE Events filter: empty map → any; else channel key and (no IDs or ID listed)."""
        if self.events is None:
            return True
        ids = self.events.get(channel)
        return ids is not None and (not ids or event_id in ids)

    def __repr__(self) -> str:
        return f"CompiledRule({self.name!r})"


GroupFn = Callable[[dict[str, Any], dict[str, Any], Any], list[CompiledRule]]


def compile_group(rules: tuple[CompiledRule, ...], channel: str | None = None) -> GroupFn:
    """One function evaluating a candidate list in order, returning the rules that match.

    `channel`, when given, is the only channel of the events it will see (the Sigma block
    then reads one field view where per-channel renames do not apply).

    Performance: inlines every rule's expression, so an event pays no per-rule call or
    loop overhead. Computers filters are inlined too (`comp` is the raw Computer value).
    """
    ns: dict[str, Any] = {"_gs": go_string}
    lines = ["def _group(d, ed, comp):", "    hits = []", "    add = hits.append"]
    native = [c for c in rules if hasattr(c.rule, "compile_native")]
    if native:  # Sigma rules run as one indexed block, placed at the first one's position
        from .sigma.block import compile_block

        ns["_native"], timed = compile_block(native, channel)
    for i, c in enumerate(rules):
        if native and c is native[0]:
            lines.append("    hits.extend(_native(d))")
        if native and hasattr(c.rule, "compile_native"):
            continue
        ns[f"_rule{i}"] = c
        if c.source is not None:
            ns.update(c.ns)
            test = c.source
        elif c.fn is not None:
            ns[f"_fn{i}"] = c.fn
            test = f"_fn{i}(d, ed)"
        else:
            test = "True"
        if c.computers is not None:
            ns[f"_cs{i}"] = c.computers
            test = f"(('' if comp is None else _gs(comp)) in _cs{i}) and ({test})"
        lines.append(f"    if {test}:\n        add(_rule{i})")
    lines.append("    return hits")
    exec("\n".join(lines), ns)
    group = ns["_group"]
    group.native_timed = timed if native else None  # Engine._timed runs the block through it
    return group  # type: ignore[no-any-return]


def _literal_fn(cond: Condition, fns: Mapping[str, RuleFn], compiled: CompiledRule) -> RuleFn:
    elements = cond.elements

    def run(d: dict[str, Any], ed: dict[str, Any]) -> bool:
        try:
            return evaluate(elements, lambda name: fns[name](d, ed))
        except RuleRuntimeError as ex:
            compiled.runtime_errors += 1
            if compiled.runtime_errors == 1:
                logger.warning("rule %s: %s; treated as no match", compiled.name, ex.reason)
            return False

    return run


def _cost(m: Matcher) -> float:
    """Rough relative cost of evaluating a matcher (dict lookups vs regex searches)."""
    if isinstance(m, FieldMatch):
        if m.operator == "=":
            return 1.0
        if m.operator == "~=":
            return 3.0 + len(m.value) / 64
        return 2.0
    if isinstance(m, ContainerMatch):
        return 4.0 + len(m.regexp) / 64
    return 2.0


def compile_rule(rule: Rule, containers: Mapping[str, Any]) -> CompiledRule:
    """Compile one rule; `containers` maps existing (non-empty) container names to sets.

    Raises `RuleError` subclasses located at the rule. Rules of another format (Sigma) bring
    their own compiler (`compile_native`).
    """
    native = getattr(rule, "compile_native", None)
    if native is not None:
        return native()  # type: ignore[no-any-return]
    compiled = CompiledRule(rule)
    try:
        _compile_into(compiled, rule, containers)
    except RuleError as ex:
        raise ex.located(source=rule.source, line=rule.line, rule=rule.name) from ex
    return compiled


def _compile_into(compiled: CompiledRule, rule: Rule, containers: Mapping[str, Any]) -> None:
    log_type = rule.meta.effective_log_type()
    base = LOG_TYPES.get(log_type)
    names = frozenset(containers)
    for text in rule.matches:
        matcher = parse_match(text, base, names)
        if isinstance(matcher, ContainerMatch) and matcher.container not in names:
            # GENE: unknown container → rule disabled, the rest is not even parsed
            compiled.disabled = f"unknown container {matcher.container!r}"
            return
        compiled.matchers[matcher.name] = matcher
    if rule.condition == "":
        if compiled.matchers:
            raise ConditionError("empty condition with Matches (Gene panics on every event)")
        compiled.fn = None  # matches every event that passes the Meta filters
        return
    cond = parse_condition(rule.condition, compiled.matchers)
    if cond.crashes:
        raise ConditionError(f"{cond.crashes} (Gene panics on every event)")
    compiled.condition = cond
    compiled.unused = tuple(n for n in compiled.matchers if n not in cond.operands)
    gen = CodeGen(_WINEVT_BASE, f"_r{next(_IDS)}_")
    exprs = {
        name: gen.expr(m, containers)
        for name, m in compiled.matchers.items()
        if name in cond.operands
    }
    tree = to_tree(cond)
    if tree is not None:
        costs = {name: _cost(m) for name, m in compiled.matchers.items()}
        compiled.source = tree_source(tree, exprs, costs)
        compiled.ns = gen.ns
        compiled.fn = eval(f"lambda d, ed: bool({compiled.source})", gen.ns)
        return
    fns = {name: eval(f"lambda d, ed: bool({expr})", gen.ns) for name, expr in exprs.items()}
    compiled.literal = True
    compiled.fn = _literal_fn(cond, fns, compiled)
