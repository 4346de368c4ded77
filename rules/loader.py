"""Loading rule sets: JSON object streams, directories in Gene's walk order, `.toml` templates.

GENE (docs/reference/gene.md §1, §9, §11): a rule file is a stream of JSON objects separated by
whitespace
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

__all__ = [
    "RuleSet",
    "load",
    "loads",
    "load_templates",
    "walk_rule_files",
    "iter_json_objects",
    "read_container",
    "is_sigma_text",
    "load_placeholders",
    "SigmaOptions",
    "RULE_EXTENSIONS",
]

logger = logging.getLogger(__name__)
RULE_EXTENSIONS = (".gen", ".gene")
SIGMA_EXTENSIONS = (".yml", ".yaml")
SIGMA_PLACEHOLDERS = ("sigma-placeholders.yml", "sigma-placeholders.yaml")
DEFAULT_SIGMA_STATUS = frozenset({"stable", "test"})
_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """An ordered collection of rules (load order = evaluation order) plus load errors."""

    rules: tuple[Rule, ...] = ()
    templates: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[RuleError, ...] = ()
    disabled: tuple[str, ...] = ()
    # Sigma rules of a directory/pack that cannot run here (reason in the error), and those
    # left out by the status filter: listed, never silently dropped.
    unsupported: tuple[RuleError, ...] = ()

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

    def select(
        self, *, names: Iterable[str] | None = None, tags: Iterable[str] | None = None
    ) -> RuleSet:
        """GENE `-n` / `-tags`: keep only rules with these names / with one of these tags."""
        keep = list(self.rules)
        if names is not None:
            wanted = set(names)
            keep = [r for r in keep if r.name in wanted]
        if tags is not None:
            wanted_tags = set(tags)
            keep = [r for r in keep if wanted_tags.intersection(r.tags)]
        return RuleSet(tuple(keep), self.templates, self.errors, self.disabled, self.unsupported)

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(
            self.rules + other.rules,
            {**self.templates, **other.templates},
            self.errors + other.errors,
            self.disabled + other.disabled,
            self.unsupported + other.unsupported,
        )


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
            raise RuleSyntaxError(f"invalid JSON: {ex.msg}", source=source, line=ex.lineno) from ex
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
            elif (
                entry.name.lower().endswith(RULE_EXTENSIONS + SIGMA_EXTENSIONS)
                and entry.name.lower() not in SIGMA_PLACEHOLDERS
            ):
                yield Path(entry.path)
        stack.extend(dirs)  # popped last-first: reverse lexical order


def _template_files(root: Path) -> list[Path]:
    base = root if root.is_dir() else root.parent
    return sorted(base.rglob("*.toml"))


@dataclass
class SigmaOptions:
    """How Sigma rules load: placeholder values, status filter, where unsupported ones go."""

    placeholders: dict[str, list[str]] = field(default_factory=dict)
    status: frozenset[str] | None = DEFAULT_SIGMA_STATUS  # None: every status
    lenient: bool = False  # directory member: unsupported/filtered → RuleSet.unsupported
    unsupported: list[RuleError] = field(default_factory=list)


def is_sigma_text(text: str) -> bool:
    """Gene rule files are JSON object streams; anything else is taken as Sigma YAML."""
    stripped = text.lstrip("\ufeff \t\r\n")
    return bool(stripped) and not stripped.startswith(("{", "["))


def _sigma_rules(
    text: str, source: str, opts: SigmaOptions, collect: list[RuleError] | None
) -> Iterator[Rule]:
    from .sigma import parse_sigma

    for item in parse_sigma(text, source, placeholders=opts.placeholders):
        if isinstance(item, RuleError):
            if opts.lenient:
                opts.unsupported.append(item)
            elif collect is None:
                raise item
            else:
                collect.append(item)
            continue
        status = item.extra.get("status") or ""
        if opts.status is not None and opts.lenient and status not in opts.status:
            opts.unsupported.append(
                RuleSyntaxError(
                    f"status {status!r} is filtered out (loaded: {', '.join(sorted(opts.status))})",
                    source=source,
                    rule=item.name,
                )
            )
            continue
        yield item


def _named_sigma(
    obj: dict[str, Any], source: str, line: int, opts: SigmaOptions, collect: list[RuleError] | None
) -> Iterator[Rule]:
    name = obj.get("Name")
    if not isinstance(name, str):
        yield from _sigma_rules(
            obj["Sigma"], source, SigmaOptions(opts.placeholders, None), collect
        )
        return
    inner = SigmaOptions(opts.placeholders, None, lenient=True)
    found = [r for r in _sigma_rules(obj["Sigma"], source, inner, None) if r.name == name]
    if found:
        yield found[0]
        return
    why = [e for e in inner.unsupported if e.rule == name] or inner.unsupported
    err = (
        why[0]
        if why
        else RuleSyntaxError(
            "the Sigma text has no rule with this title", source=source, line=line, rule=name
        )
    )
    if collect is None:
        raise err
    collect.append(err)


def _parse_rules(
    text: str,
    source: str,
    templates: Mapping[str, str],
    collect: list[RuleError] | None,
    sigma: SigmaOptions | None = None,
) -> Iterator[Rule]:
    opts = sigma or SigmaOptions()
    if is_sigma_text(text):
        yield from _sigma_rules(text, source, opts, collect)
        return
    try:
        for line, obj in iter_json_objects(text, source):
            if isinstance(obj, dict) and isinstance(obj.get("Sigma"), str):
                # a Sigma rule served in a rule stream (Engine.rules_text → agents, hunts);
                # `Name` picks one rule out of a multi-document file
                yield from _named_sigma(obj, source, line, opts, collect)
                continue
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


def _finish(
    rules: Iterable[Rule],
    templates: Mapping[str, str],
    errors: list[RuleError] | None,
    skip_disabled: bool,
    unsupported: Iterable[RuleError] = (),
) -> RuleSet:
    kept: list[Rule] = []
    seen: set[str] = set()
    disabled: list[str] = []
    for rule in rules:
        if rule.meta.disable and skip_disabled:
            disabled.append(rule.name)
            continue
        if rule.name in seen:
            err = DuplicateRuleError(
                f"Rule {rule.name!r} already exists",
                source=rule.source,
                line=rule.line,
                rule=rule.name,
            )
            if errors is None:
                raise err
            errors.append(err)
            continue
        seen.add(rule.name)
        kept.append(rule)
    return RuleSet(
        tuple(kept), dict(templates), tuple(errors or ()), tuple(disabled), tuple(unsupported)
    )


def load_placeholders(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Sigma `expand` placeholder values: YAML maps of name → value or list of values."""
    import yaml

    out: dict[str, list[str]] = {}
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as ex:
            raise TemplateError(f"invalid Sigma placeholders file: {ex}", source=str(path)) from ex
        if not isinstance(data, dict):
            raise TemplateError("Sigma placeholders must be a mapping", source=str(path))
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            out[str(key)] = [str(v) for v in values]
    return out


def _placeholder_files(root: Path) -> list[Path]:
    base = root if root.is_dir() else root.parent
    return sorted(p for name in SIGMA_PLACEHOLDERS for p in base.rglob(name))


def load(
    paths: Iterable[str | Path] | str | Path,
    *,
    collect_errors: bool = False,
    skip_disabled: bool = False,
    sigma_status: Iterable[str] | None = DEFAULT_SIGMA_STATUS,
    sigma_placeholders: str | Path | None = None,
) -> RuleSet:
    """Load rules from files and directories (Gene order); templates are loaded first.

    A bad rule raises a `RuleError` naming file, line, rule and reason, unless
    `collect_errors`, where errors go to `RuleSet.errors` and loading continues.
    With `skip_disabled` `Meta.Disable` rules are dropped here; the Engine always skips them.
    Sigma (`.yml`/`.yaml`, or any file that is not JSON): in directories, rules whose status is
    not in `sigma_status` (None: all) or that cannot run are listed in `RuleSet.unsupported`;
    a file named directly loads whatever its status, and an unsupported rule there is an error.
    Placeholder values come from `sigma-placeholders.yml` files under the roots (and
    `sigma_placeholders`).
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
    status = frozenset(sigma_status) if sigma_status is not None else None
    placeholders: dict[str, list[str]] = {}
    unsupported: list[RuleError] = []
    try:
        extra = [Path(sigma_placeholders)] if sigma_placeholders else []
        ph_files = [p for root in roots if root.exists() for p in _placeholder_files(root)]
        if ph_files or extra:
            placeholders = load_placeholders(ph_files + extra)
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
            opts = SigmaOptions(
                placeholders, status, lenient=root.is_dir(), unsupported=unsupported
            )
            rules.extend(_parse_rules(text, str(path), templates, errors, opts))
    ruleset = _finish(rules, templates, errors, skip_disabled, unsupported)
    logger.debug("loaded %d rules from %s", len(ruleset), ", ".join(map(str, roots)))
    return ruleset


def loads(
    text: str,
    source: str = "<string>",
    *,
    templates: Mapping[str, str] | None = None,
    collect_errors: bool = False,
    skip_disabled: bool = False,
    sigma_placeholders: Mapping[str, list[str]] | None = None,
) -> RuleSet:
    """Load rules from a string: a stream of JSON rule objects, or Sigma YAML."""
    errors: list[RuleError] | None = [] if collect_errors else None
    opts = SigmaOptions(dict(sigma_placeholders or {}), None)
    rules = list(_parse_rules(text, source, templates or {}, errors, opts))
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
