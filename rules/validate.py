"""Rule-set checks that return issues as data (`list[Issue]`), never log or raise.

Each check is a small function over a `RuleSet` (and the compiled rules): load and compile
errors, duplicate names, unknown Meta keys, unused or duplicated match names, unknown
containers, conditions relying on Gene's evaluation quirks, out-of-range severities.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .compiler import CompiledRule, compile_rule
from .condition import quirk
from .errors import DuplicateRuleError, RuleError
from .loader import RuleSet

__all__ = ["Severity", "Issue", "validate"]

_NAME = re.compile(r"\$\w+")


class Severity(enum.IntEnum):
    """How bad an issue is; `ERROR` means Gene would refuse to load the rule set."""

    INFO = 10
    WARNING = 20
    ERROR = 30


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding about one rule (or the whole set when `rule` is None)."""

    severity: Severity
    code: str
    message: str
    rule: str | None = None
    source: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.source and self.line else (self.source or "")
        who = f" rule {self.rule!r}" if self.rule else ""
        return (
            f"{self.severity.name} {self.code}{who}{' in ' + where if where else ''}: "
            f"{self.message}"
        )


def _from_error(ex: RuleError, code: str) -> Issue:
    return Issue(Severity.ERROR, code, ex.reason, ex.rule, ex.source, ex.line)


def _rule_issues(compiled: CompiledRule) -> Iterable[Issue]:
    rule = compiled.rule

    def issue(severity: Severity, code: str, message: str) -> Issue:
        return Issue(severity, code, message, rule.name, rule.source, rule.line)

    if hasattr(rule, "compile_native"):
        return  # Sigma: `extra` holds the Sigma attributes; pySigma validated the rule
    for key in rule.meta.extra:
        yield issue(
            Severity.INFO,
            "unknown-meta-key",
            f"Meta.{key} is not part of the Gene schema (rejected by Gene >= 2023-09)",
        )
    for key in rule.extra:
        yield issue(
            Severity.WARNING, "unknown-key", f"top-level key {key!r} is not part of the Gene schema"
        )
    if rule.meta.criticality > 10:
        yield issue(
            Severity.INFO,
            "severity-capped",
            f"{rule.meta.severity_key} {rule.meta.criticality} is capped at 10",
        )
    if rule.meta.criticality < 0:
        yield issue(
            Severity.WARNING,
            "negative-severity",
            f"{rule.meta.severity_key} {rule.meta.criticality} lowers the total",
        )
    if compiled.disabled:
        yield issue(Severity.WARNING, "unknown-container", f"rule disabled: {compiled.disabled}")
        return
    names = [m.group(0) for text in rule.matches for m in [_NAME.search(text)] if m]
    dups = sorted({n for n in names if names.count(n) > 1})
    for name in dups:
        yield issue(
            Severity.WARNING,
            "duplicate-match",
            f"match {name} is defined twice; Gene keeps the last one",
        )
    for name in compiled.unused:
        yield issue(Severity.WARNING, "unused-match", f"match {name} is not used")
    reason = quirk(compiled.condition) if compiled.condition is not None else None
    if reason:
        yield issue(
            Severity.WARNING,
            "condition-quirk",
            f"condition {rule.condition!r}: {reason}",
        )
    if rule.condition and rule.condition != rule.condition.strip(" "):
        yield issue(Severity.INFO, "condition-spaces", "leading/trailing spaces in the condition")


def validate(ruleset: RuleSet, containers: Iterable[str] = ()) -> list[Issue]:
    """Check a rule set; `containers` are the container names that will exist."""
    issues = [
        _from_error(ex, "duplicate-name" if isinstance(ex, DuplicateRuleError) else "load-error")
        for ex in ruleset.errors
    ]
    issues += [
        Issue(Severity.INFO, "sigma-unsupported", ex.reason, ex.rule, ex.source, ex.line)
        for ex in ruleset.unsupported
    ]
    existing = {name: frozenset[str]() for name in containers}
    seen: dict[str, str] = {}
    for rule in ruleset:
        if rule.meta.disable:
            continue
        if rule.name in seen:
            issues.append(
                Issue(
                    Severity.ERROR,
                    "duplicate-name",
                    f"Rule {rule.name!r} already exists (first in {seen[rule.name]})",
                    rule.name,
                    rule.source,
                    rule.line,
                )
            )
            continue
        seen[rule.name] = f"{rule.source}:{rule.line}"
        try:
            compiled = compile_rule(rule, existing)
        except RuleError as ex:
            issues.append(_from_error(ex, "compile-error"))
            continue
        issues.extend(_rule_issues(compiled))
    return issues
