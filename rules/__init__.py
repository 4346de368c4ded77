"""Heron rules package: the Gene-compatible rule engine, event model and EVTX reader.

Public surface (see docs/interfaces.md): `load`, `loads`, `RuleSet`, `Rule`, `Engine`,
`Detection`, `Event`, `event_hash`, `event_time`, `RuleError` and its subclasses.
"""

from __future__ import annotations

from .engine import Detection, Engine
from .errors import (
    ConditionError,
    DuplicateRuleError,
    MatchSyntaxError,
    RegexError,
    RuleError,
    RuleRuntimeError,
    RuleSyntaxError,
    SchemaError,
    TemplateError,
)
from .event import Event, event_hash, event_time
from .loader import RuleSet, load, loads
from .rule import Rule

__all__ = [
    "ConditionError",
    "Detection",
    "DuplicateRuleError",
    "Engine",
    "Event",
    "MatchSyntaxError",
    "RegexError",
    "Rule",
    "RuleError",
    "RuleRuntimeError",
    "RuleSet",
    "RuleSyntaxError",
    "SchemaError",
    "TemplateError",
    "event_hash",
    "event_time",
    "load",
    "loads",
]
