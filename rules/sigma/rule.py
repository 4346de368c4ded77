"""Sigma rules as Heron rules: parsed by pySigma, compiled by `compile.py`, run by `Engine`.

A `SigmaRule` is a `Rule` whose `Meta.Events` come from its logsource (docs/rules.md table), so
the engine's (channel, EventID) index and Detection scoring apply unchanged: the Signature is
the rule `title`, level → Criticality (`LEVELS`), ATT&CK from `attack.tNNNN` tags. The Sigma id,
level, status and falsepositives ride along in `Rule.extra` (and `to_dict`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule as PySigmaRule
from sigma.types import Placeholder, SigmaString

from ..compiler import CompiledRule
from ..rule import Rule
from .common import LEVELS, SigmaUnsupported, rule_extra, rule_meta, tag_names
from .compile import compile_condition, required_event_ids
from .correlation import correlation_rule
from .logsource import Target, Unsupported, resolve
from .view import views_for

__all__ = ["SigmaRule", "SigmaUnsupported", "parse_sigma", "LEVELS", "DEFAULT_STATUS"]

# Criticality per Sigma level, in WHIDS's bands (low 1–4, medium 5–7, high 8–9, critical 10).
DEFAULT_STATUS: frozenset[str] = frozenset({"stable", "test"})


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SigmaCompiled(CompiledRule):
    """A compiled Sigma rule; also admits Gene's EventID 0 (an EventID with Qualifiers)."""

    __slots__ = ()

    def accepts(self, channel: str, event_id: int) -> bool:
        if self.events is None:
            return True
        ids = self.events.get(channel)
        return ids is not None and (not ids or event_id in ids or event_id == 0)


@dataclass(frozen=True, slots=True)
class SigmaRule(Rule):
    """One Sigma detection rule (Rule.name = title)."""

    text: str = ""
    targets: tuple[Target, ...] = ()
    trees: tuple[Any, ...] = field(default=(), compare=False)
    placeholders: Mapping[str, Sequence[str]] = field(default_factory=dict, compare=False)

    @property
    def level(self) -> str:
        return str(self.extra.get("level", ""))

    @property
    def status(self) -> str:
        return str(self.extra.get("status", ""))

    def compile_native(self) -> CompiledRule:
        """The engine entry point (rules.compiler dispatches here)."""
        renames = {t.channel: t.renames for t in self.targets if t.renames}
        views = views_for(renames)
        try:
            expr, ns = compile_condition(self.trees, views, self.placeholders)
        except Unsupported as ex:
            raise SigmaUnsupported(
                str(ex), source=self.source, line=self.line, rule=self.name
            ) from ex
        compiled = SigmaCompiled(self)
        compiled.ns = ns  # `source` stays None: the engine runs Sigma rules as one block
        if self.targets and all(t.event_ids for t in self.targets):
            # events whose EventID carries Qualifiers reach Sigma rules as Gene's EventID 0
            # (SigmaCompiled.accepts); their real EventID is checked here
            ns["_sigma_ids"] = frozenset(str(i) for t in self.targets for i in t.event_ids)
            expr = f'(o.get("EventID") in _sigma_ids and {expr})'
        vfn = eval(f"lambda o, lo: bool({expr})", ns)
        get = views.get

        def fn(d: dict[str, Any], ed: dict[str, Any]) -> bool:
            return vfn(*get(d))  # type: ignore[no-any-return]

        compiled.fn = fn
        ns["__views__"] = views
        ns["__vfn__"] = vfn
        return compiled

    def to_dict(self) -> dict[str, Any]:
        """The Gene-shaped dump plus the Sigma source (`Sigma`) that `rules.loads` reads back."""
        out = Rule.to_dict(self)
        out["Sigma"] = self.text
        return out


def _events(targets: Sequence[Target], trees: Sequence[Any]) -> dict[str, tuple[int, ...]]:
    needed: frozenset[int] | None = None
    for t in trees:
        ids = required_event_ids(t)
        if ids is None:
            needed = None
            break
        needed = ids if needed is None else needed | ids
    events: dict[str, set[int] | None] = {}
    if any(not t.channel for t in targets):
        return {}  # every channel (Meta.Events empty)
    for t in targets:
        wanted: set[int] = set(t.event_ids)
        if needed is not None:
            wanted = set(needed) if not wanted else wanted & needed
            if not wanted:
                continue  # the rule's EventIDs exclude this channel's category IDs
        prev = events.get(t.channel, set())
        if prev is None or not wanted:
            events[t.channel] = None
        else:
            events[t.channel] = prev | wanted
    if not events:
        raise Unsupported("EventID selection matches none of the logsource's events")
    return {k: tuple(sorted(v)) if v else () for k, v in events.items()}


def _check_placeholders(trees: Sequence[Any], placeholders: Mapping[str, Sequence[str]]) -> None:
    """Unset `%name%` placeholders make the rule unsupported at load (not at compile)."""
    stack = list(trees)
    while stack:
        node = stack.pop()
        value = getattr(node, "value", None)
        if isinstance(value, SigmaString):
            for part in value.s:
                if isinstance(part, Placeholder) and not placeholders.get(part.name):
                    raise Unsupported(
                        f"placeholder %{part.name}% has no values (set them in "
                        f"the Sigma placeholders file)"
                    )
        stack.extend(getattr(node, "args", ()) or ())


def _from_pysigma(
    r: PySigmaRule, text: str, source: str, placeholders: Mapping[str, Sequence[str]]
) -> SigmaRule:
    title = r.title or str(r.id or "")
    if r.errors:
        raise SigmaUnsupported(f"invalid Sigma rule: {r.errors[0]}", source=source, rule=title)
    try:
        ls = r.logsource
        targets = resolve({"product": ls.product, "category": ls.category, "service": ls.service})
        trees = tuple(c.parsed for c in r.detection.parsed_condition)
        events = _events(targets, trees)
        _check_placeholders(trees, placeholders)
    except Unsupported as ex:
        raise SigmaUnsupported(str(ex), source=source, rule=title) from ex
    except SigmaError as ex:
        raise SigmaUnsupported(f"invalid Sigma rule: {ex}", source=source, rule=title) from ex
    meta = rule_meta(r, events)
    extra = {
        **rule_extra(r),
        "author": r.author or "",
        "logsource": {
            k: v
            for k, v in (
                ("product", ls.product),
                ("category", ls.category),
                ("service", ls.service),
            )
            if v
        },
    }
    tags = tag_names(r)
    return SigmaRule(
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
        tuple(targets),
        trees,
        dict(placeholders),
    )


def parse_sigma(
    text: str, source: str = "<string>", *, placeholders: Mapping[str, Sequence[str]] | None = None
) -> Iterator[Rule | SigmaUnsupported]:
    """Every rule of a Sigma YAML document stream, or its `SigmaUnsupported` error."""
    try:
        # Performance: libyaml's parser (pySigma's from_yaml uses the pure-Python one, ~60 % of
        # the load time of the SigmaHQ set); same safe constructor, same documents
        docs = list(yaml.load_all(text, Loader=_LOADER))
        coll = SigmaCollection.from_dicts(docs, collect_errors=True, resolve_references=False)
    except (SigmaError, ValueError) as ex:  # yaml errors are ValueError subclasses? not always
        yield SigmaUnsupported(f"invalid Sigma YAML: {ex}", source=source)
        return
    except Exception as ex:  # noqa: BLE001 - PyYAML raises its own YAMLError tree
        yield SigmaUnsupported(f"invalid Sigma YAML: {ex}", source=source)
        return
    for r in coll.rules:
        if isinstance(r, SigmaCorrelationRule):
            yield correlation_rule(r, text, source)
            continue
        if not isinstance(r, PySigmaRule):
            yield SigmaUnsupported("Sigma filters are not supported", source=source)
            continue
        try:
            yield _from_pysigma(r, text, source, placeholders or {})
        except SigmaUnsupported as ex:
            yield ex
    if not coll.rules and coll.errors:
        yield SigmaUnsupported(f"invalid Sigma rule: {coll.errors[0]}", source=source)
