"""Errors raised by the rule engine: one tree, each error carrying where it happened.

`RuleError(ValueError)` is the root. Loading errors carry the source file, the line where the
rule starts and the rule name, and `str()` renders them as ``reason (rule NAME in FILE:LINE)``.
"""

from __future__ import annotations

__all__ = [
    "RuleError",
    "RuleSyntaxError",
    "MatchSyntaxError",
    "ConditionError",
    "RegexError",
    "SchemaError",
    "DuplicateRuleError",
    "TemplateError",
    "RuleRuntimeError",
]


class RuleError(ValueError):
    """Base of every rule-engine error; carries the rule's location."""

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source
        self.line = line
        self.rule = rule

    def located(
        self, *, source: str | None = None, line: int | None = None, rule: str | None = None
    ) -> RuleError:
        """Return a copy of this error with missing location fields filled in."""
        err = type(self)(
            self.reason,
            source=self.source or source,
            line=self.line if self.line is not None else line,
            rule=self.rule or rule,
        )
        err.__cause__ = self.__cause__ or self
        return err

    def __str__(self) -> str:
        where = []
        if self.rule:
            where.append(f"rule {self.rule!r}")
        if self.source:
            loc = self.source if self.line is None else f"{self.source}:{self.line}"
            where.append(f"in {loc}")
        return f"{self.reason} ({' '.join(where)})" if where else self.reason

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuleError):
            return NotImplemented
        return (type(self), self.reason, self.source, self.line, self.rule) == (
            type(other),
            other.reason,
            other.source,
            other.line,
            other.rule,
        )

    def __hash__(self) -> int:
        return hash((type(self), self.reason, self.source, self.line, self.rule))


class RuleSyntaxError(RuleError):
    """The rule file is not a stream of JSON objects, or a field has the wrong type."""


class SchemaError(RuleError):
    """Meta.Schema is missing or below 2.0.0 (GENE: `expecting rule version >= 2.0.0`)."""


class DuplicateRuleError(RuleError):
    """Two loaded rules share a name (GENE: `Rule "X" already exists`)."""


class MatchSyntaxError(RuleError):
    """A `Matches` entry is not a field, indirect or container match, or its value is invalid."""


class RegexError(MatchSyntaxError):
    """A `~=` or `extract()` pattern does not compile under Go RE2 rules."""


class ConditionError(RuleError):
    """The `Condition` has an unexpected token or an unknown operand, or would crash Gene."""


class TemplateError(RuleError):
    """A `.toml` template file is invalid (non-string value, TOML syntax)."""


class RuleRuntimeError(RuleError):
    """A condition reached a state where Gene panics (e.g. `!` followed by an operator)."""
