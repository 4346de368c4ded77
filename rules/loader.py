"""Loading rule sets: JSON object streams, directories in Gene's walk order, `.toml` templates.

GENE (gene.md §1, §9, §11): a rule file is a stream of JSON objects separated by whitespace
(one per line in `compiled.gen`, pretty-printed in gene-rules); a directory is walked files
first (lexical order) then subdirectories depth-first in reverse lexical order; all `.toml`
templates under the rule roots are loaded before any rule; `Disable`d rules are dropped.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DuplicateRuleError, RuleError, RuleSyntaxError, TemplateError
from .rule import Rule

__all__ = ["RuleSet", "load", "loads", "load_templates", "walk_rule_files", "iter_json_objects",
           "read_container",
           "RULE_EXTENSIONS"]

logger = logging.getLogger(__name__)
RULE_EXTENSIONS = (".gen", ".gene")
_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """An ordered collection of rules (load order = evaluation order) plus load errors."""

    rules: tuple[Rule, ...] = ()
    templates: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[RuleError, ...] = ()
    disabled: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def get(self, name: str) -> Rule | None:
        for rule in self.rules:
            if rule.name == name:
                return rule
        return None

    def select(self, *, names: Iterable[str] | None = None, tags: Iterable[str] | None = None
               ) -> RuleSet:
        """GENE `-n` / `-tags`: keep only rules with these names / with one of these tags."""
        keep = list(self.rules)
        if names is not None:
            wanted = set(names)
            keep = [r for r in keep if r.name in wanted]
        if tags is not None:
            wanted_tags = set(tags)
            keep = [r for r in keep if wanted_tags.intersection(r.tags)]
        return RuleSet(tuple(keep), self.templates, self.errors, self.disabled)

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(self.rules + other.rules, {**self.templates, **other.templates},
                       self.errors + other.errors, self.disabled + other.disabled)


def iter_json_objects(text: str, source: str = "<string>") -> Iterator[tuple[int, Any]]:
    """Yield `(line, object)` for each JSON value in a whitespace-separated stream.

    Raises `RuleSyntaxError` (with the line) at the first syntax error, like Go's json.Decoder.
    """
    pos = 0
    line = 1
    end = len(text)
    if text.startswith("\ufeff"):
        pos = 1
    while True:
        start = pos
        while pos < end and text[pos] in _WS:
            pos += 1
        line += text.count("\n", start, pos)
        if pos >= end:
            return
        try:
            obj, new = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as ex:
            raise RuleSyntaxError(f"invalid JSON: {ex.msg}", source=source,
                                  line=ex.lineno) from ex
        yield line, obj
        line += text.count("\n", pos, new)
        pos = new


def load_templates(paths: Iterable[Path]) -> dict[str, str]:
    """Read `.toml` template files: every top-level value must be a string."""
    out: dict[str, str] = {}
    for path in paths:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as ex:
            raise TemplateError(f"invalid template file: {ex}", source=str(path)) from ex
        for key, value in data.items():
            if not isinstance(value, str):
                raise TemplateError(f"template {key!r} must be a string", source=str(path))
            out[key] = value
    return out


def walk_rule_files(root: Path) -> Iterator[Path]:
    """GENE walk: files of a directory in lexical order, then subdirectories in reverse."""
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as ex:
            raise RuleSyntaxError(f"cannot read directory: {ex}", source=str(current)) from ex
        dirs = []
        for entry in entries:
            if entry.is_dir():
                dirs.append(Path(entry.path))
            elif entry.name.lower().endswith(RULE_EXTENSIONS):
                yield Path(entry.path)
        stack.extend(dirs)  # popped last-first: reverse lexical order


def _template_files(root: Path) -> list[Path]:
    base = root if root.is_dir() else root.parent
    return sorted(base.rglob("*.toml"))


def _parse_rules(text: str, source: str, templates: Mapping[str, str],
                 collect: list[RuleError] | None) -> Iterator[Rule]:
    try:
        for line, obj in iter_json_objects(text, source):
            try:
                yield Rule.from_dict(obj, source=source, line=line, templates=templates)
            except RuleError as ex:
                if collect is None:
                    raise
                collect.append(ex)
    except RuleSyntaxError as ex:
        if collect is None:
            raise
        collect.append(ex)


def _finish(rules: Iterable[Rule], templates: Mapping[str, str],
            errors: list[RuleError] | None, skip_disabled: bool) -> RuleSet:
    kept: list[Rule] = []
    seen: set[str] = set()
    disabled: list[str] = []
    for rule in rules:
        if rule.meta.disable and skip_disabled:
            disabled.append(rule.name)
            continue
        if rule.name in seen:
            err = DuplicateRuleError(f"Rule {rule.name!r} already exists", source=rule.source,
                                     line=rule.line, rule=rule.name)
            if errors is None:
                raise err
            errors.append(err)
            continue
        seen.add(rule.name)
        kept.append(rule)
    return RuleSet(tuple(kept), dict(templates), tuple(errors or ()), tuple(disabled))


def load(paths: Iterable[str | Path] | str | Path, *, collect_errors: bool = False,
         skip_disabled: bool = False) -> RuleSet:
    """Load rules from files and directories (Gene order); templates are loaded first.

    A bad rule raises a `RuleError` naming file, line, rule and reason, unless
    `collect_errors`, where errors go to `RuleSet.errors` and loading continues.
    With `skip_disabled` `Meta.Disable` rules are dropped here; the Engine always skips them.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    roots = [Path(p) for p in paths]
    errors: list[RuleError] | None = [] if collect_errors else None
    templates: dict[str, str] = {}
    for root in roots:
        try:
            templates.update(load_templates(_template_files(root)))
        except TemplateError as ex:
            if errors is None:
                raise
            errors.append(ex)
    rules: list[Rule] = []
    for root in roots:
        if not root.exists():
            err = RuleSyntaxError("no such file or directory", source=str(root))
            if errors is None:
                raise err
            errors.append(err)
            continue
        files = list(walk_rule_files(root)) if root.is_dir() else [root]
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as ex:
                err = RuleSyntaxError(f"cannot read rule file: {ex}", source=str(path))
                if errors is None:
                    raise err from ex
                errors.append(err)
                continue
            rules.extend(_parse_rules(text, str(path), templates, errors))
    ruleset = _finish(rules, templates, errors, skip_disabled)
    logger.debug("loaded %d rules from %s", len(ruleset), ", ".join(map(str, roots)))
    return ruleset


def loads(text: str, source: str = "<string>", *, templates: Mapping[str, str] | None = None,
          collect_errors: bool = False, skip_disabled: bool = False) -> RuleSet:
    """Load rules from a string holding a stream of JSON rule objects."""
    errors: list[RuleError] | None = [] if collect_errors else None
    rules = list(_parse_rules(text, source, templates or {}, errors))
    return _finish(rules, templates or {}, errors, skip_disabled)


def read_container(path: str | Path) -> list[str]:
    """GENE `LoadContainer`: one value per line, every line (empty ones too), no trimming.

    A final newline does not add an empty value; a trailing `\\r` is dropped (bufio.ScanLines).
    """
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
