"""Sigma correlation rules (event_count, value_count, temporal, temporal_ordered).

A correlation watches the detections of the rules it references (by Sigma `name` or `id`),
grouped by its `group-by` fields, inside a sliding `timespan` of event time. It fires on the
event that completes the condition; that group's state is then reset, so one burst gives one
detection. Referenced rules stay silent unless the correlation says `generate: true`.

State is bounded: at most `MAX_GROUPS` groups per correlation (least recently used dropped) and
`MAX_ENTRIES` remembered events per group; entries older than the timespan are pruned. Conditions
that can only be decided when a window closes (`lt`, `lte`) are rejected at load.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)

from ..compiler import CompiledRule
from ..event import event_time
from ..rule import Rule
from .common import SigmaUnsupported, rule_extra, rule_meta, tag_names
from .view import view

__all__ = [
    "SigmaCorrelation",
    "CompiledCorrelation",
    "correlation_rule",
    "MAX_GROUPS",
    "MAX_ENTRIES",
]

MAX_GROUPS = 10_000
MAX_ENTRIES = 1_000
_OPS = {
    SigmaCorrelationConditionOperator.GTE: "gte",
    SigmaCorrelationConditionOperator.GT: "gt",
    SigmaCorrelationConditionOperator.EQ: "eq",
}
_NEVER = {"\x00sigma-correlation": ()}  # a channel no event has: never a candidate itself


@dataclass(frozen=True, slots=True)
class SigmaCorrelation(Rule):
    """A parsed correlation rule; `compile_native` gives a `CompiledCorrelation`."""

    text: str = ""
    kind: str = "event_count"
    refs: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    timespan: float = 60.0
    op: str = "gte"
    count: float = 1
    value_field: str = ""
    generate: bool = False
    aliases: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)

    def compile_native(self) -> CompiledRule:
        return CompiledCorrelation(self)

    def to_dict(self) -> dict[str, Any]:
        out = Rule.to_dict(self)
        out["Sigma"] = self.text
        return out


class CompiledCorrelation(CompiledRule):
    """Correlation state machine; bound to its referenced rules by `Engine.load`."""

    __slots__ = ("corr", "members", "groups")

    def __init__(self, rule: SigmaCorrelation) -> None:
        super().__init__(rule)
        self.corr = rule
        self.members: dict[int, int] = {}  # id(CompiledRule) → position in refs
        self.groups: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    def accepts(self, channel: str, event_id: int) -> bool:
        return False

    def bind(self, rules: Iterable[CompiledRule]) -> str | None:
        """Find the referenced rules; returns an error text when one is missing."""
        by_key: dict[str, CompiledRule] = {}
        for c in rules:
            extra = c.rule.extra
            for key in (extra.get("name"), extra.get("id"), c.name):
                if isinstance(key, str) and key:
                    by_key.setdefault(key, c)
        self.members = {}
        for pos, ref in enumerate(self.corr.refs):
            found = by_key.get(ref)
            if found is None:
                return f"correlation references unknown rule {ref!r}"
            if isinstance(found, CompiledCorrelation):
                return "correlations of correlations are not supported"
            self.members[id(found)] = pos
        return None

    def _group(self, data: Any, pos: int) -> tuple[str, ...]:
        fields = view(data)[1]
        key = []
        for name in self.corr.group_by:
            actual = self.corr.aliases.get(name, {}).get(self.corr.refs[pos], name)
            v = fields.get(actual)
            key.append(v if isinstance(v, str) else "" if v is None else "\n".join(v))
        return tuple(key)

    def feed(self, data: Any, hits: Sequence[CompiledRule]) -> bool:
        """Account the referenced rules in `hits`; True when the correlation fires now."""
        fired = False
        for c in hits:
            pos = self.members.get(id(c))
            if pos is not None and self._one(data, pos):
                fired = True
        return fired

    def _one(self, data: Any, pos: int) -> bool:
        when = event_time(data)
        t = when.timestamp() if isinstance(when, datetime) else 0.0
        key = self._group(data, pos)
        groups = self.groups
        state = groups.get(key)
        if state is None:
            if len(groups) >= MAX_GROUPS:
                groups.popitem(last=False)
            state = groups[key] = deque(maxlen=MAX_ENTRIES)
        else:
            groups.move_to_end(key)
        span = self.corr.timespan
        while state and state[0][0] < t - span:
            state.popleft()
        value: str = ""
        if self.corr.kind == "value_count":
            v = view(data)[0].get(self.corr.value_field)
            if v is None:
                return False
            value = v if isinstance(v, str) else "\n".join(v)
        state.append((t, pos, value))
        if self._met(state):
            del groups[key]
            return True
        return False

    def _met(self, state: deque[tuple[float, int, str]]) -> bool:
        corr = self.corr
        if corr.kind == "event_count":
            n: float = len(state)
        elif corr.kind == "value_count":
            n = len({v for _, _, v in state})
        elif corr.kind == "temporal":
            n = len({p for _, p, _ in state})
            return n >= len(corr.refs)
        else:  # temporal_ordered: refs seen in order, each after the previous one
            want = 0
            for _, p, _ in state:
                if p == want:
                    want += 1
                    if want == len(corr.refs):
                        return True
            return False
        if corr.op == "gte":
            return n >= corr.count
        if corr.op == "gt":
            return n > corr.count
        return n == corr.count


def correlation_rule(
    r: SigmaCorrelationRule, text: str, source: str
) -> SigmaCorrelation | SigmaUnsupported:
    """A Heron correlation from pySigma's, or the reason it cannot run."""
    title = r.title or str(r.id or "")

    def bad(reason: str) -> SigmaUnsupported:
        return SigmaUnsupported(reason, source=source, rule=title)

    if r.errors:
        return bad(f"invalid Sigma correlation: {r.errors[0]}")
    kind = str(r.type.name).lower()
    if r.type not in (
        SigmaCorrelationType.EVENT_COUNT,
        SigmaCorrelationType.VALUE_COUNT,
        SigmaCorrelationType.TEMPORAL,
        SigmaCorrelationType.TEMPORAL_ORDERED,
    ):
        return bad(f"correlation type {kind} is not supported")
    cond = r.condition
    op, count, value_field = "gte", 1.0, ""
    if kind in ("event_count", "value_count"):
        if not isinstance(cond, SigmaCorrelationCondition):
            return bad("extended conditions only apply to temporal correlations")
        if cond.op not in _OPS:
            return bad(
                f"condition {cond.op.name.lower()} needs the end of a window "
                f"(only gte, gt, eq are evaluated on arrival)"
            )
        op, count = _OPS[cond.op], float(cond.count)
        if kind == "value_count":
            ref = cond.fieldref
            if not isinstance(ref, str) or not ref:
                return bad("value_count needs one condition field")
            value_field = ref
    elif r.rules is None or not hasattr(cond, "op"):
        return bad("extended temporal conditions are not supported")
    refs = tuple(x.reference for x in (r.rules or []))
    aliases: dict[str, dict[str, str]] = {}
    for name, alias in r.aliases.aliases.items():
        aliases[name] = {k.reference: v for k, v in alias.mapping.items()}
    meta = rule_meta(r, _NEVER)
    extra = {**rule_extra(r), "correlation": kind}
    tags = tag_names(r)
    return SigmaCorrelation(
        title,
        meta,
        (),
        "",
        tags,
        (),
        source,
        1,
        extra,
        text,
        kind,
        refs,
        tuple(r.group_by or ()),
        float(r.timespan.seconds),
        op,
        count,
        value_field,
        bool(r.generate),
        aliases,
    )
